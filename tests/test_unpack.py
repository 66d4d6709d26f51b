"""sdcontainer.unpack with real files on disk (as root: real owners, xattrs, whiteouts), and
the hostile-layer corpus: every case is refused or neutralised, and nothing outside the
layer's directory changes."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sdcontainer.errors import ImageError
from sdcontainer.store import Store
from sdcontainer.unpack import unpack
from tests.helpers import CHECKOUT
from tests.layers import digest, gz, member, tar_bytes

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (owners, trusted xattrs, whiteout devices)")


def snapshot(top: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    """Everything under `top`: mode, owner, size and content (or link target)."""
    seen: dict[str, tuple[int, int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str | None = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = Path(path).read_bytes()
            else:
                content = None
            seen[os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_size, content)
    return seen


@pytest.fixture()
def arena(tmp_path: Path) -> tuple[Path, Path]:
    """(layer directory, an 'outside' tree next to it with a secret and a directory)."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_text("do not touch\n")
    (outside / "dir" / "file").write_text("inside dir\n")
    layer = tmp_path / "store" / "tmp" / "layer"
    layer.mkdir(parents=True)
    return layer, outside


def run(layer: Path, members: list[tuple[tarfile.TarInfo, bytes]], compress: bool = True) -> None:
    data = tar_bytes(members)
    unpack(io.BytesIO(gz(data) if compress else data), str(layer))


# --- the ordinary case ------------------------------------------------------------------------


