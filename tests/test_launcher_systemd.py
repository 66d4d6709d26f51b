"""The launcher under a real systemd (tests/testbed.py): the hand-off the foreground tests
cannot show. The unit is written by hand, with the settings the generator uses
(Type=notify, NotifyAccess=all, KillMode=mixed), and runs the checkout's launcher with
Debian's python, so these tests need neither the generator nor an installed package."""

from __future__ import annotations

import time

import pytest

from tests.helpers import CHECKOUT
from tests.testbed import Testbed, checkout_inside

ROOTFS = "/srv/busybox"
PYTHON = "/usr/bin/python3"
# the checkout as the testbed shows it
CHECKOUT_INSIDE = checkout_inside(CHECKOUT)
LAUNCHER = (
    f"{PYTHON} -E -s -c \"import sys; sys.path.insert(0, '{CHECKOUT_INSIDE}'); "
    'from sdcontainer.launcher import main; sys.exit(main())"'
)
STOPPABLE = "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done"


def unit_text(name: str, script: str, rootfs: str = ROOTFS) -> str:
    return f"""[Service]
Type=notify
NotifyAccess=all
KillMode=mixed
TimeoutStopSec=20
ExecStart={LAUNCHER} start --unit {name}.service --name {name} --rootfs {rootfs} -- /bin/sh -c "{script}"
RuntimeDirectory=sdcontainer/containers/%n
"""


@pytest.fixture(scope="module")
def systemd(testbed: Testbed) -> Testbed:
    """The module's testbed with a busybox rootfs built inside it (on its overlay, as an
    image store would be)."""
    testbed.run(
        [
            PYTHON,
            "-c",
            f"import sys; sys.path.insert(0, {CHECKOUT_INSIDE!r}); "
            f"from tests.rootfs import build_busybox_rootfs; build_busybox_rootfs({ROOTFS!r})",
        ]
    )
    return testbed


def test_container_init_is_the_main_process_and_systemds_child(systemd: Testbed) -> None:
    systemd.add_unit("web.service", unit_text("web", STOPPABLE))
    systemd.start_unit("web.service")
    try:
        pid = systemd.show("web.service", "MainPID")
        status = systemd.run(["cat", f"/proc/{pid}/status"]).stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["NSpid"].split()[-1] == "1"  # PID 1 of its own namespace
        assert fields["PPid"].strip() == "1"  # the manager's own child, not an orphan elsewhere
        assert systemd.show("web.service", "ActiveState") == "active"
        state = systemd.read_file("/run/sdcontainer/containers/web.service/record.json")
        assert f'"pid": {pid},' in state
    finally:
        systemd.systemctl("stop", "web.service")
    journal = systemd.journal("web.service")
    assert "not our child" not in journal  # systemd 252 would not wait for an "alien" main PID
    assert "got TERM" in journal  # SIGTERM reached it and systemd waited for it to exit
    assert systemd.show("web.service", "Result") == "success"
    assert (
        systemd.run(["test", "-e", "/run/sdcontainer/containers/web.service"], check=False).returncode == 1
    )  # systemd removed the RuntimeDirectory=


def test_fast_exit_status_reaches_the_unit(systemd: Testbed) -> None:
    systemd.add_unit("seven.service", unit_text("seven", "exit 7"))
    systemd.start_unit("seven.service")
    for _ in range(100):
        if systemd.show("seven.service", "ActiveState") in ("failed", "inactive"):
            break
        time.sleep(0.05)
    assert systemd.show("seven.service", "ExecMainStatus") == "7"
    assert systemd.show("seven.service", "Result") == "exit-code"


def test_setup_failure_is_one_journal_line(systemd: Testbed) -> None:
    systemd.add_unit("broken.service", unit_text("broken", "true", rootfs="/srv/nope"))
    result = systemd.systemctl("start", "broken.service", check=False)
    assert result.returncode != 0
    journal = systemd.journal("broken.service")
    assert "sdcontainer-launcher: rootfs /srv/nope: No such file or directory" in journal
    assert "Traceback" not in journal
    assert systemd.show("broken.service", "ExecMainStatus") == "4"
