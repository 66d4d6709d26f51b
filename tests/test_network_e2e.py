"""The three networking modules together, as a start and a stop would use them, in a fresh
network namespace playing the host (tests/netns.py): a bridge network with IPv4 and IPv6,
two "containers" (network namespaces) with leased addresses, an "outside" host; then the
teardown, which must leave no link, lease or rule behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sdcontainer import netlink
from sdcontainer.firewall import Firewall, PortMapping
from sdcontainer.ipam import Ipam
from tests.netns import Namespaces, connect, in_netns, link_outside, serve

UNITS = ("api.service", "web.service")


def _ping(ns: Namespaces, netns: int, address: str) -> bool:
    return ns.run(netns, ["busybox", "ping", "-c", "1", "-W", "5", address], check=False).returncode == 0


def _scenario(state: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with Namespaces() as ns, Firewall(lock_path=str(state / "firewall.lock")) as fw:
        ipam = Ipam.for_subnets("backend", ["10.90.0.0/24", "fd90::/64"], state_dir=str(state / "networks"))
        gateways = [f"{g}/{p.subnet.prefixlen}" for g, p in zip(ipam.gateways, ipam.pools, strict=True)]
        bridge = netlink.ensure_bridge("sdbackend", gateways)
        fw.add_network("backend", [str(p.subnet) for p in ipam.pools])
        outside = link_outside(ns)
        serve(ns, outside, "0.0.0.0", 9000, "outside")

        # two starts: lease, attach, publish
        netns = {}
        addresses = {}
        for unit in UNITS:
            netns[unit] = ns.netns()
            addresses[unit] = ipam.lease(unit, ["10.90.0.10"] if unit == "api.service" else [], alive=lambda u: False)
            netlink.attach(netns[unit], bridge=bridge.index, host_ifname=netlink.host_ifname(unit),
                           addresses=addresses[unit], gateways=ipam.gateways, hairpin=True)  # fmt: skip
        api4, api6 = (a.split("/")[0] for a in addresses["api.service"])
        web4, web6 = (a.split("/")[0] for a in addresses["web.service"])
        serve(ns, netns["api.service"], "::", 80, "api")
        fw.publish("api.service", [PortMapping.parse("8080:80")], ipv4=api4, ipv6=api6)
        seen["addresses"] = addresses
        seen["ping web->api v4"] = _ping(ns, netns["web.service"], api4)
        seen["ping api->web v4"] = _ping(ns, netns["api.service"], web4)
        seen["ping web->api v6"] = _ping(ns, netns["web.service"], api6)
        seen["web->outside"] = connect(ns, netns["web.service"], "192.0.2.2", 9000)
        seen["outside->published"] = connect(ns, outside, "192.0.2.1", 8080)
        seen["host 127.0.0.1->published"] = connect(ns, None, "127.0.0.1", 8080)
        seen["web->api direct"] = connect(ns, netns["web.service"], api4, 80)

        # two stops: release the ports and the leases; the veth goes with the netns, or here
        for unit in UNITS:
            fw.release(unit)
            ipam.release(unit)
            netlink.detach(netlink.host_ifname(unit))
        with netlink.Rtnl(netns["api.service"]) as inner:
            seen["api netns links after stop"] = [link.name for link in inner.links()]
        # and the network's own teardown
        fw.remove_network("backend")
        with netlink.Rtnl() as nl:
            nl.delete_link("sdbackend")
            nl.delete_link("uplink")
            seen["host links after teardown"] = [link.name for link in nl.links()]
        seen["leases after teardown"] = ipam.leases()
        seen["lease files"] = sorted(p.name for p in (state / "networks" / "backend").rglob("*") if p.is_file())
        listing = subprocess.run(
            ["nft", "-j", "list", "table", "inet", "sdcontainer"], capture_output=True, text=True, check=True
        )
        seen["elements after teardown"] = [
            obj[kind]["name"]
            for obj in json.loads(listing.stdout)["nftables"]
            for kind in ("map", "set")
            if kind in obj and obj[kind].get("elem")
        ]
        fw.delete_table()
        seen["table after delete"] = subprocess.run(
            ["nft", "list", "ruleset"], capture_output=True, text=True
        ).stdout.strip()
    return seen


def test_bridge_network_end_to_end(tmp_path: Path) -> None:
    seen = in_netns(lambda: _scenario(tmp_path))
    assert seen["addresses"] == {
        "api.service": ["10.90.0.10/24", "fd90::2/64"],
        "web.service": ["10.90.0.2/24", "fd90::3/64"],
    }
    assert seen["ping web->api v4"] and seen["ping api->web v4"] and seen["ping web->api v6"]
    assert seen["web->outside"] == "outside 192.0.2.1"  # masqueraded
    assert seen["outside->published"] == "api ::ffff:192.0.2.2"
    assert seen["host 127.0.0.1->published"] == "api ::ffff:10.90.0.1"
    assert seen["web->api direct"] == "api ::ffff:10.90.0.2"  # same bridge: no NAT
    assert seen["api netns links after stop"] == ["lo"]
    assert seen["host links after teardown"] == ["lo"]
    assert seen["leases after teardown"] == {}
    assert seen["lease files"] == ["cursor-10.90.0.0_24", "cursor-fd90::_64", "lock"]
    assert seen["elements after teardown"] == []
    assert seen["table after delete"] == ""
