"""Links, addresses and routes for a container's start: a small rtnetlink client of our own.

What one start on a bridge network needs, in round trips (the bridge exists):

    host netns       GETLINK bridge; NEWLINK veth pair (host end: master, MTU, up;
                     peer: name, MAC, MTU, moved into the container's netns by fd);
                     [NEWLINK hairpin on the bridge port]
    container netns  NEWLINK lo up; GETLINK eth0; NEWADDR per address; NEWLINK eth0 up;
                     NEWROUTE default per gateway; plus four sysctl writes

`attach()` does exactly that; `ensure_bridge()` creates a missing bridge (gateway addresses,
a pinned MAC, the host sysctls netavark sets) and `Rtnl` is the socket underneath, which can
also list links, addresses and routes for tests and inspection.

Why not pyroute2 here. Issue 12 asked to measure (a) pyroute2 loaded without its package
`__init__` against (b) a module of our own, and keep the faster one that passes the same
tests. `.venv/bin/python -m bench.netlink_setup` on this machine (a loaded 2-vCPU VM, 3.11,
`python -I -S`, medians; wall clock minus `-c pass`):

    import                                              ms      modules
    sdcontainer.netlink (+ inet, record, _socket)        2.8      38
    netlink + ipam + firewall                            5.6      46
      ... on top of sdcontainer.launcher's imports      +3.1      +6   (-X importtime: ~2)
    from pyroute2 import IPRoute                       157       374
    (a) pyroute2.iproute.linux without the package
        __init__ (a module with the package's __path__
        put in sys.modules first: it works)            103       297
        only its message classes (ifinfmsg, ifaddrmsg,
        rtmsg), with a socket of our own                ~20      131

    per container, bridge exists, median of 50 (min)    own          pyroute2 (a)
    attach: host socket, veth pair with MTU/MAC, peer
      into the netns, socket there, sysctls, lo up,
      address, eth0 up, default route                   1.7 (1.1)    11.1 (4.8)
    + IPAM lease 1.2, + one published port 1.3          5.1 (2.7)    14.3 (7.5)

(A second run, in bench/results/netlink-setup.md, gave 2.3 vs 15.0 ms for attach: this
shared VM moves such numbers by a third between runs; the ratio stays 5-7.)

So (b): (a) still imports asyncio and most of the library, 100 ms, seven times the whole
per-start budget of issue 12 (+15 ms for a bridge), and each request is slower too. Both run
the same checks in tests/test_netlink.py (tests/pyroute2_net.py is the pyroute2 variant),
which also compares this module's view of links, addresses and routes with pyroute2's
IPRoute view of the same namespaces. pyroute2 stays the library for whatever is off the
start path (network inspection, `sdcontainer network`). This module is stdlib only: `_socket`
(not `socket`, which imports enum and selectors), `struct`, `os`.

Errors are OSError with the kernel's errno; the message names the operation and carries the
kernel's extended ack text when it sends one.
"""

from __future__ import annotations

import _socket
import os
import struct

from sdcontainer.inet import AF_INET, AF_INET6, format_address, pack, parse_address, parse_interface
from sdcontainer.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # not at run time: `collections` costs about 1 ms to import
    from collections.abc import Iterable, Iterator, Sequence

# --- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h) ------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # in an ack: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

IFF_UP = 0x1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

LO_INDEX = 1  # loopback is always ifindex 1 in a network namespace

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

_NETNS_SELF = "/proc/thread-self/ns/net"
_CLONE_NEWNET = 0x40000000


# --- attributes --------------------------------------------------------------------------


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, kind) + data + b"\0" * (-length & 3)


