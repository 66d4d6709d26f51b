"""The one place where sdcontainer talks to the kernel through ctypes.

Python 3.11's `os` has no unshare, mount, pivot_root, capset or seccomp, so they are declared
here once, with argument types, under their kernel names, and every failure is raised as
`OSError(errno, strerror, filename)` like the `os` functions do. Only x86_64 is supported:
the syscall numbers and the seccomp filter's architecture check are that ABI's.

This module is on the start path of every container: stdlib only, no work at import time
beyond loading libc and defining a few structures.
"""

from __future__ import annotations

import _ctypes
import os
import struct
from _ctypes import POINTER, Structure, addressof, byref, get_errno, sizeof

# The few ctypes types this module needs, built from the C module `_ctypes` exactly as
# ctypes/__init__.py builds them: importing ctypes itself costs ~3 ms (it makes dozens of
# types and caches), on the start path of every container.


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_uint8(_ctypes._SimpleCData):
    _type_ = "B"


class c_uint16(_ctypes._SimpleCData):
    _type_ = "H"


class c_uint32(_ctypes._SimpleCData):
    _type_ = "I"


class c_uint64(_ctypes._SimpleCData):
    _type_ = "Q"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


c_size_t = c_ulong  # LP64
c_ushort = c_uint16


def create_string_buffer(init: bytes, size: int) -> _ctypes.Array[c_char]:
    buffer = (c_char * size)()
    buffer.raw = init  # type: ignore[misc, assignment]  # typeshed knows only ctypes.c_char
    return buffer


