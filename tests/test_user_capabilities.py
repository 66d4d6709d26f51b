"""AddCapability= with a non-root User=, against a real systemd: the user's process gets the
added capabilities (effective, permitted, inheritable, ambient, as podman/crun give them), so
they survive its execve, and nothing else: never the default set, never what DropCapability=
takes away; no_new_privs stays on. Probed from inside: /proc/self/status of a process the
user's shell started, and busybox httpd binding port 80 (it binds, then goes to the
background, so the unit ends by itself)."""

from __future__ import annotations

import pytest

from tests.containers import ROOTFS, add_container, container, run_to_end
from tests.testbed import Testbed

PROBE = (
    "/bin/sh -c \"grep -E '^(Cap(Inh|Prm|Eff|Amb)|NoNewPrivs):' /proc/self/status; httpd -p 80 -h /tmp && echo BOUND\""
)
NET_BIND_SERVICE, NET_RAW = 1 << 10, 1 << 13


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def probe(bed: Testbed, name: str, keys: str) -> tuple[dict[str, str], bool]:
    add_container(bed, name, container(PROBE, f"User=65534\nNetwork=none\n{keys}"))
    run_to_end(bed, f"{name}.service")
    journal = bed.journal(f"{name}.service")
    status = {}
    for line in journal.splitlines():
        for field in ("CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs"):
            if f"{field}:" in line:
                status[field] = line.split(f"{field}:", 1)[1].strip()
    assert len(status) == 5, journal
    return status, "BOUND" in journal


def caps(mask: int) -> dict[str, str]:
    return {field: f"{mask:016x}" for field in ("CapInh", "CapPrm", "CapEff", "CapAmb")}


def test_an_added_capability_reaches_a_non_root_user(bed: Testbed) -> None:
    status, bound = probe(bed, "capuser", "AddCapability=CAP_NET_BIND_SERVICE\n")
    # exactly the one asked for: the default 11 stay out of the user's sets
    assert status == {**caps(NET_BIND_SERVICE), "NoNewPrivs": "1"}
    assert bound


def test_without_add_capability_a_user_has_none(bed: Testbed) -> None:
    status, bound = probe(bed, "nocapuser", "")
    assert status == {**caps(0), "NoNewPrivs": "1"}
    assert not bound


def test_drop_capability_wins_over_add_for_a_user(bed: Testbed) -> None:
    keys = "AddCapability=CAP_NET_BIND_SERVICE CAP_NET_RAW\nDropCapability=CAP_NET_BIND_SERVICE\n"
    status, bound = probe(bed, "dropuser", keys)
    assert status == {**caps(NET_RAW), "NoNewPrivs": "1"}
    assert not bound