@root_only
def test_files_keep_owner_mode_mtime_and_xattrs(tmp_path: Path) -> None:
    members = [
        member("etc/", tarfile.DIRTYPE, mode=0o755, mtime=1_500_000_000),
        member("etc/app.conf", data=b"x=1\n", mode=0o640, uid=1000, gid=50, mtime=1_500_000_001),
        member("bin/", tarfile.DIRTYPE, mode=0o755),
        member("bin/su", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
        member("bin/sg", data=b"#!/bin/sh\n", mode=0o2755, uid=0, gid=50),
        member("tmp/", tarfile.DIRTYPE, mode=0o1777),
        member("bin/sh", tarfile.SYMTYPE, linkname="busybox", uid=5, gid=6),
        member("bin/busybox", data=b"\x7fELF", mode=0o755),
        member("bin/ash", tarfile.LNKTYPE, linkname="bin/busybox"),
        member("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        member(
            "usr/bin/ping",
            data=b"p",
            mode=0o755,
            pax={
                "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            },
        ),
        member("data", data=b"d", pax={"SCHILY.xattr.user.note": "hello", "mtime": "1500000000.25"}),
    ]
    raw = tar_bytes(members)
    result = unpack(io.BytesIO(gz(raw)), str(tmp_path))
    assert result.diff_id == digest(raw)
    assert result.digest == digest(gz(raw))
    conf = os.lstat(tmp_path / "etc/app.conf")
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid, conf.st_mtime) == (0o640, 1000, 50, 1_500_000_001)
    assert (tmp_path / "etc/app.conf").read_bytes() == b"x=1\n"
    assert os.stat(tmp_path / "etc").st_mtime == 1_500_000_000  # set after its entries were made
    assert stat.S_IMODE(os.lstat(tmp_path / "bin/su").st_mode) == 0o4755  # setuid kept (see the man page)
    assert stat.S_IMODE(os.lstat(tmp_path / "bin/sg").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(tmp_path / "tmp").st_mode) == 0o1777
    link = os.lstat(tmp_path / "bin/sh")
    assert os.readlink(tmp_path / "bin/sh") == "busybox" and (link.st_uid, link.st_gid) == (5, 6)
    assert os.lstat(tmp_path / "bin/ash").st_ino == os.lstat(tmp_path / "bin/busybox").st_ino
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/fifo").st_mode)
    assert os.getxattr(tmp_path / "usr/bin/ping", "security.capability")[:4] == b"\x01\x00\x00\x02"
    assert os.getxattr(tmp_path / "data", "user.note") == b"hello"
    assert os.lstat(tmp_path / "data").st_mtime_ns == 1_500_000_000_250_000_000


@root_only
def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    run(
        tmp_path,
        [
            member("etc/", tarfile.DIRTYPE, mode=0o755),
            member("etc/.wh.motd", data=b""),
            member("var/cache/", tarfile.DIRTYPE, mode=0o755),
            member("var/cache/.wh..wh..opq", data=b""),
            member("var/cache/new", data=b"n"),
        ],
    )
    wh = os.lstat(tmp_path / "etc/motd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (tmp_path / "etc/.wh.motd").exists()
    assert os.getxattr(tmp_path / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (tmp_path / "var/cache/new").read_bytes() == b"n"
    assert not (tmp_path / "var/cache/.wh..wh..opq").exists()


@root_only
def test_layers_stack_in_a_real_overlay(tmp_path: Path) -> None:
    """Two layers unpacked here, then mounted as lower directories of an overlay in a private
    mount namespace: the whiteout hides the base's file, the opaque directory its content."""
    base, top = tmp_path / "base", tmp_path / "top"
    base.mkdir()
    top.mkdir()
    run(base, [member("etc/motd", data=b"base"), member("var/cache/old", data=b"o"), member("keep", data=b"k")])
    run(top, [member("etc/.wh.motd"), member("var/cache/.wh..wh..opq"), member("var/cache/new", data=b"n")])
    merged = tmp_path / "merged"
    merged.mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir={top}:{base} {merged} && "
        f"ls -A {merged}/etc; echo --; ls -A {merged}/var/cache; echo --; cat {merged}/keep"
    )
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["--", "new", "--", "k"], out


def test_device_nodes_are_skipped(tmp_path: Path) -> None:
    result = unpack(
        io.BytesIO(
            tar_bytes(
                [
                    member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
                    member("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
                    member("hide-me", tarfile.CHRTYPE, devmajor=0, devminor=0),  # would be a whiteout
                    member("ok", data=b"ok"),
                ]
            )
        ),
        str(tmp_path),
    )
    assert sorted(os.listdir(tmp_path)) == ["ok"]
    assert sorted(result.skipped) == ["dev/mem", "dev/sda", "hide-me"]


def test_a_plain_uncompressed_layer_and_later_entries_win(tmp_path: Path) -> None:
    run(
        tmp_path,
        [
            member("a", data=b"first"),
            member("b", tarfile.LNKTYPE, linkname="a"),
            member("b", data=b"second"),  # replaces the link: never written through it
            member("d/", tarfile.DIRTYPE),
            member("d/x", data=b"x"),
            member("d", data=b"now a file"),  # replaces the directory and its content
        ],
        compress=False,
    )
    assert (tmp_path / "a").read_bytes() == b"first"
    assert (tmp_path / "b").read_bytes() == b"second"
    assert (tmp_path / "d").read_bytes() == b"now a file"


def test_multi_member_gzip_and_gnu_long_names(tmp_path: Path) -> None:
    long = "l" * 150 + "/" + "n" * 200
    raw = tar_bytes([member(long, data=b"deep"), member("x", data=b"x")], fmt=tarfile.GNU_FORMAT)
    half = len(raw) // 1024 * 512
    blob = gz(raw[:half]) + gz(raw[half:])
    result = unpack(io.BytesIO(blob), str(tmp_path))
    assert (tmp_path / long).read_bytes() == b"deep"
    assert result.diff_id == digest(raw)


# --- the hostile corpus -----------------------------------------------------------------------


def _cases(outside: Path) -> dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], str]]:
    """name: (members, "refused" or "neutralised")."""
    o = str(outside)
    return {
        "dotdot": ([member("../outside/secret", data=b"pwned")], "refused"),
        "dotdot-deep": ([member("a/b/../../../outside/secret", data=b"pwned")], "refused"),
        "dotdot-in-pax-path": ([member("innocent", data=b"pwned", pax={"path": "../outside/secret"})], "refused"),
        "dotdot-dir": ([member("..", tarfile.DIRTYPE, mode=0o777)], "refused"),
        "absolute-name": ([member(f"{o}/secret", data=b"pwned")], "neutralised"),
        "absolute-dir-then-file": (
            [member(f"{o}/dir/", tarfile.DIRTYPE), member(f"{o}/dir/file", data=b"x")],
            "neutralised",
        ),
        "symlink-then-write-through": (
            [member("link", tarfile.SYMTYPE, linkname=o), member("link/secret", data=b"pwned")],
            "refused",
        ),
        "relative-symlink-then-write-through": (
            [member("link", tarfile.SYMTYPE, linkname="../../../outside"), member("link/secret", data=b"pwned")],
            "refused",
        ),
        "symlink-then-replace-file": (
            [member("link", tarfile.SYMTYPE, linkname=f"{o}/secret"), member("link", data=b"pwned")],
            "neutralised",
        ),
        "symlink-then-dir-entry": (
            [member("link", tarfile.SYMTYPE, linkname=f"{o}/dir"), member("link", tarfile.DIRTYPE, mode=0o777)],
            "neutralised",
        ),
        "symlink-then-mkdir-below": (
            [member("link", tarfile.SYMTYPE, linkname=o), member("link/new/", tarfile.DIRTYPE)],
            "refused",
        ),
        "dir-replaced-by-symlink": (
            [
                member("d/", tarfile.DIRTYPE),
                member("d/ok", data=b"ok"),
                member("d", tarfile.SYMTYPE, linkname=o),
                member("d/secret", data=b"pwned"),
            ],
            "refused",
        ),
        "hardlink-dotdot": ([member("hl", tarfile.LNKTYPE, linkname="../outside/secret")], "refused"),
        "hardlink-absolute-outside": ([member("hl", tarfile.LNKTYPE, linkname=f"{o}/secret")], "refused"),
        "hardlink-through-symlink": (
            [member("s", tarfile.SYMTYPE, linkname=o), member("hl", tarfile.LNKTYPE, linkname="s/secret")],
            "refused",
        ),
        "hardlink-to-symlink-then-write": (
            [
                member("s", tarfile.SYMTYPE, linkname=f"{o}/secret"),
                member("hl", tarfile.LNKTYPE, linkname="s"),
                member("hl", data=b"pwned"),
            ],
            "neutralised",
        ),
        "hardlink-to-directory": (
            [member("d/", tarfile.DIRTYPE), member("hl", tarfile.LNKTYPE, linkname="d")],
            "refused",
        ),
        "whiteout-dotdot": ([member("../outside/.wh.secret")], "refused"),
        "whiteout-of-dot": ([member("dir/.wh..")], "refused"),
        "whiteout-of-dotdot": ([member(".wh...")], "refused"),
        "whiteout-through-symlink": (
            [member("s", tarfile.SYMTYPE, linkname=o), member("s/.wh.secret")],
            "refused",
        ),
        "opaque-through-symlink": (
            [member("s", tarfile.SYMTYPE, linkname=f"{o}/dir"), member("s/.wh..wh..opq")],
            "refused",
        ),
        "device-nodes": (
            [member("mem", tarfile.CHRTYPE, devmajor=1, devminor=1), member("sda", tarfile.BLKTYPE, devmajor=8)],
            "neutralised",
        ),
        "setuid-root-shell": ([member("bin/sh", data=b"#!", mode=0o6755)], "neutralised"),
        "overlay-xattrs-from-the-layer": (
            [
                member(
                    "d/",
                    tarfile.DIRTYPE,
                    pax={
                        "SCHILY.xattr.trusted.overlay.redirect": o,
                        "SCHILY.xattr.trusted.overlay.opaque": "y",
                        "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0",
                    },
                )
            ],
            "neutralised",
        ),
        "huge-name-component": ([member("a" * 300, data=b"x")], "refused"),
        "huge-path": ([member("/".join(["d" * 200] * 30) + "/f", data=b"x")], "refused"),
        "nul-in-pax-name": ([member("x", data=b"x", pax={"path": "a\0b"})], "refused"),
        "sparse-file": ([member("s", data=b"x", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})], "refused"),
        "root-as-a-file": ([member("./", data=b"x")], "refused"),
        "negative-pax-size": ([member("f", data=b"x", pax={"size": "-5"})], "refused"),
        "garbage-pax-uid": ([member("f", data=b"x", pax={"uid": "root"})], "refused"),
        "huge-pax-uid": ([member("f", data=b"x", pax={"uid": str(1 << 40)})], "refused"),
    }


