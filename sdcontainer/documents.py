"""The JSON documents of an image, read as untrusted input: an OCI index (index.json, or a
manifest list), an image manifest, an image config, and the manifest.json of a `docker
save` archive.

Every field that is read is checked: its JSON type, digests for their form (sha256:<64
lowercase hex digits>: the only algorithm the store knows), sizes for their range, media
types against those an image may have, and the few values that are fixed (schemaVersion 2,
rootfs.type "layers"). A bad field is an ImageError of one line naming where the document
came from (the archive, the layout, the pulled name), the document, and the field:

    /tmp/saved.tar: manifest.json: [0].Layers[1]: expected a string, found an integer

A field that may be left out may also be null (as Go's decoder, which wrote most images,
reads null). Fields this code does not read are not looked at. JSON nested too deeply for
the parser is refused as not JSON, and the callers bound each document's size before it is
parsed (4 MiB, as containers/image does).
"""

from __future__ import annotations

import json
from typing import Any

from sdcontainer.errors import ImageError
from sdcontainer.reference import check_digest

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
CONFIG_TYPES = (MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG)
# the layer types of OCI and docker; the compression is found from the content itself (as
# podman and containerd do), since both digests are checked whatever the label says
LAYER_TYPES = (
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER + "+gzip",
    MEDIA_OCI_LAYER + "+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
MAX_LAYERS = 500  # overlayfs stacks at most 500 lower layers (OVL_MAX_STACK)
MAX_SIZE = (1 << 63) - 1
REF_ANNOTATION = "org.opencontainers.image.ref.name"

_MISSING = object()


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Node:
    """A value of a document, and where it is (for errors)."""

    __slots__ = ("value", "label", "doc", "path")

    def __init__(self, value: Any, label: str, doc: str, path: str = "") -> None:
        self.value, self.label, self.doc, self.path = value, label, doc, path

    def error(self, problem: str) -> ImageError:
        where = f"{self.doc}: {self.path}" if self.path else self.doc
        return ImageError(f"{self.label}: {where}: {problem}")

    def _expected(self, want: str) -> ImageError:
        if self.value is _MISSING:
            return self.error(f"missing (expected {want})")
        return self.error(f"expected {want}, found {_describe(self.value)}")

    def _child(self, key: str | int, value: Any) -> Node:
        if isinstance(key, int):
            return Node(value, self.label, self.doc, f"{self.path}[{key}]")
        return Node(value, self.label, self.doc, f"{self.path}.{key}" if self.path else key)

    def absent(self) -> bool:
        return self.value is _MISSING or self.value is None

    def get(self, key: str) -> Node:
        """The field `key` of this object (a Node whose value may be missing)."""
        self.object()
        return self._child(key, self.value.get(key, _MISSING))

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def object(self, optional: bool = False) -> Node | None:
        if optional and self.absent():
            return None
        if not isinstance(self.value, dict):
            raise self._expected("an object")
        return self

    def array(self, optional: bool = False) -> list[Node] | None:
        if optional and self.absent():
            return None
        if not isinstance(self.value, list):
            raise self._expected("an array")
        return [self._child(i, v) for i, v in enumerate(self.value)]

    def items(self) -> list[tuple[str, Node]]:
        self.object()
        return [(k, self._child(k, v)) for k, v in self.value.items()]

    def string(self, optional: bool = False, exec_safe: bool = False) -> str | None:
        if optional and self.absent():
            return None
        if not isinstance(self.value, str):
            raise self._expected("a string")
        if exec_safe and "\0" in self.value:
            raise self.error("holds a NUL character")
        return self.value

    def text(self, exec_safe: bool = False) -> str:
        """A string that must be there."""
        value = self.string(exec_safe=exec_safe)
        assert value is not None
        return value

    def integer(self, minimum: int = 0, maximum: int = MAX_SIZE) -> int:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self._expected("an integer")
        if not minimum <= self.value <= maximum:
            raise self.error(f"{self.value} is out of range ({minimum} to {maximum})")
        return self.value

    def digest(self) -> str:
        value = self.text()
        try:
            return check_digest(value)
        except ValueError as error:
            raise self.error(f"{error}; refused") from None

    def strings(self, optional: bool = False, exec_safe: bool = False) -> list[str] | None:
        nodes = self.array(optional)
        return None if nodes is None else [n.text(exec_safe) for n in nodes]

    def string_map(self, optional: bool = False) -> dict[str, str] | None:
        if self.object(optional) is None:
            return None
        return {k: n.text() for k, n in self.items()}

    def set_map(self, optional: bool = False) -> dict[str, dict[str, Any]] | None:
        """An object whose values are objects (docker's sets: ExposedPorts, Volumes)."""
        if self.object(optional) is None:
            return None
        return {k: (n.value if n.object(optional=True) is not None else {}) for k, n in self.items()}


def parse(data: bytes, label: str, doc: str) -> Node:
    try:
        return Node(json.loads(data), label, doc)
    except RecursionError:
        raise ImageError(f"{label}: {doc}: not JSON (nested too deeply)") from None
    except ValueError as error:
        raise ImageError(f"{label}: {doc}: not JSON ({error})") from None


class Platform:
    __slots__ = ("os", "architecture", "variant")

    def __init__(self, os: str, architecture: str, variant: str | None) -> None:
        self.os, self.architecture, self.variant = os, architecture, variant

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


class Descriptor:
    """A descriptor of a blob: what it is, its digest, its size (both checked when the blob
    is read), and for images in an index, their platform and annotations."""

    __slots__ = ("media_type", "digest", "size", "annotations", "platform", "node")

    def __init__(self, node: Node, media_types: tuple[str, ...] | None, what: str) -> None:
        node.object()
        self.node = node
        media_type = node.get("mediaType")
        self.media_type = media_type.text()
        if media_types is not None and self.media_type not in media_types:
            raise media_type.error(f"{self.media_type[:100]!r} is not {what} ({', '.join(media_types)})")
        self.digest = node.get("digest").digest()
        self.size = node.get("size").integer()
        self.annotations = node.get("annotations").string_map(optional=True) or {}
        self.platform: Platform | None = None
        platform = node.get("platform").object(optional=True)
        if platform is not None:
            self.platform = Platform(
                platform.get("os").text(),
                platform.get("architecture").text(),
                platform.get("variant").string(optional=True),
            )

    def field(self, key: str) -> Node:
        """The node of one of the descriptor's fields, for errors about it."""
        return self.node.get(key)

    @property
    def where(self) -> str:
        """The document and field of the descriptor: `index.json: manifests[0]`."""
        return f"{self.node.doc}: {self.node.path}" if self.node.path else self.node.doc


def _schema_version(root: Node) -> None:
    version = root.get("schemaVersion")
    if version.integer(minimum=0) != 2:
        raise version.error(f"{version.value} is not supported (only 2)")


def parse_index(data: bytes, label: str, doc: str) -> list[Descriptor]:
    """An OCI index or a docker manifest list: its manifests' descriptors."""
    root = parse(data, label, doc)
    root.object()
    _schema_version(root)
    media_type = root.get("mediaType").string(optional=True)
    if media_type is not None and media_type not in INDEX_TYPES:
        raise root.get("mediaType").error(f"{media_type[:100]!r} is not an index")
    for key in ("config", "layers"):
        if root.has(key):
            raise root.get(key).error("an index with an image's fields: ambiguous; refused")
    nodes = root.get("manifests").array()
    assert nodes is not None
    return [Descriptor(node, None, "") for node in nodes]


class Manifest:
    __slots__ = ("config", "layers")

    def __init__(self, config: Descriptor, layers: list[Descriptor]) -> None:
        self.config, self.layers = config, layers


def parse_manifest(data: bytes, label: str, doc: str, media_type: str) -> Manifest:
    """An image manifest that a descriptor of `media_type` named."""
    root = parse(data, label, doc)
    root.object()
    _schema_version(root)
    own = root.get("mediaType").string(optional=True)
    if own is not None and own != media_type:
        raise root.get("mediaType").error(f"{own[:100]!r}, but the descriptor naming it says {media_type!r}; refused")
    if root.has("manifests"):
        raise root.get("manifests").error("an image manifest with an index's field: ambiguous; refused")
    config = Descriptor(root.get("config"), CONFIG_TYPES, "an image config")
    layers_node = root.get("layers")
    nodes = layers_node.array()
    assert nodes is not None
    if len(nodes) > MAX_LAYERS:
        raise layers_node.error(f"{len(nodes)} layers; overlayfs stacks at most {MAX_LAYERS}")
    return Manifest(config, [Descriptor(node, LAYER_TYPES, "a layer") for node in nodes])


class ImageConfig:
    """What the store keeps of a config: the container defaults, the platform, the layers'
    diffIDs, and the node of rootfs.diff_ids (for errors about them)."""

    __slots__ = ("settings", "architecture", "os", "created", "diff_ids", "diff_ids_node")

    def __init__(self, root: Node) -> None:
        root.object()
        self.architecture = root.get("architecture").string(optional=True) or ""
        self.os = root.get("os").string(optional=True) or ""
        self.created = root.get("created").string(optional=True) or ""
        self.settings: dict[str, Any] = {}
        config = root.get("config").object(optional=True)
        if config is not None:
            readers = {
                "Entrypoint": lambda n: n.strings(optional=True, exec_safe=True),
                "Cmd": lambda n: n.strings(optional=True, exec_safe=True),
                "Env": lambda n: n.strings(optional=True, exec_safe=True),
                "WorkingDir": lambda n: n.string(optional=True, exec_safe=True),
                "User": lambda n: n.string(optional=True, exec_safe=True),
                "StopSignal": lambda n: n.string(optional=True),
                "ExposedPorts": lambda n: n.set_map(optional=True),
                "Labels": lambda n: n.string_map(optional=True),
                "Volumes": lambda n: n.set_map(optional=True),
            }
            for key, read in readers.items():
                value = read(config.get(key))
                if value is not None:
                    self.settings[key] = value
        rootfs = root.get("rootfs")
        rootfs.object()
        kind = rootfs.get("type")
        if kind.string(optional=True) not in (None, "layers"):
            raise kind.error(f"{str(kind.value)[:100]!r} is not 'layers'")
        self.diff_ids_node = rootfs.get("diff_ids")
        nodes = self.diff_ids_node.array()
        assert nodes is not None
        if len(nodes) > MAX_LAYERS:
            raise self.diff_ids_node.error(f"{len(nodes)} layers; overlayfs stacks at most {MAX_LAYERS}")
        self.diff_ids = [node.digest() for node in nodes]


def parse_config(data: bytes, label: str, doc: str) -> ImageConfig:
    return ImageConfig(parse(data, label, doc))


class DockerEntry:
    """The first image of a docker save manifest.json: its config's and layers' paths in the
    archive, its tags; each with its node, for errors."""

    __slots__ = ("config", "config_node", "layers", "layer_nodes", "tags", "tag_nodes", "count")

    def __init__(self, root: Node) -> None:
        entries = root.array()
        assert entries is not None
        if not entries:
            raise root.error("lists no image")
        self.count = len(entries)
        entry = entries[0]
        entry.object()
        self.config_node = entry.get("Config")
        self.config = self.config_node.text()
        layers = entry.get("Layers").array()
        assert layers is not None
        if len(layers) > MAX_LAYERS:
            raise entry.get("Layers").error(f"{len(layers)} layers; overlayfs stacks at most {MAX_LAYERS}")
        self.layer_nodes = layers
        self.layers = [node.text() for node in layers]
        self.tag_nodes = entry.get("RepoTags").array(optional=True) or []
        self.tags = [node.text() for node in self.tag_nodes]


def parse_docker_manifest(data: bytes, label: str) -> DockerEntry:
    return DockerEntry(parse(data, label, "manifest.json"))
