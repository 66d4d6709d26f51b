"""The seccomp filter against podman's default profile, call by call, without a container.

The program security.seccomp_program builds is run here by a small classic-BPF interpreter
over every x86_64 system call, and each answer is compared with podman's (containers/common
pkg/seccomp/seccomp.json at f437c58a, 2025-08-25, read for x86_64 below): whatever podman
refuses must be refused, and whatever it allows must be allowed unless it is one of the
documented stricter choices (security.py). The containers in tests/test_defaults.py and
tests/test_launcher.py check the same filter through the kernel.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from sdcontainer import linux, security

# --- a classic-BPF interpreter, for the instructions seccomp filters use ----------------

ALLOW, KILL = linux.SECCOMP_RET_ALLOW, linux.SECCOMP_RET_KILL_PROCESS
EPERM, EINVAL, ENOSYS = (linux.SECCOMP_RET_ERRNO | n for n in (1, 22, 38))


def run(prog: list[linux.Instruction], nr: int, *args: int, arch: int = linux.AUDIT_ARCH_X86_64) -> int:
    """The filter's verdict for one call (struct seccomp_data: nr, arch, ip, args[6])."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == linux.BPF_LD:
            assert code == linux.BPF_LD | linux.BPF_W | linux.BPF_ABS and k % 4 == 0 and k < len(data)
            acc = struct.unpack_from("<I", data, k)[0]
        elif cls == linux.BPF_JMP:
            op = code & 0xF0
            taken = {linux.BPF_JEQ: acc == k, linux.BPF_JGE: acc >= k, linux.BPF_JSET: bool(acc & k)}[op]
            pc += jt if taken else jf
        elif cls == linux.BPF_RET:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} is not interpreted here")


# --- podman's profile, for x86_64 -----------------------------------------------------------

# refused whatever the capabilities (SCMP_ACT_ERRNO, EPERM)
PODMAN_EPERM = {
    "kexec_file_load", "kexec_load", "migrate_pages", "move_pages", "nfsservctl", "swapoff",
    "swapon", "sysfs", "uselib", "userfaultfd", "ustat", "vmsplice", "io_pgetevents",
    "futex_waitv", "cachestat", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue",
}  # fmt: skip
# allowed only with one of these capabilities
PODMAN_NEEDS = {
    "open_by_handle_at": {"CAP_DAC_READ_SEARCH"},
    "lookup_dcookie": {"CAP_SYS_ADMIN"},
    "quotactl": {"CAP_SYS_ADMIN"},
    "quotactl_fd": {"CAP_SYS_ADMIN"},
    "sethostname": {"CAP_SYS_ADMIN"},
    "setdomainname": {"CAP_SYS_ADMIN"},
    "setns": {"CAP_SYS_ADMIN"},
    "bpf": {"CAP_SYS_ADMIN", "CAP_BPF"},
    "perf_event_open": {"CAP_PERFMON"},
    "chroot": {"CAP_SYS_CHROOT"},
    "init_module": {"CAP_SYS_MODULE"},
    "finit_module": {"CAP_SYS_MODULE"},
    "delete_module": {"CAP_SYS_MODULE"},
    "query_module": {"CAP_SYS_MODULE"},
    "acct": {"CAP_SYS_PACCT"},
    "kcmp": {"CAP_SYS_PTRACE"},
    "process_madvise": {"CAP_SYS_PTRACE"},
    "iopl": {"CAP_SYS_RAWIO"},
    "ioperm": {"CAP_SYS_RAWIO"},
    "clock_settime": {"CAP_SYS_TIME"},
    "settimeofday": {"CAP_SYS_TIME"},
    "vhangup": {"CAP_SYS_TTY_CONFIG"},
}
# x86_64 calls the profile does not name: the default action, ENOSYS
PODMAN_UNNAMED = {
    "_sysctl", "create_module", "get_kernel_syms", "getpmsg", "putpmsg", "afs_syscall",
    "tuxcall", "security", "vserver", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "set_mempolicy_home_node",
}  # fmt: skip
PODMAN_FIRST_UNNAMED = 457  # statmount and everything after it
PODMAN_PERSONALITY = {0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF}


def podman_refuses(name: str, caps: set[str]) -> bool:
    """For a call whose arguments podman does not look at (personality and socket aside)."""
    if name in PODMAN_EPERM or name in PODMAN_UNNAMED:
        return True
    return name in PODMAN_NEEDS and not PODMAN_NEEDS[name] & caps


# Allowed by podman with CAP_SYS_MODULE, but gone from the kernel, which answers ENOSYS
# itself, as the filter does.
NOT_IN_THE_KERNEL = {"query_module"}
# Where sdcontainer refuses what podman allows (security.py has the table and the reasons).
STRICTER = {"keyctl", "syslog", "reboot", "modify_ldt", "clone3"}
STRICTER_EVEN_WITH_THE_CAPABILITY = {
    "bpf", "perf_event_open", "open_by_handle_at", "lookup_dcookie", "acct", "init_module",
    "finit_module", "delete_module",
}  # fmt: skip