CASE_NAMES = sorted(_cases(Path("/x")))


@root_only
@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_layer(case: str, arena: tuple[Path, Path]) -> None:
    layer, outside = arena
    members, outcome = _cases(outside)[case]
    before = snapshot(outside)
    if outcome == "refused":
        with pytest.raises(ImageError) as caught:
            run(layer, members)
        assert "layer" in str(caught.value)
    else:
        run(layer, members)
    assert snapshot(outside) == before, "something outside the layer changed"
    # nothing was created next to the layer either
    assert sorted(os.listdir(layer.parent)) == ["layer"]
    if case == "absolute-name":
        assert (layer / str(outside).lstrip("/") / "secret").read_bytes() == b"pwned"
    if case == "symlink-then-replace-file":
        assert (layer / "link").read_bytes() == b"pwned" and not (layer / "link").is_symlink()
    if case == "symlink-then-dir-entry":
        assert (layer / "link").is_dir() and not (layer / "link").is_symlink()
    if case == "hardlink-to-symlink-then-write":
        assert (layer / "hl").read_bytes() == b"pwned" and (layer / "s").is_symlink()
    if case == "device-nodes":
        assert os.listdir(layer) == []
    if case == "setuid-root-shell":
        assert stat.S_IMODE(os.lstat(layer / "bin/sh").st_mode) == 0o6755  # kept; the store is 0700
    if case == "overlay-xattrs-from-the-layer":
        assert os.listxattr(layer / "d") == []


@root_only
def test_a_refused_layer_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    bad = gz(tar_bytes([member("ok", data=b"fine"), member("../escape", data=b"x")]))
    with Store(str(store_root)) as store, pytest.raises(ImageError):
        store.add_layer(io.BytesIO(bad), None, None)
    assert os.listdir(store_root / "layers") == [] and os.listdir(store_root / "tmp") == []
    assert stat.S_IMODE(os.stat(store_root).st_mode) == 0o700


