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

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import IO, Any

from sdcontainer.errors import ImageError
from sdcontainer.reference import LOCAL_DOMAIN, candidates, check_digest, parse_reference
from sdcontainer.store import Store, find_image, image_id_for, load_record, pull_lock, storage_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
SMALL_BLOB = 4 << 20  # manifests and configs larger than this are refused
REF_ANNOTATION = "org.opencontainers.image.ref.name"
PULL_POLICIES = ("never", "missing", "always", "newer")
SKOPEO_HINT = "install skopeo (apt install skopeo)"

Tick = "Callable[[], None] | None"


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


# --- sources: where the blobs of an image come from -----------------------------------------


class Source:
    """An OCI image layout: index.json and blobs/sha256/<hex>."""

    label = "image"

    def open_file(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def read_file(self, name: str, limit: int = SMALL_BLOB) -> bytes:
        with self.open_file(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.label}: {name} is larger than {limit} bytes")
        return data

    def blob_path(self, digest: str) -> str:
        _check_digests(self.label, [digest])
        return "blobs/sha256/" + digest.removeprefix("sha256:")

    def read_blob(self, digest: str) -> bytes:
        data = self.read_file(self.blob_path(digest))
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ImageError(f"{self.label}: blob {digest} has digest {actual}; refused")
        return data

    def open_blob(self, digest: str) -> IO[bytes]:
        return self.open_file(self.blob_path(digest))

    def close(self) -> None:
        pass


class DirSource(Source):
    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path

    def open_file(self, name: str) -> IO[bytes]:
        try:
            return open(os.path.join(self.path, name), "rb")
        except FileNotFoundError:
            raise ImageError(f"{self.path}: {name} is missing (not an OCI image layout?)") from None


class TarSource(Source):
    """An archive (uncompressed tar) read in place: members are opened, never extracted."""

    def __init__(self, path: str) -> None:
        import tarfile

        self.path = self.label = path
        self.tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
        self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers() if m.isfile()}

    def open_file(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        if member is None:
            raise ImageError(f"{self.path}: {name} is missing from the archive")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def close(self) -> None:
        self.tar.close()


# --- importing -----------------------------------------------------------------------------


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ImageError(f"{what}: not JSON ({error})") from None


def _choose_platform(index: dict[str, Any], what: str) -> dict[str, Any]:
    want_os, want_arch = host_platform()
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for descriptor in manifests:
        plat = descriptor.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            return descriptor
    found = ", ".join(
        f"{(m.get('platform') or {}).get('os', '?')}/{(m.get('platform') or {}).get('architecture', '?')}"
        for m in manifests
    )
    raise ImageError(f"{what}: no image for {want_os}/{want_arch} (it has: {found or 'nothing'})")


def _manifest_descriptor(source: Source, ref_name: str | None) -> dict[str, Any]:
    index = _json(source.read_file("index.json"), f"{source.label}: index.json")
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    if ref_name is not None:
        named = [m for m in manifests if (m.get("annotations") or {}).get(REF_ANNOTATION) == ref_name]
        if not named:
            raise ImageError(f"{source.label}: no image named {ref_name!r} in index.json")
        manifests = named
    if not manifests:
        raise ImageError(f"{source.label}: index.json lists no image")
    descriptor = _choose_platform({"manifests": manifests}, source.label) if len(manifests) > 1 else manifests[0]
    for _ in range(4):  # an index may point at an index (a manifest list)
        if descriptor.get("mediaType") not in INDEX_TYPES:
            return descriptor
        nested = _json(source.read_blob(descriptor["digest"]), f"{source.label}: {descriptor['digest']}")
        descriptor = _choose_platform(nested, source.label)
    raise ImageError(f"{source.label}: image indexes nested too deep")


def import_layout(
    source: Source,
    names: list[str],
    *,
    ref_name: str | None = None,
    sources: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """Import one image of an OCI layout; returns its record."""
    descriptor = _manifest_descriptor(source, ref_name)
    manifest_digest = descriptor.get("digest", "")
    try:
        check_digest(manifest_digest)
    except ValueError as error:
        raise ImageError(f"{source.label}: {error}") from None
    manifest_bytes = source.read_blob(manifest_digest)
    manifest = _json(manifest_bytes, f"{source.label}: manifest {manifest_digest}")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        raise ImageError(f"{source.label}: {manifest_digest} is an index, not an image manifest")
    config_digest = (manifest.get("config") or {}).get("digest", "")
    _check_digests(source.label, [config_digest])
    config_bytes = source.read_blob(config_digest)
    config = _json(config_bytes, f"{source.label}: config {config_digest}")
    layers = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(layers) != len(diff_ids):
        raise ImageError(
            f"{source.label}: the manifest lists {len(layers)} layers but the config {len(diff_ids)} diff_ids"
        )
    _check_digests(source.label, [(layer or {}).get("digest") for layer in layers] + list(diff_ids))
    with Store(root) as store:
        sizes = []
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            sizes.append(int(layer.get("size") or 0))
            if store.has_layer(diff_id):
                continue
            with source.open_blob(layer["digest"]) as blob:
                store.add_layer(blob, layer["digest"], diff_id, progress)
        return store.commit_image(manifest_bytes, manifest_digest, config_bytes, config_digest, sizes, names, sources)


def _check_digests(label: str, digests: list[Any]) -> None:
    """Digests from a manifest or config name files: each must be sha256:<64 hex>."""
    for value in digests:
        try:
            check_digest(value if isinstance(value, str) else repr(value))
        except ValueError as error:
            raise ImageError(f"{label}: {error}; refused") from None


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


def import_docker_archive(
    source: TarSource, names: list[str], progress: Callable[[int], None] | None = None, root: str | None = None
) -> dict[str, Any]:
    """A `docker save` archive: manifest.json names the config and the layer tars."""
    entries = _json(source.read_file("manifest.json"), f"{source.path}: manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{source.path}: manifest.json lists no image")
    if len(entries) > 1 and not names:
        raise ImageError(f"{source.path}: the archive holds {len(entries)} images; import them one by one")
    entry = entries[0]
    config_bytes = source.read_file(entry["Config"])
    config = _json(config_bytes, f"{source.path}: {entry['Config']}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layer_files = entry.get("Layers") or []
    if len(diff_ids) != len(layer_files):
        raise ImageError(f"{source.path}: {len(layer_files)} layers but {len(diff_ids)} diff_ids in the config")
    _check_digests(source.path, list(diff_ids))
    tags = [qualify_docker_tag(t) for t in entry.get("RepoTags") or []]
    with Store(root) as store:
        layers = []
        for name, diff_id in zip(layer_files, diff_ids, strict=True):
            size = source.members[name].size if name in source.members else 0
            with source.open_file(name) as blob:
                if store.has_layer(diff_id):
                    digest = diff_id  # an uncompressed layer's blob digest is its diffID
                else:
                    checked, _ = store.add_layer(blob, None, diff_id, progress)
                    digest = checked
            layers.append((digest, size))
        manifest = _oci_manifest(config_bytes, layers)
        return store.commit_image(manifest, None, config_bytes, None, [s for _, s in layers], names or tags)


def qualify_docker_tag(tag: str) -> str:
    ref = parse_reference(tag)
    return ref.qualified(ref.domain or "docker.io")


def import_rootfs_tar(
    path: str, names: list[str], progress: Callable[[int], None] | None = None, root: str | None = None
) -> dict[str, Any]:
    """A root file system as a (gzip) tar: one layer, a config with no command."""
    os_name, arch = host_platform()
    with Store(root) as store, open(path, "rb") as blob:
        diff_id, _ = store.add_layer(blob, None, None, progress)
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
        return store.commit_image(manifest, None, config_bytes, None, [size], names)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _layout_names(source: Source) -> list[str]:
    """The name an OCI layout gives its only image (org.opencontainers.image.ref.name), if
    that is a tag or a full reference."""
    index = _json(source.read_file("index.json"), f"{source.label}: index.json")
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        return []
    ref = ((manifests[0] or {}).get("annotations") or {}).get(REF_ANNOTATION)
    try:
        return [local_name(ref)] if isinstance(ref, str) and ref else []
    except ValueError:
        return []


def local_name(text: str) -> str:
    """A name for an imported image: localhost/NAME:TAG unless it names a registry."""
    ref = parse_reference(text)
    return ref.qualified(ref.domain or LOCAL_DOMAIN)


def import_path(path: str, name: str | None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`sdcontainer image import PATH [NAME]`: whatever PATH is."""
    names = [local_name(name)] if name else []
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "oci-layout")):
            raise ImageError(f"{path}: a directory but not an OCI image layout (no oci-layout file)")
        layout = DirSource(path)
        return import_layout(layout, names or _layout_names(layout), progress=progress)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise ImageError(f"{path}: {os.strerror(error.errno or 0)}") from None
    if magic.startswith(b"\x1f\x8b"):
        if not names:
            raise ImageError(f"{path}: a root file system archive needs a NAME for the image")
        return import_rootfs_tar(path, names, progress)
    import tarfile

    try:
        source = TarSource(path)
    except tarfile.TarError as error:
        raise ImageError(f"{path}: not a tar archive or OCI layout ({error})") from None
    try:
        if "oci-layout" in source.members and "index.json" in source.members:
            return import_layout(source, names or _layout_names(source), progress=progress)
        if "manifest.json" in source.members:
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
    tls_verify: bool | None,
    tick: Callable[[], None] | None,
    quiet: bool,
    root: str,
) -> dict[str, Any]:
    tls = [] if tls_verify is None else [f"--tls-verify={'true' if tls_verify else 'false'}"]
    src_tls = [] if tls_verify is None else [f"--src-tls-verify={'true' if tls_verify else 'false'}"]
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
            return import_layout(
                DirSource(staging), [name], ref_name="image", sources={name: digest}, progress=progress, root=root
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _reuse_stored_layers(
    raw: bytes, name: str, tls: list[str], root: str, staging: str, tick: Callable[[], None] | None
) -> None:
    """Layers the store already has are not downloaded again: their blobs are put in the
    staging layout beforehand as empty sparse files of the right size, which skopeo takes
    for blobs it has (it never reads them), and the import skips those layers (it knows
    them by diffID). Needs the platform's manifest and config first: two small requests,
    made only when the store has layers at all; any trouble and the copy is a plain one."""
    try:
        if not os.listdir(f"{root}/layers"):
            return
        manifest = json.loads(raw)
        ref = parse_reference(name)
        repo = f"{ref.domain}/{ref.path}"
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            descriptor = _choose_platform(manifest, name)
            check_digest(descriptor["digest"])
            pinned = f"docker://{repo}@{descriptor['digest']}"
            manifest = json.loads(skopeo(["inspect", "--raw", *tls, pinned], f"pulling {name}", retry=0, tick=tick))
        else:
            pinned = f"docker://{repo}@sha256:{hashlib.sha256(raw).hexdigest()}"
        layers = manifest.get("layers") or []
        if not layers:
            return
        config = json.loads(
            skopeo(["inspect", "--config", "--raw", *tls, pinned], f"pulling {name}", retry=0, tick=tick)
        )
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            return
        store = Store(root)
        blobs = f"{staging}/blobs/sha256"
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            check_digest(layer["digest"])
            check_digest(diff_id)
            if store.has_layer(diff_id):
                os.makedirs(blobs, 0o700, exist_ok=True)
                with open(f"{blobs}/{layer['digest'][7:]}", "wb") as f:
                    f.truncate(int(layer["size"]))
    except (ImageError, ValueError, KeyError, TypeError, AttributeError, OSError):
        shutil.rmtree(f"{staging}/blobs", ignore_errors=True)  # a plain copy then


def _progress_every(tick: Callable[[], None], seconds: float = 5.0) -> Callable[[int], None]:
    last = [time.monotonic()]

    def progress(_: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            tick()

    return progress
