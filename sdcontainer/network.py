"""A container's bridge network, at start and at stop: netlink, ipam and firewall together.

    start (launcher, in the host netns)           stop (ExecStopPost=, `release` verb)
    lease(spec)        before the fork: the        release(unit): the unit's leases (of
                       address goes into            this invocation) and its published
                       /etc/hosts                   ports; the veth died with the netns
    hosts_file(...)    before the fork: its        names: its place in the other
                       name on the network's        members' hosts files
                       list, its hosts file
    connect(spec, pid) once the container's
                       init has unshared its netns: bridge (created if missing), veth into
                       /proc/PID/ns/net, masquerade, published ports

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
from sdcontainer.values import PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.networks import Network
    from sdcontainer.spec import ContainerSpec


def unit_alive(unit: str) -> bool:
    """The unit is active (or starting, or stopping): its RuntimeDirectory= exists."""
    return os.path.isdir(state.container_dir(unit))


_definitions: dict[str, Network] = {}


def definition(network: str) -> Network:
    """The network a container's Network= names (the default one, a .network file's, or a
    named one): sdcontainer.networks.load, one small file read for a named network, once
    per process (a start asks for it at each step)."""
    if network not in _definitions:
        from sdcontainer import networks

        _definitions[network] = networks.load(network)
    return _definitions[network]


def ipam(network: str) -> Ipam:
    return definition(network).ipam()


def gateways(network: str) -> list[str]:
    return list(definition(network).gateways)


def _tag() -> str:
    """This run of the unit (systemd's $INVOCATION_ID, the same in ExecStart= and
    ExecStopPost=), so that a late release of an old run cannot drop a new run's lease."""
    return os.environ.get("INVOCATION_ID", "")


def lease(spec: ContainerSpec) -> tuple[str, ...]:
    """The container's addresses ('10.88.0.2/16', one per subnet of its network): its
    previous lease, IP=/IP6=, or the next free ones. NetworkError names the unit that holds
    a requested address, or says which subnets the network has."""
    if "%" in spec.unit:
        raise LaunchError(f"Network={spec.network} needs the unit's name (--unit), to key its address by")
    network = definition(spec.network)
    requested = _requested(spec, network)
    if network.internal and spec.publish_ports:
        raise NetworkError(f"PublishPort= cannot be used on network {network.name}: it is internal (Internal=yes)")
    try:
        leased = network.ipam().lease(spec.unit, requested, alive=unit_alive, tag=_tag())
    except NetworkError as error:
        raise NetworkError(f"Network={spec.network}: {error}") from None
    return tuple(leased)


def _requested(spec: ContainerSpec, network: Network) -> list[str]:
    from sdcontainer.networks import check_address

    requested = []
    for key, address in (("IP", spec.ip), ("IP6", spec.ip6)):
        if address:
            check_address(network, address, key)
            requested.append(address)
    return requested


def hosts_file(spec: ContainerSpec, name: str, hostname: str, addresses: tuple[str, ...], base: str) -> str | None:
    """Put the container on its network's name list (sdcontainer.names) and write its hosts
    file, `base` and the other containers of the network; every other member's hosts file
    gets its lines. Returns the file to bind on /etc/hosts. Undone by release(). None on a
    network whose containers do not find each other by name (DisableDNS=yes, the default
    network): the container's /etc/hosts is then `base` alone, written in its own tmpfs."""
    from sdcontainer import names

    network = definition(spec.network)
    if network.disable_dns:
        return None
    return names.join(
        network.ipam(),
        spec.unit,
        addresses,
        names.host_names(name, hostname, *spec.network_aliases),
        base,
        peers=True,
        alive=unit_alive,
    )


def connect(spec: ContainerSpec, pid: int, addresses: tuple[str, ...]) -> None:
    """Put the network namespace of `pid` (the container's init, which unshared it) on the
    bridge with `addresses`, masquerade the network, publish the unit's ports."""
    from sdcontainer.firewall import Firewall

    network = definition(spec.network)
    routers = [] if network.internal else list(network.gateways)
    bridge = netlink.ensure_bridge(
        network.bridge, network.gateway_interfaces(), mtu=network.mtu, internal=network.internal
    )
    host_ifname = netlink.host_ifname(spec.unit)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in (1, 2):
            try:
                netlink.attach(
                    fd,
                    bridge=bridge.index,
                    host_ifname=host_ifname,
                    addresses=addresses,
                    gateways=routers,
                    mtu=network.mtu,
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
    if network.internal:
        return
    with Firewall() as fw:
        fw.add_network(network.name, network.subnets)
        if spec.publish_ports:
            ipv4 = next((a.partition("/")[0] for a in addresses if ":" not in a), None)
            ipv6 = next((a.partition("/")[0] for a in addresses if ":" in a), None)
            ports = [PortMapping.parse(p) for p in spec.publish_ports]
            fw.publish(spec.unit, ports, ipv4=ipv4, ipv6=ipv6, alive=unit_alive)


def networks_of(unit: str) -> list[str]:
    """The networks on which `unit` holds a lease (its index file in each network's IPAM
    directory): a stat per network, no definition read."""
    from sdcontainer import ipam as ipam_module

    try:
        names = os.listdir(ipam_module.STATE_DIR)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        directory = os.path.join(ipam_module.STATE_DIR, name)
        if os.path.exists(os.path.join(directory, "units", unit)) or os.path.exists(
            os.path.join(directory, "names", unit)
        ):
            found.append(name)
    return sorted(found)


def release(unit: str, tag: str | None = None) -> tuple[list[str], list[str]]:
    """Drop what `unit` holds: its leases on every network (only this run's, with `tag`),
    its place in their hosts files, and its published ports. Idempotent. Returns
    (addresses, ports) released."""
    from sdcontainer import names

    addresses: list[str] = []
    for name in networks_of(unit):
        network = Ipam(name, [])  # releasing needs no pools
        addresses += network.release(unit, tag)
        if os.path.exists(os.path.join(network.dir, names.NAMES, unit)):
            try:
                peers = not definition(name).disable_dns
            except LaunchError:  # removed meanwhile: its hosts files are no one's
                peers = False
            names.leave(network, unit, peers=peers, alive=unit_alive)
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
