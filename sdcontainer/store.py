"""The image store: layers unpacked once, shared by every image that has them.

    <root>/                       0700: a setuid file of an image is reachable by root only
      lock                        flock: every writer (import, pull's import, rmi, prune)
      blobs/sha256/<hex>          manifests and configs, verified against their digest
      layers/<diffid-hex>/        one unpacked layer: a lower directory of the overlay
      images/<id>.json            an image: its manifest digest, config, layer chain, names
      names/<quoted name>         one line: the id of the image the name points at
      tmp/                        unpacking in progress (emptied by the next writer)
      locks/<hash>.lock           one per image name being pulled: concurrent pulls wait

<root> is /var/lib/sdcontainer/storage for root, $XDG_DATA_HOME/sdcontainer/storage (or
~/.local/share/...) for anyone else, and $SDCONTAINER_STORAGE when set.

Consistency: a blob is written to tmp/, its digest checked, then renamed into place; a
layer is unpacked into tmp/<random>/, both of its digests checked (the blob's, against the
manifest, and the tar's, against the config's diff_ids), then renamed to layers/<diffid>;
the image record is written after all of its layers exist, and a name after its record. An
import that fails (a bad layer, a bad document, ^C) removes what it added before the lock
is released: the layers it unpacked, the blobs and the record it wrote, so the store is as
it was. A crash anywhere leaves at worst an orphan in tmp/ (removed by the next writer, who
holds the lock, so nobody else can be using it) or a layer no image names yet (kept for the
next pull or removed by `image prune`). Readers take no lock: what they can see is complete.

Starting a container from a stored image reads two small files (the name and the record)
and nothing else: layers are trusted once they are in layers/ (the store is root's only).
This module's top is what the launcher needs for that; everything that writes imports its
tools inside the functions. Whether to pull is decided above the store (by the launcher for
a start, by the CLI's `pull`), which then calls sdcontainer.images: the store never calls up.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ImageError, reason
from sdcontainer.reference import LOCAL_DOMAIN, candidates, check_digest, parse_reference
from sdcontainer.state import from_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from typing import IO, Any

    from sdcontainer.documents import ImageConfig

SYSTEM_STORAGE = "/var/lib/sdcontainer/storage"


def storage_dir() -> str:
    path = os.environ.get("SDCONTAINER_STORAGE")
    if path:
        return path
    if os.geteuid() == 0:
        return SYSTEM_STORAGE
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "sdcontainer", "storage")


def _read_text(path: str, limit: int = 1 << 20) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"{path}: larger than {limit} bytes")
    return data.decode("utf-8")


# --- names ---------------------------------------------------------------------------------

_HEX = frozenset("0123456789abcdef")  # an image id is 64 of these


def quote_name(name: str) -> str:
    """A name as one file name: % and / escaped."""
    return name.replace("%", "%25").replace("/", "%2F")


def unquote_name(text: str) -> str:
    return text.replace("%2F", "/").replace("%25", "%")


# --- reading: what a starting container needs ----------------------------------------------


def image_id_for(name: str, root: str | None = None) -> str | None:
    """The id a fully qualified name points at, or None."""
    root = root or storage_dir()
    try:
        image_id = _read_text(f"{root}/names/{quote_name(name)}", 128).strip()
    except FileNotFoundError:
        return None
    return image_id if len(image_id) == 64 and set(image_id) <= _HEX else None


def load_record(image_id: str, root: str | None = None) -> dict[str, Any]:
    root = root or storage_dir()
    path = f"{root}/images/{image_id}.json"
    try:
        record = from_json(_read_text(path, 16 << 20))
    except ValueError as error:
        raise ImageError(f"{path}: the image record is damaged ({error}); remove the image and pull it again") from None
    if not isinstance(record, dict):
        raise ImageError(f"{path}: the image record is damaged")
    return record


def find_image(text: str, root: str | None = None) -> dict[str, Any] | None:
    """The record of the image a reference (or an image id, or a unique prefix of one at
    least 12 long) names, or None."""
    root = root or storage_dir()
    try:
        ref = parse_reference(text)
    except ValueError:
        ref = None
    if ref is not None:
        # a short name is first an imported image's (localhost/NAME): found without reading
        # registries.conf; the registries it lists come after
        image_id = image_id_for(ref.qualified(ref.domain or LOCAL_DOMAIN), root)
        others = candidates(text)[1:] if image_id is None and not ref.domain else []
        for name in others:
            image_id = image_id_for(name, root)
            if image_id is not None:
                break
        if image_id is not None:
            try:
                return load_record(image_id, root)
            except FileNotFoundError:
                pass  # removed this very moment
    if len(text) >= 12 and set(text.removeprefix("sha256:")) <= _HEX:
        prefix = text.removeprefix("sha256:")
        try:
            matches = [n[:-5] for n in os.listdir(f"{root}/images") if n.startswith(prefix) and n.endswith(".json")]
        except FileNotFoundError:
            matches = []
        if len(matches) == 1:
            return load_record(matches[0], root)
    return None


def image_stop_signal(text: str, root: str | None = None) -> str | None:
    """The StopSignal of a stored image named by a full reference (for the generator)."""
    ref = parse_reference(text)
    if not ref.domain:
        return None
    image_id = image_id_for(ref.qualified(ref.domain), root)
    if image_id is None:
        return None
    signal = (load_record(image_id, root).get("config") or {}).get("StopSignal")
    return signal if isinstance(signal, str) and signal else None


def layer_dirs(record: dict[str, Any], root: str | None = None) -> list[str]:
    """The image's layer directories, lowest (the base) first."""
    root = root or storage_dir()
    return [f"{root}/layers/{diff_id}" for diff_id in record["layers"]]


