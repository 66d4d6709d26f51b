"""An uncompressed tar read in place, as image archives are (an OCI layout as a tar, a
`docker save` archive): untrusted input, like a layer.

The headers are parsed by sdcontainer.unpack's parser (ustar, pax, GNU long names, with
its bounds on extended headers), streamed: the data of each member is skipped by seeking,
and no header is kept but those of the few files an image archive has. An image archive
is a flat thing: files at the top (index.json, oci-layout, manifest.json, <id>.json,
<digest>.tar), one level down (<id>/layer.tar, blobs/sha256) and blobs/<alg>/<hex>; the
first entry that no image archive has (a path three levels down outside blobs/, a device
node, a `..`, an absolute name) ends the scan: the tar is a root file system, to be
unpacked as a layer (which streams it again, with the layer's limits). So does the
INDEX_LIMIT-th entry: no image archive comes near that many files, and the index stays
small (at most INDEX_LIMIT names of at most three 255-byte components).

An image archive must be whole: every member's data inside the file and the end-of-archive
blocks present; a member read later is read with pread and a short read is an error, never
short data. A name that appears twice is refused when it is used (which copy would another
tool read?). A symlink or hard link is followed once, inside the archive only, as
containers/image does for docker archives whose layers are links to each other.
"""

from __future__ import annotations

import io
import os
import stat

from sdcontainer.errors import ImageError
from sdcontainer.unpack import read_entries

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

INDEX_LIMIT = 16384
_FILE_KINDS = (b"0", b"7")
_LINK_KINDS = (b"1", b"2")


class Member:
    __slots__ = ("name", "kind", "offset", "size", "linkname")

    def __init__(self, name: str, kind: bytes, offset: int, size: int, linkname: bytes) -> None:
        self.name, self.kind, self.offset, self.size, self.linkname = name, kind, offset, size, linkname


class _Headers:
    """unpack.read_entries' stream, over a seekable file: headers are read, data skipped."""

    def __init__(self, f: IO[bytes], size: int, label: str) -> None:
        self.f, self.size, self.label = f, size, label
        self.ended = False  # the file ended where a header should be (no end-of-archive blocks)

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if not data:
            self.ended = True
        return data

    def read_exact(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise ImageError(f"{self.label}: the archive ends in the middle of a member (truncated)")
        return data

    def skip(self, n: int) -> None:
        target = self.f.tell() + n
        if target > self.size:
            raise ImageError(f"{self.label}: the archive ends in the middle of a member (truncated)")
        self.f.seek(target)


def normalize(name: str, base: str = "") -> str | None:
    """A relative path inside the archive (from the directory `base`), without `.`, `..`
    and empty components; None if it is absolute or leaves the archive."""
    if not name or name.startswith("/"):
        return None
    parts = [p for p in base.split("/") if p not in ("", ".")]
    for part in name.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _image_name(name: bytes, kind: bytes) -> str | None:
    """The name as an image archive would have it, or None if no image archive has it."""
    if kind not in (*_FILE_KINDS, *_LINK_KINDS, b"5"):
        return None
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if ".." in text.split("/"):
        return None
    normal = normalize(text)
    if normal is None:
        return None
    parts = normal.split("/") if normal else []
    if len(parts) > 3 or (len(parts) == 3 and parts[0] != "blobs") or any(len(p) > 255 for p in parts):
        return None
    return normal


class Archive:
    """The members of an uncompressed tar at `path` that an image archive would have;
    `image_like` is False when the scan found the tar to be something else."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.members: dict[str, Member] = {}
        self.twice: set[str] = set()
        self.image_like = True
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"{path}: not a regular file")
            self.file_size = st.st_size
            self._scan()
        except BaseException:
            os.close(self.fd)
            raise

    def _scan(self) -> None:
        with open(os.dup(self.fd), "rb", buffering=1 << 16) as f:
            headers = _Headers(f, self.file_size, self.path)
            next_entry = read_entries(headers)  # type: ignore[arg-type]
            count = 0
            while True:
                try:
                    entry = next_entry()
                except ImageError as error:
                    message = str(error).removeprefix("layer: ")
                    raise ImageError(message if message.startswith(self.path) else f"{self.path}: {message}") from None
                if entry is None:
                    break
                count += 1
                name = _image_name(entry.name, entry.kind)
                if name is None or count > INDEX_LIMIT:
                    self.image_like = False
                    return
                if entry.kind in _FILE_KINDS or entry.kind in _LINK_KINDS:
                    if name in self.members:
                        self.twice.add(name)
                    self.members[name] = Member(name, entry.kind, f.tell(), entry.size, entry.linkname)
                headers.skip(entry.size + (-entry.size % 512))
            if headers.ended:
                if count == 0:
                    raise ImageError(f"{self.path}: an empty file, not a tar archive")
                raise ImageError(f"{self.path}: the archive ends without its end-of-archive blocks (truncated)")

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def member(self, name: str, what: str = "") -> Member:
        """The regular file at `name`, through one link at most; ImageError if none."""
        where = f"{self.path}: {what}: " if what else f"{self.path}: "
        member = self.members.get(name)
        if member is None:
            raise ImageError(f"{where}{name} is missing from the archive")
        if name in self.twice:
            raise ImageError(f"{where}{name} is in the archive twice; refused")
        if member.kind in _LINK_KINDS:
            link = member.linkname.decode("utf-8", "replace")
            target = normalize(link, os.path.dirname(name) if member.kind == b"2" else "")
            kind = "symlink" if member.kind == b"2" else "hard link"
            if target is None:
                raise ImageError(f"{where}{name} is a {kind} to {link[:200]!r}, outside the archive; refused")
            found = self.members.get(target)
            if found is None or target in self.twice or found.kind not in _FILE_KINDS:
                raise ImageError(
                    f"{where}{name} is a {kind} to {link[:200]!r}, which is not a file of the archive; refused"
                )
            member = found
        return member

    def open(self, name: str, what: str = "") -> io.BufferedReader:
        return io.BufferedReader(Section(self, self.member(name, what), name), 1 << 16)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Section(io.RawIOBase):
    """One member's data, read with pread: a read past the end of the file (the archive
    was truncated, or shrank since the scan) is an error."""

    def __init__(self, archive: Archive, member: Member, name: str) -> None:
        super().__init__()
        self.archive, self.name = archive, name
        self.pos, self.end = member.offset, member.offset + member.size
        self.size = member.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = self.end - self.pos
        if left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), left)]
        n = os.preadv(self.archive.fd, [view], self.pos)
        if n == 0:
            raise ImageError(f"{self.archive.path}: {self.name} ends early: the archive is truncated")
        self.pos += n
        return n
