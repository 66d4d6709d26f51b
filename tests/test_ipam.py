"""sdcontainer.ipam: leases in a state directory of the test's own (tmp_path)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdcontainer.errors import NetworkError
from sdcontainer.ipam import Ipam, Pool

CHECKOUT = str(Path(__file__).resolve().parent.parent)


def backend(tmp_path: Path, subnets: tuple[str, ...] = ("10.90.0.0/24",)) -> Ipam:
    return Ipam.for_subnets("backend", subnets, state_dir=str(tmp_path))


def test_dynamic_leases_are_per_unit_and_stable(tmp_path: Path) -> None:
    ipam = backend(tmp_path, ("10.90.0.0/24", "fd90::/64"))
    assert ipam.gateways == ["10.90.0.1", "fd90::1"]
    assert ipam.lease("api.service") == ["10.90.0.2/24", "fd90::2/64"]
    assert ipam.lease("web.service") == ["10.90.0.3/24", "fd90::3/64"]
    assert ipam.lease("api.service") == ["10.90.0.2/24", "fd90::2/64"]  # again: the same
    assert ipam.leases() == {
        "10.90.0.2": "api.service",
        "fd90::2": "api.service",
        "10.90.0.3": "web.service",
        "fd90::3": "web.service",
    }
    assert (tmp_path / "backend" / "leases" / "10.90.0.2").read_text() == "api.service\n\n"


def test_static_address_honoured_or_refused(tmp_path: Path) -> None:
    ipam = backend(tmp_path, ("10.90.0.0/24", "fd90::/64"))
    assert ipam.lease("api.service", ["10.90.0.10", "fd90::0:10"], tag="inv1") == ["10.90.0.10/24", "fd90::10/64"]
    with pytest.raises(NetworkError, match=r"^10\.90\.0\.10 is already leased to api\.service$"):
        ipam.lease("web.service", ["10.90.0.10"])
    with pytest.raises(NetworkError, match=r"^10\.90\.0\.10 is already leased to api\.service$"):
        ipam.lease("web.service", ["10.90.0.10"], alive=lambda unit: True)
    assert "web.service" not in ipam.leases().values()  # the refusal leased nothing
    # api.service is gone: its address is taken over, and its index forgets it
    assert ipam.lease("web.service", ["10.90.0.10"], alive=lambda unit: unit != "api.service") == [
        "10.90.0.10/24",
        "fd90::2/64",
    ]
    assert ipam.leases()["10.90.0.10"] == "web.service"
    assert (tmp_path / "backend" / "units" / "api.service").read_text() == "fd90::10\n"
    # asking for another static address moves the unit's lease
    assert ipam.lease("web.service", ["10.90.0.11"]) == ["10.90.0.11/24", "fd90::2/64"]
    assert "10.90.0.10" not in ipam.leases()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.90.0.1", "10.90.0.1 cannot be leased on network backend: it is the gateway"),
        ("10.90.0.0", "10.90.0.0 cannot be leased on network backend: it is the network address of 10.90.0.0/24"),
        ("10.90.0.255", "10.90.0.255 cannot be leased on network backend: it is the broadcast address of 10.90.0.0/24"),
        ("10.91.0.5", "10.91.0.5 is not in a subnet of network backend (10.90.0.0/24)"),
        ("fd90::5", "fd90::5 is not in a subnet of network backend (10.90.0.0/24)"),
    ],
)
def test_static_address_that_cannot_be(tmp_path: Path, address: str, message: str) -> None:
    with pytest.raises(NetworkError) as e:
        backend(tmp_path).lease("api.service", [address])
    assert str(e.value) == message


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        backend(tmp_path).lease("api.service", ["10.90.0"])
    for unit in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="bad unit name"):
            backend(tmp_path).lease(unit)
    with pytest.raises(ValueError, match="host bits set"):
        Pool("10.90.0.1/24")
    with pytest.raises(ValueError, match="gateway 10.91.0.1 is not in 10.90.0.0/24"):
        Pool("10.90.0.0/24", gateway="10.91.0.1")


def test_exhaustion_and_takeover(tmp_path: Path) -> None:
    ipam = backend(tmp_path, ("10.90.0.0/29",))  # .1 gateway, .2-.6 hosts, .7 broadcast
    got = [ipam.lease(f"c{i}.service")[0] for i in range(5)]
    assert got == [f"10.90.0.{i}/29" for i in range(2, 7)]
    with pytest.raises(NetworkError) as e:
        ipam.lease("late.service", alive=lambda unit: True)
    assert str(e.value) == "network backend has no free address in 10.90.0.0/29: all 5 are leased to running units"
    assert ipam.lease("late.service", alive=lambda unit: unit != "c3.service") == ["10.90.0.5/29"]
    assert not (tmp_path / "backend" / "units" / "c3.service").exists()


def test_round_robin_does_not_reuse_at_once(tmp_path: Path) -> None:
    ipam = backend(tmp_path)
    assert ipam.lease("a.service") == ["10.90.0.2/24"]
    assert ipam.release("a.service") == ["10.90.0.2"]
    assert ipam.lease("b.service") == ["10.90.0.3/24"]


def test_ip_range(tmp_path: Path) -> None:
    ipam = Ipam("r", [Pool("10.90.0.0/24", gateway="10.90.0.1", ip_range="10.90.0.128/30")], state_dir=str(tmp_path))
    assert [ipam.lease(f"c{i}.service")[0] for i in range(4)] == [f"10.90.0.{i}/24" for i in range(128, 132)]
    with pytest.raises(NetworkError, match="no free address"):
        ipam.lease("c5.service")
    with pytest.raises(NetworkError, match=r"it is outside the range 10\.90\.0\.128-10\.90\.0\.131"):
        ipam.lease("c6.service", ["10.90.0.20"])


def test_release_is_idempotent_and_respects_the_tag(tmp_path: Path) -> None:
    ipam = backend(tmp_path)
    ipam.lease("api.service", tag="run-2")
    assert ipam.release("api.service", tag="run-1") == []  # an old run's stop: not ours
    assert ipam.leases() == {"10.90.0.2": "api.service"}
    assert ipam.release("api.service", tag="run-2") == ["10.90.0.2"]
    assert ipam.release("api.service") == []
    assert ipam.leases() == {} and not (tmp_path / "backend" / "units" / "api.service").exists()
    assert Ipam.for_subnets("never", ["10.1.0.0/24"], state_dir=str(tmp_path)).release("x.service") == []


def test_reclaim(tmp_path: Path) -> None:
    ipam = backend(tmp_path)
    for unit in ("a.service", "b.service", "c.service"):
        ipam.lease(unit)
    assert sorted(ipam.reclaim(lambda unit: unit == "b.service")) == ["10.90.0.2", "10.90.0.4"]
    assert ipam.leases() == {"10.90.0.3": "b.service"}


def test_crash_between_index_and_lease_is_repaired(tmp_path: Path) -> None:
    """The index is written first: a start killed right after it left an index line and no
    lease file; the next lease of that unit takes the address properly."""
    ipam = backend(tmp_path)
    ipam.lease("other.service")  # creates the directories; .2
    (tmp_path / "backend" / "units" / "api.service").write_text("10.90.0.7\n")
    assert ipam.lease("api.service") == ["10.90.0.7/24"]
    assert ipam.leases()["10.90.0.7"] == "api.service"


def test_fifty_processes_at_once_get_fifty_addresses(tmp_path: Path) -> None:
    """50 processes wait on one pipe, then lease on the same network at the same moment."""
    go_r, go_w = os.pipe()
    results = []
    pids = []
    for i in range(50):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(go_w)
                os.read(go_r, 1)  # blocks until the parent closes go_w
                address = backend(tmp_path, ("10.90.0.0/24", "fd90::/64")).lease(f"c{i}.service")
                os.write(w, " ".join(address).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        results.append(r)
        pids.append(pid)
    os.close(go_r)
    os.close(go_w)  # go
    answers = []
    for r in results:
        with os.fdopen(r) as f:
            answers.append(f.read().split())
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    assert statuses == [0] * 50
    v4 = [a[0] for a in answers]
    v6 = [a[1] for a in answers]
    assert len(set(v4)) == 50 and len(set(v6)) == 50
    leases = backend(tmp_path).leases()
    assert len(leases) == 100
    for i, (a4, a6) in enumerate(answers):
        assert leases[a4.split("/")[0]] == leases[a6.split("/")[0]] == f"c{i}.service"


def test_no_lock_across_networks(tmp_path: Path) -> None:
    """While network A's lock is held, a lease on network B goes through (a separate process,
    so the lock really is another holder's)."""
    Ipam.for_subnets("a", ["10.90.0.0/24"], state_dir=str(tmp_path)).lease("x.service")
    with open(tmp_path / "a" / "lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from sdcontainer.ipam import Ipam;"
            "print(Ipam.for_subnets('b', ['10.91.0.0/24'], state_dir=sys.argv[2]).lease('y.service')[0])"
        )
        out = subprocess.run(
            [sys.executable, "-I", "-c", code, CHECKOUT, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
    assert out.stdout.strip() == "10.91.0.2/24", out.stderr