def _nested(kind: int, *parts: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(parts))


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attribute type -> payload (the last one wins; nested flags masked off)."""
    found: dict[int, bytes] = {}
    end = len(data)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def _show_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def random_mac() -> str:
    """A random unicast, locally administered MAC address."""
    data = bytearray(os.urandom(6))
    data[0] = (data[0] & 0xFE) | 0x02
    return _show_mac(bytes(data))


def _text(data: bytes | None) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace") if data is not None else ""


# --- what a dump returns -------------------------------------------------------------------


@record
class Link:
    index: int
    name: str
    flags: int
    mtu: int
    mac: str
    master: int  # 0: none
    kind: str  # "bridge", "veth", ... ("" for lo)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@record
class Address:
    index: int
    address: str  # "10.90.0.10/24"


@record
class Route:
    family: int
    dst: str  # "default" or "10.90.0.0/24"
    gateway: str  # "" when on-link
    oif: int
    table: int


def _link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    a = _attrs(body, _IFINFOMSG.size)
    info = _attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    return Link(
        index=index,
        name=_text(a.get(IFLA_IFNAME)),
        flags=flags,
        mtu=_U32.unpack(a[IFLA_MTU])[0] if IFLA_MTU in a else 0,
        mac=_show_mac(a[IFLA_ADDRESS]) if IFLA_ADDRESS in a else "",
        master=_U32.unpack(a[IFLA_MASTER])[0] if IFLA_MASTER in a else 0,
        kind=_text(info.get(IFLA_INFO_KIND)),
    )


# --- the socket ----------------------------------------------------------------------------


class Rtnl:
    """One NETLINK_ROUTE socket. It stays in the network namespace it was opened in, even
    when the thread moves elsewhere; `netns` (an fd of a netns, e.g. of
    /proc/PID/ns/net) opens it in that namespace instead of the caller's, by setns() there
    and back in this thread (CAP_SYS_ADMIN in both)."""

    def __init__(self, netns: int | None = None) -> None:
        self._seq = 0
        if netns is None:
            self._sock = self._open()
            return
        from sdcontainer import linux

        home = os.open(_NETNS_SELF, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(netns, _CLONE_NEWNET)
            try:
                self._sock = self._open()
            finally:
                linux.setns(home, _CLONE_NEWNET)
        finally:
            os.close(home)

    @staticmethod
    def _open() -> _socket.socket:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks without a copy of the request
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's error text
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- requests --

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, self._seq, 0) + body)
        return self._seq

    def _replies(self, seq: int, what: str) -> Iterator[tuple[int, bytes]]:
        """(type, body) of each reply to `seq` until the ack or NLMSG_DONE; an error ack
        raises OSError."""
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError(f"{what}: malformed netlink reply")
                body = data[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late reply to an earlier request that raised
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    error = -_I32.unpack_from(body)[0]
                    if error:
                        raise _error(error, what, body, flags)
                    return
                yield kind, body

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for its ack."""
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body), what):
            pass

    def dump(self, kind: int, body: bytes, what: str) -> list[bytes]:
        return [b for _, b in self._replies(self._send(kind, NLM_F_DUMP, body), what)]

    def get(self, kind: int, body: bytes, what: str) -> bytes:
        for _, reply in self._replies(self._send(kind, 0, body), what):
            return reply
        raise OSError(f"{what}: no reply")

    # -- links --

    def link(self, name_or_index: str | int) -> Link:
        """A link by name or index; OSError(ENODEV) if there is none."""
        if isinstance(name_or_index, int):
            body = _IFINFOMSG.pack(0, 0, name_or_index, 0, 0)
        else:
            body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, name_or_index)
        return _link(self.get(RTM_GETLINK, body, f"look up link {name_or_index}"))

    def links(self) -> list[Link]:
        return [_link(b) for b in self.dump(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0), "list links")]

    def add_bridge(self, name: str, *, mtu: int | None = None, mac: str | None = None) -> None:
        """Create a bridge (NLM_F_EXCL: EEXIST when it exists). A MAC given here is fixed:
        the kernel no longer takes the lowest port's MAC, which changes as ports come and go
        (netavark's "delays up to 100s" of stale ARP)."""
        attrs = _name(IFLA_IFNAME, name) + _nested(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge"))
        if mtu:
            attrs += _u32(IFLA_MTU, mtu)
        if mac:
            attrs += _attr(IFLA_ADDRESS, _mac(mac))
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + attrs
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create bridge {name}")

    def add_veth(
        self,
        name: str,
        peer: str,
        *,
        peer_netns: int | None = None,
        master: int = 0,
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
        up: bool = True,
    ) -> None:
        """A veth pair in one message: `name` here (enslaved to `master`, up), `peer` moved
        into the netns `peer_netns` (an fd) as it is created. The peer stays down: set it
        up from its side, the kernel ignores flags in the peer's header."""
        peer_attrs = _name(IFLA_IFNAME, peer)
        if peer_netns is not None:
            peer_attrs += _u32(IFLA_NET_NS_FD, peer_netns)
        if mtu:
            peer_attrs += _u32(IFLA_MTU, mtu)
        if peer_mac:
            peer_attrs += _attr(IFLA_ADDRESS, _mac(peer_mac))
        info = _nested(
            IFLA_LINKINFO,
            _attr(IFLA_INFO_KIND, b"veth"),
            _nested(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _IFINFOMSG.pack(0, 0, 0, 0, 0) + peer_attrs)),
        )
        attrs = _name(IFLA_IFNAME, name) + info
        if master:
            attrs += _u32(IFLA_MASTER, master)
        if mtu:
            attrs += _u32(IFLA_MTU, mtu)
        if mac:
            attrs += _attr(IFLA_ADDRESS, _mac(mac))
        flags = IFF_UP if up else 0
        body = _IFINFOMSG.pack(0, 0, 0, flags, flags) + attrs
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth pair {name}/{peer}")

    def set_link(
        self,
        link: str | int,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        master: int | None = None,
        hairpin: bool | None = None,
    ) -> None:
        """Change a link, named by index or by name (the kernel looks names up itself)."""
        index = link if isinstance(link, int) else 0
        attrs = b"" if isinstance(link, int) else _name(IFLA_IFNAME, link)
        if mtu is not None:
            attrs += _u32(IFLA_MTU, mtu)
        if mac is not None:
            attrs += _attr(IFLA_ADDRESS, _mac(mac))
        if master is not None:
            attrs += _u32(IFLA_MASTER, master)
        if hairpin is not None:  # a bridge port's mode: `bridge link set dev X hairpin on`
            port = _nested(IFLA_INFO_SLAVE_DATA, _attr(IFLA_BRPORT_MODE, bytes([hairpin])))
            attrs += _nested(IFLA_LINKINFO, _attr(IFLA_INFO_SLAVE_KIND, b"bridge"), port)
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = _IFINFOMSG.pack(0, 0, index, flags, change) + attrs
        self.request(RTM_NEWLINK, 0, body, f"configure link {link}")

    def delete_link(self, link: str | int) -> bool:
        """Delete a link; False if there was none (ENODEV counts as done)."""
        index = link if isinstance(link, int) else 0
        attrs = b"" if isinstance(link, int) else _name(IFLA_IFNAME, link)
        try:
            self.request(RTM_DELLINK, 0, _IFINFOMSG.pack(0, 0, index, 0, 0) + attrs, f"delete link {link}")
        except OSError as e:
            if e.errno == 19:  # ENODEV
                return False
            raise
        return True

    # -- addresses --

    def add_address(self, index: int, interface: str) -> None:
        """'10.90.0.10/24' on link `index`. IPv6 addresses skip duplicate address detection
        (they would be unusable, "tentative", for a second or so)."""
        family, value, prefixlen = parse_interface(interface)
        packed = pack(family, value)
        flags = IFA_F_PERMANENT | (IFA_F_NODAD if family == AF_INET6 else 0)
        attrs = _attr(IFA_ADDRESS, packed) + _u32(IFA_FLAGS, flags)
        if family == AF_INET:
            attrs += _attr(IFA_LOCAL, packed)
        body = _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, RT_SCOPE_UNIVERSE, index) + attrs
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {interface} to link {index}")

    def addresses(self, index: int | None = None) -> list[Address]:
        found = []
        for body in self.dump(RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0), "list addresses"):
            family, prefixlen, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(body)
            if index is not None and ifindex != index:
                continue
            a = _attrs(body, _IFADDRMSG.size)
            data = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
            if data is not None:
                address = format_address(family, int.from_bytes(data, "big"))
                found.append(Address(ifindex, f"{address}/{prefixlen}"))
        return found

    # -- routes --

    def add_route(
        self, dst: str = "default", *, gateway: str | None = None, oif: int | None = None, metric: int | None = None
    ) -> None:
        """A route in the main table: `dst` 'default' (give `gateway` for its family) or a
        subnet such as '10.91.0.0/24'."""
        if dst == "default":
            if gateway is None:
                raise ValueError("a default route needs a gateway")
            family, dst_len, dst_attr = parse_address(gateway)[0], 0, b""
        else:
            family, value, dst_len = parse_interface(dst)
            dst_attr = _attr(RTA_DST, pack(family, value))
        attrs = dst_attr + _u32(RTA_TABLE, RT_TABLE_MAIN)
        if gateway is not None:
            gw_family, gw = parse_address(gateway)
            if gw_family != family:
                raise ValueError(f"gateway {gateway} is not of the family of {dst}")
            attrs += _attr(RTA_GATEWAY, pack(family, gw))
        if oif is not None:
            attrs += _u32(RTA_OIF, oif)
        if metric is not None:
            attrs += _u32(RTA_PRIORITY, metric)
        body = _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body + attrs, f"add route {dst} via {gateway}")

    def routes(self, family: int = AF_INET) -> list[Route]:
        """The main table's unicast routes of one family."""
        found = []
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for reply in self.dump(RTM_GETROUTE, body, "list routes"):
            rfamily, dst_len, _src, _tos, table, _proto, _scope, kind, _flags = _RTMSG.unpack_from(reply)
            a = _attrs(reply, _RTMSG.size)
            table = _U32.unpack(a[RTA_TABLE])[0] if RTA_TABLE in a else table
            if rfamily != family or kind != RTN_UNICAST or table != RT_TABLE_MAIN:
                continue
            if RTA_DST in a:
                dst = f"{format_address(family, int.from_bytes(a[RTA_DST], 'big'))}/{dst_len}"
            else:
                dst = "default"
            gateway = format_address(family, int.from_bytes(a[RTA_GATEWAY], "big")) if RTA_GATEWAY in a else ""
            oif = _U32.unpack(a[RTA_OIF])[0] if RTA_OIF in a else 0
            found.append(Route(family, dst, gateway, oif, table))
        return found


