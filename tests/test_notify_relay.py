"""Notify=yes against a real systemd: what a container may tell the manager, and what not.

The container speaks sd_notify through /run/notify/notify.sock. The manager takes a message
from a root sender in the unit's cgroup at its word, MAINPID= naming any process of the
machine included, and a later `systemctl stop` would signal that process. These tests play a
hostile container (a static sd_notify client in the busybox rootfs) and look at systemd's own
view of the units (MainPID, StatusText, NFileDescriptorStore, Result); triggers are files the
container sees through a volume, so nothing depends on timing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers import NOTIFIER_C, ROOTFS, add_container, container, proc_status, unit_processes, wait_for
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def notifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tools/setup installs it)")
    work = tmp_path_factory.mktemp("notifier")
    (work / "notify.c").write_text(NOTIFIER_C)
    subprocess.run([gcc, "-static", "-O2", "-o", str(work / "notify"), str(work / "notify.c")], check=True)
    return work / "notify"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, notifier: Path) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.copy_in(str(notifier), "/srv/bin/notify")
    return installed_testbed


def notifying(name: str, script: str, extra: str = "", service: str = "") -> str:
    """A Notify=yes container running `script` with the notifier at /opt/bin/notify and
    /srv/trigger-NAME at /trigger; behind tini, so that SIGTERM stops it."""
    volumes = f"Notify=yes\nRunInit=yes\nVolume=/srv/trigger-{name}:/trigger\nVolume=/srv/bin:/opt/bin:ro\n"
    return container(f"/bin/sh -c '{script}'", volumes + extra, service)


def trigger_dir(bed: Testbed, name: str) -> str:
    path = f"/srv/trigger-{name}"
    bed.run(["rm", "-rf", path])
    bed.run(["mkdir", "-p", path])
    return path


def ours(bed: Testbed, unit: str) -> list[str]:
    """The unit's processes that are not the container's: those outside its pid namespace
    (one pid in NSpid, the testbed's), which can only be the launcher's."""
    found = []
    for pid in unit_processes(bed, unit):
        status = proc_status(bed, pid) if bed.exists(f"/proc/{pid}/status") else {}
        if len(status.get("NSpid", "").split()) == 1:
            found.append(status["Name"])
    return found


def test_a_container_cannot_make_systemctl_stop_kill_another_process(bed: Testbed) -> None:
    """The exploit: MAINPID=<a process of another unit>, then READY=1. systemd 252 accepts a
    new main PID outside the unit's cgroup from a root sender, and `systemctl stop` of the
    container would then SIGTERM that process instead of the container."""
    bed.add_unit("victim.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    bed.start_unit("victim.service")
    victim = bed.show("victim.service", "MainPID")
    assert victim not in ("", "0")
    trigger = trigger_dir(bed, "spoof")
    bed.write_file(f"{trigger}/victim", victim + "\n")
    script = 'v=$(cat /trigger/victim); exec /opt/bin/notify "$(printf "MAINPID=$v\\nREADY=1")" /bin/sleep 1000'
    add_container(bed, "spoof", notifying("spoof", script))
    bed.start_unit("spoof.service")  # returns once READY=1 made it active
    main_pid = bed.show("spoof.service", "MainPID")
    processes = unit_processes(bed, "spoof.service")
    bed.systemctl("stop", "spoof.service")
    victim_state = bed.show("victim.service", "ActiveState")
    assert victim_state == "active", bed.journal("victim.service")
    assert bed.show("victim.service", "MainPID") == victim
    # the container's init stayed the main process: what `stop` signalled was the container
    assert main_pid != victim and main_pid in processes
    assert "does not belong to service" not in bed.journal("spoof.service")
    bed.systemctl("stop", "victim.service")


def test_ready_and_status_reach_the_manager(bed: Testbed) -> None:
    trigger = trigger_dir(bed, "status")
    script = (
        '/opt/bin/notify "STATUS=warming up" /bin/touch /trigger/said-status; '
        "while [ ! -e /trigger/ready ]; do sleep 0.05; done; "
        '/opt/bin/notify "$(printf "READY=1\\nSTATUS=serving")" /bin/true; '
        "while [ ! -e /trigger/late ]; do sleep 0.05; done; "
        '/opt/bin/notify "STATUS=said after READY" /bin/true; echo $? > /trigger/late-status.tmp; '
        "mv /trigger/late-status.tmp /trigger/late-status; exec sleep 1000"
    )
    add_container(bed, "status", notifying("status", script))
    bed.systemctl("start", "--no-block", "status.service")
    assert wait_for(lambda: bed.exists(f"{trigger}/said-status"))
    assert wait_for(lambda: bed.show("status.service", "StatusText") == "warming up")
    assert bed.show("status.service", "ActiveState") == "activating"
    assert ours(bed, "status.service") == ["sdcontainer-lau"]  # the launcher relays until READY=1
    bed.write_file(f"{trigger}/ready", "")
    assert wait_for(lambda: bed.show("status.service", "ActiveState") == "active")
    assert bed.show("status.service", "StatusText") == "serving"
    # after READY=1 nothing of ours stays: the unit holds the container's processes only
    assert wait_for(lambda: not ours(bed, "status.service")), ours(bed, "status.service")
    # and the socket has no reader any more: a later message is refused, not queued
    bed.write_file(f"{trigger}/late", "")
    assert wait_for(lambda: bed.exists(f"{trigger}/late-status"))
    assert bed.read_file(f"{trigger}/late-status").strip() == "3"  # connect(): ECONNREFUSED
    assert bed.show("status.service", "StatusText") == "serving"
    bed.systemctl("stop", "status.service")
    assert bed.show("status.service", "Result") == "success"


def test_fds_and_fdstore_from_the_container_are_dropped(bed: Testbed) -> None:
    """FDSTORE=1 with an fd (SCM_RIGHTS): the unit allows a store, the container may not fill it."""
    trigger_dir(bed, "fds")
    script = (
        '/opt/bin/notify -f "$(printf "FDSTORE=1\\nFDNAME=planted")" /bin/true; '
        "exec /opt/bin/notify READY=1 /bin/sleep 1000"
    )
    add_container(bed, "fds", notifying("fds", script, service="FileDescriptorStoreMax=8"))
    bed.start_unit("fds.service")
    try:
        assert bed.show("fds.service", "FileDescriptorStoreMax") == "8"
        assert bed.show("fds.service", "NFileDescriptorStore") == "0"
    finally:
        bed.systemctl("stop", "fds.service")


def test_a_watchdog_container_that_pings_keeps_running(bed: Testbed) -> None:
    trigger = trigger_dir(bed, "dog")
    script = (
        "env > /trigger/env; /opt/bin/notify READY=1 /bin/true; n=0; "
        "while [ ! -e /trigger/quiet ]; do /opt/bin/notify WATCHDOG=1 /bin/true; "
        "n=$((n+1)); echo $n > /trigger/pings; sleep 0.2; done; exec sleep 1000"
    )
    add_container(bed, "dog", notifying("dog", script, service="WatchdogSec=3s"))
    bed.start_unit("dog.service")
    main_pid = bed.show("dog.service", "MainPID")
    env = bed.read_file(f"{trigger}/env").splitlines()
    assert "WATCHDOG_USEC=3000000" in env and "WATCHDOG_PID=2" in env  # tini is 1

    def pings() -> int:
        text = bed.read_file(f"{trigger}/pings").strip() if bed.exists(f"{trigger}/pings") else ""
        return int(text) if text.isdigit() else 0

    # 40 pings, 0.2 s apart: more than twice WatchdogSec=3s, and the unit is still the same
    # (a machine so loaded that a ping came 3 s late would fail this; the pings are cheap)
    assert wait_for(lambda: pings() >= 40, timeout=120)
    assert bed.show("dog.service", "ActiveState") == "active"
    assert bed.show("dog.service", "MainPID") == main_pid
    # the relay stays for the pings, and only with a watchdog
    assert ours(bed, "dog.service") == ["sdcontainer-lau"]  # the launcher's script, by its name
    # the control: once the pings stop, the watchdog fires, so it was the pings that counted
    bed.write_file(f"{trigger}/quiet", "")
    assert wait_for(lambda: bed.show("dog.service", "ActiveState") in ("failed", "inactive"), timeout=30)
    assert bed.show("dog.service", "Result") == "watchdog"
    bed.systemctl("reset-failed", "dog.service", check=False)
