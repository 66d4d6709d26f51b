"""Image archives and their JSON documents are untrusted input (issue 10, part 5).

`docker save` archives, OCI layouts (directories and tars) and what a pull copies from a
registry are read by our code: every field of manifest.json, index.json, the manifests and
the configs is checked. A bad one ends the import with one line naming the archive and the
field (exit status 4), never a traceback, and a refused import leaves the store exactly as it
was: no image, no layer, no blob, nothing in tmp/.

The fuzz variants are generated: each field of valid documents is replaced by values of
every other JSON type. The archives are also truncated at every block, mislabelled, nested,
given traversing paths, symlinked documents, lying digests and sizes, huge JSON, and layers
past the configured limits; and a plain tar with many entries is imported in bounded memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdcontainer.errors import ImageError
from sdcontainer.images import import_path
from tests import registry as reg
from tests.helpers import CHECKOUT
from tests.layers import digest, gz, member, tar_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (layers keep their owners)")

LAYER = tar_bytes([member("bin/", tarfile.DIRTYPE, mode=0o755), member("hello", data=b"hi\n")])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF = "org.opencontainers.image.ref.name"


def config_doc(layers: list[bytes] | None = None) -> dict[str, Any]:
    """A config using every field the importer reads."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "cat /hello"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
            "User": "0",
            "StopSignal": "SIGTERM",
            "Labels": {"a": "b"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(t) for t in (layers or [LAYER])]},
    }


# --- building archives ------------------------------------------------------------------------


def write_tar(path: Path, files: list[tuple[str, bytes | None, str]]) -> Path:
    """(name, data, link): a regular file, or with data None a symlink to `link` (a hard link
    when the name starts with 'hard:')."""
    with tarfile.open(path, "w") as tar:
        for name, data, link in files:
            if data is None:
                hard = name.startswith("hard:")
                info = tarfile.TarInfo(name.removeprefix("hard:"))
                info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def docker_files(
    manifest: Any = None, config: Any = None, layers: dict[str, bytes] | None = None
) -> list[tuple[str, bytes | None, str]]:
    config_bytes = config if isinstance(config, bytes) else json.dumps(config or config_doc()).encode()
    layers = layers if layers is not None else {"l1/layer.tar": LAYER}
    if manifest is None:
        manifest = [{"Config": "config.json", "RepoTags": ["saved:1"], "Layers": list(layers)}]
    manifest_bytes = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return [("config.json", config_bytes, ""), *((n, d, "") for n, d in layers.items())] + [
        ("manifest.json", manifest_bytes, "")
    ]


class OCI:
    """An OCI layout's documents, serialised on demand. The parents of an edited document are
    fixed up to name it (with `fix_manifest` the manifest names the config's digest and size,
    with `fix_index` the index names the manifest's); a document given as bytes is written
    as it is."""

    def __init__(self, layers: list[bytes] | None = None, blob: Callable[[bytes], bytes] = gz) -> None:
        self.layers = layers or [LAYER]
        self.blobs = [blob(t) for t in self.layers]
        self.config: Any = config_doc(self.layers)
        self.manifest: Any = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "", "size": 0},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest(b), "size": len(b)} for b in self.blobs],
        }
        self.index: Any = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": "",
                    "size": 0,
                    "annotations": {REF: "fuzz:1"},
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
        self.extra: dict[str, bytes] = {}
        self.documents()

    @staticmethod
    def _bytes(doc: Any) -> bytes:
        return doc if isinstance(doc, bytes) else json.dumps(doc).encode()

    def documents(self, fix_manifest: bool = True, fix_index: bool = True) -> tuple[bytes, bytes, bytes]:
        """(config, manifest, index) as bytes."""
        config = self._bytes(self.config)
        if fix_manifest:
            self.manifest["config"].update(digest=digest(config), size=len(config))
        manifest = self._bytes(self.manifest)
        if fix_index:
            self.index["manifests"][0].update(digest=digest(manifest), size=len(manifest))
        return config, manifest, self._bytes(self.index)

    def files(self, fix_manifest: bool = True, fix_index: bool = True) -> dict[str, bytes]:
        config, manifest, index = self.documents(fix_manifest, fix_index)
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
        for data in (config, manifest, *self.blobs, *self.extra.values()):
            files[f"blobs/sha256/{digest(data)[7:]}"] = data
        return files

    def write_dir(self, path: Path, fix_manifest: bool = True, fix_index: bool = True) -> Path:
        for name, data in self.files(fix_manifest, fix_index).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return path

    def write_tar(self, path: Path, fix_manifest: bool = True, fix_index: bool = True) -> Path:
        return write_tar(path, [(n, d, "") for n, d in self.files(fix_manifest, fix_index).items()])


