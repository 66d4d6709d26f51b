"""The container's record lives in the unit's RuntimeDirectory=, which systemd removes at
every stop, however the unit ends: no ExecStopPost= process, and nothing left behind."""

from __future__ import annotations

import json

import pytest

from tests.containers import ROOTFS, add_container, container, run_to_end, wait_for
from tests.testbed import Testbed

CONTAINERS = "/run/sdcontainer/containers"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def listed(bed: Testbed) -> list[dict[str, object]]:
    return json.loads(bed.run(["sdcontainer", "list", "--format", "json"]).stdout)


def record(bed: Testbed, unit: str) -> dict[str, object]:
    return json.loads(bed.read_file(f"{CONTAINERS}/{unit}/record.json"))


def nothing_left(bed: Testbed, unit: str) -> None:
    assert not bed.exists(f"{CONTAINERS}/{unit}")
    assert unit not in [r["unit"] for r in listed(bed)]


def test_the_unit_has_no_stop_process(bed: Testbed) -> None:
    # without a network to release: on the default bridge network the stop releases the
    # address and the published ports (ExecStopPost= ... release, tests/test_network_systemd.py)
    add_container(bed, "plain", container("/bin/sleep 1000", "Network=none\n"))
    assert bed.show("plain.service", "ExecStopPost") == ""
    assert bed.show("plain.service", "RuntimeDirectory") == "sdcontainer/containers/plain.service"
    add_container(bed, "bridged", container("/bin/sleep 1000"))
    assert "release --unit bridged.service" in bed.show("bridged.service", "ExecStopPost")


def test_stop_removes_the_record(bed: Testbed) -> None:
    add_container(bed, "stopped", container("/bin/sleep 1000", "RunInit=yes\n"))
    bed.start_unit("stopped.service")
    pid = bed.show("stopped.service", "MainPID")
    assert record(bed, "stopped.service")["pid"] == int(pid)
    assert [r["unit"] for r in listed(bed)] == ["stopped.service"]
    bed.systemctl("stop", "stopped.service")
    assert bed.show("stopped.service", "Result") == "success"
    nothing_left(bed, "stopped.service")
    assert listed(bed) == []


def test_sigkill_of_the_init_removes_the_record_and_a_restart_writes_a_fresh_one(bed: Testbed) -> None:
    add_container(bed, "killed", container("/bin/sleep 1000"))
    bed.start_unit("killed.service")
    first = bed.show("killed.service", "MainPID")
    bed.run(["kill", "-9", first])
    assert wait_for(lambda: bed.show("killed.service", "ActiveState") == "failed")
    nothing_left(bed, "killed.service")
    bed.start_unit("killed.service")
    second = bed.show("killed.service", "MainPID")
    assert second != first and record(bed, "killed.service")["pid"] == int(second)
    # systemctl restart: the directory goes with the old init, the record is the new one's
    bed.systemctl("restart", "killed.service")
    third = bed.show("killed.service", "MainPID")
    assert third != second and record(bed, "killed.service")["pid"] == int(third)
    bed.systemctl("stop", "killed.service")
    nothing_left(bed, "killed.service")


def test_an_automatic_restart_writes_a_fresh_record(bed: Testbed) -> None:
    add_container(bed, "again", container("/bin/sleep 1000", service="Restart=always\nRestartSec=100ms"))
    bed.start_unit("again.service")
    first = bed.show("again.service", "MainPID")
    bed.run(["kill", "-9", first])
    assert wait_for(
        lambda: bed.show("again.service", "ActiveState") == "active" and bed.show("again.service", "MainPID") != first
    )
    second = bed.show("again.service", "MainPID")
    assert record(bed, "again.service")["pid"] == int(second)
    assert [r["pid"] for r in listed(bed) if r["unit"] == "again.service"] == [int(second)]
    bed.systemctl("stop", "again.service")
    nothing_left(bed, "again.service")


def test_a_failed_start_leaves_nothing(bed: Testbed) -> None:
    # the launcher fails before the hand-off
    add_container(bed, "noroot", container("/bin/true").replace(ROOTFS, "/srv/no-such-root"))
    run_to_end(bed, "noroot.service")
    assert bed.show("noroot.service", "Result") == "exit-code"
    nothing_left(bed, "noroot.service")
    # the container's own execve fails after the hand-off
    add_container(bed, "nocmd", container("/bin/no-such-command"))
    run_to_end(bed, "nocmd.service")
    assert bed.show("nocmd.service", "ExecMainStatus") == "127"
    nothing_left(bed, "nocmd.service")


