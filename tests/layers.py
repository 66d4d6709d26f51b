"""Building image layers and OCI layouts in tests, offline, with tarfile: the hostile-layer
corpus and the busybox images the registry tests push."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    mode: int = 0o644,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    pax: dict[str, str] | None = None,
    devmajor: int = 0,
    devminor: int = 0,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    if pax:
        info.pax_headers = dict(pax)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
    return info, data


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_tar(root: str, prefix_filter: Iterable[str] | None = None) -> bytes:
    """A tar of a directory tree, names relative to it (as a layer holds them)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                if prefix_filter is not None and not any(rel == p or rel.startswith(p + "/") for p in prefix_filter):
                    continue
                tar.add(full, arcname=rel, recursive=False)
    return out.getvalue()


class Layout:
    """An OCI image layout directory being written: blobs, manifests, an index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> dict[str, Any]:
        d = digest(data)
        (self.path / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    def image(
        self,
        layers: list[bytes],
        config: dict[str, Any] | None = None,
        ref: str | None = None,
        arch: str = "amd64",
        add_to_index: bool = True,
    ) -> dict[str, Any]:
        """Layers are uncompressed tars; each is stored gzipped. Returns the manifest's descriptor."""
        layer_descs = []
        for tar in layers:
            layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.blob(gz(tar))})
        cfg = {
            "architecture": arch,
            "os": "linux",
            "config": config or {},
            "rootfs": {"type": "layers", "diff_ids": [digest(t) for t in layers]},
        }
        config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(json.dumps(cfg).encode())}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": layer_descs,
        }
        desc: dict[str, Any] = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **self.blob(json.dumps(manifest).encode()),
            "platform": {"architecture": arch, "os": "linux"},
        }
        if ref:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
        if add_to_index:
            self.index.append(desc)
        return desc

    def image_index(self, manifests: list[dict[str, Any]], ref: str | None = None) -> dict[str, Any]:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
        desc: dict[str, Any] = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            **self.blob(json.dumps(index).encode()),
        }
        if ref:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.index.append(desc)
        return desc

    def write(self) -> Path:
        (self.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))
        return self.path