# --- the store, before and after --------------------------------------------------------------


def snapshot(store: Path) -> dict[str, str]:
    """Every path of the store with its content's digest (directories as 'dir')."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(store):
        for name in dirnames:
            seen[os.path.relpath(os.path.join(dirpath, name), store)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                seen[os.path.relpath(path, store)] = hashlib.sha256(f.read()).hexdigest()
    return seen


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "storage"
    monkeypatch.setenv("SDCONTAINER_STORAGE", str(path))
    return path


def refused(path: Path, store: Path, name: str = "fuzz:1") -> str:
    """Import `path`; it must fail with an ImageError (nothing else) and leave the store as it was."""
    before = snapshot(store) if store.exists() else None
    try:
        import_path(str(path), name)
    except ImageError as error:
        message = str(error)
    else:
        raise AssertionError(f"{path}: imported, but should have been refused")
    after = snapshot(store) if store.exists() else None
    if before is not None:
        assert after == before, f"{path}: the store changed: {message}"
    else:
        assert after is None or not [p for p, v in after.items() if v != "dir" and p != "lock"], message
    assert "\n" not in message, message
    return message


def sdc(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdcontainer.cli", *args],
        cwd=CHECKOUT,
        env={**os.environ, "SDCONTAINER_STORAGE": str(store), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 4, f"rc={result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


# --- the reported crashes, end to end ------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "field"),
    [(b"[{}]", "[0].Config"), (b'["x"]', "[0]"), (b"{}", "manifest.json"), (b"[]", "manifest.json")],
    ids=["empty-object", "string", "object", "empty-list"],
)
def test_a_docker_archive_with_a_bad_manifest_is_one_line(
    manifest: bytes, field: str, store: Path, tmp_path: Path
) -> None:
    archive = write_tar(tmp_path / "saved.tar", docker_files(manifest=manifest))
    one_line_error(sdc(store, "image", "import", str(archive), "x:1"), str(archive), field)
    assert not (store / "images").exists() or os.listdir(store / "images") == []


def test_a_bad_name_for_an_import_is_one_line(store: Path, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "saved.tar", docker_files())
    result = sdc(store, "image", "import", str(archive), "Not A Name")
    assert result.returncode in (2, 4) and "Traceback" not in result.stderr, result.stderr
    assert "'Not A Name' is not an image reference" in result.stderr
    bad_tag = write_tar(
        tmp_path / "tags.tar",
        docker_files([{"Config": "config.json", "RepoTags": ["UPPER:1"], "Layers": ["l1/layer.tar"]}]),
    )
    one_line_error(sdc(store, "image", "import", str(bad_tag)), str(bad_tag), "[0].RepoTags[0]")


# --- generated variants: every field, every wrong type --------------------------------------------

WRONG: list[Any] = [None, True, 7, -1, 2.5, "x", [], {}, [None], {"x": None}]


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return type(value).__name__


def fields(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a JSON document (not the root)."""
    children = enumerate(doc) if isinstance(doc, list) else doc.items() if isinstance(doc, dict) else ()
    for key, value in children:
        yield (*path, key)
        yield from fields(value, (*path, key))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def field_text(path: tuple[Any, ...]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def variants(doc: Any, nullable: set[str]) -> Iterator[tuple[str, Any, Any, bool]]:
    """(field, wrong value, the document with it, whether success is acceptable)."""
    for path in fields(doc):
        original = _get(doc, path)
        for value in WRONG:
            if _kind(value) == _kind(original):
                continue
            text = field_text(path)
            yield text, value, replaced(doc, path, value), value is None and text in nullable


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


CONFIG_NULLABLE = {
    "architecture",
    "os",
    "created",
    "config",
    *(f"config.{k}" for k in config_doc()["config"]),
    "config.ExposedPorts.80/tcp",
    "config.Volumes./data",
    "rootfs.type",
}


def run_variants(
    store: Path, cases: Iterator[tuple[str, Any, Any, bool]], build: Callable[[Any], Path], baseline: Path
) -> None:
    """Import every variant: each must be refused with an ImageError naming its field (or,
    for a null where null is allowed, may succeed), and a refusal must leave the store as it
    was. All failures are collected, so a run shows how many variants fail."""
    import_path(str(baseline), "fuzz:1")  # the store holds the layer: variants are quick
    failures: list[str] = []
    count = 0
    for field, value, doc, may_pass in cases:
        count += 1
        path = build(doc)
        before = snapshot(store)
        try:
            import_path(str(path), "fuzz:1")
        except ImageError as error:
            message = str(error)
            if str(path) not in message or field not in message or "\n" in message:
                failures.append(f"{field}={value!r}: the message does not name the archive and field: {message}")
            elif snapshot(store) != before:
                failures.append(f"{field}={value!r}: refused, but the store changed")
        except Exception as error:  # noqa: BLE001 - the point: nothing but ImageError
            failures.append(f"{field}={value!r}: {type(error).__name__}: {error}")
        else:
            if not may_pass:
                failures.append(f"{field}={value!r}: imported")
    assert not failures, f"{len(failures)} of {count} variants:\n" + "\n".join(failures[:40])


def test_every_field_of_a_docker_archive(store: Path, tmp_path: Path) -> None:
    good = docker_files()
    baseline = write_tar(tmp_path / "good.tar", good)
    manifest = json.loads(good[-1][1] or b"")
    config = config_doc()
    cases = list(variants(manifest, {"[0].RepoTags"}))
    run_variants(store, iter(cases), lambda doc: write_tar(tmp_path / "m.tar", docker_files(manifest=doc)), baseline)
    config_cases = variants(config, CONFIG_NULLABLE)
    run_variants(store, config_cases, lambda doc: write_tar(tmp_path / "c.tar", docker_files(config=doc)), baseline)


@pytest.mark.parametrize("document", ["index", "manifest", "config"])
def test_every_field_of_an_oci_layout(document: str, store: Path, tmp_path: Path) -> None:
    baseline = OCI().write_tar(tmp_path / "good.tar")
    nullable = {
        "index": {"mediaType", "manifests[0].annotations", "manifests[0].platform"},
        "manifest": {"mediaType"},
        "config": CONFIG_NULLABLE,
    }[document]
    # the edited document is written as it is; only its parents are fixed up to name it
    fix_manifest, fix_index = {"config": (True, True), "manifest": (False, True), "index": (False, False)}[document]

    def build(doc: Any) -> Path:
        oci = OCI()
        setattr(oci, document, doc)
        return oci.write_tar(tmp_path / "v.tar", fix_manifest, fix_index)

    run_variants(store, variants(getattr(OCI(), document), nullable), build, baseline)


# --- truncated, mislabelled, nested -------------------------------------------------------------


def _data_end(path: Path) -> int:
    """Where the last member's data (padded) ends: a cut before that loses something."""
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_an_archive_truncated_anywhere_is_refused(kind: str, store: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar"
    if kind == "oci":
        OCI().write_tar(whole)
    else:
        write_tar(whole, docker_files())
    data = whole.read_bytes()
    end = _data_end(whole)
    cut_path = tmp_path / "cut.tar"
    failures = []
    for cut in [*range(0, end + 512, 512), *range(100, end, 1021)]:
        cut_path.write_bytes(data[:cut])
        try:
            refused(cut_path, store)
        except AssertionError as error:
            failures.append(f"cut at {cut} of {len(data)}: {error}")
        except Exception as error:  # noqa: BLE001
            failures.append(f"cut at {cut} of {len(data)}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures[:20])
    import_path(str(whole), "whole:1")  # and the whole one imports


@pytest.mark.parametrize(
    ("media_type", "blob", "outcome"),
    [
        (OCI_LAYER, gz, "ok"),  # says tar, is gzip: sniffed, both digests checked (as podman)
        (OCI_LAYER_GZIP, lambda t: t, "ok"),  # says gzip, is tar
        ("application/vnd.oci.image.layer.v1.tar+zstd", gz, "ok"),
        (OCI_LAYER_GZIP, lambda t: b"\x28\xb5\x2f\xfd" + t, "zstd"),  # zstd content
        (OCI_LAYER_GZIP, lambda t: gz(gz(t)), "layers[0]"),  # an archive in an archive
        (OCI_LAYER_GZIP, lambda t: b"BZh91AY&SY" + t, "checksum"),  # bzip2: not a tar
        ("application/octet-stream", gz, "layers[0].mediaType"),
        ("application/vnd.oci.image.config.v1+json", gz, "layers[0].mediaType"),
    ],
    ids=["tar-is-gzip", "gzip-is-tar", "zstd-is-gzip", "zstd", "gzip-in-gzip", "bzip2", "octet-stream", "config-type"],
)
def test_mislabelled_and_nested_layers(
    media_type: str, blob: Callable[[bytes], bytes], outcome: str, store: Path, tmp_path: Path
) -> None:
    oci = OCI(blob=blob)
    oci.manifest["layers"][0]["mediaType"] = media_type
    archive = oci.write_tar(tmp_path / "l.tar")
    if outcome == "ok":
        import_path(str(archive), "fuzz:1")
        assert (store / "layers" / digest(LAYER)[7:] / "hello").read_bytes() == b"hi\n"
    else:
        message = refused(archive, store)
        assert outcome in message and str(archive) in message, message


def test_nested_indexes_and_a_manifest_that_is_an_index(store: Path, tmp_path: Path) -> None:
    oci = OCI()
    _, manifest, _ = oci.documents()
    inner = {"mediaType": OCI_MANIFEST, "digest": digest(manifest), "size": len(manifest)}
    inner["platform"] = {"architecture": "amd64", "os": "linux"}
    for level in range(6):
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner]}).encode()
        oci.extra[f"i{level}"] = index
        inner = {"mediaType": OCI_INDEX, "digest": digest(index), "size": len(index)}
    oci.index["manifests"] = [inner]
    assert "nested too deep" in refused(oci.write_tar(tmp_path / "deep.tar", fix_index=False), store)
    # a descriptor that says manifest for a document that is also an index (CVE-2021-41190)
    oci = OCI()
    oci.manifest["manifests"] = []
    assert "manifests" in refused(oci.write_tar(tmp_path / "both.tar"), store)


