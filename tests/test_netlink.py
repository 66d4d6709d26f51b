"""sdcontainer.netlink against the kernel, in throwaway network namespaces (tests/netns.py), and
against pyroute2's view of the same links: the per-start sequence is run by our module and,
through the same checks, by pyroute2's IPRoute (option (a) of issue 12, tests/pyroute2_net.py).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdcontainer import netlink
from sdcontainer.inet import AF_INET, AF_INET6
from tests import pyroute2_net
from tests.netns import Namespaces, connect, in_netns, serve

MAC = "02:00:00:00:00:0a"
ATTACH: dict[str, Any] = {
    "bridge": "sdbr0",
    "host_ifname": "vsdtest0",
    "ifname": "eth0",
    "addresses": ["10.90.0.10/24", "fd90::a/64"],
    "gateways": ["10.90.0.1", "fd90::1"],
    "mtu": 1400,
    "mac": MAC,
    "hairpin": True,
}


def _iproute_view(IPRoute: Any, netns: str | None = None) -> dict[str, Any]:
    """Links, addresses and main-table routes as pyroute2 reports them."""
    kwargs: dict[str, Any] = {} if netns is None else {"netns": netns, "flags": 0}
    with IPRoute(**kwargs) as ipr:
        links = {
            link.get("ifname"): {
                "index": link["index"],
                "mtu": link.get("mtu"),
                "mac": link.get("address"),
                "master": link.get("master") or 0,
                "up": bool(link["flags"] & 1),
                "kind": link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "",
                "hairpin": link.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_MODE"),
            }
            for link in ipr.get_links()
        }
        addresses = sorted(
            (a["index"], f"{a.get('local') or a.get('address')}/{a['prefixlen']}") for a in ipr.get_addr()
        )
        routes = sorted(
            (
                r["family"],
                f"{r.get('dst')}/{r['dst_len']}" if r.get("dst") else "default",
                r.get("gateway") or "",
                r.get("oif") or 0,
            )
            for family in (AF_INET, AF_INET6)
            for r in ipr.get_routes(family=family, table=254)
            if r["type"] == 1
        )
    return {"links": links, "addresses": addresses, "routes": routes}


def _own_view(nl: netlink.Rtnl) -> dict[str, Any]:
    links = {
        link.name: {
            "index": link.index,
            "mtu": link.mtu,
            "mac": link.mac,
            "master": link.master,
            "up": link.up,
            "kind": link.kind,
        }
        for link in nl.links()
    }
    addresses = sorted((a.index, a.address) for a in nl.addresses())
    routes = sorted((r.family, r.dst, r.gateway, r.oif) for f in (AF_INET, AF_INET6) for r in nl.routes(f))
    return {"links": links, "addresses": addresses, "routes": routes}


def _per_start(backend: str) -> dict[str, Any]:
    """In the test's "host" netns: bridge, one container attached by `backend`; then both
    views of both namespaces, and a TCP exchange over the new link."""
    stub = backend == "pyroute2-no-init"
    IPRoute = pyroute2_net.load_iproute(stub=stub)
    with Namespaces() as ns:
        bridge = netlink.ensure_bridge("sdbr0", ["10.90.0.1/24", "fd90::1/64"])
        container = ns.netns()
        if backend == "own":
            attachment = netlink.attach(container, **ATTACH)
        else:
            attachment = pyroute2_net.attach(IPRoute, container, **ATTACH)
        serve(ns, container, "::", 8080, "c1")
        with netlink.Rtnl() as host_nl, netlink.Rtnl(container) as inner_nl:
            return {
                "bridge": bridge,
                "attachment": attachment,
                "host": _iproute_view(IPRoute),
                "host_own": _own_view(host_nl),
                "inner": _iproute_view(IPRoute, f"/proc/{os.getpid()}/fd/{container}"),
                "inner_own": _own_view(inner_nl),
                "tcp4": connect(ns, None, "10.90.0.10", 8080),
                "tcp6": connect(ns, None, "fd90::a", 8080),
            }


@pytest.mark.parametrize("backend", ["own", "pyroute2-no-init"])
def test_per_start_sequence(backend: str) -> None:
    r = in_netns(lambda: _per_start(backend))
    host, inner = r["host"], r["inner"]
    br, port = host["links"]["sdbr0"], host["links"]["vsdtest0"]
    assert r["bridge"] == netlink.Bridge(br["index"], True)
    assert (br["kind"], br["up"]) == ("bridge", True)
    assert (br["index"], "10.90.0.1/24") in host["addresses"] and (br["index"], "fd90::1/64") in host["addresses"]
    assert (port["kind"], port["master"], port["up"], port["mtu"], port["hairpin"]) == (
        "veth",
        br["index"],
        True,
        1400,
        1,
    )
    eth0, lo = inner["links"]["eth0"], inner["links"]["lo"]
    assert (eth0["kind"], eth0["mac"], eth0["mtu"], eth0["up"], lo["up"]) == ("veth", MAC, 1400, True, True)
    assert set(inner["links"]) == {"lo", "eth0"}
    assert (eth0["index"], "10.90.0.10/24") in inner["addresses"] and (eth0["index"], "fd90::a/64") in inner[
        "addresses"
    ]
    assert (AF_INET, "default", "10.90.0.1", eth0["index"]) in inner["routes"]
    assert (AF_INET6, "default", "fd90::1", eth0["index"]) in inner["routes"]
    assert r["attachment"] == netlink.Attachment("vsdtest0", "eth0", eth0["index"], MAC)
    assert r["tcp4"] == "c1 ::ffff:10.90.0.1" and r["tcp6"] == "c1 fd90::1"
    # our module reads the same links, addresses and routes as pyroute2 does
    for view, own in ((host, r["host_own"]), (inner, r["inner_own"])):
        assert {k: {f: v for f, v in link.items() if f != "hairpin"} for k, link in view["links"].items()} == own[
            "links"
        ]
        assert view["addresses"] == own["addresses"]
        assert view["routes"] == own["routes"]


def test_bridge_mac_is_pinned_and_creation_is_once() -> None:
    def run() -> tuple[netlink.Bridge, netlink.Bridge, str, str, list[str]]:
        first = netlink.ensure_bridge("sdbr0", ["10.90.0.1/24"])
        again = netlink.ensure_bridge("sdbr0", ["10.90.0.1/24"])
        with netlink.Rtnl() as nl:
            before = nl.link("sdbr0").mac
            # a port with a lower MAC than any random one: an unpinned bridge would take it
            nl.add_veth("p0", "p1", master=first.index, mac="02:00:00:00:00:01")
            after = nl.link("sdbr0").mac
            addresses = [a.address for a in nl.addresses(first.index) if not a.address.startswith("fe80")]
        sysctls = [
            Path(f"/proc/sys/net/{p}").read_text().strip()
            for p in ("ipv4/ip_forward", "ipv4/conf/sdbr0/route_localnet", "ipv4/conf/sdbr0/rp_filter")
        ]
        return first, again, before, after, addresses + sysctls

    first, again, before, after, rest = in_netns(run)
    assert first.created and not again.created and first.index == again.index
    assert before == after
    assert rest == ["10.90.0.1/24", "1", "1", "2"]


def test_failed_attach_leaves_no_link() -> None:
    def run() -> tuple[int, int, list[str], list[str]]:
        with Namespaces() as ns:
            netlink.ensure_bridge("sdbr0", ["10.90.0.1/24"])
            container = ns.netns()
            try:  # the second address is the first again: EEXIST after the pair exists
                netlink.attach(
                    container, bridge="sdbr0", host_ifname="vsdx", addresses=["10.90.0.10/24", "10.90.0.10/24"]
                )
            except OSError as e:
                dup = e.errno
            try:
                netlink.attach(container, bridge="nobridge", host_ifname="vsdx")
            except OSError as e:
                missing = e.errno
            with netlink.Rtnl() as nl, netlink.Rtnl(container) as inner:
                return dup, missing, [link.name for link in nl.links()], [link.name for link in inner.links()]

    dup, missing, host_links, inner_links = in_netns(run)
    assert (dup, missing) == (errno.EEXIST, errno.ENODEV)
    assert host_links == ["lo", "sdbr0"] and inner_links == ["lo"]


def test_errors_name_the_operation() -> None:
    def run() -> list[str]:
        messages = []
        with netlink.Rtnl() as nl:
            for call in (
                lambda: nl.link("nosuchlink"),
                lambda: nl.set_link("nosuchlink", up=True),
                lambda: nl.add_address(99, "10.0.0.1/24"),
            ):
                try:
                    call()
                except OSError as e:
                    messages.append(str(e))
        return messages

    assert (
        in_netns(run)
        == [
            "[Errno 19] look up link nosuchlink: No such device",
            "[Errno 19] configure link nosuchlink: No such device",
            "[Errno 19] add address 10.0.0.1/24 to link 99: No such device (ipv4: Device not found)",  # the kernel's extended ack
        ]
    )


def test_detach_and_rtnl_in_another_netns_keeps_ours() -> None:
    def run() -> tuple[bool, bool, list[str], bool]:
        with Namespaces() as ns:
            netlink.ensure_bridge("sdbr0", [])
            container = ns.netns()
            before = os.stat("/proc/thread-self/ns/net").st_ino
            netlink.attach(container, bridge="sdbr0", host_ifname="vsdx")
            with netlink.Rtnl(container) as inner:
                inner_links = [link.name for link in inner.links()]
            same = os.stat("/proc/thread-self/ns/net").st_ino == before
            return netlink.detach("vsdx"), netlink.detach("vsdx"), inner_links, same

    first, second, inner_links, same = in_netns(run)
    assert (first, second) == (True, False)
    assert inner_links == ["lo", "eth0"] and same


def test_host_ifname() -> None:
    name = netlink.host_ifname("a-very-long-unit-name-of-a-container@instance.service")
    assert len(name) <= 15 and name.startswith("vsd")
    assert name == netlink.host_ifname("a-very-long-unit-name-of-a-container@instance.service")
    assert name != netlink.host_ifname("other.service")


def test_import_is_stdlib_only_and_lean() -> None:
    """The start path's imports: no socket (enum, selectors), no ipaddress, no pyroute2."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {checkout!r}); import sdcontainer.netlink; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    for heavy in ("socket", "enum", "ipaddress", "pyroute2", "asyncio", "collections", "typing", "json"):
        assert heavy not in out
