"""`sdcontainer run` builds its transient unit from D-Bus properties, the generator writes
unit files: the two must describe the same service. (The real run is in the integration
tests; this checks the translation, key by key, without a systemd.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdcontainer.generator import Source, generate
from sdcontainer.keys import spec_from_unit
from sdcontainer.state import state_path
from sdcontainer.transient import INFINITY, transient_properties
from sdcontainer.unitfile import parse_file, parse_text, split_words

CONTAINER = """\
[Container]
Rootfs=/srv/rootfs
Exec=/bin/sh -c 'echo $HOME'
StopSignal=SIGINT
StopTimeout=7
Memory=64M
PidsLimit=30
Ulimit=nofile=100:200
"""

#: [Service] setting of the generated unit -> D-Bus property of the transient unit.
PROPERTY_OF = {
    "Type": "Type",
    "NotifyAccess": "NotifyAccess",
    "KillMode": "KillMode",
    "Delegate": "Delegate",
    "DevicePolicy": "DevicePolicy",
    "DeviceAllow": "DeviceAllow",
    "SyslogIdentifier": "SyslogIdentifier",
    "Slice": "Slice",
    "TimeoutStopSec": "TimeoutStopUSec",
    "SuccessExitStatus": "SuccessExitStatus",
    "KillSignal": "KillSignal",
    "MemoryMax": "MemoryMax",
    "TasksMax": "TasksMax",
    "LimitNOFILE": "LimitNOFILE",
    "ExecStart": "ExecStart",
    "ExecStopPost": "ExecStopPost",
    "RuntimeDirectory": "RuntimeDirectory",
}


@pytest.fixture
def generated(tmp_path: Path) -> tuple[dict[str, list[str]], dict[bytes, object]]:
    path = tmp_path / "web.container"
    path.write_text(CONTAINER)
    text = generate(Source("web.container", str(path)), {"web.container"}, {}).text
    service: dict[str, list[str]] = {}
    for entry in parse_text(text, "web.service").section("Service"):
        service.setdefault(entry.key, []).append(entry.value)
    spec = spec_from_unit(parse_file(str(path)))
    return service, transient_properties(spec, "web.service", stdio=(0, 1, 2), description=None)


def test_every_generated_setting_has_its_property(generated: tuple[dict[str, list[str]], dict[bytes, object]]) -> None:
    service, properties = generated
    missing = [key for key in service if key not in PROPERTY_OF]
    assert not missing, f"no D-Bus property known for generated settings {missing}: add them to transient.py"
    for key in service:
        assert PROPERTY_OF[key].encode() in properties, key


def test_values_agree(generated: tuple[dict[str, list[str]], dict[bytes, object]]) -> None:
    service, p = generated
    for key in ("Type", "NotifyAccess", "KillMode", "DevicePolicy", "Slice"):
        assert p[PROPERTY_OF[key].encode()] == service[key][-1].encode()
    assert p[b"Delegate"] is True and service["Delegate"] == ["yes"]
    assert p[b"DeviceAllow"] == [tuple(v.encode() for v in value.split()) for value in service["DeviceAllow"]]
    assert p[b"TimeoutStopUSec"] == int(service["TimeoutStopSec"][-1]) * 1_000_000 == 7_000_000
    assert p[b"SuccessExitStatus"] == ([int(service["SuccessExitStatus"][-1])], []) == ([130], [])
    assert p[b"KillSignal"] == 2 and service["KillSignal"] == ["SIGINT"]
    assert p[b"MemoryMax"] == 64 * 1024 * 1024 and service["MemoryMax"] == ["64M"]
    assert p[b"TasksMax"] == 30 and service["TasksMax"] == ["30"]
    assert (p[b"LimitNOFILESoft"], p[b"LimitNOFILE"]) == (100, 200) and service["LimitNOFILE"] == ["100:200"]


def test_exec_lines_agree(generated: tuple[dict[str, list[str]], dict[bytes, object]]) -> None:
    """The same launcher argv once systemd has read it: `run` doubles every `$` (its words
    are literal: the shell expanded what it was to expand), the unit file leaves a file's
    values for systemd, which makes `$$` a `$` and leaves `$HOME` inside a word as it is."""
    service, p = generated
    [(path, argv, ignore_failure)] = p[b"ExecStart"]  # type: ignore[misc]
    words = [w.encode() for w in split_words(service["ExecStart"][-1])]

    def as_systemd_runs_it(words: list[bytes]) -> list[bytes]:  # no ${VAR} in these words
        return [word.replace(b"$$", b"$") for word in words]

    assert as_systemd_runs_it(argv[argv.index(b"start") :]) == as_systemd_runs_it(words[words.index(b"start") :])
    assert b"echo $$HOME" in argv and b"echo $HOME" in words
    assert path == argv[0] and ignore_failure is False
    # systemd removes the record; the one ExecStopPost= releases the default network's address
    [(_, stop_argv, _)] = p[b"ExecStopPost"]  # type: ignore[misc]
    assert stop_argv[stop_argv.index(b"release") :] == [b"release", b"--unit", b"web.service"]
    assert [split_words(line)[-3:] for line in service["ExecStopPost"]] == [["release", "--unit", "%n"]]


def test_runtime_directory_agrees(generated: tuple[dict[str, list[str]], dict[bytes, object]]) -> None:
    """The record's directory: `%n` in the file, the name itself over D-Bus (not expanded)."""
    service, p = generated
    assert service["RuntimeDirectory"] == ["sdcontainer/containers/%n"]
    assert p[b"RuntimeDirectory"] == [b"sdcontainer/containers/web.service"]
    assert "/run/" + p[b"RuntimeDirectory"][0].decode() == os.path.dirname(state_path("web.service"))  # type: ignore[index]


def test_attached_and_detached() -> None:
    spec = spec_from_unit(parse_text(CONTAINER.replace("PidsLimit=30", "PidsLimit=-1"), "/x/a.container"))
    attached = transient_properties(spec, "a.service", stdio=(5, 6, 7), description=None)
    detached = transient_properties(spec, "a.service", stdio=None, description="d")
    assert attached[b"AddRef"] is True and attached[b"CollectMode"] == b"inactive-or-failed"
    assert [attached[f"Standard{s}FileDescriptor".encode()] for s in ("Input", "Output", "Error")] == [5, 6, 7]
    assert not {b"AddRef", b"CollectMode", b"StandardOutputFileDescriptor"} & set(detached)
    assert detached[b"Description"] == b"d" and attached[b"TasksMax"] == INFINITY
