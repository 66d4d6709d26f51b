"""The layout of the records (sdcontainer.state), on a temporary directory: the directory per
unit that systemd creates and removes (RuntimeDirectory=), and the older layout that a
container started before an upgrade still uses until it is restarted; the record itself
(ContainerRecord): its JSON, its version rules, and what is refused as unreadable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sdcontainer import enter, state, verbs
from sdcontainer.errors import ExecError
from sdcontainer.record import replace


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "RUN_DIR", str(tmp_path))
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "containers"))
    return tmp_path


def make(unit: str = "web.service", pid: int = 7) -> state.ContainerRecord:
    return state.ContainerRecord(
        name=unit.rpartition(".")[0], unit=unit, pid=pid, rootfs="/srv/rootfs/web", image=None, image_id=None,
        command=("/dev/init", "--", "/bin/httpd", "-f"), hostname="web", network="none",
        labels=(("app", "web"), ("tier", "front")), annotations=(), started="2026-11-27T17:31:31Z",
        user="www", group=None, group_add=("audio", "1001"), caps=0x800405FB, no_new_privileges=True,
        working_dir="/www", notify="yes", notify_socket="/run/systemd/notify",
    )  # fmt: skip


def test_record_and_health_live_in_the_units_directory(run: Path) -> None:
    assert state.records() == [] and state.read("web.service") is None
    state.write(make())
    assert (run / "containers" / "web.service" / "record.json").is_file()
    assert state.read("web.service") == make()
    state.write_health("web.service", "7 1 0 0\n")
    assert (run / "containers" / "web.service" / "health").read_text() == "7 1 0 0\n"
    assert state.units() == ["web.service"]
    state.remove("web.service")
    assert not (run / "containers" / "web.service").exists() and state.records() == []


def test_record_and_health_are_root_only_whatever_the_umask(run: Path) -> None:
    (run / "containers" / "web.service").mkdir(mode=0o755, parents=True)  # as systemd makes it
    old = os.umask(0)
    try:
        state.write(make())
        state.write_health("web.service", "7 1 0 0\n")
    finally:
        os.umask(old)
    directory = run / "containers" / "web.service"
    modes = [oct(p.stat().st_mode & 0o7777) for p in (directory, directory / "record.json", directory / "health")]
    assert modes == ["0o700", "0o600", "0o600"]


def test_a_health_check_after_the_stop_leaves_nothing(run: Path) -> None:
    state.write(make())
    os.unlink(run / "containers" / "web.service" / "record.json")
    os.rmdir(run / "containers" / "web.service")  # what systemd does at stop
    state.write_health("web.service", "7 1 0 0\n")
    assert os.listdir(run / "containers") == []


def test_a_container_started_by_an_older_version(run: Path) -> None:
    (run / "containers").mkdir()
    (run / "containers" / "old.service.json").write_text('{"unit": "old.service", "pid": 9}\n')
    assert state.units() == ["old.service"]
    old = state.read("old.service")
    assert old is not None and (old.unit, old.pid, old.version) == ("old.service", 9, state.VERSION)
    state.write_health("old.service", "9 1 0 0\n")  # beside the old record, where its stop removes it
    assert (run / "health" / "old.service").read_text() == "9 1 0 0\n"
    assert not (run / "containers" / "old.service").exists()
    assert state.cleanup(["--unit", "old.service"]) == 0  # the old unit's ExecStopPost=
    assert os.listdir(run / "containers") == [] and os.listdir(run / "health") == []


def test_a_new_start_replaces_what_an_older_version_left(run: Path) -> None:
    (run / "containers").mkdir()
    (run / "health").mkdir()
    (run / "containers" / "web.service.json").write_text('{"pid": 9}\n')
    (run / "health" / "web.service").write_text("9 2 0 0\n")
    state.write(make(pid=10))
    assert os.listdir(run / "containers") == ["web.service"] and os.listdir(run / "health") == []
    assert state.records() == [make(pid=10)]


@pytest.mark.parametrize("unit", ["", "a/b.service", ".hidden", "web@%i.service"])
def test_invalid_unit_names(run: Path, unit: str) -> None:
    with pytest.raises(state.UsageError):
        state.state_path(unit)


def written(run: Path, unit: str, value: object) -> Path:
    """A record file as something other than this version's writer left it."""
    directory = run / "containers" / unit
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "record.json").write_text(json.dumps(value) + "\n")
    return directory / "record.json"


def test_round_trip_through_the_json_the_readers_see(run: Path) -> None:
    for record in (make(), replace(make("r.service", 3), labels=(), group="www", caps=0, notify_socket=None)):
        state.write(record)
        assert state.read(record.unit) == record
    text = (run / "containers" / "web.service" / "record.json").read_text()
    found = json.loads(text)
    assert list(found) == [*state.ContainerRecord.__annotations__]  # the fields' order, version last
    assert found["version"] == state.VERSION == 2 and f'"pid": {make().pid},' in text
    assert found["labels"] == {"app": "web", "tier": "front"} and found["command"][2] == "/bin/httpd"
    assert found["group"] is None and found["caps"] == 0x800405FB
    assert state.records() == [
        replace(make("r.service", 3), labels=(), group="www", caps=0, notify_socket=None),
        make(),
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pid", "7", "pid: expected an integer"),
        ("pid", True, "pid: expected an integer"),
        ("pid", None, "pid: expected an integer"),
        ("caps", 1.5, "caps: expected an integer"),
        ("command", "/bin/sh", "command: expected an array of strings"),
        ("command", ["/bin/sh", 1], "command: expected an array of strings"),
        ("labels", {"app": 1}, "labels: expected an object of strings"),
        ("labels", [["app", "web"]], "labels: expected an object of strings"),
        ("no_new_privileges", "yes", "no_new_privileges: expected true or false"),
        ("user", 0, "user: expected a string"),
        ("working_dir", None, "working_dir: expected a string"),
        ("version", "1", "version '1'"),
        ("version", -1, "version -1"),
    ],
)
def test_a_field_of_the_wrong_type_is_unreadable(run: Path, field: str, value: object, expected: str) -> None:
    path = written(run, "web.service", {**state.to_dict(make()), field: value})
    with pytest.raises(state.RecordError) as error:
        state.read("web.service")
    assert str(error.value) == f"{path}: unreadable record: {expected}"


