"""The container's security policy, as data and small pure functions: the capabilities it
keeps, the syscalls its seccomp filter refuses, the kernel paths it can neither see nor write.

Applying them is left to where the order of operations lives: sdcontainer.launcher's
container_main (and sdcontainer.enter, for `sdcontainer exec` and health checks) call
confine() and then load_last() right before execve, sdcontainer.rootfs masks the paths.

Seccomp: a deny list with podman's refusals, not podman's allow list (that one is ~400
names and needs libseccomp to compile), plus ENOSYS for every call newer than the ones
podman's profile names, so a call a future kernel adds is refused as podman refuses it
(see the table above SECCOMP_EPERM). A filter for x86_64 only: a syscall from any other
audit arch (i386 through int 0x80) kills the process with SIGSYS, because a deny list
written in x86_64 numbers would not cover it; ENOSYS would be the gentler answer, but
glibc's _exit retries exit forever when it fails, so a 32-bit program would spin instead of
dying. 32-bit programs therefore do not run in sdcontainer containers. x32 syscalls get
EPERM. See SECCOMP_* below.
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

# The seccomp filter, measured against podman's default profile (containers/common
# pkg/seccomp/seccomp.json, an allow list with ENOSYS for every call it does not name) for
# x86_64 programs. Every call that profile refuses is refused here too; where this filter
# differs, it is stricter:
#
#   call(s)                                   podman                    here
#   i386 (int 0x80) and x32 system calls      allowed (arch map)        i386: SIGSYS; x32: EPERM
#   keyctl                                    allowed (a session        EPERM
#                                             keyring per container)
#   add_key, request_key, io_uring_*          ENOSYS                    EPERM
#   syslog, reboot                            allowed (the kernel       EPERM
#                                             checks CAP_SYSLOG,
#                                             CAP_SYS_BOOT)
#   bpf, perf_event_open, open_by_handle_at,  allowed with CAP_BPF or   EPERM, whatever the
#   lookup_dcookie, acct, init_module,        SYS_ADMIN, PERFMON,       capabilities
#   finit_module, delete_module               DAC_READ_SEARCH, ...
#   unshare, clone with CLONE_NEWUSER         allowed (nested           EPERM
#                                             containers)
#   clone3                                    allowed                   ENOSYS (its flags are in
#                                                                       memory, out of reach)
#   modify_ldt                                allowed on x86            EPERM (only 16- and 32-bit
#                                                                       code needs an LDT, and no
#                                                                       32-bit code runs here)
#
# tests/test_seccomp.py runs this program over every x86_64 system call and checks each
# answer against podman's.

# Refused with EPERM. Names that exist only in the i386 ABI (vm86, vm86old, pciconfig_*,
# ...) are not here: the architecture check refuses that ABI as a whole.
SECCOMP_EPERM = (
    "add_key", "request_key", "keyctl", "kexec_load", "kexec_file_load", "open_by_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "init_module", "finit_module", "delete_module", "acct", "swapon",
    "swapoff", "reboot", "syslog", "lookup_dcookie", "uselib", "ustat", "sysfs",
    "nfsservctl",
    # podman's own EPERM list: NUMA page moves of any process, user-space pages spliced
    # into pipes, io_getevents with a signal mask, the futex2 calls, page-cache residency
    # of any file (a side channel), shadow stacks
    "migrate_pages", "move_pages", "vmsplice", "io_pgetevents", "futex_waitv", "futex_wake",
    "futex_wait", "futex_requeue", "cachestat", "map_shadow_stack",
    "modify_ldt",
)  # fmt: skip
# Refused with EPERM unless the container has the capability, as in podman's profile. The
# kernel checks most of these capabilities itself; the filter keeps the calls from reaching
# it at all, and closes what the kernel lets through without one (quotactl's Q_SYNC and
# Q_GETINFO, kcmp on one's own processes).
SECCOMP_EPERM_UNLESS = {
    "CAP_SYS_ADMIN": ("sethostname", "setdomainname", "quotactl", "quotactl_fd", "setns"),
    "CAP_SYS_TIME": ("settimeofday", "clock_settime"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_PTRACE": ("kcmp", "process_madvise"),
    "CAP_SYS_CHROOT": ("chroot",),
}
# Refused with ENOSYS, as podman refuses every call its profile does not name: the C library
# then falls back to an older call. clone3 passes its flags in memory, where a filter cannot
# look; ENOSYS makes libc fall back to clone, whose flags the filter can check. The others
# are calls the kernel no longer implements (it answers ENOSYS itself) and
# set_mempolicy_home_node.
SECCOMP_ENOSYS = (
    "clone3", "_sysctl", "create_module", "get_kernel_syms", "query_module", "getpmsg",
    "putpmsg", "afs_syscall", "tuxcall", "security", "vserver", "set_mempolicy_home_node",
)  # fmt: skip
# statmount, and every call after it: podman's profile names none of them (listmount, the
# lsm_* calls, mseal, the *xattrat calls, open_tree_attr, file_getattr, file_setattr,
# listns, and whatever kernels add next), so they get ENOSYS until someone decides otherwise.
SECCOMP_FIRST_UNLISTED = "statmount"
# New user namespaces are the door to most unprivileged kernel bugs (CVE-2022-0185, -0492).
SECCOMP_NO_NEWUSER = ("unshare", "clone")
# personality(2) only with the values podman allows: PER_LINUX, PER_LINUX32, UNAME26,
# PER_LINUX32|UNAME26, and 0xffffffff, which only asks for the current one. Flags such as
# READ_IMPLIES_EXEC (every readable mapping executable) and ADDR_NO_RANDOMIZE (no ASLR for
# what the process execs next) get EPERM. The kernel reads an unsigned int, so the filter
# looks at the low 32 bits of the argument, as the kernel does.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
# socket(AF_NETLINK, *, NETLINK_AUDIT) fails with EINVAL unless the container has
# CAP_AUDIT_WRITE, as in podman: the audit log is the host's, not the container's.
AF_NETLINK, NETLINK_AUDIT = 16, 9


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


def user_capabilities(add: tuple[str, ...], caps: int, last_cap: int) -> int:
    """What a non-root user gets, as podman grants it: only the capabilities the file added
    (never the default set), and of those only what the bounding set `caps` kept, so
    DropCapability= and the launcher's own bounding set still win."""
    return _added_mask(add, last_cap) & caps


