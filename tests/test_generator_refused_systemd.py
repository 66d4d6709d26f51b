"""A refused file, in a real systemd (tests/testbed.py): `systemctl start` fails at once and
`systemctl status` and `journalctl -u` say why, as FILE:LINE: MESSAGE, instead of "Unit
bad.service not found" (issue 14)."""

from __future__ import annotations

import pytest

from tests.containers import ROOTFS, UNITS, add_container, container, run_to_end
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def systemd_warnings_about(bed: Testbed, unit: str) -> list[str]:
    bed.run(["journalctl", "--sync"], check=False)
    out = bed.run(["journalctl", "-b", "_PID=1", "-p", "warning", "-o", "cat", "--no-pager"], check=False).stdout
    return [line for line in out.splitlines() if unit in line]


def test_a_refused_file_fails_to_start_and_says_why(bed: Testbed) -> None:
    add_container(bed, "good", container("/bin/true"), reload=False)
    # an unknown key, and what a good file would get beside its service: enabled, a socket
    add_container(
        bed,
        "bad",
        f"[Container]\nRootfs={ROOTFS}\nExec=/bin/true\nEnvironmnet=A=1\n"
        "[Socket]\nListenStream=127.0.0.1:8080\n[Install]\nWantedBy=multi-user.target\n",
    )  # daemon-reload, which must succeed
    message = f"{UNITS}/bad.container:4: unknown key Environmnet= in [Container]; did you mean Environment=?"
    assert bed.show("bad.service", "LoadState") == "loaded"
    assert systemd_warnings_about(bed, "bad.service") == []  # the reload said nothing about it
    assert bed.show("bad.socket", "LoadState") == "not-found"
    assert not bed.exists("/run/systemd/generator/multi-user.target.wants/bad.service")

    start = bed.systemctl("start", "bad.service", check=False)
    assert start.returncode != 0
    assert "not found" not in start.stderr, start.stderr
    assert bed.show("bad.service", "ActiveState") == "failed"

    status = bed.systemctl("status", "bad.service", "--lines=5", check=False)
    print(status.stdout)  # the report pastes it
    assert status.returncode == 3  # systemctl status: the unit is not active
    first = status.stdout.splitlines()[0]
    assert first.endswith(f"bad.service - Refused by sdcontainer-generator: {message}"), status.stdout
    assert "sdcontainer-generator[" in status.stdout and f"]: {message}" in status.stdout, status.stdout
    assert message in bed.journal("bad.service").splitlines()
    # at error priority, under the generator's name
    bed.run(["journalctl", "--sync"], check=False)
    errors = bed.run(["journalctl", "-u", "bad.service", "-p", "err", "-t", "sdcontainer-generator", "-o", "cat"])
    assert message in errors.stdout.splitlines(), errors.stdout

    run_to_end(bed, "good.service")  # the good file beside it is generated and runs
    assert bed.show("good.service", "Result") == "success", bed.journal("good.service")
    bed.run(["rm", f"{UNITS}/bad.container", f"{UNITS}/good.container"])
    bed.systemctl("reset-failed", "bad.service", check=False)
    bed.daemon_reload()
    assert bed.show("bad.service", "LoadState") == "not-found"


def test_every_error_of_a_refused_file_is_in_its_journal(bed: Testbed) -> None:
    add_container(bed, "twice", f"[Container]\nRootfs={ROOTFS}\nExec=/bin/true\nworkdir=/x\nPidsLimit=lots\n")
    first = f"{UNITS}/twice.container:4: unknown key workdir= in [Container]; did you mean WorkingDir=?"
    second = f"{UNITS}/twice.container:5: invalid PidsLimit=: 'lots' is not a number of processes (or -1 for no limit)"
    assert bed.systemctl("start", "twice.service", check=False).returncode != 0
    assert bed.show("twice.service", "Description") == f"Refused by sdcontainer-generator: {first} (and 1 more)"
    journal = bed.journal("twice.service").splitlines()
    assert first in journal and second in journal, journal
    bed.run(["rm", f"{UNITS}/twice.container"])
    bed.systemctl("reset-failed", "twice.service", check=False)
    bed.daemon_reload()
