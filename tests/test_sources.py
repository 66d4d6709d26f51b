"""Unit files of every kind on the search path: names, services, drop-ins, dependencies, and
a kind not supported yet refused with a unit that says so (pure logic; no systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcontainer.errors import ConfigError
from sdcontainer.generator import diagnose, generate
from sdcontainer.sources import KINDS, Source, dropin_dirs, find_sources, kind_of, service_of, translate_dependency
from sdcontainer.unitfile import parse_text


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("web.container", "web.service"),
        ("web@a.container", "web@a.service"),
        ("db.network", "db-network.service"),
        ("data.volume", "data-volume.service"),
        ("app.image", "app-image.service"),
        ("stack.pod", "stack-pod.service"),
        ("play.kube", "play.service"),
        ("img.build", "img-build.service"),
        ("cache@x.volume", "cache-volume@x.service"),
    ],
)
def test_each_kind_names_its_service_as_quadlet_does(name: str, service: str) -> None:
    assert service_of(name) == service
    assert Source(name, f"/etc/sdcontainer/{name}").service == service


@pytest.mark.parametrize("name", ["web.service", ".container", "web.containers", "web", "web.conf"])
def test_other_names_are_not_unit_files(name: str) -> None:
    assert kind_of(name) is None
    assert service_of(name) is None
    with pytest.raises(ValueError):
        Source(name, f"/x/{name}")


def test_every_kind_is_found_and_drop_ins_follow_the_kind(tmp_path: Path) -> None:
    for kind in KINDS:
        (tmp_path / f"a-b{kind.suffix}").write_text("")
    (tmp_path / "notes.txt").write_text("")
    sources, _ = find_sources([str(tmp_path)])
    assert sorted(s.name for s in sources) == sorted(f"a-b{k.suffix}" for k in KINDS)
    network = next(s for s in sources if s.name == "a-b.network")
    assert dropin_dirs(network) == ["a-b.network.d", "a-.network.d", "network.d"]


def test_a_dependency_on_any_kind_becomes_its_service() -> None:
    unit = parse_text("[Unit]\nRequires=db.network data.volume other.service\n", "/x/a.container")
    (entry,) = unit.section("Unit")
    value = translate_dependency(entry, {"db.network", "data.volume"})
    assert value == "db-network.service data-volume.service other.service"
    with pytest.raises(ConfigError, match=r"a.container:2: Requires= names data.volume, but no such file"):
        translate_dependency(entry, {"db.network"})


def test_a_kind_not_supported_yet_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "stack.kube"
    path.write_text("[Kube]\nYaml=stack.yaml\n")
    source = Source("stack.kube", str(path))
    with pytest.raises(ConfigError, match=r"stack.kube: .kube files are not supported yet \(only .container"):
        generate(source, {"stack.kube"}, {})
    (error,) = diagnose(source, {"stack.kube"}, {})
    assert "not supported yet" in str(error)


def test_a_refused_file_of_another_kind_gets_a_stand_in_of_its_service_name(tmp_path: Path) -> None:
    from sdcontainer.generator import refused_unit

    stand_in = refused_unit(Source("db.network", str(tmp_path / "db.network")), ["db.network: no"])
    assert stand_in is not None
    assert stand_in.service == "db-network.service"
    assert "man:sdcontainer.network(5)" in stand_in.text
