"""Named networks against a real systemd: `.network` files and their NAME-network.service,
containers on them finding each other by address and by name (IPv4 and IPv6), an internal
network without a way out, and `sdcontainer network`. The testbed has a network namespace
of its own (the "host" here); a second one made inside it plays another host outside."""

from __future__ import annotations

import json

import pytest

from tests.containers import ROOTFS, UNITS, add_container, container, wait_for
from tests.testbed import Testbed

OUTSIDE = "192.0.2.2"  # the other host; the testbed is 192.0.2.1 on that link
OUTSIDE6 = "fd99::2"  # and fd99::1
BACKEND = "[Network]\nSubnet=10.90.0.0/24\nGateway=10.90.0.1\nSubnet=fd00:90::/64\nDNS=192.0.2.53\n"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    tb = installed_testbed
    tb.copy_in(busybox_rootfs, ROOTFS)
    tb.write_file("/srv/www/index.html", "hello from api\n")
    tb.write_file("/srv/outside/index.html", "hello from outside\n")
    for argv in (
        ["ip", "netns", "add", "outside"],
        ["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", "outside"],
        ["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"],
        ["ip", "link", "set", "uplink", "up"],
        ["ip", "-n", "outside", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0"],
        ["ip", "-n", "outside", "link", "set", "eth0", "up"],
        ["ip", "-n", "outside", "link", "set", "lo", "up"],
        ["ip", "addr", "add", "fd99::1/64", "dev", "uplink", "nodad"],
        ["ip", "-n", "outside", "addr", "add", f"{OUTSIDE6}/64", "dev", "eth0", "nodad"],
    ):
        tb.run(argv)
    tb.popen(["ip", "netns", "exec", "outside", "busybox", "httpd", "-f", "-p", "9000", "-h", "/srv/outside"])
    return tb


def in_netns_of(bed: Testbed, unit: str, *argv: str) -> str:
    pid = bed.show(unit, "MainPID")
    return bed.run(["nsenter", "-t", pid, "-n", *argv], check=False).stdout


CODE = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def get(bed: Testbed, url: str, unit: str) -> str:
    return in_netns_of(bed, unit, "python3", "-I", "-c", CODE, url)


def get_from_outside(bed: Testbed, url: str) -> str:
    return bed.run(["ip", "netns", "exec", "outside", "python3", "-I", "-c", CODE, url], check=False).stdout


def in_container(bed: Testbed, unit: str, *argv: str) -> str:
    """Run a program of the container's own (busybox) in all its namespaces."""
    pid = bed.show(unit, "MainPID")
    return bed.run(["nsenter", "-t", pid, "-a", *argv], check=False).stdout


def hosts_of(bed: Testbed, unit: str) -> str:
    return bed.read_file(f"/proc/{bed.show(unit, 'MainPID')}/root/etc/hosts")


def address_of(bed: Testbed, unit: str, family: str = "inet") -> str:
    out = in_netns_of(bed, unit, "ip", "-o", "-f", family, "addr", "show", "eth0", "scope", "global")
    return out.split()[3].partition("/")[0]


API = "/bin/httpd -f -p 80 -h /www"


def test_two_containers_on_a_network_file_reach_each_other_by_address_and_name(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/backend.network", BACKEND)
    add_container(
        bed,
        "api",
        container(
            API,
            "Volume=/srv/www:/www:ro\nNetwork=backend.network\nHostName=apihost\nNetworkAlias=apiserver\n"
            "PublishPort=8080:80\n",
        ),
    )
    add_container(bed, "web", container("/bin/sleep infinity", "Network=backend.network\nIP=10.90.0.20\n"))
    bed.start_unit("api.service")
    # the container pulled its network's service in, which made the bridge with its gateways
    assert bed.show("backend-network.service", "ActiveState") == "active"
    network = json.loads(bed.run(["sdcontainer", "network", "inspect", "systemd-backend"]).stdout)[0]
    bridge = network["bridge"]
    assert len(bridge) <= 15
    shown = bed.run(["ip", "-o", "addr", "show", "dev", bridge]).stdout
    assert "10.90.0.1/24" in shown and "fd00:90::1/64" in shown

    # started after api: web is in api's hosts file, api in web's, each under its names
    bed.start_unit("web.service")
    api4, api6 = address_of(bed, "api.service"), address_of(bed, "api.service", "inet6")
    assert api4.startswith("10.90.0.") and api6.startswith("fd00:90::")
    assert address_of(bed, "web.service") == "10.90.0.20"
    assert wait_for(lambda: "10.90.0.20\tweb" in hosts_of(bed, "api.service")), hosts_of(bed, "api.service")
    web_hosts = hosts_of(bed, "web.service")
    assert f"{api4}\tapi apihost apiserver\n" in web_hosts and f"{api6}\tapi apihost apiserver\n" in web_hosts
    # the network's DNS= is the containers' name server
    pid = bed.show("web.service", "MainPID")
    assert "nameserver 192.0.2.53" in bed.read_file(f"/proc/{pid}/root/etc/resolv.conf")

    # by address (v4 and v6) and by name, through the container's own resolver (busybox wget)
    assert wait_for(lambda: get(bed, f"http://{api4}/", "web.service")) == "hello from api\n"
    assert get(bed, f"http://[{api6}]/", "web.service") == "hello from api\n"
    for name in ("api", "apihost", "apiserver"):
        fetched = in_container(bed, "web.service", "wget", "-q", "-O", "-", f"http://{name}/")
        assert fetched == "hello from api\n", name
    # outbound through NAT (the network is not internal); the published port on both families
    assert get(bed, f"http://{OUTSIDE}:9000/", "web.service") == "hello from outside\n"
    assert get_from_outside(bed, "http://192.0.2.1:8080/") == "hello from api\n"
    assert get_from_outside(bed, "http://[fd99::1]:8080/") == "hello from api\n"

    # web stops: its lines leave api's hosts file (the same file, rewritten in place)
    bed.systemctl("stop", "web.service")
    assert "10.90.0.20" not in hosts_of(bed, "api.service")
    listed = bed.run(["sdcontainer", "network", "ls"]).stdout
    assert "systemd-backend" in listed and "api.service" in listed and "web.service" not in listed
    bed.systemctl("stop", "api.service")


def test_an_internal_network_has_no_way_out(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/private.network", "[Network]\nSubnet=10.92.0.0/24\nInternal=yes\n")
    add_container(bed, "inside", container("/bin/sleep infinity", "Network=private.network\n"))
    add_container(bed, "inside2", container(API, "Volume=/srv/www:/www:ro\nNetwork=private.network\n"))
    bed.start_unit("inside.service")
    bed.start_unit("inside2.service")
    assert get(bed, f"http://{OUTSIDE}:9000/", "inside.service") == ""
    assert "default" not in in_netns_of(bed, "inside.service", "ip", "route")
    # the containers of the network still reach each other
    assert (
        wait_for(
            lambda: (
                get(bed, "http://inside2/", "inside.service")
                or get(bed, f"http://{address_of(bed, 'inside2.service')}/", "inside.service")
            )
        )
        == "hello from api\n"
    )
    # a published port on an internal network is refused
    add_container(bed, "pub", container("/bin/sleep infinity", "Network=private.network\nPublishPort=8181:80\n"))
    assert bed.systemctl("start", "pub.service", check=False).returncode != 0
    assert "it is internal" in bed.journal("pub.service")
    bed.systemctl("stop", "inside.service", "inside2.service")


def test_sdcontainer_network_create_ls_inspect_rm(bed: Testbed) -> None:
    assert bed.run(["sdcontainer", "network", "create", "--subnet", "10.93.0.0/24", "mynet"]).stdout == "mynet\n"
    again = bed.run(["sdcontainer", "network", "create", "mynet"], check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    add_container(bed, "onmy", container("/bin/sleep infinity", "Network=mynet\n"))
    bed.start_unit("onmy.service")
    assert address_of(bed, "onmy.service").startswith("10.93.0.")
    (info,) = json.loads(bed.run(["sdcontainer", "network", "inspect", "mynet"]).stdout)
    assert info["subnets"] == [{"subnet": "10.93.0.0/24", "gateway": "10.93.0.1"}]
    assert list(info["containers"]) == ["onmy.service"]
    refused = bed.run(["sdcontainer", "network", "rm", "mynet"], check=False)
    assert refused.returncode != 0 and "in use by onmy.service" in refused.stderr
    bed.systemctl("stop", "onmy.service")
    bridge = info["bridge"]
    assert bed.run(["sdcontainer", "network", "rm", "mynet"]).stdout == "mynet\n"
    assert bridge not in bed.run(["ls", "/sys/class/net"]).stdout.split()
    assert "mynet" not in bed.run(["sdcontainer", "network", "ls"]).stdout
    assert "mynet" not in json.dumps(json.loads(bed.run(["nft", "-j", "list", "table", "inet", "sdcontainer"]).stdout))
    # a container on a network that does not exist says so
    assert bed.systemctl("start", "onmy.service", check=False).returncode != 0
    assert "network mynet does not exist" in bed.journal("onmy.service")


def test_a_bad_network_file_is_refused_naming_file_line_and_key(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/broken.network", "[Network]\nSubnet=10.94.0.0/24\nGatway=10.94.0.1\n")
    bed.daemon_reload()
    assert bed.systemctl("start", "broken-network.service", check=False).returncode != 0
    journal = bed.journal("broken-network.service")
    assert f"{UNITS}/broken.network:3: unknown key Gatway= in [Network]; did you mean Gateway=?" in journal
    checked = bed.run(["sdcontainer", "check", f"{UNITS}/broken.network"], check=False)
    assert checked.returncode != 0 and "broken.network:3: unknown key Gatway=" in checked.stderr


def test_twenty_starts_at_once_each_find_all_the_others(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/crowd.network", "[Network]\nSubnet=10.96.0.0/24\n")
    add_container(bed, "peer@", container("/bin/sleep infinity", "Network=crowd.network\n"))
    units = [f"peer@{i}.service" for i in range(20)]
    bed.systemctl("start", *units)  # one job each, run at once
    for unit in units:
        lines = hosts_of(bed, unit).splitlines()
        listed = {line.split("\t")[1] for line in lines if line.startswith("10.96.0.") and "host." not in line}
        assert listed == {f"peer-{j}" for j in range(20)}, (unit, listed)  # its own line and the 19 others
    bed.systemctl("stop", *units)
    assert bed.run(["ls", "/run/sdcontainer/networks/systemd-crowd/names"]).stdout == ""


def test_an_ip_outside_the_subnet_fails_and_delete_on_stop_removes_the_network(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/gone.network", "[Network]\nSubnet=10.97.0.0/24\nNetworkDeleteOnStop=yes\n")
    add_container(bed, "stray", container("/bin/sleep infinity", "Network=gone.network\nIP=10.98.0.5\n"))
    assert bed.systemctl("start", "stray.service", check=False).returncode != 0
    assert "IP=10.98.0.5 is not in a subnet of network systemd-gone (10.97.0.0/24)" in bed.journal("stray.service")
    assert bed.show("gone-network.service", "ActiveState") == "active"
    (info,) = json.loads(bed.run(["sdcontainer", "network", "inspect", "gone.network"]).stdout)
    assert info["containers"] == {} and info["file"] == "gone.network"
    bed.systemctl("stop", "gone-network.service")
    assert info["bridge"] not in bed.run(["ls", "/sys/class/net"]).stdout.split()
    assert not bed.exists("/run/sdcontainer/networks/systemd-gone")
    assert "gone.network" not in bed.run(["ls", "/run/sdcontainer/network-files"]).stdout.split()
