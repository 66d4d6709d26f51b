"""The ExecStopPost= verb `release` (sdcontainer.release): a unit's leases on every network
and its published ports go, in a network namespace of the test's own (real nftables), and
a run whose record lists no published port is released without loading the firewall."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdcontainer import firewall, ipam, release, state
from sdcontainer.firewall import Firewall, PortMapping
from sdcontainer.record import replace
from tests.helpers import CHECKOUT
from tests.netns import in_netns
from tests.test_state import make


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "RUN_DIR", str(tmp_path))
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "containers"))
    monkeypatch.setattr(ipam, "STATE_DIR", str(tmp_path / "networks"))
    monkeypatch.setattr(firewall, "LOCK_PATH", str(tmp_path / "firewall.lock"))
    return tmp_path


def test_release_drops_the_units_leases_on_every_network_and_its_ports(dirs: Path) -> None:
    def run() -> dict[str, Any]:
        front = ipam.Ipam.for_subnets("front", ["10.90.0.0/24"])
        back = ipam.Ipam.for_subnets("back", ["10.91.0.0/24"])
        leased = front.lease("web.service", [], tag="run1") + back.lease("web.service", [], tag="run1")
        front.lease("db.service", [], tag="x")
        with Firewall() as fw:
            fw.publish("web.service", [PortMapping.parse("8080:80")], ipv4="10.90.0.2")
            fw.publish("db.service", [PortMapping.parse("5432:5432")], ipv4="10.90.0.3")
        # no record (a start killed before the launcher wrote one): the table is asked
        result: dict[str, Any] = {"released": release.release("web.service", "run1")}
        result["again"] = release.release("web.service", "run1")
        result["leases"] = {**front.leases(), **back.leases()}
        with Firewall() as fw:
            result["published"] = [p.unit for p in fw.published()]
        result["leased"] = leased
        return result

    r = in_netns(run)
    assert sorted(r["released"][0]) == sorted(a.partition("/")[0] for a in r["leased"])
    assert r["released"][1] == ["0.0.0.0:8080/tcp -> 10.90.0.2:80 (web.service)"]
    assert r["again"] == ([], [])
    assert list(r["leases"].values()) == ["db.service"] and r["published"] == ["db.service"]


def test_a_run_whose_record_lists_its_ports_has_them_released(dirs: Path) -> None:
    def run() -> tuple[list[str], list[str]]:
        with Firewall() as fw:
            fw.publish("web.service", [PortMapping.parse("80")], ipv4="10.90.0.2")
            chosen = fw.published("web.service")[0]
        state.write(replace(make(), ports=(f"0.0.0.0:{chosen.host_port}->80/tcp",)))
        released = release.release("web.service")[1]
        with Firewall() as fw:
            return released, [str(p) for p in fw.published()]

    released, left = in_netns(run)
    assert len(released) == 1 and "(web.service)" in released[0] and left == []


def test_a_run_that_published_nothing_is_released_without_the_firewall(dirs: Path) -> None:
    """The stop of most bridge units: the leases go, and neither libnftables (ctypes) nor
    the start path's modules are loaded."""
    state.write(make())  # its record: ports ()
    ipam.Ipam.for_subnets("sdcontainer", ["10.88.0.0/16"]).lease("web.service", [], tag="t")
    code = (
        "import os, sys\n"
        "from sdcontainer import ipam, state\n"
        f"state.RUN_DIR, state.STATE_DIR = {str(dirs)!r}, {str(dirs / 'containers')!r}\n"
        f"ipam.STATE_DIR = {str(dirs / 'networks')!r}\n"
        "os.environ['INVOCATION_ID'] = 't'\n"
        "from sdcontainer.verbs import run_verb\n"
        "status = run_verb('release', ['--unit', 'web.service'])\n"
        "heavy = ('sdcontainer.firewall', '_ctypes', 'sdcontainer.netlink', 'sdcontainer.values', 'sdcontainer.network')\n"
        "print(status, [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(CHECKOUT)!r})\n" + code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "0 []\n", done.stderr
    assert ipam.Ipam.for_subnets("sdcontainer", ["10.88.0.0/16"]).leases() == {}