# --- paths, symlinks, huge documents ------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"Layers": ["../../etc/passwd"]}, "[0].Layers[0]"),
        ({"Layers": ["/etc/passwd"]}, "[0].Layers[0]"),
        ({"Layers": ["l1/../../../etc/passwd"]}, "[0].Layers[0]"),
        ({"Config": "../../../etc/passwd"}, "[0].Config"),
        ({"Config": "/etc/passwd"}, "[0].Config"),
    ],
    ids=["dotdot", "absolute", "inner-dotdot", "config-dotdot", "config-absolute"],
)
def test_docker_archive_paths_stay_in_the_archive(
    entry: dict[str, Any], field: str, store: Path, tmp_path: Path
) -> None:
    manifest = [{"Config": "config.json", "RepoTags": ["saved:1"], "Layers": ["l1/layer.tar"], **entry}]
    archive = write_tar(tmp_path / "saved.tar", docker_files(manifest=manifest))
    message = refused(archive, store)
    assert field in message and str(archive) in message


def test_members_with_traversing_names(store: Path, tmp_path: Path) -> None:
    files = [*docker_files(), ("../../evil", b"x", "")]
    message = refused(write_tar(tmp_path / "evil.tar", files), store)
    assert "'..'" in message, message


@pytest.mark.parametrize(
    ("link", "outcome"),
    [
        ("/etc/passwd", "refused"),
        ("../../../etc/passwd", "refused"),
        ("real.json", "ok"),  # followed inside the archive, once (as containers/image does)
        ("sub/../real.json", "ok"),
        ("hop.json", "refused"),  # a symlink to a symlink
        ("hard:real.json", "ok"),
    ],
)
def test_a_symlinked_manifest_json(link: str, outcome: str, store: Path, tmp_path: Path) -> None:
    files = docker_files()
    manifest = files.pop()[1]
    files += [("real.json", manifest, ""), ("hop.json", None, "real.json")]
    files.append(
        ("hard:manifest.json" if link.startswith("hard:") else "manifest.json", None, link.removeprefix("hard:"))
    )
    archive = write_tar(tmp_path / "link.tar", files)
    if outcome == "ok":
        import_path(str(archive), "fuzz:1")
    else:
        message = refused(archive, store)
        assert "manifest.json" in message and str(archive) in message, message


