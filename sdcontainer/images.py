"""Getting images into the store: pulling from registries with skopeo, importing OCI
layouts (directories and archives), `docker save` archives and plain root file system tars.

Transport is skopeo's (Debian package skopeo): `skopeo copy docker://NAME oci:STAGING`, so
registries.conf (mirrors, insecure registries, short-name aliases), auth.json and
policy.json work as for podman, and skopeo picks the host's platform from a manifest list.
The staging layout is then imported like any OCI layout: the manifest and config are
checked against their digests and each layer the store lacks is unpacked (streamed, both
digests checked) by sdcontainer.unpack. A layer the store has is never unpacked again, and
a name whose manifest has not changed in the registry is not copied at all.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
from typing import IO, Any

from sdcontainer.archive import Archive, normalize
from sdcontainer.documents import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_MANIFEST,
    REF_ANNOTATION,
    Descriptor,
    Node,
    parse,
    parse_config,
    parse_docker_manifest,
    parse_index,
    parse_manifest,
)
from sdcontainer.errors import ImageError, UsageError, reason
from sdcontainer.reference import LOCAL_DOMAIN, candidates, parse_reference
from sdcontainer.store import Store, find_image, image_id_for, load_record, pull_lock, storage_dir
from sdcontainer.unpack import GZIP_MAGIC
from sdcontainer.values import PULL_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

SMALL_BLOB = 4 << 20  # manifests and configs larger than this are refused (as containers/image)
DOCKER_MANIFEST_LIMIT = 1 << 20  # a docker save manifest.json (containers/image: 1 MiB)
SKOPEO_HINT = "install skopeo (apt install skopeo)"

Tick = "Callable[[], None] | None"


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


# --- sources: where the blobs of an image come from -----------------------------------------


class Source:
    """An OCI image layout: index.json and blobs/sha256/<hex>. `label` starts every error
    about it (the directory, the archive, or the name being pulled)."""

    label = "image"

    def open_file(self, name: str, what: str = "") -> IO[bytes]:
        raise NotImplementedError

    def file_size(self, name: str, what: str = "") -> int:
        raise NotImplementedError

    def read_file(self, name: str, limit: int = SMALL_BLOB, what: str = "") -> bytes:
        with self.open_file(name, what) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.label}: {what or name}: larger than {limit} bytes; refused")
        return data

    @staticmethod
    def blob_path(descriptor: Descriptor) -> str:
        return "blobs/sha256/" + descriptor.digest.removeprefix("sha256:")

    def check_blob(self, descriptor: Descriptor) -> None:
        """The blob is there, with the size its descriptor says."""
        actual = self.file_size(self.blob_path(descriptor), descriptor.where)
        if actual != descriptor.size:
            raise descriptor.field("size").error(f"{descriptor.size}, but the blob has {actual} bytes; refused")

    def read_blob(self, descriptor: Descriptor) -> bytes:
        """A small blob (manifest, config): its size and digest checked."""
        if descriptor.size > SMALL_BLOB:
            raise descriptor.field("size").error(f"{descriptor.size} bytes: larger than {SMALL_BLOB}; refused")
        data = self.read_file(self.blob_path(descriptor), SMALL_BLOB, descriptor.where)
        if len(data) != descriptor.size:
            raise descriptor.field("size").error(f"{descriptor.size}, but the blob has {len(data)} bytes; refused")
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != descriptor.digest:
            raise descriptor.field("digest").error(f"the blob has digest {actual}; refused")
        return data

    def open_blob(self, descriptor: Descriptor) -> IO[bytes]:
        """A layer blob, read no further than one byte past its descriptor's size."""
        self.check_blob(descriptor)
        f = self.open_file(self.blob_path(descriptor), descriptor.where)
        return io.BufferedReader(_Bounded(f, descriptor.size + 1), 1 << 16)

    def close(self) -> None:
        pass


class _Bounded(io.RawIOBase):
    def __init__(self, f: IO[bytes], limit: int) -> None:
        super().__init__()
        self.f, self.left = f, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        data = self.f.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


