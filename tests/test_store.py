"""Image references and short-name resolution (sdcontainer.store): pure logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcontainer.state import from_json as loads
from sdcontainer.store import candidates, parse_reference, quote_name, unquote_name


@pytest.mark.parametrize(
    ("text", "qualified"),
    [
        ("docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("127.0.0.1:5000/test/web:1", "127.0.0.1:5000/test/web:1"),
        ("localhost/app", "localhost/app:latest"),
        ("quay.io/a/b/c@sha256:" + "a" * 64, "quay.io/a/b/c@sha256:" + "a" * 64),
        ("quay.io/a/b:v1@sha256:" + "b" * 64, "quay.io/a/b:v1@sha256:" + "b" * 64),
        ("[::1]:5000/x:y", "[::1]:5000/x:y"),
    ],
)
def test_references_qualify(text: str, qualified: str) -> None:
    ref = parse_reference(text)
    assert ref.qualified(ref.domain) == qualified


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "is not an image reference"),
        ("a b", "is not an image reference"),
        ("UPPER/x", "is not a repository name"),  # no "." or ":": a path component, in lower case
        ("x/UPPER", "is not a repository name"),
        ("x//y", "is not a repository name"),
        ("x/-y", "is not a repository name"),
        ("x:", "is not a valid tag"),
        ("x:.t", "is not a valid tag"),
        ("x:" + "t" * 129, "is not a valid tag"),
        ("x@sha256:abc", "is not a sha256:<64 hex digits> digest"),
        ("x@md5:" + "a" * 32, "is not a sha256:<64 hex digits> digest"),
        ("x/../etc", "is not a repository name"),
    ],
)
def test_bad_references(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_reference(text)


def test_short_names_follow_registries_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["quay.io", "docker.io"]\n[aliases]\n"web" = "quay.io/org/web"\n')
    (tmp_path / "registries.conf.d").mkdir()
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    # a short name: the imported image first, then each search registry (docker.io adds library/)
    assert candidates("app:1") == ["localhost/app:1", "quay.io/app:1", "docker.io/library/app:1"]
    assert candidates("app:1", for_pull=True) == ["quay.io/app:1", "docker.io/library/app:1"]
    # an alias: the imported image first, then the alias's registry only; a tag is kept
    assert candidates("web:2") == ["localhost/web:2", "quay.io/org/web:2"]
    assert candidates("web") == ["localhost/web:latest", "quay.io/org/web:latest"]
    # a full reference is itself
    assert candidates("docker.io/x/y:1", for_pull=True) == ["docker.io/x/y:1"]


def test_without_search_registries_docker_io_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    assert candidates("alpine:3.20", for_pull=True) == ["docker.io/library/alpine:3.20"]


def test_names_as_file_names_round_trip() -> None:
    for name in ("127.0.0.1:5000/a/b:1", "x/%2F/y:z", "docker.io/library/nginx@sha256:" + "c" * 64):
        quoted = quote_name(name)
        assert "/" not in quoted and unquote_name(quoted) == name


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, "x\\n", null, true, 2.5, {"b": {}}]}', "[]", '"s"', '{"nested": {"deep": [[], [{}]]}}'],
)
def test_the_start_paths_json_reader_matches_json(text: str) -> None:
    import json

    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "nul"])
def test_the_start_paths_json_reader_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)
