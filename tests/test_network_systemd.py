"""Bridge networking against a real systemd: `make install` into a testbed (which has a
network namespace of its own, the "host" here), .container files without Network= (the
default bridge network), and a second namespace made inside the testbed that plays another
host outside. Nothing here touches the real host's interfaces or nftables."""

from __future__ import annotations

import json

import pytest

from tests.containers import ROOTFS, add_container, container, wait_for
from tests.testbed import Testbed

LEASES = "/run/sdcontainer/networks/sdcontainer"
OUTSIDE = "192.0.2.2"  # the other host; the testbed is 192.0.2.1 on that link


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    tb = installed_testbed
    tb.copy_in(busybox_rootfs, ROOTFS)
    tb.write_file("/srv/www/index.html", "hello from api\n")
    tb.write_file("/srv/outside/index.html", "hello from outside\n")
    # the outside host: a netns of the testbed's, linked to it, with a web server of its own
    for argv in (
        ["ip", "netns", "add", "outside"],
        ["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", "outside"],
        ["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"],
        ["ip", "link", "set", "uplink", "up"],
        ["ip", "-n", "outside", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0"],
        ["ip", "-n", "outside", "link", "set", "eth0", "up"],
        ["ip", "-n", "outside", "link", "set", "lo", "up"],
    ):
        tb.run(argv)
    # no route back to 10.88.0.0/16 out there: only a masqueraded connection can be answered
    tb.popen(["ip", "netns", "exec", "outside", "busybox", "httpd", "-f", "-p", "9000", "-h", "/srv/outside"])
    return tb


def lease(bed: Testbed, unit: str) -> str:
    return bed.read_file(f"{LEASES}/units/{unit}").split()[0]


def in_netns_of(bed: Testbed, unit: str, *argv: str) -> str:
    """Run a host program in the container's network namespace only (its files are the
    testbed's busybox): what the container's network lets it reach."""
    pid = bed.show(unit, "MainPID")
    return bed.run(["nsenter", "-t", pid, "-n", *argv], check=False).stdout


def get(bed: Testbed, url: str, *, netns: str | None = None, unit: str | None = None) -> str:
    # (this busybox's `wget -T` segfaults; python3 is Debian's, the testbed's own)
    code = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    argv = ["python3", "-I", "-c", code, url]
    if unit:
        return in_netns_of(bed, unit, *argv)
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return bed.run(argv, check=False).stdout


def published(bed: Testbed) -> list[list[object]]:
    table = json.loads(bed.run(["nft", "-j", "list", "table", "inet", "sdcontainer"]).stdout)["nftables"]
    return [elem for obj in table if "map" in obj for elem in obj["map"].get("elem", [])]


def host_links(bed: Testbed) -> list[str]:
    return sorted(bed.run(["ls", "/sys/class/net"]).stdout.split())


API = container("/bin/httpd -f -p 80 -h /www", "Volume=/srv/www:/www:ro\nPublishPort=8080:80\nHostName=api\n")


def test_bridge_network_end_to_end(bed: Testbed) -> None:
    add_container(bed, "api", API)
    add_container(bed, "web", container("/bin/sleep infinity"))
    bed.start_unit("api.service")
    bed.start_unit("web.service")
    api, web = lease(bed, "api.service"), lease(bed, "web.service")
    assert api.startswith("10.88.") and web.startswith("10.88.") and api != web

    # the container's own view: eth0 with its address, its name in /etc/hosts
    pid = bed.show("api.service", "MainPID")
    assert f"inet {api}/16" in bed.run(["nsenter", "-t", pid, "-n", "ip", "-o", "addr", "show", "eth0"]).stdout
    assert f"{api}\tapi\n" in bed.read_file(f"/proc/{pid}/root/etc/hosts")
    assert "nameserver 127." not in bed.read_file(f"/proc/{pid}/root/etc/resolv.conf")

    # container to container by address, outbound through NAT, published port from
    # outside, from the host's 127.0.0.1 and from a container through the host (hairpin)
    assert wait_for(lambda: get(bed, f"http://{api}/", unit="web.service")) == "hello from api\n"
    assert get(bed, f"http://{OUTSIDE}:9000/", unit="web.service") == "hello from outside\n"
    assert get(bed, "http://192.0.2.1:8080/", netns="outside") == "hello from api\n"
    assert get(bed, "http://127.0.0.1:8080/") == "hello from api\n"
    assert get(bed, "http://10.88.0.1:8080/", unit="api.service") == "hello from api\n"

    # stop: the lease, the published port and the host's veth end are gone
    bed.systemctl("stop", "api.service", "web.service")
    assert not bed.exists(f"{LEASES}/leases/{api}") and not bed.exists(f"{LEASES}/leases/{web}")
    assert published(bed) == []
    assert [name for name in host_links(bed) if name.startswith("vsd")] == []
    assert get(bed, "http://127.0.0.1:8080/") == ""


def test_ip_is_honoured_and_refused_when_taken(bed: Testbed) -> None:
    add_container(bed, "fixed", container("/bin/sleep infinity", "IP=10.88.7.7\n"))
    add_container(bed, "fixed2", container("/bin/sleep infinity", "IP=10.88.7.7\n"))
    bed.start_unit("fixed.service")
    assert lease(bed, "fixed.service") == "10.88.7.7"
    assert bed.systemctl("start", "fixed2.service", check=False).returncode != 0
    assert "10.88.7.7 is already leased to fixed.service" in bed.journal("fixed2.service")
    assert not bed.exists(f"{LEASES}/units/fixed2.service")
    assert lease(bed, "fixed.service") == "10.88.7.7"
    bed.systemctl("stop", "fixed.service")


def test_a_host_port_clash_names_both_units(bed: Testbed) -> None:
    add_container(bed, "api", API)
    add_container(bed, "clash", container("/bin/sleep infinity", "PublishPort=8080:81\n"))
    bed.start_unit("api.service")
    assert bed.systemctl("start", "clash.service", check=False).returncode != 0
    journal = bed.journal("clash.service")
    assert "clash.service cannot publish 0.0.0.0:8080/tcp" in journal
    assert "already published by api.service" in journal, journal
    # the failed start left nothing: its lease went with its ExecStopPost=
    assert [p for p in published(bed) if "clash" in json.dumps(p)] == []
    assert not bed.exists(f"{LEASES}/units/clash.service")
    bed.systemctl("stop", "api.service")


def test_network_none_has_only_loopback(bed: Testbed) -> None:
    add_container(bed, "alone", container("/bin/sleep infinity", "Network=none\n"))
    bed.start_unit("alone.service")
    links = in_netns_of(bed, "alone.service", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert "ExecStopPost" not in bed.systemctl("cat", "alone.service").stdout
    bed.systemctl("stop", "alone.service")


def test_kill_9_leaks_nothing_and_the_restart_works(bed: Testbed) -> None:
    add_container(bed, "api", API)
    bed.start_unit("api.service")
    address = lease(bed, "api.service")
    bed.run(["kill", "-9", bed.show("api.service", "MainPID")])
    wait_for(lambda: bed.show("api.service", "ActiveState") in ("failed", "inactive"))
    assert not bed.exists(f"{LEASES}/leases/{address}")
    assert published(bed) == []
    wait_for(lambda: not [n for n in host_links(bed) if n.startswith("vsd")])
    assert [n for n in host_links(bed) if n.startswith("vsd")] == []
    bed.start_unit("api.service")
    assert lease(bed, "api.service").startswith("10.88.")
    assert wait_for(lambda: get(bed, "http://192.0.2.1:8080/", netns="outside")) == "hello from api\n"
    assert len(published(bed)) == 1
    bed.systemctl("stop", "api.service")
    assert published(bed) == []
