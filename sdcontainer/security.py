"""The container's security policy, as data and small pure functions: the capabilities it
keeps, the syscalls its seccomp filter refuses, the kernel paths it can neither see nor write.

Applying them is left to where the order of operations lives: sdcontainer.launcher's
container_main (and sdcontainer.enter, for `sdcontainer exec` and health checks) call
confine() and then load_last() right before execve, sdcontainer.rootfs masks the paths.

Seccomp: a deny list, not podman's allow list (that one is ~400 names and needs libseccomp
to compile). A filter for x86_64 only: a syscall from any other audit arch (i386 through
int 0x80) kills the process with SIGSYS, because a deny list written in x86_64 numbers would
not cover it; ENOSYS would be the gentler answer, but glibc's _exit retries exit forever
when it fails, so a 32-bit program would spin instead of dying. 32-bit programs therefore
do not run in sdcontainer containers. x32 syscalls get EPERM. See SECCOMP_* below.
"""

from __future__ import annotations

import os

from sdcontainer import linux
from sdcontainer.errors import UsageError
from sdcontainer.step import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.process import Identity

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAP_NUMBERS = {name: number for number, name in enumerate(CAPABILITIES)}

# podman's default (containers/common DefaultCapabilities): CapEff 00000000800405fb.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)  # fmt: skip

# podman's masked and read-only paths (containers/common pkg/config/default.go).
MASKED_PATHS = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/sched_debug",
    "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap",
    "/sys/firmware", "/sys/fs/selinux", "/proc/interrupts",
)  # fmt: skip
READONLY_PATHS = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The seccomp deny list. Names missing from linux.SYSCALLS_X86_64 (vm86, vm86old) exist only
# in the i386 ABI, which the filter refuses as a whole.
SECCOMP_EPERM = (
    "add_key", "request_key", "keyctl", "kexec_load", "kexec_file_load", "open_by_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "init_module", "finit_module", "delete_module", "acct", "swapon",
    "swapoff", "reboot", "syslog", "lookup_dcookie", "uselib", "vm86", "ustat", "sysfs",
    "nfsservctl",
)  # fmt: skip
# clone3 passes its flags in memory, where a filter cannot look; ENOSYS makes libc fall back
# to clone, whose flags the filter can check.
SECCOMP_ENOSYS = ("clone3",)
# New user namespaces are the door to most unprivileged kernel bugs (CVE-2022-0185, -0492).
SECCOMP_NO_NEWUSER = ("unshare", "clone")


def capability_mask(add: tuple[str, ...], drop: tuple[str, ...], last_cap: int) -> int:
    """podman's default set + add - drop, with CAP_ALL meaning every capability the kernel has."""
    everything = (1 << (last_cap + 1)) - 1

    def mask_of(names: tuple[str, ...]) -> int:
        mask = 0
        for name in names:
            if name == "CAP_ALL":
                return everything
            number = CAP_NUMBERS.get(name)
            if number is None:
                raise UsageError(f"unknown capability {name}")
            mask |= 1 << number
        return mask

    return (mask_of(DEFAULT_CAPABILITIES) | mask_of(add)) & ~mask_of(drop) & everything


def own_bounding_set() -> int:
    """The launcher's own bounding set: no capability outside it can be handed on."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def seccomp_program() -> list[linux.Instruction]:
    """The deny-list filter, as classic BPF over struct seccomp_data."""
    ld, jmp, ret = linux.BPF_LD | linux.BPF_W | linux.BPF_ABS, linux.BPF_JMP | linux.BPF_K, linux.BPF_RET
    eperm = linux.SECCOMP_RET_ERRNO | 1  # EPERM
    enosys = linux.SECCOMP_RET_ERRNO | 38  # ENOSYS
    nr = linux.SYSCALLS_X86_64
    prog = [
        linux.bpf_stmt(ld, linux.SECCOMP_DATA_ARCH),
        linux.bpf_jump(jmp | linux.BPF_JEQ, linux.AUDIT_ARCH_X86_64, 1, 0),
        linux.bpf_stmt(ret, linux.SECCOMP_RET_KILL_PROCESS),
        linux.bpf_stmt(ld, linux.SECCOMP_DATA_NR),
        linux.bpf_jump(jmp | linux.BPF_JGE, linux.X32_SYSCALL_BIT, 0, 1),
        linux.bpf_stmt(ret, eperm),
    ]
    for names, action in ((SECCOMP_EPERM, eperm), (SECCOMP_ENOSYS, enosys)):
        for name in names:
            if name in nr:
                prog.append(linux.bpf_jump(jmp | linux.BPF_JEQ, nr[name], 0, 1))
                prog.append(linux.bpf_stmt(ret, action))
    for name in SECCOMP_NO_NEWUSER:
        prog += [
            linux.bpf_jump(jmp | linux.BPF_JEQ, nr[name], 0, 4),
            linux.bpf_stmt(ld, linux.SECCOMP_DATA_ARG0_LO),
            linux.bpf_jump(jmp | linux.BPF_JSET, linux.CLONE_NEWUSER, 0, 1),
            linux.bpf_stmt(ret, eperm),
            linux.bpf_stmt(ret, linux.SECCOMP_RET_ALLOW),
        ]
    prog.append(linux.bpf_stmt(ret, linux.SECCOMP_RET_ALLOW))
    return prog


def confine(caps: int, last_cap: int, no_new_privileges: bool, ident: Identity) -> list[linux.Instruction] | None:
    """Everything that makes a process of the container no more privileged than the container:
    no_new_privs, the bounding set, the user and groups, the capabilities (inheritable and
    ambient empty), the seccomp filter. The container's init and every `sdcontainer exec`
    process go through this one sequence. Returns the filter still to be loaded with
    load_last() right before execve (with no_new_privs it restricts only what runs next), or
    None when it is in already (without no_new_privs the kernel demands CAP_SYS_ADMIN to
    load it, so it goes in before the capabilities are dropped)."""
    seccomp = seccomp_program()
    with Step("set no_new_privs"):
        if no_new_privileges:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    with Step("drop capabilities from the bounding set"):
        linux.drop_bounding_set(caps, last_cap)
    if not no_new_privileges:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
    with Step(f"switch to uid {ident.uid} gid {ident.gid}"):
        os.setgroups(ident.groups)
        os.setgid(ident.gid)
        os.setuid(ident.uid)
    with Step("set capabilities"):
        kept = caps if ident.uid == 0 else 0
        linux.capset(kept, kept, 0)
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    return seccomp if no_new_privileges else None


def load_last(seccomp: list[linux.Instruction] | None) -> None:
    """The seccomp filter confine() left for the moment right before execve."""
    if seccomp is not None:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