def test_sdcontainer_run_attached_and_detached_leave_nothing(bed: Testbed) -> None:
    result = bed.run(["sdcontainer", "run", "--unit", "ran", ROOTFS, "/bin/sh", "-c", "exit 3"], check=False)
    assert result.returncode == 3, result.stderr
    nothing_left(bed, "ran.service")
    result = bed.run(["sdcontainer", "run", "-d", "--unit", "bg", ROOTFS, "/bin/sleep", "1000"], check=False)
    assert result.returncode == 0, result.stderr
    assert bed.show("bg.service", "RuntimeDirectory") == "sdcontainer/containers/bg.service"
    assert record(bed, "bg.service")["pid"] == int(bed.show("bg.service", "MainPID"))
    assert [r["unit"] for r in listed(bed)] == ["bg.service"]
    bed.systemctl("stop", "bg.service")
    nothing_left(bed, "bg.service")
    assert listed(bed) == []


def test_unit_names_with_a_colon_or_an_escape(bed: Testbed) -> None:
    """ ":" separates a symlink in a RuntimeDirectory= line, but systemd splits before it
    expands %n, and a D-Bus property is a path as it is: both work."""
    add_container(bed, "co:lon", container("/bin/sleep 1000"))
    bed.start_unit("co:lon.service")
    assert record(bed, "co:lon.service")["unit"] == "co:lon.service"
    bed.systemctl("stop", "co:lon.service")
    nothing_left(bed, "co:lon.service")
    result = bed.run(["sdcontainer", "run", "-d", "--unit", "r:un", ROOTFS, "/bin/sleep", "1000"], check=False)
    assert result.returncode == 0, result.stderr
    assert record(bed, "r:un.service")["pid"] == int(bed.show("r:un.service", "MainPID"))
    bed.systemctl("stop", "r:un.service")
    nothing_left(bed, "r:un.service")


def test_a_users_runtime_directory_still_exists(bed: Testbed) -> None:
    add_container(bed, "own", container("/bin/sleep 1000", service="RuntimeDirectory=own-app own-app/sub"))
    bed.start_unit("own.service")
    assert bed.exists("/run/own-app/sub")
    assert record(bed, "own.service")["unit"] == "own.service"
    bed.systemctl("stop", "own.service")
    assert not bed.exists("/run/own-app")
    nothing_left(bed, "own.service")
    # an empty RuntimeDirectory= resets the user's list, not the record's directory
    add_container(bed, "reset", container("/bin/sleep 1000", service="RuntimeDirectory=gone\nRuntimeDirectory="))
    bed.start_unit("reset.service")
    assert not bed.exists("/run/gone")
    assert record(bed, "reset.service")["unit"] == "reset.service"
    bed.systemctl("stop", "reset.service")
    nothing_left(bed, "reset.service")


def test_a_unit_generated_before_runtime_directory_still_cleans_up(bed: Testbed) -> None:
    """Until daemon-reload, a unit generated by an older version has no RuntimeDirectory= and
    runs `sdcontainer-launcher cleanup` at stop: the verb stays and removes the directory."""
    add_container(bed, "legacy", container("/bin/sleep 1000"))
    text = bed.run(["systemctl", "cat", "legacy.service"]).stdout
    launcher = next(line for line in text.splitlines() if line.startswith("ExecStart=")).split()[0][len("ExecStart=") :]
    old = "\n".join(
        line for line in text.splitlines() if not line.startswith("#") and not line.startswith("RuntimeDirectory=")
    )
    old += f"\nExecStopPost={launcher} cleanup --unit %n\n"
    bed.add_unit("legacy-old.service", old.replace("legacy.service", "legacy-old.service"))
    bed.start_unit("legacy-old.service")
    assert bed.show("legacy-old.service", "RuntimeDirectory") == ""
    assert record(bed, "legacy-old.service")["pid"] == int(bed.show("legacy-old.service", "MainPID"))
    bed.systemctl("stop", "legacy-old.service")
    nothing_left(bed, "legacy-old.service")