def test_huge_and_deep_json(store: Path, tmp_path: Path) -> None:
    big = json.dumps([{"Config": "config.json", "RepoTags": ["x:1"] * 600_000, "Layers": ["l1/layer.tar"]}]).encode()
    assert "larger than" in refused(write_tar(tmp_path / "big.tar", docker_files(manifest=big)), store)
    deep = b"[" * 200_000 + b"]" * 200_000
    assert "not JSON" in refused(write_tar(tmp_path / "deep.tar", docker_files(manifest=deep)), store)
    deep_config = b'{"config":' * 100_000 + b"{}" + b"}" * 100_000
    assert "not JSON" in refused(write_tar(tmp_path / "deep-c.tar", docker_files(config=deep_config)), store)
    oci = OCI()
    oci.index = b'{"manifests":' * 100_000 + b"1" + b"}" * 100_000
    assert "not JSON" in refused(oci.write_tar(tmp_path / "deep-i.tar", fix_index=False), store)
    oci = OCI()
    oci.config = deep_config
    assert "not JSON" in refused(oci.write_tar(tmp_path / "deep-oc.tar"), store)
    oci = OCI()
    oci.manifest = json.dumps(oci.manifest).encode()[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "not JSON" in refused(oci.write_tar(tmp_path / "deep-m.tar", fix_manifest=False), store)


# --- digests and sizes that lie -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "needle"),
    [
        ("manifest-content", "has digest"),
        ("config-content", "has digest"),
        ("layer-content", "has digest"),
        ("manifest-size", "manifests[0].size"),
        ("manifest-size-huge", "manifests[0].size"),
        ("config-size", "config.size"),
        ("layer-size", "layers[0].size"),
        ("layer-size-short", "layers[0].size"),
        ("diff-id", "its tar has digest"),
        ("sha512", "not a sha256"),
        ("bad-hex", "not a sha256"),
    ],
)
def test_digests_and_sizes_that_lie(what: str, needle: str, store: Path, tmp_path: Path) -> None:
    oci = OCI()
    config, manifest, _ = oci.documents()
    blob = gz(LAYER)
    fixes = {"fix_manifest": True, "fix_index": True}
    edit: dict[str, bytes] = {}
    if what == "manifest-content":  # same size, other content
        edit[digest(manifest)] = manifest.replace(b"schemaVersion", b"schemaversion")
    elif what == "config-content":
        edit[digest(config)] = config.replace(b"amd64", b"amd65")
    elif what == "layer-content":
        edit[digest(blob)] = blob[:4] + b"\x01" + blob[5:]  # the gzip header's mtime
    elif what == "diff-id":
        oci.config["rootfs"]["diff_ids"] = [digest(LAYER + b"x")]
    elif what == "sha512":
        oci.manifest["layers"][0]["digest"] = "sha512:" + hashlib.sha512(blob).hexdigest()
    elif what == "bad-hex":
        oci.manifest["layers"][0]["digest"] = "sha256:" + "G" * 64
    elif what.startswith("manifest-size"):
        oci.index["manifests"][0]["size"] = 1 << 40 if what.endswith("huge") else len(manifest) + 1
        fixes["fix_index"] = False
    elif what == "config-size":
        oci.manifest["config"]["size"] = len(config) - 1
        fixes["fix_manifest"] = False
    else:
        oci.manifest["layers"][0]["size"] = len(blob) + 1 if what == "layer-size" else len(blob) - 100
    files = oci.files(**fixes)
    for old, data in edit.items():
        files[f"blobs/sha256/{old[7:]}"] = data
    archive = write_tar(tmp_path / "lie.tar", [(n, d, "") for n, d in files.items()])
    message = refused(archive, store)
    assert needle in message and str(archive) in message, message


