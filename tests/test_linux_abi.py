"""linux.py builds its C types from _ctypes instead of importing ctypes (3 ms per start):
check that they are the same shapes as ctypes' own and as the kernel's structures."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from sdcontainer import linux

SCALARS = [
    ("c_int", ctypes.c_int),
    ("c_uint", ctypes.c_uint),
    ("c_long", ctypes.c_long),
    ("c_ulong", ctypes.c_ulong),
    ("c_uint8", ctypes.c_uint8),
    ("c_uint16", ctypes.c_uint16),
    ("c_uint32", ctypes.c_uint32),
    ("c_uint64", ctypes.c_uint64),
    ("c_size_t", ctypes.c_size_t),
    ("c_char_p", ctypes.c_char_p),
    ("c_void_p", ctypes.c_void_p),
]


@pytest.mark.parametrize(("name", "reference"), SCALARS)
def test_scalar_types_match_ctypes(name: str, reference: type) -> None:
    ours = getattr(linux, name)
    assert ctypes.sizeof(ours) == ctypes.sizeof(reference)
    # the same signedness and width (ctypes spells c_uint64 as an alias of c_ulong: "L")
    same = {ours._type_, reference._type_}  # type: ignore[attr-defined]
    assert len(same) == 1 or same == {"Q", "L"}


@pytest.mark.parametrize(
    ("structure", "size"),
    # sizes from the kernel's uapi headers on x86_64
    [("CapHeader", 8), ("CapData", 12), ("SockFilter", 8), ("SockFprog", 16), ("OpenHow", 24), ("MountAttr", 32)],
)
def test_structures_have_the_kernels_sizes(structure: str, size: int) -> None:
    assert ctypes.sizeof(getattr(linux, structure)) == size


def test_libc_calls_report_errno() -> None:
    with pytest.raises(OSError) as caught:
        linux.umount2("/nonexistent-sdcontainer-path", 0)
    assert caught.value.errno in (2, 22)  # ENOENT or EINVAL, as umount2 says


def test_string_buffer_keeps_nul_bytes() -> None:
    buffer = linux.create_string_buffer(b"a\0b", 4)
    assert bytes(buffer) == b"a\0b\0"


def test_syscall_numbers_are_the_kernels() -> None:
    """The seccomp filter refuses calls by number: a wrong one would refuse some other call
    and let the intended one through. Checked against the kernel headers for the calls they
    know (linux-libc-dev of Debian 12 ends at 450; newer numbers are from syscall_64.tbl)."""
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no kernel headers (linux-libc-dev)")
    known = {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+) (\d+)$", header.read_text(), re.M)}
    ours = {name: nr for name, nr in linux.SYSCALLS_X86_64.items() if name in known}
    assert ours == {name: known[name] for name in ours}
    newer = {name: nr for name, nr in linux.SYSCALLS_X86_64.items() if name not in known}
    assert all(nr > max(known.values()) for nr in newer.values()), newer
    assert len(set(linux.SYSCALLS_X86_64.values())) == len(linux.SYSCALLS_X86_64)