class DirSource(Source):
    """A layout directory. Its files are opened below it with no symlink followed, and must
    be regular files (not a FIFO to block on, nor a device to read forever)."""

    def __init__(self, path: str, label: str | None = None) -> None:
        self.path = path
        self.label = label or path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise ImageError(f"{self.label}: {reason(error)}") from None

    def _open(self, name: str, what: str) -> int:
        from sdcontainer import linux

        where = f"{self.label}: {what}: " if what else f"{self.label}: "
        resolve = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
        try:
            fd = linux.openat2(self.fd, name, os.O_RDONLY | os.O_NONBLOCK, resolve)
        except FileNotFoundError:
            raise ImageError(f"{where}{name} is missing (not an OCI image layout?)") from None
        except OSError as error:
            why = "a symlink; refused" if error.errno == errno.ELOOP else reason(error)
            raise ImageError(f"{where}{name}: {why}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{where}{name} is not a regular file; refused")
        return fd

    def open_file(self, name: str, what: str = "") -> IO[bytes]:
        return os.fdopen(self._open(name, what), "rb")

    def file_size(self, name: str, what: str = "") -> int:
        fd = self._open(name, what)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ArchiveSource(Source):
    """An image archive (uncompressed tar), read in place (sdcontainer.archive)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.path = self.label = archive.path

    def open_file(self, name: str, what: str = "") -> IO[bytes]:
        return self.archive.open(name, what)

    def file_size(self, name: str, what: str = "") -> int:
        return self.archive.member(name, what).size

    def close(self) -> None:
        self.archive.close()


# --- importing -----------------------------------------------------------------------------


def _choose_platform(descriptors: list[Descriptor], label: str) -> Descriptor:
    want_os, want_arch = host_platform()
    images = [d for d in descriptors if d.media_type in MANIFEST_TYPES + INDEX_TYPES]
    if len(images) == 1 and images[0].platform is None:
        return images[0]
    for descriptor in images:
        plat = descriptor.platform
        if plat is not None and plat.os == want_os and plat.architecture == want_arch:
            return descriptor
    found = ", ".join(str(d.platform or "?/?") for d in images)
    raise ImageError(f"{label}: no image for {want_os}/{want_arch} (it has: {found or 'nothing'})")


def _manifest_descriptor(source: Source, ref_name: str | None) -> Descriptor:
    descriptors = parse_index(source.read_file("index.json"), source.label, "index.json")
    if ref_name is not None:
        descriptors = [d for d in descriptors if d.annotations.get(REF_ANNOTATION) == ref_name]
        if not descriptors:
            raise ImageError(f"{source.label}: no image named {ref_name!r} in index.json")
    if not descriptors:
        raise ImageError(f"{source.label}: index.json lists no image")
    descriptor = descriptors[0] if len(descriptors) == 1 else _choose_platform(descriptors, source.label)
    for _ in range(4):  # an index may point at an index (a manifest list)
        if descriptor.media_type in MANIFEST_TYPES:
            return descriptor
        if descriptor.media_type not in INDEX_TYPES:
            raise descriptor.field("mediaType").error(
                f"{descriptor.media_type[:100]!r} is not an image manifest or index ({', '.join(MANIFEST_TYPES)})"
            )
        nested = parse_index(source.read_blob(descriptor), source.label, f"index {descriptor.digest}")
        descriptor = _choose_platform(nested, source.label)
    raise ImageError(f"{source.label}: image indexes nested too deep")


def _check_layout_file(source: Source) -> None:
    """The oci-layout file: {"imageLayoutVersion": "1.x"}."""
    root = parse(source.read_file("oci-layout", 1 << 16), source.label, "oci-layout")
    version = root.get("imageLayoutVersion")
    if not version.text().startswith("1."):
        raise version.error(f"version {version.value[:40]!r} is not supported (1.x)")


def import_layout(
    source: Source,
    names: list[str],
    *,
    ref_name: str | None = None,
    sources: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """Import one image of an OCI layout; returns its record. Everything is checked before
    the store is touched but the layers' content, which is checked as it is unpacked; a
    refusal at any point leaves the store as it was."""
    label = source.label
    descriptor = _manifest_descriptor(source, ref_name)
    manifest_bytes = source.read_blob(descriptor)
    manifest = parse_manifest(manifest_bytes, label, f"manifest {descriptor.digest}", descriptor.media_type)
    config_bytes = source.read_blob(manifest.config)
    config = parse_config(config_bytes, label, f"config {manifest.config.digest}")
    layers = manifest.layers
    if len(layers) != len(config.diff_ids):
        raise config.diff_ids_node.error(f"{len(config.diff_ids)} diffIDs, but the manifest lists {len(layers)} layers")
    with Store(root) as store:
        missing = [not store.has_layer(diff_id) for diff_id in config.diff_ids]
        for layer, needed in zip(layers, missing, strict=True):
            if needed:
                source.check_blob(layer)  # there, and of its size: before any layer is unpacked
        for i, (layer, diff_id) in enumerate(zip(layers, config.diff_ids, strict=True)):
            if store.has_layer(diff_id):
                continue
            with source.open_blob(layer) as blob:
                what = f"{label}: manifest {descriptor.digest}: layers[{i}]"
                store.add_layer(blob, layer.digest, diff_id, progress, what=what, size=layer.size)
        return store.commit_image(
            manifest_bytes,
            descriptor.digest,
            config_bytes,
            manifest.config.digest,
            [layer.size for layer in layers],
            names,
            sources,
            config,
        )


def _oci_manifest(config_bytes: bytes, layers: list[tuple[str, int]]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_OCI_CONFIG,
            "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            "size": len(config_bytes),
        },
        "layers": [{"mediaType": MEDIA_OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def _archive_path(node: Node) -> str:
    """A path named by manifest.json: inside the archive, or refused (no `..` at all)."""
    text = node.text()
    normal = normalize(text) if ".." not in text.split("/") else None
    if not normal:
        raise node.error(f"{text[:200]!r} is not a path inside the archive; refused")
    return normal


def import_docker_archive(
    source: ArchiveSource, names: list[str], progress: Callable[[int], None] | None = None, root: str | None = None
) -> dict[str, Any]:
    """A `docker save` archive: manifest.json names the config and the layer tars."""
    label = source.label
    entry = parse_docker_manifest(source.read_file("manifest.json", DOCKER_MANIFEST_LIMIT), label)
    if entry.count > 1 and not names:
        raise ImageError(f"{label}: the archive holds {entry.count} images; import them one by one")
    config_path = _archive_path(entry.config_node)
    config_bytes = source.read_file(config_path, SMALL_BLOB, f"manifest.json: {entry.config_node.path}")
    config = parse_config(config_bytes, label, config_path)
    paths = [_archive_path(node) for node in entry.layer_nodes]
    if len(config.diff_ids) != len(paths):
        layers_node = entry.layer_nodes[0] if entry.layer_nodes else entry.config_node
        raise ImageError(
            f"{label}: manifest.json: {layers_node.path.rpartition('.')[0]}.Layers: {len(paths)} layers, but "
            f"{len(config.diff_ids)} diffIDs in {config_path}"
        )
    sizes = [source.file_size(p, f"manifest.json: {n.path}") for p, n in zip(paths, entry.layer_nodes, strict=True)]
    tags = []
    for node in entry.tag_nodes:
        try:
            tags.append(qualify_docker_tag(node.text()))
        except ValueError as error:
            raise node.error(str(error)) from None
    with Store(root) as store:
        layers = []
        for i, (path, diff_id, size) in enumerate(zip(paths, config.diff_ids, sizes, strict=True)):
            if not store.has_layer(diff_id):
                with source.open_file(path) as blob:
                    what = f"{label}: manifest.json: {entry.layer_nodes[i].path} ({path})"
                    store.add_layer(blob, None, diff_id, progress, what=what, size=size)
            layers.append((diff_id, size))  # the blob digest of an uncompressed layer is its diffID
        manifest = _oci_manifest(config_bytes, layers)
        return store.commit_image(manifest, None, config_bytes, None, sizes, names or tags, None, config)


def qualify_docker_tag(tag: str) -> str:
    ref = parse_reference(tag)
    return ref.qualified(ref.domain or "docker.io")


def import_rootfs_tar(
    path: str, names: list[str], progress: Callable[[int], None] | None = None, root: str | None = None
) -> dict[str, Any]:
    """A root file system as a (gzip) tar: one layer, a config with no command."""
    os_name, arch = host_platform()
    with Store(root) as store, open(path, "rb") as blob:
        diff_id, _ = store.add_layer(blob, None, None, progress, what=path)
        config = {
            "architecture": arch,
            "os": os_name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        size = os.path.getsize(path)
        manifest = _oci_manifest(config_bytes, [(_file_digest(path), size)])
        parsed = parse_config(config_bytes, path, "config")
        return store.commit_image(manifest, None, config_bytes, None, [size], names, None, parsed)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _layout_names(source: Source) -> list[str]:
    """The name an OCI layout gives its only image (org.opencontainers.image.ref.name), if
    that is a tag or a full reference."""
    descriptors = parse_index(source.read_file("index.json"), source.label, "index.json")
    if len(descriptors) != 1:
        return []
    ref = descriptors[0].annotations.get(REF_ANNOTATION)
    try:
        return [local_name(ref)] if ref else []
    except ValueError:
        return []


def local_name(text: str) -> str:
    """A name for an imported image: localhost/NAME:TAG unless it names a registry."""
    ref = parse_reference(text)
    return ref.qualified(ref.domain or LOCAL_DOMAIN)


# compressions an archive may come in that are not supported (gzip is)
_OTHER_COMPRESSIONS = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"))


def import_path(path: str, name: str | None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`sdcontainer image import PATH [NAME]`: whatever PATH is."""
    try:
        names = [local_name(name)] if name else []
    except ValueError as error:
        raise UsageError(str(error)) from None
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "oci-layout")):
            raise ImageError(f"{path}: a directory but not an OCI image layout (no oci-layout file)")
        layout = DirSource(path)
        try:
            _check_layout_file(layout)
            return import_layout(layout, names or _layout_names(layout), progress=progress)
        finally:
            layout.close()
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as error:
        raise ImageError(f"{path}: {reason(error)}") from None
    if magic.startswith(GZIP_MAGIC):
        if not names:
            raise ImageError(f"{path}: a root file system archive needs a NAME for the image")
        return import_rootfs_tar(path, names, progress)
    for prefix, compression in _OTHER_COMPRESSIONS:
        if magic.startswith(prefix):
            raise ImageError(f"{path}: compressed with {compression}: not supported (gzip and plain tar are)")
    try:
        archive = Archive(path)
    except OSError as error:
        raise ImageError(f"{path}: {reason(error)}") from None
    source = ArchiveSource(archive)
    try:
        if archive.image_like and "oci-layout" in archive and "index.json" in archive:
            _check_layout_file(source)
            return import_layout(source, names or _layout_names(source), progress=progress)
        if archive.image_like and "manifest.json" in archive:
            return import_docker_archive(source, names, progress)
    finally:
        source.close()
    if not names:
        raise ImageError(f"{path}: a root file system archive needs a NAME for the image")
    return import_rootfs_tar(path, names, progress)


