"""A file the generator accepts never fails to load in systemd (252) over a specifier: every
specifier the check lets through is one systemd resolves, in ExecStart= (where a bad one makes
systemd drop the line, and the unit with it: LoadState=bad-setting)."""

from __future__ import annotations

import pytest

from sdcontainer.keys import SPECIFIERS
from tests.containers import ROOTFS, add_container, container
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def test_every_accepted_specifier_loads(bed: Testbed) -> None:
    words = " ".join(f"x%{letter}" for letter in sorted(SPECIFIERS))
    add_container(bed, "spec", container(f"/bin/echo {words} 100%", f"Environment=ALL={words.replace(' ', '_')}\n"))
    assert bed.show("spec.service", "LoadState") == "loaded", bed.run(["journalctl", "-b", "--no-pager"]).stdout[-3000:]
    assert "Failed to resolve" not in bed.run(["journalctl", "-b", "--no-pager", "-u", "spec.service"]).stdout
    assert "/bin/echo" in bed.show("spec.service", "ExecStart")