# --- layers past the limits, and nothing left behind -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "within", "layer", "needle"),
    [
        ("SDCONTAINER_LAYER_MAX_ENTRIES", "50", "51", [member(f"f{i}") for i in range(51)], "more than 50 entries"),
        ("SDCONTAINER_LAYER_MAX_SIZE", "64K", "1M", [member("big", data=bytes(100_000))], "more than 64K"),
        ("SDCONTAINER_LAYER_MAX_PATH", "100", "111", [member("d" * 50 + "/" + "f" * 60)], "longer than 100"),
        (
            "SDCONTAINER_LAYER_MAX_PATH",
            "100",
            "101",
            [member("l", tarfile.SYMTYPE, linkname="t" * 101)],
            "longer than 100",
        ),
    ],
    ids=["entries", "size", "path", "link"],
)
def test_layers_past_the_limits_are_refused(
    variable: str, value: str, within: str, layer: list[Any], needle: str, store: Path, tmp_path: Path
) -> None:
    data = tar_bytes(layer)
    archive = tmp_path / "rootfs.tar"
    archive.write_bytes(data)
    one_line_error(sdc(store, "image", "import", str(archive), "x:1", env={variable: value}), needle, variable)
    # at the limit, or with the limit raised, it imports
    assert sdc(store, "image", "import", str(archive), "x:1").returncode == 0
    assert sdc(store, "image", "import", str(archive), "x:2", env={variable: within}).returncode == 0