def _added_mask(add: tuple[str, ...], last_cap: int) -> int:
    everything = (1 << (last_cap + 1)) - 1
    if "CAP_ALL" in add:
        return everything
    mask = 0
    for name in add:
        number = CAP_NUMBERS.get(name)
        if number is None:
            raise UsageError(f"unknown capability {name}")
        mask |= 1 << number
    return mask & everything


def own_bounding_set() -> int:
    """The launcher's own bounding set: no capability outside it can be handed on."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def _assemble(code: list[tuple[int, int, int | str, int | str] | str]) -> list[linux.Instruction]:
    """Classic BPF with labels: a str item names the next instruction, a str jump target is
    resolved to the offset of that label (conditional jumps reach at most 255 ahead)."""
    labels: dict[str, int] = {}
    position = 0
    for item in code:
        if isinstance(item, str):
            labels[item] = position
        else:
            position += 1
    prog: list[linux.Instruction] = []
    for item in code:
        if isinstance(item, str):
            continue
        op, k, jt, jf = item
        here = len(prog) + 1
        jt = labels[jt] - here if isinstance(jt, str) else jt
        jf = labels[jf] - here if isinstance(jf, str) else jf
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError(f"seccomp program: a jump from {here - 1} does not fit in 8 bits")
        prog.append(linux.bpf_jump(op, k, jt, jf))
    return prog


def seccomp_program(caps: int) -> list[linux.Instruction]:
    """The filter for a container whose capability bounding set is `caps`, as classic BPF
    over struct seccomp_data. Calls that no argument decides on are answered at their number
    (the kernel caches those answers per call and runs no filter for the allowed ones)."""
    ld = linux.BPF_LD | linux.BPF_W | linux.BPF_ABS
    jeq, jge, jset = (linux.BPF_JMP | linux.BPF_K | op for op in (linux.BPF_JEQ, linux.BPF_JGE, linux.BPF_JSET))
    ret = linux.BPF_RET
    nr = linux.SYSCALLS_X86_64
    eperm = list(SECCOMP_EPERM)
    for cap, names in SECCOMP_EPERM_UNLESS.items():
        if not caps & (1 << CAP_NUMBERS[cap]):
            eperm += names
    code: list[tuple[int, int, int | str, int | str] | str] = [
        (ld, linux.SECCOMP_DATA_ARCH, 0, 0),
        (jeq, linux.AUDIT_ARCH_X86_64, 1, 0),
        (ret, linux.SECCOMP_RET_KILL_PROCESS, 0, 0),
        (ld, linux.SECCOMP_DATA_NR, 0, 0),
        (jge, linux.X32_SYSCALL_BIT, "eperm", 0),
        (jge, nr[SECCOMP_FIRST_UNLISTED], "enosys", 0),
    ]
    code += [(jeq, nr[name], "eperm", 0) for name in eperm]
    code += [(jeq, nr[name], "enosys", 0) for name in SECCOMP_ENOSYS]
    code += [(jeq, nr[name], "newuser", 0) for name in SECCOMP_NO_NEWUSER]
    code.append((jeq, nr["personality"], "personality", 0))
    if not caps & (1 << CAP_NUMBERS["CAP_AUDIT_WRITE"]):
        code.append((jeq, nr["socket"], "socket", 0))
    code += [
        (ret, linux.SECCOMP_RET_ALLOW, 0, 0),
        "newuser",
        (ld, linux.SECCOMP_DATA_ARG0_LO, 0, 0),
        (jset, linux.CLONE_NEWUSER, "eperm", "allow"),
        "personality",
        (ld, linux.SECCOMP_DATA_ARG0_LO, 0, 0),
        *((jeq, value, "allow", 0) for value in PERSONALITY_ALLOWED),
        (ret, linux.SECCOMP_RET_ERRNO | 1, 0, 0),
        "socket",
        (ld, linux.SECCOMP_DATA_ARG0_LO, 0, 0),
        (jeq, AF_NETLINK, 0, "allow"),
        (ld, linux.SECCOMP_DATA_ARG2_LO, 0, 0),
        (jeq, NETLINK_AUDIT, "einval", "allow"),
        "eperm",
        (ret, linux.SECCOMP_RET_ERRNO | 1, 0, 0),  # EPERM
        "enosys",
        (ret, linux.SECCOMP_RET_ERRNO | 38, 0, 0),  # ENOSYS
        "einval",
        (ret, linux.SECCOMP_RET_ERRNO | 22, 0, 0),  # EINVAL
        "allow",
        (ret, linux.SECCOMP_RET_ALLOW, 0, 0),
    ]
    return _assemble(code)


def confine(
    caps: int, last_cap: int, no_new_privileges: bool, ident: Identity, user_caps: int = 0
) -> list[linux.Instruction] | None:
    """Everything that makes a process of the container no more privileged than the container:
    no_new_privs, the bounding set, the user and groups, the capabilities, the seccomp filter.
    Root gets `caps` (inheritable and ambient empty); any other user gets `user_caps` (the
    capabilities AddCapability= named, see user_capabilities()) in every set including
    inheritable and ambient, as podman/crun give them, so they survive the user's execve.
    The container's init and every `sdcontainer exec` process go through this one sequence.
    Returns the filter still to be loaded with load_last() right before execve (with
    no_new_privs it restricts only what runs next), or None when it is in already (without
    no_new_privs the kernel demands CAP_SYS_ADMIN to load it, so it goes in before the
    capabilities are dropped)."""
    seccomp = seccomp_program(caps)
    with Step("set no_new_privs"):
        if no_new_privileges:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    with Step("drop capabilities from the bounding set"):
        linux.drop_bounding_set(caps, last_cap)
    if not no_new_privileges:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
    granted = user_caps & caps if ident.uid != 0 else 0
    with Step(f"switch to uid {ident.uid} gid {ident.gid}"):
        if granted:
            # without it setuid() to a non-root uid empties the permitted set
            linux.prctl(linux.PR_SET_KEEPCAPS, 1)
        os.setgroups(ident.groups)
        os.setgid(ident.gid)
        os.setuid(ident.uid)
    with Step("set capabilities"):
        if ident.uid == 0:
            linux.capset(caps, caps, 0)
        else:
            linux.capset(granted, granted, granted)
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
        for number in range(last_cap + 1):
            if granted & (1 << number):
                linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, number)
        if granted:
            linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    return seccomp if no_new_privileges else None


def load_last(seccomp: list[linux.Instruction] | None) -> None:
    """The seccomp filter confine() left for the moment right before execve."""
    if seccomp is not None:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