# --- pulling with skopeo --------------------------------------------------------------------

# skopeo's words for failures that another try will not fix
_PERMANENT = (
    "manifest unknown",
    "name unknown",
    "not found",
    "unauthorized",
    "authentication required",
    "denied",
    "invalid reference",
    "no image for",
    "repository name must",
    "http response to https client",
    "x509:",
)


def skopeo_path() -> str:
    path = shutil.which("skopeo")
    if path is None:
        raise ImageError(f"pulling images needs skopeo, which is not installed: {SKOPEO_HINT}")
    return path


def _skopeo_message(stderr: str) -> str:
    """skopeo's fatal line, without its logrus decoration."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "skopeo failed without a message"
    last = lines[-1]
    start = last.find('msg="')
    if start >= 0:
        last = last[start + 5 :].rstrip('"').replace('\\"', '"')
    return last


STALL_SECONDS = 60  # a download that has not grown for this long gets no more time


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _run_skopeo(
    args: list[str], tick: Callable[[], None] | None, quiet: bool, watch: str | None = None
) -> tuple[int, bytes, str]:
    """Run skopeo; every 5 s call `tick` (which extends the unit's start timeout) while it
    makes progress: always for a short request, while `watch` (the download) grows, and
    for STALL_SECONDS after it last grew."""
    import tempfile

    with tempfile.TemporaryFile() as err:
        conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")  # skopeo 1.9 reads it only as an option
        proc = subprocess.Popen(
            [skopeo_path(), *(["--registries-conf", conf] if conf else []), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if quiet else None,
            stderr=err,
        )
        out = b""
        last_size, last_change = -1, time.monotonic()
        if quiet:
            import threading

            chunks: list[bytes] = []
            reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read() if proc.stdout else b""))
            reader.start()
        while True:
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                if watch is not None:
                    size = _tree_size(watch)
                    if size != last_size:
                        last_size, last_change = size, time.monotonic()
                if tick is not None and time.monotonic() - last_change < STALL_SECONDS:
                    tick()
        if quiet:
            reader.join()
            out = b"".join(chunks)
        err.seek(0)
        return proc.returncode, out, err.read().decode(errors="replace")


def skopeo(
    args: list[str],
    what: str,
    *,
    retry: int = 3,
    retry_delay: float | None = None,
    tick: Callable[[], None] | None = None,
    quiet: bool = True,
    watch: str | None = None,
) -> bytes:
    """Run skopeo, retrying failures that may pass (network) `retry` times: after
    `retry_delay` seconds each time, or 2 s doubling each time when it is None."""
    delay = retry_delay if retry_delay is not None else 2.0
    attempt = 0
    while True:
        code, out, err = _run_skopeo(args, tick, quiet, watch)
        if code == 0:
            return out
        message = _skopeo_message(err)
        permanent = any(word in message.lower() for word in _PERMANENT)
        if permanent or attempt >= retry:
            tries = f" (after {attempt + 1} tries)" if attempt else ""
            hint = ""
            if "http response to https client" in message.lower():
                hint = " (a registry without TLS: mark it insecure in registries.conf, or pull with --no-tls-verify)"
            raise ImageError(f"{what}: {message}{tries}{hint}")
        attempt += 1
        print(
            f"sdcontainer: {what}: {message}; trying again in {delay:g} s ({attempt}/{retry})",
            file=sys.stderr,
            flush=True,
        )
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 5))
            if tick is not None:
                tick()
        if retry_delay is None:
            delay *= 2


def _staging_dir(root: str) -> str:
    """A private directory for skopeo's download; those of dead pullers are removed."""
    import tempfile

    base = f"{root}/staging"
    os.makedirs(base, 0o700, exist_ok=True)
    for entry in os.listdir(base):
        pid = entry.partition("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(f"{base}/{entry}", ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)


def pull(
    text: str,
    *,
    policy: str = "always",
    retry: int = 3,
    retry_delay: float | None = None,
    tls_verify: bool | None = None,
    tick: Callable[[], None] | None = None,
    quiet: bool = False,
    root: str | None = None,
) -> dict[str, Any]:
    """Make the image `text` names be in the store, per `policy`; returns its record.

    never: it must be there already. missing: pulled only if it is not. always: the
    registry is asked for the name's manifest digest each time, and the image copied when
    it differs from the stored one. newer: like always, but if the registry cannot be
    reached the stored image is used."""
    if policy not in PULL_POLICIES:
        raise ImageError(f"unknown pull policy {policy!r} (known: {', '.join(PULL_POLICIES)})")
    try:
        names = candidates(text, for_pull=True)
    except ValueError as error:
        raise ImageError(str(error)) from None
    root = root or storage_dir()
    stored = find_image(text, root)
    if stored is not None and policy in ("never", "missing"):
        return stored
    if policy == "never":
        raise ImageError(f"image {text} is not in the store ({root}) and Pull=never; pull it first")
    errors = []
    for name in names:
        try:
            return _pull_name(name, policy, retry, retry_delay, tls_verify, tick, quiet, root)
        except ImageError as error:
            if len(names) == 1:
                raise
            errors.append(str(error))
    raise ImageError(f"pulling {text}: no registry has it: " + "; ".join(errors))


def _pull_name(
    name: str,
    policy: str,
    retry: int,
    retry_delay: float | None,
    tls_verify: bool | Transport | None,
    tick: Callable[[], None] | None,
    quiet: bool,
    root: str,
) -> dict[str, Any]:
    # tls_verify: a Transport carries the other registry options of a .image file too
    tls, src_tls = _transport(tls_verify).inspect_args(), _transport(tls_verify).copy_args()
    with pull_lock(name, root):
        image_id = image_id_for(name, root)
        stored = load_record(image_id, root) if image_id else None
        if stored is not None and policy == "missing":
            return stored  # someone else pulled it while this one waited
        try:
            raw = skopeo(
                ["inspect", "--raw", *tls, f"docker://{name}"],
                f"pulling {name}",
                retry=retry if stored is None else 0,
                retry_delay=retry_delay,
                tick=tick,
            )
        except ImageError as error:
            if stored is not None and policy == "newer":
                print(f"sdcontainer: {error}; using the stored image", file=sys.stderr, flush=True)
                return stored
            raise
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        ref = parse_reference(name)
        if ref.digest and ref.digest != digest:
            raise ImageError(f"pulling {name}: the registry's manifest has digest {digest}; refused")
        if stored is not None and (stored.get("sources") or {}).get(name) == digest:
            if not quiet:
                print(f"{name}: up to date ({stored['id'][:12]})", file=sys.stderr)
            return stored
        staging = _staging_dir(root)
        try:
            _reuse_stored_layers(raw, name, tls, root, staging, tick)
            skopeo(
                [
                    "copy",
                    "--remove-signatures",
                    *src_tls,
                    *(["--quiet"] if quiet else []),
                    f"docker://{name}",
                    f"oci:{staging}:image",
                ],  # fmt: skip
                f"pulling {name}",
                retry=retry,
                retry_delay=retry_delay,
                tick=tick,
                quiet=quiet,
                watch=staging,
            )
            progress = _progress_every(tick) if tick is not None else None
            layout = DirSource(staging, label=name)
            try:
                return import_layout(
                    layout, [name], ref_name="image", sources={name: digest}, progress=progress, root=root
                )
            finally:
                layout.close()
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _reuse_stored_layers(
    raw: bytes, name: str, tls: list[str], root: str, staging: str, tick: Callable[[], None] | None
) -> None:
    """Layers the store already has are not downloaded again: their blobs are put in the
    staging layout beforehand as empty sparse files of the right size, which skopeo takes
    for blobs it has (it never reads them), and the import skips those layers (it knows
    them by diffID). Needs the platform's manifest and config first: two small requests,
    made only when the store has layers at all; any trouble and the copy is a plain one.
    The registry's documents are checked as an import checks them."""
    try:
        if not os.listdir(f"{root}/layers"):
            return
        ref = parse_reference(name)
        repo = f"{ref.domain}/{ref.path}"
        top = parse(raw, name, "manifest")
        if top.has("manifests"):
            descriptor = _choose_platform(parse_index(raw, name, "manifest list"), name)
            pinned = f"docker://{repo}@{descriptor.digest}"
            raw = skopeo(["inspect", "--raw", *tls, pinned], f"pulling {name}", retry=0, tick=tick)
            media_type = descriptor.media_type
        else:
            pinned = f"docker://{repo}@sha256:{hashlib.sha256(raw).hexdigest()}"
            own = top.get("mediaType").string(optional=True)
            media_type = own if own in MANIFEST_TYPES else MEDIA_OCI_MANIFEST
        manifest = parse_manifest(raw, name, "manifest", media_type)
        if not manifest.layers:
            return
        config_raw = skopeo(["inspect", "--config", "--raw", *tls, pinned], f"pulling {name}", retry=0, tick=tick)
        config = parse_config(config_raw, name, "config")
        if len(config.diff_ids) != len(manifest.layers):
            return
        store = Store(root)
        blobs = f"{staging}/blobs/sha256"
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            if store.has_layer(diff_id):
                os.makedirs(blobs, 0o700, exist_ok=True)
                with open(f"{blobs}/{layer.digest[7:]}", "wb") as f:
                    f.truncate(layer.size)
    except (ImageError, OSError):
        shutil.rmtree(f"{staging}/blobs", ignore_errors=True)  # a plain copy then


def _progress_every(tick: Callable[[], None], seconds: float = 5.0) -> Callable[[int], None]:
    last = [time.monotonic()]

    def progress(_: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            tick()

    return progress


# --- a .image file's pull: registry options, every tag, another name ------------------------


class Transport:
    """How skopeo reaches a registry: a .image file's TLSVerify=, AuthFile=, CertDir=, Creds=,
    and the platform chosen from a manifest list (Arch=, OS=, Variant=; the host's by default)."""

    __slots__ = ("tls_verify", "authfile", "cert_dir", "creds", "arch", "os", "variant")

    def __init__(
        self,
        tls_verify: bool | None = None,
        authfile: str | None = None,
        cert_dir: str | None = None,
        creds: str | None = None,
        arch: str | None = None,
        os: str | None = None,  # noqa: A002 - skopeo's and Quadlet's word
        variant: str | None = None,
    ) -> None:
        self.tls_verify, self.authfile, self.cert_dir, self.creds = tls_verify, authfile, cert_dir, creds
        self.arch, self.os, self.variant = arch, os, variant

    def _args(self, prefix: str) -> list[str]:
        args = [] if self.tls_verify is None else [f"--{prefix}tls-verify={'true' if self.tls_verify else 'false'}"]
        for option, value in (("authfile", self.authfile), ("cert-dir", self.cert_dir), ("creds", self.creds)):
            if value is not None:
                args += [f"--{prefix}{option}", value]
        # skopeo's global options, which it takes after the command too
        for option, value in (("arch", self.arch), ("os", self.os), ("variant", self.variant)):
            if value is not None:
                args += [f"--override-{option}", value]
        return args

    def inspect_args(self) -> list[str]:
        """For `skopeo inspect` and `list-tags`."""
        return self._args("")

    def copy_args(self) -> list[str]:
        """For `skopeo copy` from the registry."""
        return self._args("src-")


def _transport(value: bool | Transport | None) -> Transport:
    return value if isinstance(value, Transport) else Transport(tls_verify=value)


def registry_digest(name: str, transport: Transport | None = None, retry: int = 0) -> str:
    """The digest of the manifest (or manifest list) the registry has for a fully qualified
    name, as a pull records it in the image's `sources`: one small request, nothing pulled."""
    raw = skopeo(["inspect", "--raw", *_transport(transport).inspect_args(), f"docker://{name}"], name, retry=retry)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def repository_tags(name: str, transport: Transport, retry: int = 3) -> list[str]:
    """Every tag of the repository of a fully qualified name (skopeo list-tags)."""
    ref = parse_reference(name)
    repository = f"{ref.domain}/{ref.path}"
    out = skopeo(
        ["list-tags", *transport.inspect_args(), f"docker://{repository}"], f"listing {repository}", retry=retry
    )
    try:
        tags = json.loads(out).get("Tags")
    except (ValueError, AttributeError):
        tags = None
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ImageError(f"listing {repository}: skopeo's answer has no list of tags")
    return [f"{repository}:{tag}" for tag in tags]


def pull_image(
    text: str,
    transport: Transport,
    *,
    policy: str = "always",
    all_tags: bool = False,
    tag: str | None = None,
    retry: int = 3,
    retry_delay: float | None = None,
    root: str | None = None,
) -> list[dict[str, Any]]:
    """What a .image file's service does: pull `text` (with `all_tags`, every tag of its
    repository) through `transport`, then give the image the name `tag` too (ImageTag=, the
    name units that name the .image file run). Returns the records pulled."""
    if policy not in PULL_POLICIES:
        raise ImageError(f"unknown pull policy {policy!r} (known: {', '.join(PULL_POLICIES)})")
    try:
        names = candidates(text, for_pull=True)
    except ValueError as error:
        raise ImageError(str(error)) from None
    root = root or storage_dir()
    if all_tags:
        last: ImageError | None = None
        for candidate in names:
            try:
                names = repository_tags(candidate, transport, retry)
                break
            except ImageError as error:
                last = error
        else:
            raise last or ImageError(f"{text}: no registry to list its tags")
    records = []
    for name in names if all_tags else [None]:
        records.append(_pull_one(name or text, transport, policy, retry, retry_delay, root))
    if tag is not None:
        with Store(root) as store:
            store.tag(local_name(tag), records[0]["id"])
    return records


def _pull_one(
    text: str, transport: Transport, policy: str, retry: int, retry_delay: float | None, root: str
) -> dict[str, Any]:
    stored = find_image(text, root)
    if stored is not None and policy in ("never", "missing"):
        return stored
    if policy == "never":
        raise ImageError(f"image {text} is not in the store ({root}) and Policy=never; pull it first")
    names = candidates(text, for_pull=True)
    errors = []
    for name in names:
        try:
            return _pull_name(name, policy, retry, retry_delay, transport, None, True, root)
        except ImageError as error:
            if len(names) == 1:
                raise
            errors.append(str(error))
    raise ImageError(f"pulling {text}: no registry has it: " + "; ".join(errors))