def _error(errno: int, what: str, body: bytes, flags: int) -> OSError:
    message = os.strerror(errno)
    if flags & NLM_F_ACK_TLVS:
        # error code, then the request's header (capped: NETLINK_CAP_ACK), then attributes
        text = _attrs(body, 4 + _NLMSGHDR.size).get(NLMSGERR_ATTR_MSG)
        if text:
            message += f" ({_text(text)})"
    return OSError(errno, f"{what}: {message}")


# --- the per-network and per-container steps ----------------------------------------------


@record
class Bridge:
    index: int
    created: bool  # False: it existed (or another start created it first)


@record
class Attachment:
    host_ifname: str
    ifname: str
    index: int  # in the container's netns
    mac: str


def write_sysctl(path: str, value: str, *, missing_ok: bool = False) -> None:
    """Write /proc/sys/<path>; it applies to the network namespace of the calling thread."""
    try:
        fd = os.open(f"/proc/sys/{path}", os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def ensure_bridge(
    name: str,
    gateways: Sequence[str] = (),
    *,
    mtu: int | None = None,
    internal: bool = False,
    rtnl: Rtnl | None = None,
) -> Bridge:
    """The bridge `name`, created if missing, in the caller's network namespace.

    On creation only (one round trip when it exists): the host sysctls, as netavark writes
    them (forwarding on unless `internal`, `route_localnet=1` so that 127.0.0.1 reaches
    published ports, loose `rp_filter=2`), a fixed random MAC, the gateway addresses
    ('10.90.0.1/24', 'fd00::1/64') and up. EEXIST from a concurrent creation counts as
    existing."""
    own = rtnl is None
    nl = Rtnl() if rtnl is None else rtnl
    try:
        try:
            return Bridge(nl.link(name).index, False)
        except OSError as e:
            if e.errno != 19:  # ENODEV
                raise
        v6 = any(":" in g for g in gateways)
        if not internal:
            write_sysctl("net/ipv4/ip_forward", "1")
            if v6:
                write_sysctl("net/ipv6/conf/all/forwarding", "1", missing_ok=True)
        try:
            nl.add_bridge(name, mtu=mtu, mac=random_mac())
        except OSError as e:
            if e.errno != 17:  # EEXIST: another start won
                raise
            return Bridge(nl.link(name).index, False)
        index = nl.link(name).index
        conf = f"net/ipv4/conf/{name}"
        write_sysctl(f"{conf}/rp_filter", "2")
        if internal:
            write_sysctl(f"{conf}/forwarding", "0")
        else:
            write_sysctl(f"{conf}/route_localnet", "1")
        if v6:
            write_sysctl(f"net/ipv6/conf/{name}/accept_dad", "0", missing_ok=True)
            write_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0", missing_ok=True)
            if internal:
                write_sysctl(f"net/ipv6/conf/{name}/forwarding", "0", missing_ok=True)
        for gateway in gateways:
            nl.add_address(index, gateway)
        nl.set_link(index, up=True)
        return Bridge(index, True)
    finally:
        if own:
            nl.close()


def attach(
    netns: int,
    *,
    bridge: str | int,
    host_ifname: str,
    ifname: str = "eth0",
    addresses: Iterable[str] = (),
    gateways: Iterable[str] = (),
    mtu: int | None = None,
    mac: str | None = None,
    hairpin: bool = False,
    metric: int | None = None,
    rtnl: Rtnl | None = None,
) -> Attachment:
    """Connect the network namespace `netns` (an fd) to `bridge`: a veth pair whose host end
    `host_ifname` joins the bridge and whose peer becomes `ifname` inside, with `mac`, `mtu`,
    `addresses` ('10.90.0.10/24', 'fd00::a/64'), a default route via each of `gateways`
    (none: an internal network) and loopback up. `hairpin` lets a container reach itself
    through a published port (the bridge sends frames back out of the port they came in on).

    The caller stays in its own netns (that of the bridge); the container side is configured
    through a socket opened in `netns`. On failure the pair is deleted again (the host end,
    which takes the peer with it); on success nothing remains to clean up but the host end,
    and the kernel removes that when the namespace goes."""
    host = Rtnl() if rtnl is None else rtnl
    try:
        master = bridge if isinstance(bridge, int) else host.link(bridge).index
        host.add_veth(host_ifname, ifname, peer_netns=netns, master=master, mtu=mtu, peer_mac=mac)
        try:
            if hairpin:
                host.set_link(host_ifname, hairpin=True)
            return _configure_inside(netns, host_ifname, ifname, list(addresses), list(gateways), metric)
        except BaseException:
            host.delete_link(host_ifname)
            raise
    finally:
        if rtnl is None:
            host.close()


def _configure_inside(
    netns: int, host_ifname: str, ifname: str, addresses: list[str], gateways: list[str], metric: int | None
) -> Attachment:
    from sdcontainer import linux

    v6 = any(":" in a for a in addresses)
    home = os.open(_NETNS_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(netns, _CLONE_NEWNET)
        try:
            nl = Rtnl()  # opened in the container's netns: it stays there
            conf = f"net/ipv4/conf/{ifname}"
            write_sysctl(f"{conf}/arp_notify", "1")
            write_sysctl(f"{conf}/rp_filter", "2")
            if v6:
                write_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0", missing_ok=True)
                write_sysctl(f"net/ipv6/conf/{ifname}/autoconf", "0", missing_ok=True)
        finally:
            linux.setns(home, _CLONE_NEWNET)
    finally:
        os.close(home)
    with nl:
        nl.set_link(LO_INDEX, up=True)
        link = nl.link(ifname)
        for address in addresses:
            nl.add_address(link.index, address)
        nl.set_link(link.index, up=True)
        for gateway in gateways:
            nl.add_route(gateway=gateway, metric=metric)
    return Attachment(host_ifname, ifname, link.index, link.mac)


def detach(host_ifname: str, rtnl: Rtnl | None = None) -> bool:
    """Delete a container's host end (and so its peer); False if it was gone already, as it
    is once the container's netns is gone."""
    nl = Rtnl() if rtnl is None else rtnl
    try:
        return nl.delete_link(host_ifname)
    finally:
        if rtnl is None:
            nl.close()


def host_ifname(unit: str) -> str:
    """A stable host-side veth name for a unit (15 bytes at most): 'vsd' and 8 hex digits of
    the unit name's CRC-32, so a leftover of a crashed start can be found by unit."""
    import zlib

    return f"vsd{zlib.crc32(unit.encode()):08x}"
