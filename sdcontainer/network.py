"""A container's bridge network, at start and at stop: netlink, ipam and firewall together.

    start (launcher, in the host netns)           stop (ExecStopPost=, `release` verb)
    lease(spec)        before the fork: the        release(unit): the unit's leases (of
                       address goes into            this invocation) and its published
                       /etc/hosts                   ports; the veth died with the netns
    connect(spec, netns) once the container's
                       init has unshared its netns: bridge (created if missing), veth into
                       that netns (/proc/PID/ns/net, or a pod's bind-mounted one),
                       masquerade, published ports

What outlives a container is keyed by its unit: the lease files (sdcontainer.ipam, under
/run) and the map elements of `table inet sdcontainer` (commented with the unit). Both are
removed by the unit's ExecStopPost= (which systemd runs after any end: a stop, a crash,
`kill -9` of the container or of the launcher), and both are reclaimed when that never ran
(systemd itself killed): a unit leases its own address again at its next start and replaces
its own published ports, and a lease or port held by a unit that is not running is taken
over by whoever needs it (`unit_alive`). Nothing is held across the whole setup: the IPAM
lock only while an address is chosen, the firewall's only for one nft transaction.

A unit is running while its RuntimeDirectory= exists (/run/sdcontainer/containers/UNIT:
systemd creates it before ExecStart= and removes it after ExecStopPost=), which costs a stat
rather than a D-Bus round trip.
"""

from __future__ import annotations

import os

from sdcontainer import netlink, state
from sdcontainer.errors import LaunchError, NetworkError
from sdcontainer.ipam import Ipam
from sdcontainer.values import DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.spec import ContainerSpec

#: name -> (bridge, subnet): the networks this version knows (named ones come later)
NETWORKS = {DEFAULT_NETWORK: (DEFAULT_BRIDGE, DEFAULT_SUBNET)}


def unit_alive(unit: str) -> bool:
    """The unit is active (or starting, or stopping): its RuntimeDirectory= exists."""
    return os.path.isdir(state.container_dir(unit))


def ipam(network: str) -> Ipam:
    _, subnet = NETWORKS[network]
    return Ipam.for_subnets(network, [subnet])


def gateways(network: str) -> list[str]:
    return ipam(network).gateways


def _tag() -> str:
    """This run of the unit (systemd's $INVOCATION_ID, the same in ExecStart= and
    ExecStopPost=), so that a late release of an old run cannot drop a new run's lease."""
    return os.environ.get("INVOCATION_ID", "")


def lease(spec: ContainerSpec) -> tuple[str, ...]:
    """The container's addresses ('10.88.0.2/16'): its previous lease, IP=, or the next free
    one. NetworkError names the unit that holds a requested IP=."""
    if "%" in spec.unit:
        raise LaunchError(f"Network={spec.network} needs the unit's name (--unit), to key its address by")
    try:
        leased = ipam(spec.network).lease(spec.unit, [spec.ip] if spec.ip else [], alive=unit_alive, tag=_tag())
    except NetworkError as error:
        raise NetworkError(f"Network={spec.network}: {error}") from None
    return tuple(leased)


def connect(spec: ContainerSpec, netns: str, addresses: tuple[str, ...]) -> None:
    """Put the network namespace at the path `netns` (/proc/PID/ns/net of the container's
    init, which unshared it; a pod's bind mount) on the bridge with `addresses`, masquerade
    the network, publish the unit's ports."""
    from sdcontainer.firewall import Firewall

    bridge_name, subnet = NETWORKS[spec.network]
    routers = gateways(spec.network)
    prefix = subnet.partition("/")[2]
    bridge = netlink.ensure_bridge(bridge_name, [f"{g}/{prefix}" for g in routers])
    host_ifname = netlink.host_ifname(spec.unit)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in (1, 2):
            try:
                netlink.attach(
                    fd,
                    bridge=bridge.index,
                    host_ifname=host_ifname,
                    addresses=addresses,
                    gateways=routers,
                    hairpin=bool(spec.publish_ports),
                )
                break
            except FileExistsError:
                # the host end of an earlier run whose netns is still being torn down
                if attempt == 2:
                    raise
                netlink.detach(host_ifname)
    finally:
        os.close(fd)
    with Firewall() as fw:
        fw.add_network(spec.network, [subnet])
        if spec.publish_ports:
            ipv4 = next(a.partition("/")[0] for a in addresses if ":" not in a)
            fw.publish(spec.unit, [PortMapping.parse(p) for p in spec.publish_ports], ipv4=ipv4, alive=unit_alive)


def release(unit: str, tag: str | None = None) -> tuple[list[str], list[str]]:
    """Drop what `unit` holds: its leases on every network (only this run's, with `tag`) and
    its published ports. Idempotent. Returns (addresses, ports) released."""
    addresses: list[str] = []
    for name in NETWORKS:
        addresses += ipam(name).release(unit, tag)
    from sdcontainer.firewall import Firewall

    with Firewall() as fw:
        ports = [str(p) for p in fw.release(unit)]
    return addresses, ports


def release_command(args: list[str]) -> int:
    """`sdcontainer-launcher release --unit UNIT`: the ExecStopPost= of a container on a bridge
    network (its leases of this run, $INVOCATION_ID, and its published ports)."""
    from sdcontainer.errors import UsageError
    from sdcontainer.verbs import parse

    usage = "usage: release --unit UNIT"
    unit = parse(args, options=("--unit",), usage=usage).options.get("--unit")
    if unit is None:
        raise UsageError(usage)
    release(unit, _tag() or None)
    return 0
