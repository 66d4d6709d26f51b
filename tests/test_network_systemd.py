"""Bridge networking against a real systemd: `make install` into a testbed (which has a
network namespace of its own, the "host" here), .container files without Network= (the
default bridge network), and a second namespace made inside the testbed that plays another
host outside. Nothing here touches the real host's interfaces or nftables."""

from __future__ import annotations

import json

import pytest

from tests.containers import ROOTFS, add_container, container, unit_processes, wait_for
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


# --- Network=container:NAME / NAME.container ------------------------------------------------------


def record_of(bed: Testbed, unit: str) -> dict[str, object]:
    found = json.loads(bed.read_file(f"/run/sdcontainer/containers/{unit}/record.json"))
    assert isinstance(found, dict)
    return found


def test_network_container_joins_the_other_containers_namespace(bed: Testbed) -> None:
    add_container(bed, "api", API)
    add_container(bed, "side", container("/bin/sleep infinity", "Network=api.container\nHostName=side\nRunInit=yes\n"))
    unit_text = bed.systemctl("cat", "side.service").stdout
    assert "Requires=api.service" in unit_text and "After=api.service" in unit_text
    assert "ExecStopPost" not in unit_text  # nothing leased: nothing to release
    bed.start_unit("side.service")  # starts api.service first
    assert bed.show("api.service", "ActiveState") == "active"
    api_pid, side_pid = bed.show("api.service", "MainPID"), bed.show("side.service", "MainPID")
    assert (
        bed.run(["readlink", f"/proc/{api_pid}/ns/net"]).stdout
        == bed.run(["readlink", f"/proc/{side_pid}/ns/net"]).stdout
    )
    # the UTS namespace stays its own; api's server answers on side's loopback
    assert bed.read_file(f"/proc/{side_pid}/root/etc/hostname").strip() == "side"
    assert wait_for(lambda: get(bed, "http://127.0.0.1:80/", unit="side.service")) == "hello from api\n"
    address = lease(bed, "api.service")
    assert f"{address}\tside api\n" in bed.read_file(f"/proc/{side_pid}/root/etc/hosts")
    side = record_of(bed, "side.service")
    assert side["network"] == "api.container" and side["addresses"] == [f"{address}/16"] and side["ports"] == []
    assert record_of(bed, "api.service")["ports"] == ["0.0.0.0:8080->80/tcp"]
    assert not bed.exists(f"{LEASES}/units/side.service")

    # container:NAME, by ContainerName= (or unit); stopping api stops side (Requires=)
    add_container(bed, "peer", container("/bin/sleep infinity", "Network=container:api\nRunInit=yes\n"))
    bed.start_unit("peer.service")
    peer_pid = bed.show("peer.service", "MainPID")
    assert (
        bed.run(["readlink", f"/proc/{peer_pid}/ns/net"]).stdout
        == bed.run(["readlink", f"/proc/{api_pid}/ns/net"]).stdout
    )
    bed.systemctl("stop", "peer.service", "api.service")
    assert bed.show("side.service", "ActiveState") == "inactive"
    # not running: a clear error, and nothing started
    assert bed.systemctl("start", "peer.service", check=False).returncode != 0
    assert "Network=container:api: container 'api' is not running" in bed.journal("peer.service")
    assert bed.show("api.service", "ActiveState") != "active"  # container: does not start it
    assert published(bed) == []


def test_publish_port_without_a_host_port_gets_a_free_one(bed: Testbed) -> None:
    body = "Volume=/srv/www:/www:ro\nPublishPort=80\nPublishPort=127.0.0.1::80/udp\n"
    add_container(bed, "rnd", container("/bin/httpd -f -p 80 -h /www", body))
    bed.start_unit("rnd.service")
    ports = record_of(bed, "rnd.service")["ports"]
    assert isinstance(ports, list) and len(ports) == 2
    tcp, udp = ports
    assert tcp.startswith("0.0.0.0:") and tcp.endswith("->80/tcp") and udp.startswith("127.0.0.1:")
    host_port = int(tcp.partition(":")[2].partition("-")[0])
    low, high = (int(n) for n in bed.read_file("/proc/sys/net/ipv4/ip_local_port_range").split())
    assert low <= host_port <= high
    assert f"published {tcp} (a free host port)" in bed.journal("rnd.service")
    assert wait_for(lambda: get(bed, f"http://127.0.0.1:{host_port}/")) == "hello from api\n"
    assert get(bed, f"http://192.0.2.1:{host_port}/", netns="outside") == "hello from api\n"
    listed = json.loads(bed.run(["sdcontainer", "list", "--format", "json"]).stdout)
    assert [c["ports"] for c in listed if c["unit"] == "rnd.service"] == [ports]
    bed.systemctl("stop", "rnd.service")
    assert published(bed) == []