class _LibcFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Libc:
    """libc's functions as attributes, like ctypes.CDLL(None, use_errno=True)."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, os.RTLD_LOCAL)  # type: ignore[arg-type]  # NULL: the program

    def __getattr__(self, name: str) -> _LibcFunction:
        function = _LibcFunction((name, self))  # type: ignore[arg-type]  # any object with _handle
        setattr(self, name, function)
        return function


libc = _Libc()

# --- constants (values from the kernel's uapi headers) -------------------------------------

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC

MOVE_MOUNT_F_SYMLINKS = 0x1
MOVE_MOUNT_F_AUTOMOUNTS = 0x2
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_SYMLINKS = 0x10
MOVE_MOUNT_T_AUTOMOUNTS = 0x20
MOVE_MOUNT_T_EMPTY_PATH = 0x40

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# classic BPF opcodes used by seccomp filters (linux/bpf_common.h)
BPF_LD = 0x00
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_W = 0x00
BPF_ABS = 0x20
BPF_JEQ = 0x10
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_K = 0x00

# offsets in struct seccomp_data
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARG0_LO = 16  # little-endian: the low 32 bits of args[0]
SECCOMP_DATA_ARG2_LO = 32  # the low 32 bits of args[2]

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for, and for the seccomp filter
# (arch/x86/entry/syscalls/syscall_64.tbl; tests/test_linux_abi.py checks them against the
# kernel headers).
SYSCALLS_X86_64 = {
    "socket": 41,
    "clone": 56,
    "syslog": 103,
    "uselib": 134,
    "personality": 135,
    "ustat": 136,
    "sysfs": 139,
    "vhangup": 153,
    "modify_ldt": 154,
    "pivot_root": 155,
    "_sysctl": 156,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "getpmsg": 181,
    "putpmsg": 182,
    "afs_syscall": 183,
    "tuxcall": 184,
    "security": 185,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "vserver": 236,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "migrate_pages": 256,
    "unshare": 272,
    "vmsplice": 278,
    "move_pages": 279,
    "perf_event_open": 298,
    "open_by_handle_at": 304,
    "setns": 308,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_pgetevents": 333,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "pidfd_open": 434,
    "clone3": 435,
    "openat2": 437,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "futex_waitv": 449,
    "set_mempolicy_home_node": 450,
    "cachestat": 451,
    "map_shadow_stack": 453,
    "futex_wake": 454,
    "futex_wait": 455,
    "futex_requeue": 456,
    "statmount": 457,
}
_NR = SYSCALLS_X86_64

# --- plumbing ------------------------------------------------------------------------------


def _raise(filename: str | None = None) -> None:
    err = get_errno()
    raise OSError(err, os.strerror(err), filename)


def _path(p: str | bytes | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


libc.syscall.restype = c_long

libc.unshare.argtypes = (c_int,)
libc.mount.argtypes = (
    c_char_p,
    c_char_p,
    c_char_p,
    c_ulong,
    c_char_p,
)
libc.umount2.argtypes = (c_char_p, c_int)
libc.sethostname.argtypes = (c_char_p, c_size_t)
libc.prctl.argtypes = (c_int, c_ulong, c_ulong, c_ulong, c_ulong)


class CapHeader(Structure):
    _fields_ = (("version", c_uint32), ("pid", c_int))


class CapData(Structure):
    _fields_ = (
        ("effective", c_uint32),
        ("permitted", c_uint32),
        ("inheritable", c_uint32),
    )


libc.capset.argtypes = (POINTER(CapHeader), POINTER(CapData))


class SockFilter(Structure):
    _fields_ = (
        ("code", c_uint16),
        ("jt", c_uint8),
        ("jf", c_uint8),
        ("k", c_uint32),
    )


_SOCK_FILTER = struct.Struct("=HBBI")


class SockFprog(Structure):
    _fields_ = (("len", c_ushort), ("filter", c_void_p))  # struct sock_filter *


class OpenHow(Structure):
    _fields_ = (("flags", c_uint64), ("mode", c_uint64), ("resolve", c_uint64))


class MountAttr(Structure):
    _fields_ = (
        ("attr_set", c_uint64),
        ("attr_clr", c_uint64),
        ("propagation", c_uint64),
        ("userns_fd", c_uint64),
    )


def _syscall(name: str, *args: object, filename: str | None = None) -> int:
    # libc.syscall is variadic: every argument is passed as a full machine word so that no
    # upper bits are left undefined.
    result = libc.syscall(c_long(_NR[name]), *args)
    if result < 0:
        _raise(filename)
    return int(result)


# --- namespaces and mounts -----------------------------------------------------------------


def unshare(flags: int) -> None:
    if libc.unshare(flags) < 0:
        _raise()


libc.setns.argtypes = (c_int, c_int)


def setns(fd: int, nstype: int) -> None:
    """Join the namespaces `nstype` names (CLONE_NEW* flags) of the process `fd` is a pidfd
    of, all at once, or the one namespace a /proc/PID/ns/* fd is."""
    if libc.setns(fd, nstype) < 0:
        _raise()


def pidfd_open(pid: int) -> int:
    """A file descriptor that refers to the process `pid` (close-on-exec); it never refers to
    another process that later gets the same pid."""
    return _syscall("pidfd_open", c_int(pid), c_uint(0), filename=f"/proc/{pid}")


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    if libc.mount(_path(source), _path(target), _path(fstype), flags, _path(data)) < 0:
        _raise(target)


def umount2(target: str, flags: int = 0) -> None:
    if libc.umount2(_path(target), flags) < 0:
        _raise(target)


def pivot_root(new_root: str, put_old: str) -> None:
    _syscall("pivot_root", _path(new_root), _path(put_old), filename=new_root)


def sethostname(name: str) -> None:
    encoded = name.encode()
    if libc.sethostname(encoded, len(encoded)) < 0:
        _raise()


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open `path` below `dirfd` under the kernel's RESOLVE_* rules; returns the fd (close it)."""
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _syscall(
        "openat2",
        c_int(dirfd),
        _path(path),
        byref(how),
        c_size_t(sizeof(how)),
        filename=path,
    )


def open_tree(path: str, flags: int, dirfd: int = AT_FDCWD) -> int:
    """A detached copy of the mount at `path` (with OPEN_TREE_CLONE): a bind mount that can
    be given attributes before it is attached anywhere."""
    return _syscall(
        "open_tree",
        c_int(dirfd),
        _path(path),
        c_uint(flags | OPEN_TREE_CLOEXEC),
        filename=path,
    )


def move_mount(from_fd: int, to_fd: int, filename: str | None = None) -> None:
    """Attach the detached tree `from_fd` on the file or directory opened as `to_fd`."""
    _syscall(
        "move_mount",
        c_int(from_fd),
        b"",
        c_int(to_fd),
        b"",
        c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        filename=filename,
    )


def fsopen(fstype: str) -> int:
    """A file system context (the new mount API) for `fstype`; returns its fd (close it)."""
    return _syscall("fsopen", _path(fstype), c_uint(FSOPEN_CLOEXEC), filename=fstype)


def fsconfig_string(fs_fd: int, key: str, value: str) -> None:
    """One parameter of a file system context: each is a separate value, so a path in it
    needs no escaping of ',' or ':' (overlayfs's lowerdir+ takes one layer per call)."""
    _syscall("fsconfig", c_int(fs_fd), c_uint(FSCONFIG_SET_STRING), _path(key), _path(value), c_int(0), filename=value)


def fsconfig_create(fs_fd: int) -> None:
    _syscall("fsconfig", c_int(fs_fd), c_uint(FSCONFIG_CMD_CREATE), None, None, c_int(0))


def fsmount(fs_fd: int, attr_flags: int = 0) -> int:
    """A detached mount of the created context, with MOUNT_ATTR_* flags; returns its fd."""
    return _syscall("fsmount", c_int(fs_fd), c_uint(FSMOUNT_CLOEXEC), c_uint(attr_flags))


def mount_setattr(
    fd: int,
    attr_set: int = 0,
    attr_clr: int = 0,
    *,
    recursive: bool = False,
    path: str = "",
    filename: str | None = None,
) -> None:
    """Set or clear MOUNT_ATTR_* bits on a mount (by fd, or `path` relative to it). Unlike
    MS_REMOUNT|MS_BIND it changes only the bits named, and can reach every submount."""
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    flags = (AT_RECURSIVE if recursive else 0) | (0 if path else AT_EMPTY_PATH)
    _syscall(
        "mount_setattr",
        c_int(fd),
        _path(path),
        c_uint(flags),
        byref(attr),
        c_size_t(sizeof(attr)),
        filename=filename or path or None,
    )


# --- process attributes --------------------------------------------------------------------


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        _raise()
    return int(result)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks) with the version 3 ABI."""
    header = CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)(
        CapData(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF),
        CapData(effective >> 32, permitted >> 32, inheritable >> 32),
    )
    if libc.capset(byref(header), data) < 0:
        _raise()


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        return int(f.read())


def drop_bounding_set(keep: int, last_cap: int) -> None:
    """Drop every capability not in the `keep` mask from the bounding set (needs CAP_SETPCAP)."""
    for cap in range(last_cap + 1):
        if not keep & (1 << cap):
            prctl(PR_CAPBSET_DROP, cap)


# --- seccomp -------------------------------------------------------------------------------

Instruction = tuple[int, int, int, int]


def bpf_stmt(code: int, k: int) -> Instruction:
    return (code, 0, 0, k)


def bpf_jump(code: int, k: int, jt: int, jf: int) -> Instruction:
    return (code, jt, jf, k)


def seccomp_load(program: list[Instruction]) -> None:
    """Install a classic-BPF seccomp filter on this thread. Needs no_new_privs or
    CAP_SYS_ADMIN; the filter is inherited across fork and execve and can never be removed."""
    # One struct.pack per instruction into a flat buffer: building a SockFilter object for
    # each costs ~0.5 ms, on the start path of every container.
    raw = b"".join(_SOCK_FILTER.pack(code, jt, jf, k) for code, jt, jf, k in program)
    buffer = create_string_buffer(raw, len(raw))
    prog = SockFprog(len(program), addressof(buffer))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, addressof(prog))


# --- network -------------------------------------------------------------------------------


libc.socket.argtypes = (c_int, c_int, c_int)
libc.ioctl.argtypes = (c_int, c_ulong, c_void_p)
libc.close.argtypes = (c_int,)

_AF_INET = 2
_SOCK_DGRAM = 2
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, then ifr_flags in the union


def interface_up(name: str = "lo") -> None:
    """Set IFF_UP on an interface of the current network namespace; for `lo` in a fresh
    namespace that is all the configuration it needs (the kernel adds 127.0.0.1 and ::1).
    Through libc rather than the socket module, whose import costs about a millisecond."""
    fd = libc.socket(_AF_INET, _SOCK_DGRAM | os.O_CLOEXEC, 0)
    if fd < 0:
        _raise()
    try:
        request = create_string_buffer(_IFREQ.pack(name.encode(), 0), _IFREQ.size)
        if libc.ioctl(fd, SIOCGIFFLAGS, request) < 0:
            _raise(name)
        flags = _IFREQ.unpack(request.raw)[1]  # type: ignore[misc]
        if not flags & IFF_UP:
            request = create_string_buffer(_IFREQ.pack(name.encode(), flags | IFF_UP), _IFREQ.size)
            if libc.ioctl(fd, SIOCSIFFLAGS, request) < 0:
                _raise(name)
    finally:
        libc.close(fd)