# --- writing -------------------------------------------------------------------------------


def _json_dump(value: Any) -> bytes:
    import json

    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


class Store:
    """The writing side. Use as `with Store() as store:` to hold the lock."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or storage_dir()
        self.lock_fd = -1
        self.added: list[str] = []  # what this writer added (relative paths): undone if it fails

    def ensure(self) -> None:
        os.makedirs(self.root, 0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        for sub in ("blobs/sha256", "layers", "images", "names", "tmp", "locks"):
            os.makedirs(f"{self.root}/{sub}", 0o700, exist_ok=True)

    def __enter__(self) -> Store:
        import fcntl

        self.ensure()
        self.lock_fd = os.open(f"{self.root}/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        self._clean_tmp()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is not None:
                self._undo()
        finally:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = -1
            self.added = []

    def _undo(self) -> None:
        """Remove what this writer added, newest first: no image names any of it (the
        record is among what is removed), and the lock keeps everyone else out. Best
        effort: what cannot be removed is an orphan for `image prune`, and the error that
        made the writer fail is the one reported."""
        import shutil

        for relative in reversed(self.added):
            path = f"{self.root}/{relative}"
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    doomed = f"{self.root}/tmp/undo-{os.path.basename(relative)}"
                    os.rename(path, doomed)  # out of layers/ at once, as prune does
                    shutil.rmtree(doomed, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                continue

    def _clean_tmp(self) -> None:
        """Leftovers of a writer that died: nobody else can be writing, we hold the lock."""
        import shutil

        for name in os.listdir(f"{self.root}/tmp"):
            path = f"{self.root}/tmp/{name}"
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def _tmpdir(self) -> str:
        import secrets

        path = f"{self.root}/tmp/{secrets.token_hex(8)}"
        os.mkdir(path, 0o755)
        return path

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(f"{self.root}/layers/{_hex(diff_id)}")

    def add_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store a small blob (manifest, config) after checking its digest; returns it."""
        import hashlib

        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and actual != digest:
            raise ImageError(f"blob {digest}: the content has digest {actual}; refused")
        relative = f"blobs/sha256/{_hex(actual)}"
        if not os.path.exists(f"{self.root}/{relative}"):
            self._write(relative, data)
            self.added.append(relative)
        return actual

    def add_layer(
        self,
        blob: IO[bytes],
        digest: str | None,
        diff_id: str | None,
        progress: Callable[[int], None] | None = None,
        what: str | None = None,
        size: int | None = None,
    ) -> tuple[str, int]:
        """Unpack a layer blob unless the store has it; checks the blob against `digest`
        and `size` and the tar against `diff_id` (each when given). Errors start with
        `what` (by default, the layer's digest). Returns (diff_id, tar size)."""
        import shutil

        from sdcontainer.unpack import unpack

        what = what or f"layer {digest or diff_id or ''}".rstrip()
        tmp = self._tmpdir()
        try:
            try:
                result = unpack(blob, tmp, progress)
            except ImageError as error:
                raise ImageError(f"{what}: {str(error).removeprefix('layer: ')}") from None
            if size is not None and result.blob_size != size:
                actual = f"more than {size}" if result.blob_size > size else str(result.blob_size)
                raise ImageError(f"{what}: the blob has {actual} bytes, not {size}; refused")
            if digest is not None and result.digest != digest:
                raise ImageError(f"{what}: the blob read has digest {result.digest}, not {digest}; refused")
            if diff_id is not None and result.diff_id != diff_id:
                raise ImageError(f"{what}: its tar has digest {result.diff_id}, not {diff_id}; refused")
            relative = f"layers/{_hex(result.diff_id)}"
            target = f"{self.root}/{relative}"
            if os.path.isdir(target):
                shutil.rmtree(tmp)
            else:
                _sync_tree_marker(tmp)
                os.rename(tmp, target)
                self.added.append(relative)
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(error, OSError):
                name = f" {error.filename}" if error.filename else ""
                raise ImageError(f"{what}:{name} {reason(error)}") from None
            raise
        return result.diff_id, result.size

    def commit_image(
        self,
        manifest: bytes,
        manifest_digest: str | None,
        config: bytes,
        config_digest: str | None,
        layer_sizes: list[int],
        names: list[str],
        sources: dict[str, str] | None,
        parsed: ImageConfig,
    ) -> dict[str, Any]:
        """Write the image record, then point `names` at it (all layers must be in).
        `parsed` is `config`, checked (sdcontainer.documents.parse_config)."""
        import time

        manifest_digest = self.add_blob(manifest, manifest_digest)
        config_digest = self.add_blob(config, config_digest)
        image_id = _hex(config_digest)
        for diff_id in parsed.diff_ids:
            if not self.has_layer(diff_id):
                raise ImageError(f"image {image_id[:12]}: layer {diff_id} is missing from the store")
        old = self.record(image_id)
        record: dict[str, Any] = {
            "id": image_id,
            "digest": manifest_digest,
            "names": sorted(set(old.get("names", []) if old else []) | set(names)),
            "sources": {**(old.get("sources", {}) if old else {}), **(sources or {})},
            "layers": [_hex(d) for d in parsed.diff_ids],
            "layer_sizes": layer_sizes
            if len(layer_sizes) == len(parsed.diff_ids)
            else (old or {}).get("layer_sizes", []),
            "size": sum(layer_sizes),
            "config": dict(parsed.settings),
            "architecture": parsed.architecture,
            "os": parsed.os,
            "created": parsed.created,
            "stored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._write(f"images/{image_id}.json", _json_dump(record))
        if old is None:
            self.added.append(f"images/{image_id}.json")
        for name in names:
            self.tag(name, image_id)
        return record

    def record(self, image_id: str) -> dict[str, Any] | None:
        try:
            return load_record(image_id, self.root)
        except FileNotFoundError:
            return None

    def _write(self, relative: str, data: bytes) -> None:
        path = f"{self.root}/{relative}"
        tmp = f"{self.root}/tmp/write-{os.getpid()}-{os.path.basename(relative)}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:  # noqa: SIM105 - the launcher's modules avoid contextlib
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def tag(self, name: str, image_id: str) -> None:
        """Point `name` at the image, taking it from any image it named before."""
        previous = image_id_for(name, self.root)
        if previous is not None and previous != image_id:
            self._drop_name(previous, name)
        self._write(f"names/{quote_name(name)}", (image_id + "\n").encode())
        record = self.record(image_id)
        if record is not None and name not in record["names"]:
            record["names"] = sorted([*record["names"], name])
            self._write(f"images/{image_id}.json", _json_dump(record))

    def _drop_name(self, image_id: str, name: str) -> None:
        record = self.record(image_id)
        if record is not None and name in record.get("names", []):
            record["names"] = [n for n in record["names"] if n != name]
            record.get("sources", {}).pop(name, None)
            self._write(f"images/{image_id}.json", _json_dump(record))

    def images(self) -> list[dict[str, Any]]:
        result = []
        for entry in sorted(os.listdir(f"{self.root}/images")):
            if entry.endswith(".json"):
                record = self.record(entry[:-5])
                if record is not None:
                    result.append(record)
        return result

    def untag(self, name: str) -> str | None:
        """Remove one name; returns the id it pointed at."""
        image_id = image_id_for(name, self.root)
        if image_id is None:
            return None
        os.unlink(f"{self.root}/names/{quote_name(name)}")
        self._drop_name(image_id, name)
        return image_id

    def remove_image(self, image_id: str) -> None:
        """Forget an image: its names and record (layers go with prune)."""
        record = self.record(image_id)
        for name in (record or {}).get("names", []):
            if image_id_for(name, self.root) == image_id:
                os.unlink(f"{self.root}/names/{quote_name(name)}")
        try:  # noqa: SIM105 - the launcher's modules avoid contextlib
            os.unlink(f"{self.root}/images/{image_id}.json")
        except FileNotFoundError:
            pass

    def prune(self, keep_ids: set[str], all_unnamed: bool = True) -> tuple[list[str], list[str]]:
        """Remove images without names (unless in use, `keep_ids`) and then every layer
        and blob no remaining image needs. Returns (images removed, layers removed)."""
        import shutil

        removed_images = []
        for record in self.images():
            if all_unnamed and not record.get("names") and record["id"] not in keep_ids:
                self.remove_image(record["id"])
                removed_images.append(record["id"])
        needed_layers: set[str] = set()
        needed_blobs: set[str] = set()
        for record in self.images():
            needed_layers.update(record.get("layers", []))
            needed_blobs.add(record["id"])
            needed_blobs.add(_hex(record.get("digest", "sha256:")))
        removed_layers = []
        for layer in os.listdir(f"{self.root}/layers"):
            if layer not in needed_layers:
                # renamed away first, so that no reader ever sees half a layer
                doomed = f"{self.root}/tmp/prune-{layer}"
                os.rename(f"{self.root}/layers/{layer}", doomed)
                shutil.rmtree(doomed)
                removed_layers.append(layer)
        for blob in os.listdir(f"{self.root}/blobs/sha256"):
            if blob not in needed_blobs:
                os.unlink(f"{self.root}/blobs/sha256/{blob}")
        return removed_images, removed_layers


def _sync_tree_marker(path: str) -> None:
    """syncfs() the file system under `path`, so that what the rename publishes is on disk
    (a crash after the rename must not leave a layer with empty files)."""
    from sdcontainer import linux

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        linux.libc.syncfs(fd)
    finally:
        os.close(fd)


def _hex(digest: str) -> str:
    check_digest(digest if digest.startswith("sha256:") else "sha256:" + digest)
    return digest.removeprefix("sha256:")


def pull_lock(name: str, root: str | None = None) -> AbstractContextManager[None]:
    """Held while one name is pulled: a second puller of the same name waits, then finds it."""
    import contextlib
    import fcntl
    import hashlib

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        store = Store(root)
        store.ensure()
        path = f"{store.root}/locks/{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    return held()