def x86_64_syscalls() -> dict[str, int]:
    """Every x86_64 system call: the kernel headers' table, and ours for calls newer than it."""
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no kernel headers (linux-libc-dev) to list the system calls")
    calls = {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+) (\d+)$", header.read_text(), re.M)}
    return {**calls, **linux.SYSCALLS_X86_64}


ALL_CAPS = (1 << len(security.CAPABILITIES)) - 1
DEFAULT_CAPS = security.capability_mask((), (), len(security.CAPABILITIES) - 1)


def cap_names(mask: int) -> set[str]:
    return {name for name, number in security.CAP_NUMBERS.items() if mask & (1 << number)}


@pytest.mark.parametrize("caps", [DEFAULT_CAPS, ALL_CAPS, 0], ids=["default", "all", "none"])
def test_every_call_podman_refuses_is_refused(caps: int) -> None:
    prog = security.seccomp_program(caps)
    held = cap_names(caps)
    stricter = STRICTER | STRICTER_EVEN_WITH_THE_CAPABILITY | NOT_IN_THE_KERNEL
    differences = set()
    for name, nr in sorted(x86_64_syscalls().items(), key=lambda item: item[1]):
        verdict = run(prog, nr)
        if nr >= PODMAN_FIRST_UNNAMED or podman_refuses(name, held):
            assert verdict in (EPERM, ENOSYS), (name, nr, hex(verdict))
        elif verdict != ALLOW:
            differences.add(name)
    assert differences - stricter == set()
    assert differences >= STRICTER


def test_calls_newer_than_the_profile_get_enosys_and_other_abis_are_refused() -> None:
    prog = security.seccomp_program(DEFAULT_CAPS)
    for nr in range(PODMAN_FIRST_UNNAMED, 1024):
        assert run(prog, nr) == ENOSYS, nr
    assert run(prog, linux.X32_SYSCALL_BIT | 39) == EPERM  # x32 getpid
    assert run(prog, 20, arch=0x40000003) == KILL  # i386 getpid
    assert run(prog, 39) == ALLOW  # getpid
    assert run(prog, linux.SYSCALLS_X86_64["clone3"]) == ENOSYS


@pytest.mark.parametrize(
    "value",
    [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF, 0x0400000, 0x0040000, 0x0200000, 0x4000000, 0x1, 0x20009],
)
def test_personality_only_with_podmans_values(value: int) -> None:
    prog = security.seccomp_program(DEFAULT_CAPS)
    nr = linux.SYSCALLS_X86_64["personality"]
    expected = ALLOW if value in PODMAN_PERSONALITY else EPERM
    assert run(prog, nr, value) == expected
    # the kernel takes an unsigned int: the high half of the register changes nothing
    assert run(prog, nr, value | 0xABCD << 32) == expected


def test_netlink_audit_sockets_need_cap_audit_write() -> None:
    nr = linux.SYSCALLS_X86_64["socket"]
    default = security.seccomp_program(DEFAULT_CAPS)
    assert run(default, nr, security.AF_NETLINK, 3, security.NETLINK_AUDIT) == EINVAL
    assert run(default, nr, security.AF_NETLINK, 3, 0) == ALLOW  # NETLINK_ROUTE
    assert run(default, nr, 2, 1, security.NETLINK_AUDIT) == ALLOW  # AF_INET, protocol 9
    with_audit = security.seccomp_program(DEFAULT_CAPS | 1 << security.CAP_NUMBERS["CAP_AUDIT_WRITE"])
    assert run(with_audit, nr, security.AF_NETLINK, 3, security.NETLINK_AUDIT) == ALLOW


def test_new_user_namespaces_are_refused_with_every_capability() -> None:
    prog = security.seccomp_program(ALL_CAPS)
    for name in ("clone", "unshare"):
        nr = linux.SYSCALLS_X86_64[name]
        assert run(prog, nr, linux.CLONE_NEWUSER | 0x11) == EPERM
        assert run(prog, nr, 0x20000) == ALLOW  # CLONE_NEWNS: the capabilities decide


def test_capabilities_open_what_podman_opens_with_them() -> None:
    nr = linux.SYSCALLS_X86_64
    without = security.seccomp_program(DEFAULT_CAPS)
    for cap, names in security.SECCOMP_EPERM_UNLESS.items():
        with_cap = security.seccomp_program(DEFAULT_CAPS | 1 << security.CAP_NUMBERS[cap])
        for name in names:
            assert run(with_cap, nr[name]) == ALLOW, name
            if cap not in cap_names(DEFAULT_CAPS):
                assert run(without, nr[name]) == EPERM, name


def test_the_program_fits_and_jumps_stay_inside() -> None:
    for caps in (0, DEFAULT_CAPS, ALL_CAPS):
        prog = security.seccomp_program(caps)
        assert len(prog) < 4096  # BPF_MAXINSNS
        assert prog[-1] == (linux.BPF_RET, 0, 0, linux.SECCOMP_RET_ALLOW)
        for pc, (code, jt, jf, _) in enumerate(prog):
            if code & 0x07 == linux.BPF_JMP:
                assert pc + 1 + max(jt, jf) < len(prog)
