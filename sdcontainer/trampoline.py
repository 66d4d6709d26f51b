"""The last program the host's side runs in a container: a sealed in-memory exec trampoline.

Every process that enters a container (its init from the launcher, `sdcontainer exec`, a
health check, ReloadCmd=) is the host's python until its final execve. A container that can
write its own files can swap the program between our lookup and that execve for a script
whose #! line is /proc/self/exe: the kernel would then run the *calling process's own
binary*, the host's python, inside the container, which could open it through
/proc/PID/exe and, once it has ended, rewrite the host's interpreter (the runc
CVE-2019-5736 class). Checking the program before the execve cannot close that race.

So the final execve never runs the container's program straight from python: python execs
this trampoline instead, a few hundred bytes of machine code written into a memfd that is
sealed against writes (F_SEAL_WRITE, F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_SEAL), and the
trampoline execs the program. Whatever a /proc/self/exe trick makes the kernel run from
there is that sealed private copy, never a host file; it holds nothing of the host's, and
the python before it is not dumpable, so /proc/PID/exe of it cannot be opened from inside.
runc and crun close the same hole with a sealed memfd copy of themselves (megabytes); the
trampoline costs one memfd of 300 bytes and one exec of a static program with no loader.

The code is the text of tools/trampoline/x86_64.S (GNU as); tests/test_trampoline.py
assembles it again and compares. The ELF around it is built here: one read-only executable
PT_LOAD and a PT_GNU_STACK without execute, so that the program's personality keeps no
READ_IMPLIES_EXEC. x86_64 only, as the seccomp filter is (sdcontainer.security).
"""

from __future__ import annotations

import fcntl
import os
import struct

NAME = "sdcontainer-exec"  # the memfd's, as /proc/PID/exe shows it

# argv = [PREFIX, PATH, ARGV0, ...] -> execve(PATH, [ARGV0, ...], envp); on failure the message
# "PREFIX: exec PATH: REASON" on stderr and exit status 127 (ENOENT) or 126, as a shell
TEXT = {
    "x86_64": bytes.fromhex(
        "488b0c244883f9030f82c20000004c8b7424084c8b6c24104c89ef488d742418488d54cc10b83b0000000f05"
        "f7d84189c44883ec404c89f6e89f000000488d35b2000000e8930000004c89eee88b000000488d35a6000000"
        "e87f000000488d35a60000000fb60685c0740f48ffc64139c47435ac84c075fbebea488d3580000000e85600"
        "0000c644243f00488d74243f4489e0b90a00000048ffce31d2f7f180c230881685c075f0e82f000000488d35"
        "54000000e823000000bf7e0000004183fc027505bf7f000000b8e70000000f05bf7e000000b8e70000000f05"
        "31d2803c1600740548ffc2ebf5bf02000000b8010000000f05c33a206578656320003a20006572726e6f2000"
        "0a00014f7065726174696f6e206e6f74207065726d697474656400024e6f20737563682066696c65206f7220"
        "6469726563746f72790007417267756d656e74206c69737420746f6f206c6f6e6700084578656320666f726d"
        "6174206572726f72000c43616e6e6f7420616c6c6f63617465206d656d6f7279000d5065726d697373696f6e"
        "2064656e69656400144e6f742061206469726563746f7279001549732061206469726563746f7279001a5465"
        "78742066696c6520627573790028546f6f206d616e79206c6576656c73206f662073796d626f6c6963206c69"
        "6e6b730000"
    ),
}
_EM = {"x86_64": 62}  # e_machine
_BASE = 0x400000  # where the one segment is mapped (above vm.mmap_min_addr)
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_PT_LOAD, _PT_GNU_STACK = 1, 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4

_MFD_EXEC = 0x10  # kernels with vm.memfd_noexec (6.3+) want it said; older ones refuse it
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def elf(machine: str) -> bytes:
    """The trampoline as a static ELF executable for `machine` (os.uname().machine)."""
    text = TEXT[machine]
    headers = _EHDR.size + 2 * _PHDR.size
    size = headers + len(text)
    ident = b"\x7fELF" + bytes((2, 1, 1))  # 64-bit, little-endian, version 1, System V ABI
    header = _EHDR.pack(
        ident, 2, _EM[machine], 1, _BASE + headers, _EHDR.size, 0, 0, _EHDR.size, _PHDR.size, 2, 0, 0, 0
    )  # ET_EXEC, entry right after the headers, program headers after the ELF header
    load = _PHDR.pack(_PT_LOAD, _PF_R | _PF_X, 0, _BASE, _BASE, size, size, 0x1000)
    stack = _PHDR.pack(_PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0, 16)
    return header + load + stack + text


def sealed() -> int:
    """A close-on-exec fd of a sealed memfd holding the trampoline, for os.execve(fd, ...)."""
    image = elf(os.uname().machine)
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create(NAME, flags | _MFD_EXEC)
    except OSError:
        fd = os.memfd_create(NAME, flags)
    try:
        os.write(fd, image)
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def argv(program: str, argv: list[str], prefix: str) -> list[str]:
    """The trampoline's argv that execs `program` with `argv`; `prefix` starts its message
    if that execve fails (the name of the program the user ran, as our other messages)."""
    return [prefix, program, *argv]