def test_a_missing_or_unknown_field_or_what_is_not_a_record_is_unreadable(run: Path) -> None:
    fields = state.to_dict(make())
    cases = [
        ({k: v for k, v in fields.items() if k != "caps"}, "missing field 'caps'"),
        ({**fields, "seccomp": False}, "unknown field 'seccomp'"),
        ({**fields, "unit": "other.service"}, "it is 'other.service''s"),
        ([fields], "not a JSON object"),
    ]
    for value, expected in cases:
        path = written(run, "web.service", value)
        with pytest.raises(state.RecordError) as error:
            state.read("web.service")
        assert str(error.value) == f"{path}: unreadable record: {expected}"
    path.write_text('{"pid": 7,')
    with pytest.raises(state.RecordError, match=r"record\.json: unreadable record: "):
        state.read("web.service")
    path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(state.RecordError, match=r"record\.json: unreadable record: not UTF-8$"):
        state.read("web.service")


def test_a_record_of_a_newer_version_is_refused_and_the_others_still_read(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written(run, "new.service", {**state.to_dict(make("new.service")), "version": 3, "cgroup": "/x"})
    state.write(make())
    message = (
        "new.service: record written by a newer sdcontainer (record version 3, this one reads up to 2);"
        " restart the container or upgrade"
    )
    with pytest.raises(state.RecordError) as error:
        state.read("new.service")
    assert str(error.value) == message
    unreadable: list[state.RecordError] = []
    assert state.records(unreadable) == [make()] and [str(e) for e in unreadable] == [message]
    # exec (ReloadCmd='s verb here) and a health check say so, as failures to run, not crashes
    assert enter.main(["exec", "--unit", "new.service", "--", "/bin/true"]) == 125
    assert capsys.readouterr().err == f"sdcontainer-launcher exec: {message}\n"
    with pytest.raises(ExecError) as exec_error:  # `sdcontainer exec new`: 125
        enter.find("new")
    assert str(exec_error.value) == message
    assert verbs.run_verb("health", ["--unit", "new.service", "--", "/bin/true"]) == 1
    assert capsys.readouterr().err == f"sdcontainer-health: {message}\n"


def test_a_record_an_older_version_wrote_is_converted(run: Path) -> None:
    """Version 0, no `version`: what the launcher wrote before it (here exactly as it did in
    8c7e302), in the unit's directory; and an early one without the fields exec needs, which
    reads as exec read it then (the default capabilities, no_new_privs, /)."""
    before: dict[str, object] = {
        "name": "web", "unit": "web.service", "pid": 7, "rootfs": "/srv/rootfs/web", "image": None,
        "image_id": None, "command": ["/dev/init", "--", "/bin/httpd", "-f"], "hostname": "web",
        "network": "none", "labels": {"app": "web", "tier": "front"}, "annotations": {},
        "started": "2026-11-27T17:31:31Z", "user": "www", "group": None, "group_add": ["audio", "1001"],
        "caps": 0x800405FB, "no_new_privileges": True, "working_dir": "/www", "notify": "yes",
        "notify_socket": "/run/systemd/notify",
    }  # fmt: skip
    written(run, "web.service", before)
    assert state.read("web.service") == make()
    early = {k: before[k] for k in ("name", "unit", "pid", "command", "started")}
    written(run, "early.service", {**early, "unit": "early.service", "working_dir": None})
    converted = state.read("early.service")
    assert converted == state.ContainerRecord(
        name="web", unit="early.service", pid=7, rootfs=None, image=None, image_id=None,
        command=("/dev/init", "--", "/bin/httpd", "-f"), hostname="", network="", labels=(), annotations=(),
        started="2026-11-27T17:31:31Z", user=None, group=None, group_add=(), caps=None, no_new_privileges=True,
        working_dir="/", notify="no", notify_socket=None,
    )  # fmt: skip
    written(run, "nopid.service", {"unit": "nopid.service"})
    with pytest.raises(state.RecordError, match=r"unreadable record: missing field 'pid'$"):
        state.read("nopid.service")


def test_version_2_records_addresses_and_published_ports_and_reads_version_1(run: Path) -> None:
    """Version 2 added `addresses` and `ports` (with the host port actually published, a free
    one for PublishPort=80); a version 1 record, from before, reads as having none."""
    networked = replace(make(), addresses=("10.88.0.5/16",), ports=("0.0.0.0:40123->80/tcp",))
    state.write(networked)
    assert state.read("web.service") == networked
    found = json.loads((run / "containers" / "web.service" / "record.json").read_text())
    assert found["addresses"] == ["10.88.0.5/16"] and found["ports"] == ["0.0.0.0:40123->80/tcp"]
    version_1 = {k: v for k, v in state.to_dict(make("one.service")).items() if k not in ("addresses", "ports")}
    written(run, "one.service", {**version_1, "version": 1})
    assert state.read("one.service") == make("one.service")
    written(run, "bad.service", {**state.to_dict(make("bad.service")), "ports": [80]})
    with pytest.raises(state.RecordError, match=r"unreadable record: ports: expected an array of strings$"):
        state.read("bad.service")