# --- cleanup when the launcher is killed at each step --------------------------------------------

KILLED = container(
    "/bin/httpd -f -p 80 -h /www",
    "Volume=/srv/www:/www:ro\nPublishPort=8181:80\n",
    "Environment=SDCONTAINER_TEST_KILL_AT={}",
)


@pytest.mark.parametrize("step", ["lease", "bridge", "veth", "firewall", "publish"])
def test_the_launcher_killed_at_each_network_step_leaves_nothing(bed: Testbed, step: str) -> None:
    """SIGKILL of the launcher right after each step of the bridge setup: systemd's
    ExecStopPost= releases the lease and the published port, the veth dies with the netns,
    the half-made container never runs its command, and the next start works."""
    unit = "killed.service"
    add_container(bed, "killed", KILLED.format(step))
    assert bed.systemctl("start", unit, check=False).returncode != 0
    wait_for(lambda: bed.show(unit, "ActiveState") in ("failed", "inactive"))
    assert bed.show(unit, "ExecMainStatus") == "9" or "SIGKILL" in bed.show(unit, "Result") + bed.journal(unit)
    assert not bed.exists(f"{LEASES}/units/{unit}")
    assert [p for p in published(bed) if unit in json.dumps(p)] == []
    ifname = bed.run(["python3", "-c", f"import zlib; print('vsd%08x' % zlib.crc32(b'{unit}'))"]).stdout.strip()
    assert wait_for(lambda: ifname not in host_links(bed)), f"{ifname} is left"
    assert unit_processes(bed, unit) == []
    if step != "lease":  # the init was waiting for the go: it did not run httpd
        assert "the launcher ended before the container could start" in bed.journal(unit)
    add_container(bed, "killed", KILLED.format(""))
    bed.start_unit(unit)
    assert wait_for(lambda: get(bed, "http://127.0.0.1:8181/")) == "hello from api\n"
    bed.systemctl("stop", unit)
    assert published(bed) == [] and not bed.exists(f"{LEASES}/units/{unit}")


# --- many at once -----------------------------------------------------------------------------


def test_fifty_units_started_at_once_get_fifty_addresses(bed: Testbed) -> None:
    import time

    add_container(bed, "many@", container("/bin/httpd -f -p 80 -h /www", "Volume=/srv/www:/www:ro\n"))
    units = [f"many@{i}.service" for i in range(1, 51)]
    t0 = time.monotonic()
    bed.systemctl("start", *units)
    took = time.monotonic() - t0
    print(f"\n50 units started with one systemctl start: {took:.2f} s")
    addresses = [lease(bed, u) for u in units]
    assert len(set(addresses)) == 50 and all(a.startswith("10.88.") for a in addresses)
    code = (
        "import sys, urllib.request\n"
        "for a in sys.argv[1:]:\n"
        "    for _ in range(50):\n"
        "        try:\n"
        "            print(a, urllib.request.urlopen(f'http://{a}/', timeout=5).read().decode().strip()); break\n"
        "        except OSError:\n"
        "            import time; time.sleep(0.1)\n"
        "    else:\n"
        "        print(a, 'unreachable')\n"
    )
    answers = bed.run(["python3", "-I", "-c", code, *addresses]).stdout.splitlines()
    assert answers == [f"{a} hello from api" for a in addresses]
    bed.systemctl("stop", *units)
    assert [u for u in units if bed.exists(f"{LEASES}/units/{u}")] == []
    assert bed.run(["ls", f"{LEASES}/leases"]).stdout.split() == []
    assert published(bed) == []
    assert wait_for(lambda: not [n for n in host_links(bed) if n.startswith("vsd")])
