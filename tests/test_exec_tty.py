"""`sdcontainer exec` and the caller's terminal, against a real systemd (issue 10).

A command run without -t must not get the caller's terminal: from a shell, a command holding
it could push keystrokes into the shell's input with TIOCSTI (the shell runs them, as the
host's user, once exec has returned), resize it, change its modes. The probe,
tests/ttyprobe.c, is built static on the host and copied into the testbed's busybox root; it
tries all of that on fds 0, 1, 2 and /dev/tty. The caller is an interactive shell on a
pseudo-terminal of its own, driven by a small script run inside the testbed (DRIVER below).

The rest checks that relaying keeps what exec did before: output, stderr apart, exit
status, stdin with -i, megabytes both ways, EOF, SIGPIPE, Ctrl-C, and -t.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers import ROOTFS, add_container, container, unit_processes, wait_for
from tests.helpers import CHECKOUT
from tests.testbed import Testbed

PROBE = "/opt/bin/ttyprobe"  # in the container (the volume below)
DRIVER = "/usr/local/lib/ptydriver.py"  # in the testbed

# Runs a program on a new pseudo-terminal (its controlling terminal, 24x80) and plays steps
# against it: ["send", TEXT] types TEXT, ["wait", TEXT] reads until TEXT has appeared. Then
# reads to the end. Prints {"status", "transcript", "winsize"} as JSON.
DRIVER_PY = r"""
import fcntl, json, os, pty, select, struct, sys, termios
spec = json.loads(sys.argv[1])
env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "TERM": "dumb", "PS1": "$ ", "LANG": "C.UTF-8"}
pid, master = pty.fork()
if pid == 0:
    os.execvpe(spec["argv"][0], spec["argv"], env)
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
transcript = bytearray()
def read_until(marker):
    while marker is None or marker not in transcript:
        ready, _, _ = select.select([master], [], [], 120)  # against a hang only
        if not ready:
            sys.exit("nothing more after 120 s:\n" + transcript.decode(errors="replace"))
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the program and everything it started have closed the terminal
            chunk = b""
        if not chunk:
            return
        transcript.extend(chunk)
for kind, text in spec["steps"]:
    if kind == "send":
        os.write(master, text.encode())
    else:
        read_until(text.encode())
read_until(None)
rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(master, termios.TIOCGWINSZ, b"\0" * 8))
_, status = os.waitpid(pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status),
                  "transcript": transcript.decode(errors="replace"), "winsize": [rows, cols]}))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build tests/ttyprobe.c (tools/setup installs it)")
    binary = tmp_path_factory.mktemp("ttyprobe") / "ttyprobe"
    source = CHECKOUT / "tests" / "ttyprobe.c"
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, probe: Path) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.copy_in(str(probe), "/srv/bin/ttyprobe")
    installed_testbed.write_file(DRIVER, DRIVER_PY)
    return installed_testbed


@pytest.fixture(scope="module")
def web(bed: Testbed) -> str:
    add_container(bed, "web", container("/bin/httpd -f -p 8080 -h /www", "User=app\nVolume=/srv/bin:/opt/bin:ro\n"))
    bed.start_unit("web.service")
    return "web"


def on_a_terminal(bed: Testbed, argv: list[str], steps: list[list[str]]) -> dict[str, object]:
    result = bed.run(["/usr/bin/python3", DRIVER, json.dumps({"argv": argv, "steps": steps})], timeout=300)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def in_a_shell(bed: Testbed, line: str) -> dict[str, object]:
    """`line` typed into an interactive shell on its terminal, then `exit` once it has run:
    whatever the line pushed into the terminal's input comes before the `exit`."""
    steps = [["send", f"{line}; echo EXEC-''DONE=$?\n"], ["wait", "EXEC-DONE="], ["send", "exit\n"]]
    return on_a_terminal(bed, ["/bin/sh", "-i"], steps)


