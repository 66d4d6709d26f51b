"""Pods against a real systemd: a .pod file and two .container files with Pod=, `make install`
in a testbed (its own network namespace is the "host"), a second namespace in it playing
another host outside. The containers share the pod's network, IPC and UTS namespaces, which
bind mounts under /run/sdcontainer/pods hold; stopping the pod leaves none of it behind."""

from __future__ import annotations

import json

import pytest

from tests.containers import ROOTFS, UNITS, container, wait_for
from tests.testbed import Testbed

OUTSIDE = "192.0.2.2"
PODS = "/run/sdcontainer/pods"
LEASES = "/run/sdcontainer/networks/sdcontainer"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    tb = installed_testbed
    tb.copy_in(busybox_rootfs, ROOTFS)
    tb.write_file("/srv/www/index.html", "hello from the pod\n")
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
    return tb


def get(bed: Testbed, url: str, *prefix: str) -> str:
    code = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    return bed.run([*prefix, "python3", "-I", "-c", code, url], check=False).stdout


def in_container(bed: Testbed, unit: str, *argv: str) -> str:
    return bed.run(["sdcontainer", "exec", unit.removesuffix(".service"), *argv], check=False).stdout


def published(bed: Testbed) -> list[object]:
    table = json.loads(bed.run(["nft", "-j", "list", "table", "inet", "sdcontainer"]).stdout)["nftables"]
    return [elem for obj in table if "map" in obj for elem in obj["map"].get("elem", [])]


def mounts_under_pods(bed: Testbed) -> list[str]:
    return [line for line in bed.run(["cat", "/proc/self/mountinfo"]).stdout.splitlines() if f" {PODS}/" in line]


def test_two_containers_in_a_pod(bed: Testbed) -> None:
    # the pod's Volume= is every container's
    bed.write_file(f"{UNITS}/app.pod", "[Pod]\nPublishPort=8080:80\nVolume=/srv/www:/www:ro\n")
    web = container("/bin/httpd -f -p 80 -h /www", "Pod=app.pod\n")
    bed.write_file(f"{UNITS}/web.container", web)
    bed.write_file(f"{UNITS}/side.container", container("/bin/sleep infinity", "Pod=app.pod\n"))
    bed.daemon_reload()

    # starting the pod starts both containers (it wants them)
    bed.start_unit("app-pod.service")
    for unit in ("web.service", "side.service"):
        assert wait_for(lambda unit=unit: bed.show(unit, "ActiveState") == "active"), bed.journal(unit)
    # the namespaces are held by bind mounts, not by a process of the pod's service
    assert len(mounts_under_pods(bed)) == 3
    assert bed.show("app-pod.service", "MainPID") == "0"

    # one network namespace, one UTS namespace, one IPC namespace; pid namespaces their own
    web_pid, side_pid = bed.show("web.service", "MainPID"), bed.show("side.service", "MainPID")
    for ns in ("net", "uts", "ipc"):
        link = bed.run(["readlink", f"/proc/{web_pid}/ns/{ns}"]).stdout
        assert link == bed.run(["readlink", f"/proc/{side_pid}/ns/{ns}"]).stdout
        # the pod's bind mount is the same namespace (stat's inode of an nsfs file)
        held = bed.run(["stat", "-L", "-c", "%i", f"{PODS}/app/{ns}"]).stdout.strip()
        assert link.strip() == f"{ns}:[{held}]"
    assert (
        bed.run(["readlink", f"/proc/{web_pid}/ns/pid"]).stdout
        != bed.run(["readlink", f"/proc/{side_pid}/ns/pid"]).stdout
    )
    assert in_container(bed, "side.service", "hostname").strip() == "app"
    assert in_container(bed, "web.service", "hostname").strip() == "app"
    assert in_container(bed, "side.service", "cat", "/www/index.html") == "hello from the pod\n"

    # container to container over 127.0.0.1; the pod's published port from outside
    fetch = ["wget", "-q", "-O", "-", "http://127.0.0.1:80/"]
    assert wait_for(lambda: in_container(bed, "side.service", *fetch)) == "hello from the pod\n"
    assert wait_for(lambda: get(bed, "http://192.0.2.1:8080/", "ip", "netns", "exec", "outside")) == (
        "hello from the pod\n"
    )
    address = bed.read_file(f"{LEASES}/units/app-pod.service").split()[0]
    assert address.startswith("10.88.")

    # kill -9 of one container: the other keeps the pod's network
    bed.run(["kill", "-9", web_pid])
    wait_for(lambda: bed.show("web.service", "ActiveState") != "active")
    assert bed.show("side.service", "ActiveState") == "active"
    assert len(mounts_under_pods(bed)) == 3
    bed.systemctl("reset-failed", "web.service", check=False)
    bed.start_unit("web.service")
    assert wait_for(lambda: in_container(bed, "side.service", *fetch)) == "hello from the pod\n"

    # stopping the pod stops both; nothing is left: mounts, lease, published port
    bed.systemctl("stop", "app-pod.service")
    for unit in ("web.service", "side.service"):
        assert bed.show(unit, "ActiveState") in ("inactive", "failed")
    assert mounts_under_pods(bed) == []
    assert not bed.exists(f"{PODS}/app")
    assert not bed.exists(f"{LEASES}/units/app-pod.service")
    assert published(bed) == []

    # starting a container starts its pod
    bed.start_unit("side.service")
    assert bed.show("app-pod.service", "ActiveState") == "active"
    bed.systemctl("stop", "app-pod.service")
    assert mounts_under_pods(bed) == []


def test_a_bad_pod_file_is_refused_with_file_and_line(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/bad.pod", "[Pod]\nPodNmae=x\n")
    bed.daemon_reload()
    assert bed.systemctl("start", "bad-pod.service", check=False).returncode != 0
    assert f"{UNITS}/bad.pod:2: unknown key PodNmae= in [Pod]" in bed.journal("bad-pod.service")


def test_a_pod_that_fails_to_start_leaves_nothing(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/one.pod", "[Pod]\nIP=10.88.9.9\n")
    bed.write_file(f"{UNITS}/two.pod", "[Pod]\nIP=10.88.9.9\n")
    bed.write_file(f"{UNITS}/lonely.container", container("/bin/sleep infinity", "Pod=two.pod\n"))
    bed.daemon_reload()
    bed.start_unit("one-pod.service")
    assert bed.systemctl("start", "two-pod.service", check=False).returncode != 0
    assert "10.88.9.9 is already leased to one-pod.service" in bed.journal("two-pod.service")
    assert not bed.exists(f"{PODS}/two")
    assert bed.show("lonely.service", "ActiveState") != "active"  # its pod did not start
    assert len(mounts_under_pods(bed)) == 3  # one's, untouched
    bed.systemctl("stop", "one-pod.service")
    assert mounts_under_pods(bed) == []
    assert not bed.exists(f"{LEASES}/units/one-pod.service")


def test_a_container_in_a_pod_with_a_hostname_of_its_own_is_refused(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/solo.pod", "[Pod]\nNetwork=none\n")
    bed.write_file(f"{UNITS}/named.container", container("/bin/sleep infinity", "Pod=solo.pod\nHostName=mine\n"))
    bed.daemon_reload()
    assert bed.systemctl("start", "named.service", check=False).returncode != 0
    assert f"{UNITS}/named.container:7: HostName= cannot be set in a pod" in bed.journal("named.service")
