"""The sealed exec trampoline (sdcontainer.trampoline), on this host: its bytes are what its
source assembles to, and it runs a program, or says why not, as the project's messages do."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sdcontainer import trampoline

ASSEMBLE = Path(__file__).resolve().parent.parent / "tools" / "trampoline" / "assemble"


def test_the_text_is_what_its_source_assembles_to() -> None:
    if shutil.which("as") is None or shutil.which("objcopy") is None:
        pytest.skip("binutils (as, objcopy) are not installed")
    out = subprocess.run([str(ASSEMBLE), "x86_64"], capture_output=True, text=True, check=True).stdout
    assert bytes.fromhex(out.strip()) == trampoline.TEXT["x86_64"]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Exec the sealed trampoline with `argv` in a child; what it printed and its status."""
    read_out, write_out = os.pipe()
    read_err, write_err = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_out, 1)
            os.dup2(write_err, 2)
            os.execve(trampoline.sealed(), argv, env)
        finally:
            os._exit(99)
    os.close(write_out)
    os.close(write_err)
    with open(read_out, "rb") as out, open(read_err, "rb") as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status), stdout, stderr)


def test_it_execs_the_program_with_its_argv_and_environment() -> None:
    r = run(trampoline.argv("/usr/bin/env", ["env"], "test"), {"A": "1", "B": "two words"})
    assert (r.returncode, r.stdout, r.stderr) == (0, b"A=1\nB=two words\n", b"")
    r = run(trampoline.argv("/bin/sh", ["sh", "-c", 'echo "$0" "$@"', "zero", "one", ""], "test"), {})
    assert r.stdout == b"zero one \n"


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/nonexistent", 127, "No such file or directory"),
        ("/etc/passwd", 126, "Permission denied"),
        ("/", 126, "Permission denied"),
        ("/etc/passwd/x", 126, "Not a directory"),
    ],  # the texts of strerror(), as the python before it would have said them
)
def test_a_failed_execve_is_told_as_the_project_tells_it(path: str, status: int, reason: str) -> None:
    r = run(trampoline.argv(path, ["x"], "sdcontainer exec"), {})
    assert r.returncode == status
    assert r.stderr.decode() == f"sdcontainer exec: exec {path}: {reason}\n"


def test_an_errno_outside_its_table_is_given_as_a_number() -> None:
    # ENAMETOOLONG (36): a path longer than PATH_MAX
    r = run(trampoline.argv("/" + "a" * 5000, ["a"], "t"), {})
    assert (r.returncode, r.stderr) == (126, f"t: exec /{'a' * 5000}: errno 36\n".encode())


def test_run_without_a_program_it_does_nothing() -> None:
    # as the kernel would run it again through a #!/proc/self/exe script with too few arguments
    assert run(["only-a-name"], {}).returncode == 126


def test_the_memfd_is_sealed_and_not_the_hosts_file() -> None:
    fd = trampoline.sealed()
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        for seal in (fcntl.F_SEAL_WRITE, fcntl.F_SEAL_GROW, fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_SEAL):
            assert seals & seal
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.readlink(f"/proc/self/fd/{fd}") == f"/memfd:{trampoline.NAME} (deleted)"
        writable = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):
                os.write(writable, b"x")
        finally:
            os.close(writable)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        assert os.pread(fd, 4, 0) == b"\x7fELF"
    finally:
        os.close(fd)


def test_the_program_keeps_no_executable_stack_personality() -> None:
    # PT_GNU_STACK without PF_X: no READ_IMPLIES_EXEC (0x400000) is handed on to the program
    r = run(trampoline.argv("/bin/cat", ["cat", "/proc/self/personality"], "t"), {})
    assert r.returncode == 0 and int(r.stdout, 16) & 0x400000 == 0
