"""Unpacking one image layer: a (compressed) tar stream, hostile by assumption, into a
directory that becomes one lower layer of a container's overlay.

The layer is read once, streamed: a thread reads the blob, hashes it (the layer's digest),
decompresses it with zlib (in bounded pieces, so a gzip bomb never sits in memory) and
hashes the tar (the diffID); the caller's thread parses the tar headers itself (ustar,
pax and GNU long names; sparse files are refused) and writes the files. Memory stays
bounded whatever the layer holds: a few MiB of chunks in flight, one header at a time (its
extended headers at most 1 MiB), and the directories' mtimes, set last, kept in a
temporary file beside the layer rather than in memory.

Limits (Limits, from the environment): a layer with more entries, more uncompressed bytes
or a longer name or link target than allowed is refused, with the variable to change in
the error. The defaults are far above any real image (podman and containers/storage have
no such limits at all: there, inodes and disk run out first):

    SDCONTAINER_LAYER_MAX_ENTRIES   4000000 entries
    SDCONTAINER_LAYER_MAX_SIZE      256G of uncompressed tar (k, m, g, t suffixes)
    SDCONTAINER_LAYER_MAX_PATH      4096 bytes (PATH_MAX: the kernel takes no longer path)

Each takes a positive number or "infinity".

Every file is created relative to directory file descriptors, never through a path string
the layer controls:

* a name is split into components; `.` and empty ones are dropped, a leading `/` is
  dropped (as tar does: absolute names land inside the layer), and any `..` refuses the
  whole layer;
* the parent directory is opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a
  symlink anywhere in the parent path (`lib -> /etc`, then `lib/passwd`) refuses the layer;
  missing parents are made as plain directories (mode 0755, owned by root);
* the last component is created with O_CREAT|O_EXCL|O_NOFOLLOW (a file), mkdirat, symlinkat
  (the target is only text: it is never followed here), or linkat without following; what
  was there before in the same layer is removed first (later entries win, as in tar), so
  nothing is ever written through an existing symlink or hard link;
* a hard link's target is resolved the same way and must already be in this layer;
* ownership, mode (setuid/setgid/sticky kept), mtime and a few xattrs (user.*,
  security.capability, POSIX ACLs) are set on the created object itself, never followed;
  trusted.* and security.selinux from a layer are dropped (trusted.overlay.* would steer
  the overlay);
* whiteouts become overlayfs whiteouts, so every layer stays a separate lower directory:
  `.wh.NAME` a 0/0 character device NAME, `.wh..wh..opq` the xattr trusted.overlay.opaque=y
  on its directory;
* device nodes (block and character) are skipped: a container gets a fresh /dev and its
  overlay is mounted nodev anyway; FIFOs are made.

Any refusal raises ImageError naming the entry; the caller unpacks into a private temporary
directory and throws it away, so a refused layer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
import zlib
from queue import Queue

from sdcontainer import linux
from sdcontainer.errors import ImageError, reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import IO

CHUNK = 1 << 20  # read and decompress in pieces of this size
_QUEUE_DEPTH = 8  # chunks in flight between the reading thread and the writer
_MAX_HEADER_DATA = 1 << 20  # pax and GNU long-name records larger than this are refused
_RESOLVE = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
_XATTR_PREFIXES = (b"user.", b"security.capability", b"system.posix_acl_access", b"system.posix_acl_default")
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPED_SHOWN = 100  # names of skipped device nodes kept for the caller (the count is exact)
_NS_RANGE = 1 << 63  # mtimes in nanoseconds must fit a signed 64-bit number

MAX_ENTRIES_VARIABLE = "SDCONTAINER_LAYER_MAX_ENTRIES"
MAX_SIZE_VARIABLE = "SDCONTAINER_LAYER_MAX_SIZE"
MAX_PATH_VARIABLE = "SDCONTAINER_LAYER_MAX_PATH"


class Limits:
    """What one layer may hold: entries, uncompressed bytes, bytes in a name or link target."""

    __slots__ = ("entries", "size", "path")

    def __init__(self, entries: int = 4_000_000, size: int = 256 << 30, path: int = 4096) -> None:
        self.entries, self.size, self.path = entries, size, path

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        limits = cls()
        for variable, attribute, sized in (
            (MAX_ENTRIES_VARIABLE, "entries", False),
            (MAX_SIZE_VARIABLE, "size", True),
            (MAX_PATH_VARIABLE, "path", False),
        ):
            text = env.get(variable, "").strip()
            if text:
                setattr(limits, attribute, _limit(variable, text, sized))
        return limits


def _limit(variable: str, text: str, sized: bool) -> int:
    if text == "infinity":
        return 1 << 62
    try:
        if sized:
            from sdcontainer.values import size_in_bytes

            value = size_in_bytes(text)
        else:
            value = int(text) if text.isdigit() else -1
    except ValueError:
        value = -1
    if value <= 0:
        what = "a size (bytes, or with k, m, g, t)" if sized else "a positive number"
        raise ImageError(f"{variable}={text!r} is not {what} or 'infinity'")
    return value


class LayerDigests:
    """What was read: the blob's digest (as stored, compressed or not) and size, the tar's
    digest (the diffID) and size, and the entries skipped on purpose (device nodes: the
    first _SKIPPED_SHOWN names, and how many)."""

    __slots__ = ("digest", "diff_id", "size", "skipped", "blob_size", "skipped_count")

    def __init__(
        self, digest: str, diff_id: str, size: int, skipped: list[str], blob_size: int = 0, skipped_count: int = 0
    ) -> None:
        self.digest, self.diff_id, self.size, self.skipped = digest, diff_id, size, skipped
        self.blob_size, self.skipped_count = blob_size, skipped_count


# --- the stream: read, hash, decompress, hash, in a thread of its own -------------------------


class _Pipeline:
    """The uncompressed tar as chunks, produced by a thread; `take(n)` hands out up to n
    bytes of the current chunk without copying."""

    def __init__(self, blob: IO[bytes], progress: Callable[[int], None] | None = None, max_size: int = 1 << 62) -> None:
        self.blob = blob
        self.progress = progress
        self.max_size = max_size
        self.blob_hash = hashlib.sha256()
        self.blob_size = 0
        self.tar_hash = hashlib.sha256()
        self.tar_size = 0
        self.queue: Queue[bytes | BaseException | None] = Queue(_QUEUE_DEPTH)
        self.chunk = memoryview(b"")
        self.pos = 0
        self.done = False
        self.stop = False
        self.thread = threading.Thread(target=self._produce, name="layer-reader", daemon=True)
        self.thread.start()

    def _put(self, item: bytes | BaseException | None) -> None:
        self.queue.put(item)

    def _produce(self) -> None:
        try:
            data = self.blob.read(CHUNK)
            self.blob_hash.update(data)
            self.blob_size += len(data)
            if data.startswith(ZSTD_MAGIC):
                raise ImageError("layer: compressed with zstd: not supported yet (gzip and plain tar are)")
            gzipped = data.startswith(GZIP_MAGIC)
            inflater = zlib.decompressobj(31)
            fed = False  # the current gzip member has had input
            while data and not self.stop:
                if not gzipped:
                    self._emit(data)
                while gzipped and data and not self.stop:
                    fed = True
                    out = inflater.decompress(data, CHUNK * 4)
                    if out:
                        self._emit(out)
                    if inflater.eof:
                        # a gzip stream may hold several members, one after the other
                        data = inflater.unused_data
                        inflater = zlib.decompressobj(31)
                        fed = False
                    else:
                        data = inflater.unconsumed_tail
                data = self.blob.read(CHUNK)
                self.blob_hash.update(data)
                self.blob_size += len(data)
                if self.progress is not None:
                    self.progress(len(data))
            if gzipped and fed and not inflater.eof and not self.stop:
                raise ImageError("layer: the gzip stream is truncated")
            self._put(None)
        except zlib.error as error:
            self._put(ImageError(f"layer: not a valid gzip stream ({error})"))
        except BaseException as error:  # noqa: B036 - handed to the consumer, which raises it
            self._put(error if isinstance(error, (ImageError, OSError)) else ImageError(f"layer: {error}"))

    def _emit(self, data: bytes) -> None:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        if self.tar_size > self.max_size:
            from sdcontainer.values import format_size

            raise ImageError(
                f"layer: more than {format_size(self.max_size)} of uncompressed data; refused "
                f"(the limit is {MAX_SIZE_VARIABLE})"
            )
        self._put(data)

    def _next(self) -> bool:
        if self.done:
            return False
        item = self.queue.get()
        if item is None:
            self.done = True
            return False
        if isinstance(item, BaseException):
            self.done = True
            raise item
        self.chunk = memoryview(item)
        self.pos = 0
        return True

    def take(self, n: int) -> memoryview:
        """Up to n bytes (at least one), or an empty view at the end of the stream."""
        while self.pos >= len(self.chunk):
            if not self._next():
                return memoryview(b"")
        end = min(self.pos + n, len(self.chunk))
        view = self.chunk[self.pos : end]
        self.pos = end
        return view

    def read_exact(self, n: int) -> bytes:
        parts = []
        while n:
            view = self.take(n)
            if not view:
                raise ImageError("layer: the tar stream ends in the middle of an entry")
            parts.append(bytes(view))
            n -= len(view)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n:
            view = self.take(n)
            if not view:
                raise ImageError("layer: the tar stream ends in the middle of an entry")
            n -= len(view)

    def drain(self) -> None:
        """Read to the end, so both digests cover the whole blob."""
        while self.take(CHUNK):
            pass

    def close(self) -> None:
        self.stop = True
        while not self.done:  # unblock the producer
            try:
                if not self._next():
                    break
            except BaseException:  # noqa: B036 - closing after a failure: the first error counts
                break
        self.thread.join()


# --- tar headers ---------------------------------------------------------------------------


def _number(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            value -= 1 << (8 * len(field) - 2)  # negative: two's complement of the 62 bits left
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ImageError(f"layer: invalid tar header ({what} {text!r})") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156], "checksum")
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    if stored == unsigned:
        return True
    # some old tars summed signed chars
    return stored == unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 127)


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise ImageError("layer: invalid pax header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageError("layer: invalid pax header") from None
        if length <= 0 or pos + length > len(data):
            raise ImageError("layer: invalid pax header")
        record = data[space + 1 : pos + length - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise ImageError("layer: invalid pax header")
        records[key] = value
        pos += length
    return records


def _pax_time(value: bytes) -> int:
    whole, _, fraction = value.partition(b".")
    try:
        seconds = int(whole)
        nanos = int((fraction + b"000000000")[:9]) if fraction else 0
    except ValueError:
        raise ImageError(f"layer: invalid pax mtime {value!r}") from None
    return seconds * 1_000_000_000 + (nanos if seconds >= 0 else -nanos)


class Entry:
    __slots__ = ("name", "kind", "mode", "uid", "gid", "size", "mtime_ns", "linkname", "xattrs")

    def __init__(self) -> None:
        self.name = b""
        self.kind = b"0"
        self.mode = 0
        self.uid = self.gid = self.size = self.mtime_ns = 0
        self.linkname = b""
        self.xattrs: list[tuple[bytes, bytes]] = []


def _pax_int(fields: dict[bytes, bytes], key: bytes) -> int:
    value = fields[key]
    if not value.isdigit() or len(value) > 20:
        raise ImageError(f"layer: invalid pax {key.decode()} {value[:40]!r}")
    return int(value)


def _pad(size: int) -> int:
    return -size % 512


def read_entries(stream: _Pipeline) -> Callable[[], Entry | None]:
    """A function returning the next entry (its data is next in the stream), or None."""
    global_pax: dict[bytes, bytes] = {}
    global_size = [0]

    def next_entry() -> Entry | None:
        pax: dict[bytes, bytes] = {}
        long_name = long_link = None
        extended = 0  # bytes of extended headers before this entry: bounded, as each one is
        while True:
            first = stream.take(512)
            if not first:
                return None  # the stream ends without the end-of-archive blocks: fine
            header = bytes(first) if len(first) == 512 else bytes(first) + stream.read_exact(512 - len(first))
            if header == bytes(512):
                return None  # end of archive (the second zero block and padding are drained)
            if not _checksum_ok(header):
                raise ImageError("layer: a tar header has a bad checksum (not a tar stream, or corrupt)")
            kind = header[156:157]
            size = _number(header[124:136], "size")
            if size < 0:
                raise ImageError("layer: a tar header has a negative size")
            if kind in (b"x", b"g", b"L", b"K"):
                extended += size
                if kind == b"g":
                    global_size[0] += size
                if size > _MAX_HEADER_DATA or extended > _MAX_HEADER_DATA or global_size[0] > _MAX_HEADER_DATA:
                    raise ImageError(f"layer: tar extended headers of more than {_MAX_HEADER_DATA} bytes; refused")
                data = stream.read_exact(size)
                stream.skip(_pad(size))
                if kind == b"x":
                    pax.update(_parse_pax(data))
                elif kind == b"g":
                    global_pax.update(_parse_pax(data))
                elif kind == b"L":
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            break
        entry = Entry()
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\0":  # POSIX ustar: a prefix may hold the start of the name
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        fields = {**global_pax, **pax}
        entry.name = fields.get(b"path", long_name if long_name is not None else name)
        entry.linkname = fields.get(
            b"linkpath", long_link if long_link is not None else header[157:257].split(b"\0", 1)[0]
        )
        entry.kind = kind if kind != b"\0" else b"0"
        entry.mode = _number(header[100:108], "mode") & 0o7777
        entry.uid = _pax_int(fields, b"uid") if b"uid" in fields else _number(header[108:116], "uid")
        entry.gid = _pax_int(fields, b"gid") if b"gid" in fields else _number(header[116:124], "gid")
        entry.size = _pax_int(fields, b"size") if b"size" in fields else size
        if not (0 <= entry.uid < 0xFFFFFFFF and 0 <= entry.gid < 0xFFFFFFFF):
            raise ImageError(f"layer: entry {_show(entry.name)!r} has an invalid owner {entry.uid}:{entry.gid}")
        if b"mtime" in fields:
            entry.mtime_ns = _pax_time(fields[b"mtime"])
        else:
            entry.mtime_ns = _number(header[136:148], "mtime") * 1_000_000_000
        if not -_NS_RANGE <= entry.mtime_ns < _NS_RANGE:
            raise ImageError(f"layer: entry {_show(entry.name)!r} has an invalid mtime")
        for key, value in fields.items():
            if key.startswith(b"SCHILY.xattr."):
                entry.xattrs.append((key[len(b"SCHILY.xattr.") :], value))
            elif key.startswith(b"GNU.sparse."):
                raise ImageError(f"layer: {_show(entry.name)}: sparse files are not supported")
        if entry.kind in (b"1", b"2", b"3", b"4", b"5", b"6"):
            entry.size = 0  # as tar reads them: no data follows links, directories and nodes
        return entry

    return next_entry


def _show(name: bytes) -> str:
    text = name.decode("utf-8", "backslashreplace")
    return text if len(text) <= 200 else text[:200] + "..."


def split_name(name: bytes) -> list[bytes]:
    """The components of an entry's name inside the layer; `..` refuses the layer."""
    parts = [p for p in name.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise ImageError(f"layer: entry {_show(name)!r} has a '..' component (it would escape the layer)")
    if any(b"\0" in p for p in parts):
        raise ImageError(f"layer: entry {_show(name)!r} has a NUL byte")
    return parts


# --- writing -------------------------------------------------------------------------------


class _DirTimes:
    """The directories' mtimes, to set after everything else (creating entries changes
    them). A layer may hold millions of directories with names of up to 4 KiB: past a
    MiB, the records go to an unnamed temporary file next to the layer, so memory stays
    flat. Read back in the layer's order, so a later entry for a directory wins."""

    _RECORD = struct.Struct("<qI")  # mtime in ns, length of the path that follows

    def __init__(self, near: str) -> None:
        self.near = near
        self.buffer = bytearray()
        self.file: IO[bytes] | None = None

    def add(self, path: bytes, mtime_ns: int) -> None:
        self.buffer += self._RECORD.pack(mtime_ns, len(path))
        self.buffer += path
        if len(self.buffer) >= CHUNK:
            if self.file is None:
                import tempfile

                self.file = tempfile.TemporaryFile(dir=self.near)  # noqa: SIM115 - closed by close()
            self.file.write(self.buffer)
            self.buffer.clear()

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        if self.file is not None:
            self.file.flush()
            self.file.seek(0)
            while True:
                head = self.file.read(self._RECORD.size)
                if not head:
                    break
                mtime, length = self._RECORD.unpack(head)
                yield self.file.read(length), mtime
        view = memoryview(self.buffer)
        pos = 0
        while pos < len(view):
            mtime, length = self._RECORD.unpack_from(view, pos)
            pos += self._RECORD.size
            yield bytes(view[pos : pos + length]), mtime
            pos += length

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.buffer = bytearray()


class _Writer:
    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.cache_path: bytes | None = None
        self.cache_fd = -1
        self.dir_times = _DirTimes(os.path.dirname(os.path.abspath(root)))
        self.owner = os.geteuid() == 0
        self.skipped: list[str] = []
        self.skipped_count = 0

    def close(self) -> None:
        self._drop_cache()
        self.dir_times.close()
        os.close(self.root_fd)

    def _drop_cache(self) -> None:
        if self.cache_fd >= 0:
            os.close(self.cache_fd)
        self.cache_fd, self.cache_path = -1, None

    def parent(self, parts: list[bytes], name: bytes) -> int:
        """An fd of the entry's parent directory (cached; do not close)."""
        path = b"/".join(parts[:-1])
        if path == self.cache_path:
            return self.cache_fd
        self._drop_cache()
        if not path:
            fd = os.dup(self.root_fd)
        else:
            try:
                fd = linux.openat2(self.root_fd, os.fsdecode(path), os.O_RDONLY | os.O_DIRECTORY, _RESOLVE)
            except FileNotFoundError:
                fd = self._make_parents(parts[:-1], name)
            except OSError as error:
                raise self._refuse(name, error) from None
        self.cache_path, self.cache_fd = path, fd
        return fd

    def _make_parents(self, parts: list[bytes], name: bytes) -> int:
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                try:  # noqa: SIM105 - contextlib is one more import
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as error:
                    raise self._refuse(name, error) from None
                os.close(fd)
                fd = new
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refuse(self, name: bytes, error: OSError) -> ImageError:
        if error.errno in (40, 20):  # ELOOP, ENOTDIR: a symlink or a file where a directory should be
            return ImageError(f"layer: entry {_show(name)!r} goes through a symlink or a non-directory; refused")
        if error.errno == 18:  # EXDEV from RESOLVE_BENEATH
            return ImageError(f"layer: entry {_show(name)!r} escapes the layer; refused")
        return ImageError(f"layer: entry {_show(name)!r}: {reason(error)}")

    def _clear(self, parent: int, last: bytes, keep_dir: bool = False) -> bool:
        """Remove what the layer already has at that name; returns True if a directory was
        kept (keep_dir)."""
        try:
            st = os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            import shutil

            # (the cached parent is `parent` itself, above the removed tree: it stays valid)
            shutil.rmtree(os.fsdecode(last), dir_fd=parent)
        else:
            os.unlink(last, dir_fd=parent)
        return False

    def _metadata(self, fd: int, entry: Entry) -> None:
        if self.owner:
            os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)  # after chown, which clears setuid and setgid
        for key, value in entry.xattrs:
            if key.startswith(_XATTR_PREFIXES):
                os.setxattr(fd, key, value)

    def write(self, stream: _Pipeline, entry: Entry) -> None:
        kind = entry.kind
        parts = split_name(entry.name)
        if not parts:
            if kind != b"5":
                raise ImageError(f"layer: entry {_show(entry.name)!r} names the layer's root but is not a directory")
            self._metadata(self.root_fd, entry)
            self.dir_times.add(b"", entry.mtime_ns)
            return
        last = parts[-1]
        if last.startswith(WHITEOUT_PREFIX):
            try:
                self._whiteout(parts, entry)
            except OSError as error:
                raise self._refuse(entry.name, error) from None
            return
        if kind in (b"3", b"4"):
            self.skipped_count += 1
            if len(self.skipped) < _SKIPPED_SHOWN:
                self.skipped.append(_show(entry.name))
            return
        if kind not in (b"0", b"7", b"1", b"2", b"5", b"6"):
            raise ImageError(f"layer: entry {_show(entry.name)!r} has an unsupported tar type {kind!r}")
        if len(last) > 255:
            raise ImageError(f"layer: entry {_show(entry.name)!r}: a name component is longer than 255 bytes")
        parent = self.parent(parts, entry.name)
        try:
            if kind in (b"0", b"7"):
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    fd = os.open(last, flags, 0o600, dir_fd=parent)
                except FileExistsError:  # from an earlier entry: replaced, never written through
                    self._clear(parent, last)
                    fd = os.open(last, flags, 0o600, dir_fd=parent)
                try:
                    remaining = entry.size
                    while remaining:
                        view = stream.take(min(remaining, CHUNK))
                        if not view:
                            raise ImageError(f"layer: entry {_show(entry.name)!r}: the stream ends inside the file")
                        remaining -= len(view)
                        while view:
                            view = view[os.write(fd, view) :]
                    self._metadata(fd, entry)
                    os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
                finally:
                    os.close(fd)
                stream.skip(_pad(entry.size))
                return
            stream.skip(entry.size + _pad(entry.size))  # no data expected; skip what there is
            if kind == b"5":
                if not self._clear(parent, last, keep_dir=True):
                    os.mkdir(last, 0o700, dir_fd=parent)
                fd = os.open(last, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    self._metadata(fd, entry)
                finally:
                    os.close(fd)
                self.dir_times.add(b"/".join(parts), entry.mtime_ns)
            elif kind == b"2":
                self._clear(parent, last)
                os.symlink(entry.linkname, last, dir_fd=parent)
                self._link_metadata(parent, last, entry)
            elif kind == b"6":
                self._clear(parent, last)
                os.mkfifo(last, 0o600, dir_fd=parent)  # just made here: chmod cannot follow anything
                if self.owner:
                    os.chown(last, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
                os.chmod(last, entry.mode, dir_fd=parent)
                os.utime(last, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)
            else:  # hard link
                self._hardlink(parts, entry)
        except OSError as error:
            raise self._refuse(entry.name, error) from None

    def _link_metadata(self, parent: int, last: bytes, entry: Entry) -> None:
        if self.owner:
            os.chown(last, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(last, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parts: list[bytes], entry: Entry) -> None:
        target = split_name(entry.linkname)
        if not target:
            raise ImageError(f"layer: hard link {_show(entry.name)!r} points at the layer's root")
        if target == parts:
            return  # a link to itself: tar would fail on it, nothing to do
        source_dir = b"/".join(target[:-1]) or b"."
        try:
            src_fd = linux.openat2(self.root_fd, os.fsdecode(source_dir), os.O_PATH | os.O_DIRECTORY, _RESOLVE)
        except OSError as error:
            raise ImageError(
                f"layer: hard link {_show(entry.name)!r} -> {_show(entry.linkname)!r}: "
                f"the target is not in this layer ({reason(error)}); refused"
            ) from None
        try:
            try:
                st = os.stat(target[-1], dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise ImageError(
                    f"layer: hard link {_show(entry.name)!r} -> {_show(entry.linkname)!r}: "
                    "the target is not in this layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise ImageError(f"layer: hard link {_show(entry.name)!r} points at a directory; refused")
            parent = self.parent(parts, entry.name)
            self._clear(parent, parts[-1])
            os.link(target[-1], parts[-1], src_dir_fd=src_fd, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_fd)

    def _whiteout(self, parts: list[bytes], entry: Entry) -> None:
        last = parts[-1]
        parent = self.parent(parts, entry.name)
        if last == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")  # the directory hides the lower layers' content
            return
        hidden = last[len(WHITEOUT_PREFIX) :]
        if hidden in (b"", b".", b"..") or hidden.startswith(WHITEOUT_PREFIX):
            raise ImageError(f"layer: whiteout {_show(entry.name)!r} names no file; refused")
        self._clear(parent, hidden)
        os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def finish(self) -> None:
        """Directory mtimes last (creating their entries changed them; setting a
        directory's own times changes nothing in its parent, so any order does)."""
        self._drop_cache()
        for path, mtime in self.dir_times:
            try:
                fd = linux.openat2(self.root_fd, os.fsdecode(path) or ".", os.O_RDONLY | os.O_DIRECTORY, _RESOLVE)
            except OSError:
                continue  # removed or replaced later in the layer
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)


def unpack(
    blob: IO[bytes],
    dest: str,
    progress: Callable[[int], None] | None = None,
    limits: Limits | None = None,
) -> LayerDigests:
    """Unpack the layer read from `blob` into the empty directory `dest`; returns the
    digests read. The caller checks them against what the manifest and config promise
    and throws `dest` away on any error (ImageError or OSError). `limits` default to
    the environment's (Limits.from_environment)."""
    if limits is None:
        limits = Limits.from_environment()
    stream = _Pipeline(blob, progress, limits.size)
    writer = _Writer(dest)
    count = 0
    try:
        next_entry = read_entries(stream)
        while True:
            entry = next_entry()
            if entry is None:
                break
            count += 1
            if count > limits.entries:
                raise ImageError(
                    f"layer: more than {limits.entries} entries; refused (the limit is {MAX_ENTRIES_VARIABLE})"
                )
            if len(entry.name) > limits.path or len(entry.linkname) > limits.path:
                longer = entry.name if len(entry.name) > limits.path else entry.linkname
                raise ImageError(
                    f"layer: entry {_show(entry.name)!r}: a name or link target longer than {limits.path} bytes "
                    f"({len(longer)}); refused (the limit is {MAX_PATH_VARIABLE})"
                )
            writer.write(stream, entry)
        writer.finish()
        stream.drain()
    finally:
        writer.close()
        stream.close()
    return LayerDigests(
        "sha256:" + stream.blob_hash.hexdigest(),
        "sha256:" + stream.tar_hash.hexdigest(),
        stream.tar_size,
        writer.skipped,
        stream.blob_size,
        writer.skipped_count,
    )
