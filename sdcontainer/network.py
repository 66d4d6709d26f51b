"""A container's bridge network, at start and at stop: netlink, ipam and firewall together.

    start (launcher, in the host netns)           stop (ExecStopPost=, `release` verb)
    lease(spec)        before the fork: the        release(unit) (sdcontainer.release): the unit's leases (of
                       address goes into            this invocation) and its published
                       /etc/hosts                   ports; the veth died with the netns
    hosts_file(...)    before the fork: its        names: its place in the other
                       name on the network's        members' hosts files
                       list, its hosts file
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

Network=container:NAME and NAME.container join the network namespace of another running
container (join_target, from its state record) instead: nothing is leased or published.

SDCONTAINER_TEST_KILL_AT=STEP (tests only: tests/test_network_systemd.py) makes the launcher
SIGKILL itself right after that step of the setup (lease, bridge, veth, firewall, publish),
to show that what a start leaves half done is released by ExecStopPost= all the same.

A unit is running while its RuntimeDirectory= exists (/run/sdcontainer/containers/UNIT:
systemd creates it before ExecStart= and removes it after ExecStopPost=), which costs a stat
rather than a D-Bus round trip.
"""

from __future__ import annotations

import os
import sys

from sdcontainer import linux, netlink, state
from sdcontainer.errors import LaunchError, NetworkError
from sdcontainer.ipam import Ipam
from sdcontainer.values import PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.firewall import Published
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
    test_kill_at("lease")
    return tuple(leased)


def test_kill_at(step: str) -> None:
    """Tests only: SIGKILL this process after `step` when SDCONTAINER_TEST_KILL_AT names it
    (one dictionary lookup per step otherwise)."""
    if os.environ.get("SDCONTAINER_TEST_KILL_AT") == step:
        os.kill(os.getpid(), 9)


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


def connect(spec: ContainerSpec, netns: str, addresses: tuple[str, ...]) -> list[Published]:
    """Put the network namespace at the path `netns` (/proc/PID/ns/net of the container's
    init, which unshared it; a pod's bind mount) on its network's bridge with `addresses`,
    masquerade the network, publish the unit's ports; returns what was published (host
    ports chosen for PublishPort=80 included)."""
    from sdcontainer.firewall import Firewall

    network = definition(spec.network)
    routers = [] if network.internal else list(network.gateways)
    bridge = netlink.ensure_bridge(
        network.bridge, network.gateway_interfaces(), mtu=network.mtu, internal=network.internal
    )
    test_kill_at("bridge")
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
    test_kill_at("veth")
    if network.internal:
        return []
    with Firewall() as fw:
        fw.add_network(network.name, network.subnets)
        test_kill_at("firewall")
        if not spec.publish_ports:
            return []
        ipv4 = next((a.partition("/")[0] for a in addresses if ":" not in a), None)
        ipv6 = next((a.partition("/")[0] for a in addresses if ":" in a), None)
        mappings = [PortMapping.parse(p) for p in spec.publish_ports]
        published = fw.publish(spec.unit, mappings, ipv4=ipv4, ipv6=ipv6, alive=unit_alive)
    test_kill_at("publish")
    _log_chosen(mappings, published)
    return published


def _log_chosen(mappings: list[PortMapping], published: list[Published]) -> None:
    """PublishPort=80: say in the journal which host port it got."""
    chosen = {(m.proto, m.host_ip, m.container_port + i) for m in mappings if not m.host_port for i in range(m.count)}
    for p in published:
        if (p.proto, p.host_ip, p.container_port) in chosen:
            print(f"{state.PROG}: published {port_text(p)} (a free host port)", file=sys.stderr, flush=True)


def port_text(p: Published) -> str:
    """A published port as the record keeps it and podman shows it: 0.0.0.0:40123->80/tcp."""
    return f"{p.host()}->{p.container_port}/{p.proto}"


# --- Network=container:NAME --------------------------------------------------------------------


def join_target(network: str) -> tuple[int, state.ContainerRecord]:
    """Network=container:NAME or NAME.container: an fd (close-on-exec) of that running
    container's network namespace, for the init to setns() into, and its record. The
    container is found by its record (a unit, or a ContainerName=), checked to be its
    unit's process, and alive still once its namespace is open (a pidfd), so a pid reused
    meanwhile is never joined. NetworkError when it is not running."""
    import select

    from sdcontainer.errors import RecordError
    from sdcontainer.values import joined_unit

    unit = joined_unit(network)
    name = unit or network.partition(":")[2]
    try:
        record = _running_record(name)
    except RecordError as error:
        raise NetworkError(f"Network={network}: {error}") from None
    not_running = NetworkError(f"Network={network}: container {name!r} is not running")
    if record is None:
        raise not_running
    try:
        pidfd = linux.pidfd_open(record.pid)
    except OSError:
        raise not_running from None
    try:
        try:
            with open(f"/proc/{record.pid}/cgroup", encoding="utf-8") as f:
                if f"/{record.unit}/" not in f.read().replace("\n", "/\n"):
                    raise not_running
            fd = os.open(f"/proc/{record.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise not_running from None
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if poller.poll(0):  # readable: it exited, and the fd may be of whoever has its pid now
            os.close(fd)
            raise not_running
        return fd, record
    finally:
        os.close(pidfd)


def _running_record(name: str) -> state.ContainerRecord | None:
    """The record of the container `name`: a unit (web.service, or web for web.service), else
    the one container whose ContainerName= it is."""
    unit = name if name.endswith(".service") else f"{name}.service"
    record = state.read(unit) if "/" not in unit else None
    if record is None:
        matches = [r for r in state.records([]) if r.name == name]
        if len(matches) > 1:
            units = ", ".join(r.unit for r in matches)
            raise NetworkError(f"several containers are called {name!r} ({units}); name the unit")
        record = matches[0] if matches else None
    return record


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
    """Drop what `unit` holds (sdcontainer.release, the ExecStopPost= verb's module)."""
    from sdcontainer.release import release as release_unit

    return release_unit(unit, tag)
