"""Image references: `[DOMAIN/]PATH[:TAG][@DIGEST]`, checked, split and qualified, and the
short names of registries.conf resolved to the fully qualified names they may mean.

The one home of the grammar: the key table checks Image= with it (sdcontainer.keys), the
store names images and finds them by it (sdcontainer.store), pulls and imports qualify
names with it (sdcontainer.images), and the CLI shows stored names split by it. It imports
only `os` and the error classes at the top (the generator checks every Image= with it);
reading registries.conf brings in tomllib when a short name needs it.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ImageError

DEFAULT_REGISTRY = "docker.io"
LOCAL_DOMAIN = "localhost"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_HEX = frozenset("0123456789abcdef")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


class Reference:
    """An image reference, split: [domain/]path[:tag][@digest]. `domain` is empty for a
    short name (resolved through registries.conf, or localhost/ for imported images)."""

    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain: str, path: str, tag: str | None, digest: str | None) -> None:
        self.domain, self.path, self.tag, self.digest = domain, path, tag, digest

    def qualified(self, domain: str) -> str:
        path = self.path
        if domain == DEFAULT_REGISTRY and "/" not in path:
            path = "library/" + path
        text = f"{domain}/{path}"
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def __str__(self) -> str:
        return self.qualified(self.domain) if self.domain else self.qualified(LOCAL_DOMAIN)[len(LOCAL_DOMAIN) + 1 :]


def check_digest(digest: str) -> str:
    algorithm, colon, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or not set(hexpart) <= _HEX:
        raise ValueError(f"{digest!r} is not a sha256:<64 hex digits> digest")
    return digest


def parse_reference(text: str) -> Reference:
    """Checks the syntax of an image reference; raises ValueError saying what is wrong."""
    if not text or len(text) > 1024 or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not an image reference")
    name, at, digest = text.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == LOCAL_DOMAIN):
        domain, remainder = first, rest
        if not set(domain) <= _DOMAIN_CHARS:
            raise ValueError(f"{domain!r} is not a registry host name")
    else:
        domain, remainder = "", name
    tag = None
    head, colon, last = remainder.rpartition(":")
    if colon and "/" not in last:
        remainder, tag = head, last
        if not tag or len(tag) > 128 or not set(tag) <= _TAG_CHARS or tag[0] in ".-":
            raise ValueError(f"{tag!r} is not a valid tag (letters, digits, _ . -; at most 128)")
    if (
        not remainder
        or not set(remainder) <= _NAME_CHARS
        or any(not part or part[0] in "._-" or part[-1] in "._-" for part in remainder.split("/"))
    ):
        raise ValueError(f"{text!r}: {remainder!r} is not a repository name (lower case letters, digits, . _ - /)")
    if at:
        check_digest(digest)
    elif tag is None:
        tag = "latest"
    return Reference(domain, remainder, tag, digest or None)


def search_registries() -> tuple[list[str], dict[str, str]]:
    """unqualified-search-registries and [aliases] of registries.conf (and its .d files),
    for short names. Without any: docker.io, as docker resolves them."""
    import glob
    import tomllib

    path = os.environ.get("CONTAINERS_REGISTRIES_CONF") or "/etc/containers/registries.conf"
    files = [path] + sorted(glob.glob(path + ".d/*.conf"))  # the file and its drop-ins, as skopeo reads them
    registries: list[str] = []
    aliases: dict[str, str] = {}
    for file in files:
        try:
            with open(file, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ImageError(f"{file}: {error}") from None
        found = data.get("unqualified-search-registries")
        if isinstance(found, list):
            registries = [str(r) for r in found]
        table = data.get("aliases")
        if isinstance(table, dict):
            aliases.update({str(k): str(v) for k, v in table.items()})
    return registries or [DEFAULT_REGISTRY], aliases


def candidates(text: str, *, for_pull: bool = False) -> list[str]:
    """The fully qualified names a reference may mean, in the order they are tried."""
    ref = parse_reference(text)
    if ref.domain:
        return [ref.qualified(ref.domain)]
    names = [] if for_pull else [ref.qualified(LOCAL_DOMAIN)]  # an imported image first
    registries, aliases = search_registries()
    alias = aliases.get(ref.path)
    if alias is not None:
        aliased = parse_reference(alias if (ref.tag == "latest" or ":" in alias) else f"{alias}:{ref.tag}")
        ref = Reference(aliased.domain, aliased.path, aliased.tag, ref.digest)
        return [*names, ref.qualified(ref.domain)]
    return names + [ref.qualified(registry) for registry in registries]


def repository_and_tag(name: str) -> tuple[str, str]:
    """A stored (fully qualified) name split for display: (repository, tag), the tag empty
    for a name pinned by digest or without one."""
    repository, _, tag = name.rpartition(":") if "@" not in name else (name, "", "")
    if "/" in tag:  # a registry port, not a tag
        return name, ""
    return repository, tag