def exec_bytes(bed: Testbed, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """sdcontainer exec inside the testbed, stdin, stdout and stderr as bytes."""
    proc = bed.popen(
        ["sdcontainer", "exec", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = proc.communicate(input, timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


# --- the caller's terminal ------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["-i"]], ids=["plain", "interactive"])
def test_exec_without_t_keeps_the_callers_terminal_out_of_reach(bed: Testbed, web: str, options: list[str]) -> None:
    pwned = f"/tmp/pwned{''.join(options)}"
    bed.run(["mkdir", "-p", pwned])
    result = in_a_shell(bed, " ".join(["sdcontainer", "exec", *options, web, PROBE, pwned]))
    transcript = str(result["transcript"])
    # nothing typed into the caller's shell by the container, nothing changed on its terminal
    assert bed.run(["ls", "-A", pwned]).stdout == "", transcript
    assert result["winsize"] == [24, 80], transcript
    assert "EXEC-DONE=0" in transcript, transcript
    for name in ("fd0", "fd1", "fd2"):
        assert f"{name}: not a terminal" in transcript, transcript
    # no controlling terminal: a session of its own
    assert "tty: open: No such device or address" in transcript, transcript
    session = next(line for line in transcript.splitlines() if line.startswith("session="))
    sid, pid = (field.partition("=")[2] for field in session.split())
    assert sid == pid, session


@pytest.mark.parametrize("options", [["-t"], ["-t", "-i"]], ids=["t", "ti"])
def test_exec_with_t_gives_a_terminal_of_the_containers_own(bed: Testbed, web: str, options: list[str]) -> None:
    pwned = f"/tmp/pwned{''.join(options)}"
    bed.run(["mkdir", "-p", pwned])
    result = in_a_shell(bed, " ".join(["sdcontainer", "exec", *options, web, PROBE, pwned]))
    transcript = str(result["transcript"])
    assert bed.run(["ls", "-A", pwned]).stdout == "", transcript
    assert result["winsize"] == [24, 80], transcript
    assert "EXEC-DONE=0" in transcript, transcript
    # its own pseudo-terminal on 0, 1 and 2, which is its controlling terminal (TIOCSTI
    # needs that of a process without CAP_SYS_ADMIN), in a session it leads
    for name in ("fd0", "fd1", "fd2", "tty"):
        assert f"{name}: terminal TIOCSTI=ok TIOCSWINSZ=ok TCSETS=ok" in transcript, transcript
    session = next(line for line in transcript.splitlines() if line.startswith("session="))
    sid, pid = (field.partition("=")[2] for field in session.split())
    assert sid == pid, session


@pytest.mark.parametrize("options", [[], ["-t"], ["-t", "-i"]], ids=["plain", "t", "ti"])
def test_ctrl_c_on_the_callers_terminal_reaches_the_command(bed: Testbed, web: str, options: list[str]) -> None:
    script = "trap 'echo got-INT; exit 9' INT; echo ready; while :; do sleep 1; done"
    argv = ["sdcontainer", "exec", *options, web, "/bin/sh", "-c", script]
    result = on_a_terminal(bed, argv, [["wait", "ready"], ["send", "\x03"]])
    assert result["status"] == 9, result
    assert "got-INT" in str(result["transcript"]), result


# --- relaying -------------------------------------------------------------------------------


def test_exec_relays_stdout_stderr_apart_and_the_exit_status(bed: Testbed, web: str) -> None:
    result = exec_bytes(bed, web, "/bin/sh", "-c", "echo out; echo err >&2; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, b"out\n", b"err\n")
    assert exec_bytes(bed, "-i", web, "cat", input=b"hi\n").stdout == b"hi\n"
    assert exec_bytes(bed, web, "cat", input=b"not without -i\n").stdout == b""  # /dev/null
    piped = bed.run(["sh", "-c", f"echo hi | sdcontainer exec -i {web} cat"])
    assert piped.stdout == "hi\n"


def test_the_commands_user_can_reopen_its_own_stdout_and_stderr(bed: Testbed, web: str) -> None:
    # as a program run as User=app does with `echo >/dev/stderr` or a log file linked there
    for options in ([], ["-i"]):
        result = exec_bytes(bed, *options, web, "/bin/sh", "-c", "id -un; echo out >/dev/stdout; echo err >/dev/stderr")
        assert (result.returncode, result.stdout, result.stderr) == (0, b"app\nout\n", b"err\n"), options
    assert bed.run(["stat", "-c", "%u:%g", "/dev/null"]).stdout == "0:0\n"  # only the pipes were handed over


def test_exec_relays_megabytes_both_ways_at_once(bed: Testbed, web: str) -> None:
    """8 MB in while 8 MB come out (a relay that writes all input before reading output
    deadlocks on the pipes' 64 KiB), every byte value, and stdin's EOF ends cat."""
    data = os.urandom(8 << 20)
    echoed = exec_bytes(bed, "-i", web, "cat", input=data)
    assert echoed.returncode == 0 and echoed.stderr == b""
    assert hashlib.sha256(echoed.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    # stdout and stderr together, each all of it (as root: /dev/stderr reopens exec's pipe)
    both = exec_bytes(bed, "-i", "-u", "root", web, "tee", "/dev/stderr", input=data)
    assert both.returncode == 0
    assert len(both.stdout) == len(both.stderr) == len(data)
    assert both.stdout == data and both.stderr == data
    # through a terminal (-t): megabytes more than its buffers hold, all of it
    zeros = exec_bytes(bed, "-t", web, "head", "-c", "3000000", "/dev/zero")
    assert (zeros.returncode, len(zeros.stdout), zeros.stdout.count(0)) == (0, 3000000, 3000000)
    # -ti from a pipe: its end is the terminal's end of input (^D), which ends cat
    typed = exec_bytes(bed, "-t", "-i", web, "cat", input=b"typed\n")
    assert typed.returncode == 0 and typed.stdout.count(b"typed\r\n") == 2, typed  # echoed, then cat's


def test_exec_when_one_side_stops_early(bed: Testbed, web: str) -> None:
    # the command stops reading: the rest of stdin is dropped, no error
    head = exec_bytes(bed, "-i", web, "head", "-c", "5", input=b"x" * (4 << 20))
    assert (head.returncode, head.stdout) == (0, b"xxxxx")
    # the reader of exec's stdout goes away: the command gets SIGPIPE, as it would have
    piped = bed.run(["bash", "-c", f'sdcontainer exec {web} yes | head -n 1; echo "${{PIPESTATUS[0]}}"'])
    assert piped.stdout == "y\n141\n"


def test_exec_ends_with_its_command_not_with_what_it_left_behind(bed: Testbed, web: str) -> None:
    """A background process that keeps the command's stdout open does not keep exec
    waiting: exec passes on what was written until its command ended, and ends."""
    result = exec_bytes(bed, web, "/bin/sh", "-c", "echo first; sleep 1000 & echo second")
    assert (result.returncode, result.stdout) == (0, b"first\nsecond\n")

    def sleepers() -> list[str]:
        return [p for p in unit_processes(bed, "web.service") if bed.read_file(f"/proc/{p}/comm").strip() == "sleep"]

    left = sleepers()
    assert left  # it is still running
    for pid in left:
        bed.run(["kill", pid], check=False)
    assert wait_for(lambda: not sleepers())