def test_a_bad_limit_setting_is_one_line(store: Path, tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar"
    archive.write_bytes(LAYER)
    one_line_error(
        sdc(store, "image", "import", str(archive), "x:1", env={"SDCONTAINER_LAYER_MAX_ENTRIES": "lots"}),
        "SDCONTAINER_LAYER_MAX_ENTRIES",
    )


def test_a_refused_layer_takes_the_layers_before_it_away(store: Path, tmp_path: Path) -> None:
    """Layer 1 is good and unpacked, layer 2 is refused: the store keeps neither (it is as it
    was before the import), and a later good import is not disturbed by anything left."""
    bad = tar_bytes([member("ok", data=b"fine"), member("../escape", data=b"x")])
    oci = OCI(layers=[LAYER, bad])
    archive = oci.write_tar(tmp_path / "two.tar")
    before = snapshot(store) if store.exists() else {}
    message = refused(archive, store)
    assert "'..'" in message and str(archive) in message
    after = snapshot(store)
    assert {p: v for p, v in after.items() if v != "dir" and p != "lock"} == {
        p: v for p, v in before.items() if v != "dir" and p != "lock"
    }
    assert (
        os.listdir(store / "layers") == []
        and os.listdir(store / "tmp") == []
        and os.listdir(store / "blobs/sha256") == []
    )


def test_a_plain_tar_of_many_entries_is_read_in_bounded_memory(store: Path, tmp_path: Path) -> None:
    """300,000 entries (each a name two levels deep, as an image archive's could be): the
    import reads their headers streamed, keeping none, and the layer's entry limit refuses
    it; the peak RSS of the importing process stays far below what holding every member
    takes (~180 MB at this count before the fix)."""
    archive = tmp_path / "many.tar"
    with open(archive, "wb") as out:
        template = bytearray(tarfile.TarInfo("d/f").tobuf(tarfile.USTAR_FORMAT))
        for i in range(300_000):
            header = template[:]
            name = f"d{i // 1000:03d}/f{i:06d}".encode()
            header[0:100] = name.ljust(100, b"\0")
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
            out.write(header)
        out.write(bytes(1024))
    script = (
        "import resource, sys\n"
        "from sdcontainer.errors import ImageError\n"
        "from sdcontainer.images import import_path\n"
        "try:\n    import_path(sys.argv[1], 'many:1')\n"
        "except ImageError as error:\n    print(error, file=sys.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(archive)],
        cwd=CHECKOUT,
        env={**os.environ, "SDCONTAINER_STORAGE": str(store), "SDCONTAINER_LAYER_MAX_ENTRIES": "1000"},
        capture_output=True,
        text=True,
        check=True,
    )
    peak = int(result.stdout.split()[-1])
    assert "more than 1000 entries" in result.stderr, result.stderr
    assert peak < 100 << 20, f"peak RSS {peak >> 20} MiB"


# --- a pull: skopeo copies, our code reads the same documents ------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    why = reg.available()
    if why:
        pytest.skip(why)
    registry = reg.Registry(tmp_path_factory.mktemp("registry") / "registry")
    yield registry
    registry.remove()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"config": {"Cmd": "not a list"}}, "config.Cmd"),
        ({"config": {"Env": ["A=1", 7]}}, "config.Env[1]"),
        ({"rootfs": {"type": "layers", "diff_ids": "sha256:x"}}, "rootfs.diff_ids"),
        ({"rootfs": {"type": "layers", "diff_ids": [digest(b"another")]}}, "its tar has digest"),
    ],
    ids=["cmd", "env", "diff-ids", "diff-id-mismatch"],
)
def test_a_pulled_image_is_checked_the_same_way(
    config: dict[str, Any], field: str, registry: reg.Registry, store: Path, tmp_path: Path
) -> None:
    oci = OCI()
    oci.config.update(config)
    layout = oci.write_dir(tmp_path / "oci")
    repo = f"test/bad-{hashlib.sha256(field.encode()).hexdigest()[:8]}:1"
    registry.push(layout, "fuzz:1", repo)
    conf = {"CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf)}
    stderr = one_line_error(sdc(store, "pull", "-q", f"{registry.host}/{repo}", env=conf), field)
    assert f"{registry.host}/{repo}" in stderr
    assert os.listdir(store / "layers") == [] and os.listdir(store / "images") == []
    assert os.listdir(store / "staging") == [] and os.listdir(store / "tmp") == []
