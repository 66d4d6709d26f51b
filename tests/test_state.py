"""The layout of the records (sdcontainer.state), on a temporary directory: the directory per
unit that systemd creates and removes (RuntimeDirectory=), and the older layout that a
container started before an upgrade still uses until it is restarted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdcontainer import state


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "RUN_DIR", str(tmp_path))
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "containers"))
    return tmp_path


def test_record_and_health_live_in_the_units_directory(run: Path) -> None:
    assert state.records() == [] and state.read("web.service") is None
    state.write("web.service", {"unit": "web.service", "pid": 7})
    assert (run / "containers" / "web.service" / "record.json").is_file()
    assert state.read("web.service") == {"unit": "web.service", "pid": 7}
    state.write_health("web.service", "7 1 0 0\n")
    assert (run / "containers" / "web.service" / "health").read_text() == "7 1 0 0\n"
    assert state.units() == ["web.service"]
    state.remove("web.service")
    assert not (run / "containers" / "web.service").exists() and state.records() == []


def test_record_and_health_are_root_only_whatever_the_umask(run: Path) -> None:
    (run / "containers" / "web.service").mkdir(mode=0o755, parents=True)  # as systemd makes it
    old = os.umask(0)
    try:
        state.write("web.service", {"unit": "web.service", "pid": 7})
        state.write_health("web.service", "7 1 0 0\n")
    finally:
        os.umask(old)
    directory = run / "containers" / "web.service"
    modes = [oct(p.stat().st_mode & 0o7777) for p in (directory, directory / "record.json", directory / "health")]
    assert modes == ["0o700", "0o600", "0o600"]


def test_a_health_check_after_the_stop_leaves_nothing(run: Path) -> None:
    state.write("web.service", {"unit": "web.service", "pid": 7})
    os.unlink(run / "containers" / "web.service" / "record.json")
    os.rmdir(run / "containers" / "web.service")  # what systemd does at stop
    state.write_health("web.service", "7 1 0 0\n")
    assert os.listdir(run / "containers") == []


def test_a_container_started_by_an_older_version(run: Path) -> None:
    (run / "containers").mkdir()
    (run / "containers" / "old.service.json").write_text('{"unit": "old.service", "pid": 9}\n')
    assert state.units() == ["old.service"] and state.read("old.service") == {"unit": "old.service", "pid": 9}
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
    state.write("web.service", {"unit": "web.service", "pid": 10})
    assert os.listdir(run / "containers") == ["web.service"] and os.listdir(run / "health") == []
    assert state.records() == [{"unit": "web.service", "pid": 10}]


@pytest.mark.parametrize("unit", ["", "a/b.service", ".hidden", "web@%i.service"])
def test_invalid_unit_names(run: Path, unit: str) -> None:
    with pytest.raises(state.UsageError):
        state.state_path(unit)