@root_only
def test_digests_are_checked_before_a_layer_is_committed(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    raw = tar_bytes([member("f", data=b"content")])
    blob = gz(raw)
    with Store(str(store_root)) as store:
        with pytest.raises(ImageError, match="digest"):
            store.add_layer(io.BytesIO(blob), digest(b"something else"), digest(raw))
        with pytest.raises(ImageError, match="its tar has digest"):
            store.add_layer(io.BytesIO(blob), digest(blob), digest(b"another tar"))
        assert os.listdir(store_root / "layers") == []
        diff_id, size = store.add_layer(io.BytesIO(blob), digest(blob), digest(raw))
    assert diff_id == digest(raw) and size == len(raw)
    assert (store_root / "layers" / diff_id[7:] / "f").read_bytes() == b"content"


def _piled_pax_headers() -> bytes:
    """Two pax headers of 600 KB before one entry: each within the bound, together not (a
    parser that merged them without a bound would grow with the number of headers)."""
    piled = b"".join(
        tarfile.TarInfo._create_pax_generic_header({key: "y" * 600_000}, tarfile.XHDTYPE, "utf-8")  # type: ignore[attr-defined]
        for key in ("a", "b")
    )
    return piled + tar_bytes([member("f", data=b"x")], fmt=tarfile.USTAR_FORMAT)


def test_directory_mtimes_spilled_to_a_file_are_all_set(tmp_path: Path) -> None:
    """More than a MiB of directory records (800 directories with 1.5 KiB names) go to a
    temporary file, not memory: every directory still gets its mtime, the later entry of a
    directory listed twice wins, and the temporary file is gone."""
    parent = "/".join(["p" * 250] * 6)
    members = [member("/".join(["p" * 250] * (i + 1)) + "/", tarfile.DIRTYPE, mode=0o755) for i in range(6)]
    members += [member(f"{parent}/d{i:04d}/", tarfile.DIRTYPE, mode=0o755, mtime=1_000_000 + i) for i in range(800)]
    members += [member(f"{parent}/d0000/f", data=b"x"), member(f"{parent}/d0001/", tarfile.DIRTYPE, mtime=42)]
    layer = tmp_path / "layer"
    layer.mkdir()
    unpack(io.BytesIO(tar_bytes(members)), str(layer))
    fd = os.open(layer, os.O_RDONLY)
    try:
        for i in range(800):
            st = os.stat(f"{parent}/d{i:04d}", dir_fd=fd)
            assert st.st_mtime == (42 if i == 1 else 1_000_000 + i), i
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == ["layer"]


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (gz(tar_bytes([member("f", data=b"x" * 100000)]))[:-30], "truncated"),
        (b"\x1f\x8b" + b"garbage" * 10, "gzip"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 100, "zstd"),
        (b"not a tar at all, " * 40, "checksum"),
        (tar_bytes([member("f", data=b"x" * 5000)])[:2048], "ends"),
        (tar_bytes([member("f", data=b"x", pax={"mtime": "1" + "0" * 30})]), "invalid mtime"),
        (_piled_pax_headers(), "extended headers of more than"),
    ],
    ids=["truncated-gzip", "bad-gzip", "zstd", "not-tar", "truncated-tar", "huge-mtime", "pax-headers-pile-up"],
)
def test_broken_streams_are_errors(blob: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=message):
        unpack(io.BytesIO(blob), str(tmp_path))


def test_memory_stays_bounded_on_a_gzip_bomb(tmp_path: Path) -> None:
    """A 512 MiB file of zeros compresses to ~0.5 MiB: unpacking it must stream (the peak RSS of a
    child unpacking it stays far below the file's size)."""
    script = f"""
import io, os, resource, sys, tarfile, zlib
sys.path.insert(0, {str(CHECKOUT)!r})
from sdcontainer.unpack import unpack
size = 1 << 29
class Zeros(io.RawIOBase):
    def __init__(self): self.left = size
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
info = tarfile.TarInfo("zeros"); info.size = size
header = info.tobuf(tarfile.PAX_FORMAT)
comp = zlib.compressobj(1, zlib.DEFLATED, 31)
parts = [comp.compress(header)]
chunk = bytes(1 << 20)
for _ in range(size >> 20):
    parts.append(comp.compress(chunk))
parts.append(comp.compress(bytes(1024)))
parts.append(comp.flush())
blob = b"".join(parts)
del parts
unpack(io.BytesIO(blob), sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(blob))
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    peak, compressed = map(int, out.stdout.split())
    assert os.path.getsize(tmp_path / "zeros") == 1 << 29
    assert peak < 200 << 20, f"peak RSS {peak} bytes for a {compressed}-byte blob of 512 MiB"
