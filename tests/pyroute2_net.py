"""The per-start netlink sequence of `sdcontainer.netlink.attach`, done with pyroute2's IPRoute:
option (a) of issue 12, kept for the comparison (tests/test_netlink.py runs both through the
same checks; bench/netlink_setup.py times both).

`load_iproute(stub=True)` loads pyroute2 without running its package `__init__` (which
imports conntrack, ndb, ipdb, ... : 371 modules): a module object with the package's
`__path__` goes into sys.modules first, so `pyroute2.iproute.linux` is imported alone. It
works, but that module still pulls in asyncio and ~295 modules.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterable
from typing import Any

from sdcontainer import linux
from sdcontainer.netlink import Attachment, write_sysctl


def load_iproute(stub: bool = True) -> Any:
    if stub and "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        assert spec is not None and spec.submodule_search_locations is not None
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["pyroute2"] = package
        from pyroute2.iproute.linux import IPRoute
    else:
        from pyroute2 import IPRoute
    return IPRoute


def attach(
    IPRoute: Any,
    netns: int,
    *,
    bridge: str,
    host_ifname: str,
    ifname: str = "eth0",
    addresses: Iterable[str] = (),
    gateways: Iterable[str] = (),
    mtu: int | None = None,
    mac: str | None = None,
    hairpin: bool = False,
    host: Any = None,
) -> Attachment:
    """What sdcontainer.netlink.attach does, request for request, through IPRoute."""
    own = host is None
    ipr = IPRoute() if own else host
    try:
        master = ipr.link_lookup(ifname=bridge)[0]
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": netns}
        extra: dict[str, Any] = {}
        if mtu:
            peer["mtu"] = extra["mtu"] = mtu
        if mac:
            peer["address"] = mac
        ipr.link("add", ifname=host_ifname, kind="veth", master=master, state="up", peer=peer, **extra)
        if hairpin:
            (index,) = ipr.link_lookup(ifname=host_ifname)
            ipr.brport("set", index=index, mode=1)
    finally:
        if own:
            ipr.close()
    addresses, gateways = list(addresses), list(gateways)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(netns, linux.CLONE_NEWNET)
        try:
            inside = IPRoute()  # its socket is opened now, in the container's netns
            write_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")
            write_sysctl(f"net/ipv4/conf/{ifname}/rp_filter", "2")
            if any(":" in a for a in addresses):
                write_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0", missing_ok=True)
                write_sysctl(f"net/ipv6/conf/{ifname}/autoconf", "0", missing_ok=True)
        finally:
            linux.setns(home, linux.CLONE_NEWNET)
    finally:
        os.close(home)
    try:
        inside.link("set", index=1, state="up")
        (link,) = inside.get_links(ifname=ifname)
        index = link["index"]
        for address in addresses:
            value, prefixlen = address.split("/")
            inside.addr("add", index=index, address=value, prefixlen=int(prefixlen), flags=0x02 if ":" in value else 0)
        inside.link("set", index=index, state="up")
        for gateway in gateways:
            inside.route("add", dst="::/0" if ":" in gateway else "0.0.0.0/0", gateway=gateway)
        return Attachment(host_ifname, ifname, index, link.get("address"))
    finally:
        inside.close()
