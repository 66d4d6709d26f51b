"""Named networks: the [Network] key table, their definitions, and creating and removing them.

A network is a bridge, its subnets (IPv4 and/or IPv6, each with a gateway on the bridge and
an optional IPRange= of assignable addresses), whether it is internal (no route out, no
masquerade, no published ports), the DNS= servers of its containers, and labels. It comes
from a `.network` file (the generator writes NAME-network.service, whose ExecStart= is
`sdcontainer-launcher network-create OPTIONS`, the file's keys as options, from the table
below) or from `sdcontainer network create`, which takes the same options.

Where a definition lives, and why:

    /run/sdcontainer/networks/NAME/network.json     the definition, resolved (its bridge,
                                                    subnets and gateways chosen); the IPAM's
                                                    leases of NAME are beside it (sdcontainer.ipam)
    /run/sdcontainer/network-files/FILE.network     a symlink to NAME: how a container's
                                                    Network=FILE.network finds its network
    /var/lib/sdcontainer/networks/NAME.json         `sdcontainer network create` only: the
                                                    options it was given, kept across reboots

Under /run because what a definition describes does not outlive a boot either: the bridge,
its addresses, the nft elements and the leases are all gone at reboot, and a `.network`
file's network is made again by its service at every boot. A container's start reads the
one small file (its network is known by name) and nothing else; the first start after a
reboot of a network made by the CLI re-creates it from /var/lib first. Creating and removing
networks take /run/sdcontainer/networks.lock (subnets and bridge names are chosen against
every other network's); a container's start never takes it.

Bridge names: InterfaceName=, else `sdc` and 8 hex digits of the CRC-32 of the network's
name (11 characters, under the kernel's 15; the same name gives the same bridge at every
boot). A subnet not given: IPv4 10.89.N.0/24, N from the name's CRC-32 then the next free
one; IPv6 (IPv6=yes) a unique local /64, fdXX:XXXX:XXXX::/64 from the name's CRC-32s.
"""

from __future__ import annotations

import fcntl
import os

from sdcontainer import ipam, state
from sdcontainer.errors import ConfigError, NetworkError, UsageError
from sdcontainer.inet import AF_INET, AF_INET6, Subnet, canonical, parse_address
from sdcontainer.keys import Key, Kind, table_values
from sdcontainer.record import record, replace
from sdcontainer.text import ALNUM, word
from sdcontainer.values import (
    DEFAULT_BRIDGE,
    DEFAULT_NETWORK,
    DEFAULT_SUBNET,
    ParseContext,
    is_network_name,
    parse_bool,
    parse_dns_server,
    parse_label,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from sdcontainer.unitfile import UnitFile

FILES_DIR = "/run/sdcontainer/network-files"
PERSISTENT_DIR = "/var/lib/sdcontainer/networks"
LOCK = "/run/sdcontainer/networks.lock"
DEFINITION = "network.json"
# Network= values that name the default network; a named network cannot take them
RESERVED = ("bridge", "private", "none", "host", "container", DEFAULT_NETWORK)
AUTO_V4 = (10, 89)  # 10.89.N.0/24, as podman's networks after its default
OPTIONS = ("mtu",)


# --- value grammars of [Network] -----------------------------------------------------------


def parse_network_name(value: str, ctx: ParseContext) -> str:
    if not is_network_name(value) or value in RESERVED:
        raise ValueError(
            f"{value!r} is not a network name (a letter or digit, then letters, digits and _.-; "
            f"not {', '.join(RESERVED)})"
        )
    return value


def parse_driver(value: str, ctx: ParseContext) -> str:
    if value != "bridge":
        raise ValueError(f"driver {value!r} is not supported; sdcontainer makes bridge networks only (Driver=bridge)")
    return value


def parse_subnet(value: str, ctx: ParseContext) -> str:
    """A subnet in CIDR form, host bits clear: 10.90.0.0/24, fd00:90::/64."""
    subnet = Subnet.parse(value)
    if subnet.family == AF_INET and subnet.prefixlen > 30:
        raise ValueError(f"{value}: an IPv4 subnet needs room for a gateway and a container (at most /30)")
    if subnet.family == AF_INET6 and subnet.prefixlen > 126:
        raise ValueError(f"{value}: an IPv6 subnet needs room for a gateway and a container (at most /126)")
    return str(subnet)


def parse_ip_range(value: str, ctx: ParseContext) -> str:
    """IPRange=: a subnet in CIDR form, inside its Subnet= (checked with it)."""
    return str(Subnet.parse(value))


def parse_gateway(value: str, ctx: ParseContext) -> str:
    try:
        return canonical(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def parse_network_dns(value: str, ctx: ParseContext) -> str:
    if value == "none":
        raise ValueError("none is for a container's DNS=; a network's DNS= names servers")
    return canonical(parse_dns_server(value, ctx))


def parse_network_option(value: str, ctx: ParseContext) -> str:
    name, eq, setting = value.partition("=")
    if name not in OPTIONS or not eq:
        raise ValueError(f"option {value!r} is not supported; supported: mtu=BYTES")
    if not setting.isdigit() or not 68 <= int(setting) <= 65535:
        raise ValueError(f"mtu={setting}: an MTU is 68-65535 bytes")
    return f"{name}={int(setting)}"


def parse_interface_name(value: str, ctx: ParseContext) -> str:
    if not word(value, ALNUM, ALNUM + "_.-", 15):
        raise ValueError(f"{value!r} is not an interface name (letters, digits and _.-, at most 15)")
    return value


# --- the table -----------------------------------------------------------------------------

KEYS: tuple[Key, ...] = (
    Key(
        "NetworkName",
        Kind.SINGLE,
        "name",
        parse_network_name,
        option="--name",
        metavar="NAME",
        doc="The network's name, by which containers join it (*Network=*_NAME_) and "
        "*sdcontainer network* shows it. Default: systemd-_STEM_ for _STEM_.network, as with Quadlet.",
    ),
    Key(
        "Driver",
        Kind.SINGLE,
        "driver",
        parse_driver,
        option="--driver",
        metavar="DRIVER",
        doc="*bridge*, the only driver: a Linux bridge on the host, a veth pair per container.",
    ),
    Key(
        "Subnet",
        Kind.LIST,
        "subnets",
        parse_subnet,
        option="--subnet",
        metavar="CIDR",
        doc="A subnet of the network (repeat the key for several, IPv4 and IPv6 alike). "
        "Default: a free IPv4 10.89._N_.0/24 (and a unique local IPv6 /64 with *IPv6=yes*).",
    ),
    Key(
        "Gateway",
        Kind.LIST,
        "gateways",
        parse_gateway,
        option="--gateway",
        metavar="ADDRESS",
        doc="The gateway address (the bridge's, in the subnet) of the *Subnet=* of the same "
        "position. Default: the subnet's first address.",
    ),
    Key(
        "IPRange",
        Kind.LIST,
        "ip_ranges",
        parse_ip_range,
        option="--ip-range",
        metavar="CIDR",
        doc="The addresses containers are given in the *Subnet=* of the same position, a subnet "
        "inside it. Default: the whole subnet.",
    ),
    Key(
        "Internal",
        Kind.SINGLE,
        "internal",
        parse_bool,
        option="--internal",
        metavar="BOOL",
        doc="No way out: no default route in the containers, no forwarding and no masquerade on "
        "the bridge, no *PublishPort=* for its containers. They still reach each other. Default: no.",
    ),
    Key(
        "IPv6",
        Kind.SINGLE,
        "ipv6",
        parse_bool,
        option="--ipv6",
        metavar="BOOL",
        doc="Gives the network an IPv6 subnet too: a unique local /64 when no *Subnet=* is IPv6. Default: no.",
    ),
    Key(
        "DNS",
        Kind.LIST,
        "dns",
        parse_network_dns,
        option="--dns",
        metavar="IP",
        doc="A name server for the /etc/resolv.conf of the network's containers, in place of the "
        "host's (a container's own *DNS=* wins).",
    ),
    Key(
        "DisableDNS",
        Kind.SINGLE,
        "disable_dns",
        parse_bool,
        option="--disable-dns",
        metavar="BOOL",
        doc="The containers of the network do not find each other by name (their /etc/hosts "
        "lists only themselves). Default: no.",
    ),
    Key(
        "Label",
        Kind.WORDS,
        "labels",
        parse_label,
        option="--label",
        metavar="KEY=VALUE",
        doc="Metadata, shown by *sdcontainer network inspect*.",
    ),
    Key(
        "Options",
        Kind.LIST,
        "options",
        parse_network_option,
        option="--opt",
        metavar="mtu=BYTES",
        separator=",",
        doc="Driver options; only *mtu=*_BYTES_ (of the bridge and the containers' interfaces).",
    ),
    Key(
        "InterfaceName",
        Kind.SINGLE,
        "interface_name",
        parse_interface_name,
        option="--interface-name",
        metavar="NAME",
        doc="The bridge's name on the host. Default: sdc and 8 hex digits of the network name's CRC-32.",
    ),
    Key(
        "NetworkDeleteOnStop",
        Kind.SINGLE,
        "delete_on_stop",
        parse_bool,
        metavar="BOOL",
        doc="Stopping the network's service removes the network (bridge, definition, leases). Default: no.",
    ),
)

KEYS_BY_NAME = {key.name: key for key in KEYS}
KEYS_BY_OPTION = {key.option: key for key in KEYS if key.option}
# Quadlet's [Network] keys that sdcontainer does not implement
QUADLET_ONLY_KEYS = frozenset(["ContainersConfModule", "GlobalArgs", "IPAMDriver", "PodmanArgs", "ServiceName"])


@record
class NetworkSpec:
    """What a .network file or `sdcontainer network create` asks for."""

    name: str = ""
    driver: str = "bridge"
    subnets: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    ip_ranges: tuple[str, ...] = ()
    internal: bool = False
    ipv6: bool = False
    dns: tuple[str, ...] = ()
    disable_dns: bool = False
    labels: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    interface_name: str | None = None
    delete_on_stop: bool = False


@record
class Network:
    """A network as made: what a container's start reads (network.json)."""

    name: str
    bridge: str
    subnets: tuple[str, ...]  # "10.90.0.0/24", "fd90::/64"
    gateways: tuple[str, ...]  # one per subnet
    ranges: tuple[str, ...]  # one per subnet; "" for the whole subnet
    internal: bool = False
    dns: tuple[str, ...] = ()
    disable_dns: bool = False
    labels: tuple[str, ...] = ()
    mtu: int | None = None
    file: str = ""  # the .network file it came from ("" for the CLI's)
    argv: tuple[str, ...] = ()  # the options it was made with (the same argv: nothing to do)

    @property
    def driver(self) -> str:
        return "bridge"

    def pools(self) -> list[ipam.Pool]:
        return [ipam.Pool(s, g, r or None) for s, g, r in zip(self.subnets, self.gateways, self.ranges, strict=True)]

    def ipam(self) -> ipam.Ipam:
        return ipam.Ipam(self.name, self.pools())

    def gateway_interfaces(self) -> list[str]:
        """The bridge's addresses: '10.90.0.1/24'."""
        return [f"{g}/{s.partition('/')[2]}" for s, g in zip(self.subnets, self.gateways, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "bridge": self.bridge,
            "subnets": [
                {"subnet": s, "gateway": g, **({"ip_range": r} if r else {})}
                for s, g, r in zip(self.subnets, self.gateways, self.ranges, strict=True)
            ],
            "internal": self.internal,
            "dns": list(self.dns),
            "disable_dns": self.disable_dns,
            "labels": dict(item.split("=", 1) for item in self.labels),
            "mtu": self.mtu,
            "file": self.file,
            "argv": list(self.argv),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        subnets = data["subnets"]
        return cls(
            name=str(data["name"]),
            bridge=str(data["bridge"]),
            subnets=tuple(str(s["subnet"]) for s in subnets),
            gateways=tuple(str(s["gateway"]) for s in subnets),
            ranges=tuple(str(s.get("ip_range", "")) for s in subnets),
            internal=bool(data.get("internal")),
            dns=tuple(str(d) for d in data.get("dns", ())),
            disable_dns=bool(data.get("disable_dns")),
            labels=tuple(f"{k}={v}" for k, v in dict(data.get("labels", {})).items()),
            mtu=int(data["mtu"]) if data.get("mtu") is not None else None,
            file=str(data.get("file", "")),
            argv=tuple(str(a) for a in data.get("argv", ())),
        )


#: the default network, which has no definition file; as podman's default network, its
#: containers are not given each other's names (and start without the names' lock)
DEFAULT = Network(DEFAULT_NETWORK, DEFAULT_BRIDGE, (DEFAULT_SUBNET,), ("10.88.0.1",), ("",), disable_dns=True)


# --- a file's section or a command line -> NetworkSpec ---------------------------------------


def spec_from_unit(unit: UnitFile, errors: list[ConfigError] | None = None) -> NetworkSpec:
    """The [Network] section: each key through the table, then the checks between keys."""
    values, grouped = table_values(unit, "Network", KEYS_BY_NAME, QUADLET_ONLY_KEYS, errors)
    spec = NetworkSpec(**values)
    for message, field in problems(spec):
        entries = grouped.get(field)
        error = entries[-1].error(message) if entries else ConfigError(f"[Network]: {message}", unit.path)
        if errors is None:
            raise error
        errors.append(error)
    return spec


def problems(spec: NetworkSpec) -> Iterator[tuple[str, str]]:
    """(message, field) of each check between keys that fails (Quadlet's own among them)."""
    if (spec.gateways or spec.ip_ranges) and not spec.subnets:
        yield "cannot set Gateway= or IPRange= without Subnet=", "gateways" if spec.gateways else "ip_ranges"
        return
    if len(spec.gateways) > len(spec.subnets):
        yield "cannot set more gateways than subnets (Gateway= pairs with the Subnet= of its position)", "gateways"
    if len(spec.ip_ranges) > len(spec.subnets):
        yield "cannot set more ranges than subnets (IPRange= pairs with the Subnet= of its position)", "ip_ranges"
    for i, subnet in enumerate(spec.subnets):
        pool_subnet = Subnet.parse(subnet)
        gateway = spec.gateways[i] if i < len(spec.gateways) else None
        ip_range = spec.ip_ranges[i] if i < len(spec.ip_ranges) else None
        try:
            ipam.Pool(subnet, gateway, ip_range)
        except ValueError as error:
            yield f"Subnet={subnet}: {error}", "ip_ranges" if ip_range and "range" in str(error) else "gateways"
        for other in spec.subnets[:i]:
            if _overlap(pool_subnet, Subnet.parse(other)):
                yield f"Subnet={subnet} overlaps Subnet={other}", "subnets"


def _overlap(a: Subnet, b: Subnet) -> bool:
    return a.family == b.family and (a.network in b or b.network in a)


def to_argv(spec: NetworkSpec) -> list[str]:
    """The launcher's network-create options of `spec`, in table order, defaults left out."""
    default = NetworkSpec()
    argv: list[str] = []
    for key in KEYS:
        value = getattr(spec, key.field)
        if key.option is None or value == getattr(default, key.field):
            continue
        for item in value if key.repeated else (value,):
            argv += [key.option, ("yes" if item else "no") if isinstance(item, bool) else str(item)]
    return argv


def spec_from_argv(argv: list[str]) -> NetworkSpec:
    """The inverse of to_argv (network-create's options; `sdcontainer network create`'s)."""
    ctx = ParseContext(expanded=True)
    values: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    i = 0
    while i < len(argv):
        option, eq, value = argv[i].partition("=")
        key = KEYS_BY_OPTION.get(option)
        if key is None:
            raise UsageError(f"unknown option {argv[i]!r}")
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"option {option} needs a value")
            i += 1
            value = argv[i]
        i += 1
        try:
            if key.repeated:
                for item in value.split(key.separator) if key.separator else (value,):
                    lists.setdefault(key.field, []).append(key.parse(item, ctx))
            else:
                values[key.field] = key.parse(value, ctx)
        except ValueError as error:
            raise UsageError(f"{option} {value!r}: {error}") from None
    values.update({field: tuple(items) for field, items in lists.items()})
    spec = NetworkSpec(**values)
    for message, _ in problems(spec):
        raise UsageError(message)
    return spec


# --- definitions on disk -------------------------------------------------------------------


def definition_path(name: str) -> str:
    return os.path.join(ipam.STATE_DIR, name, DEFINITION)


def _read_json(path: str) -> Any:
    from sdcontainer.firewall import loads  # JSON without the json package's import of re

    with open(path, encoding="utf-8") as f:
        return loads(f.read())


def _write_json(path: str, data: object) -> None:
    from sdcontainer.firewall import dumps

    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(data) + "\n")
    os.replace(tmp, path)


def resolve(network: str) -> str:
    """A container's Network= value as a network's name: NAME.network through the symlink
    its network-create left; a name as it is."""
    if network.endswith(".network"):
        try:
            return os.readlink(os.path.join(FILES_DIR, network))
        except FileNotFoundError:
            stem = network[: -len(".network")]
            raise NetworkError(
                f"Network={network}: the network is not created (is {stem}-network.service active? "
                f"`systemctl start {stem}-network.service`)"
            ) from None
    return network


def load(network: str) -> Network:
    """The definition of a container's network (Network= as written, or a name): one small
    file read, or none for the default network. A network made by the CLI before a reboot
    is made again here. NetworkError when there is none."""
    if network == DEFAULT_NETWORK:
        return DEFAULT
    name = resolve(network)
    try:
        return Network.from_json(_read_json(definition_path(name)))
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as error:
        raise NetworkError(f"network {name}: its definition {definition_path(name)} is damaged: {error}") from None
    saved = os.path.join(PERSISTENT_DIR, f"{name}.json")
    if os.path.exists(saved):
        return create(spec_from_argv([str(a) for a in _read_json(saved)]))
    raise NetworkError(
        f"network {name} does not exist (create it with `sdcontainer network create {name}`, "
        "or name a .network file: Network=NAME.network)"
    )


def defined() -> list[Network]:
    """Every named network made on this boot, by name."""
    found = []
    try:
        names = sorted(os.listdir(ipam.STATE_DIR))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            found.append(Network.from_json(_read_json(definition_path(name))))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # the default network's leases, or a half-removed one
    return found


def _lock() -> int:
    os.makedirs(os.path.dirname(LOCK), mode=0o755, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def bridge_name(name: str) -> str:
    import zlib

    return f"sdc{zlib.crc32(name.encode()):08x}"


def _choose(spec: NetworkSpec, name: str, others: list[Network]) -> Network:
    """The definition of `spec`: bridge and subnets chosen against the `others`."""
    import zlib

    taken = [Subnet.parse(s) for n in [DEFAULT, *others] for s in n.subnets]
    subnets = list(spec.subnets)
    families = {Subnet.parse(s).family for s in subnets}
    if not subnets:
        start = zlib.crc32(name.encode()) % 256
        for step in range(256):
            candidate = Subnet.parse(f"{AUTO_V4[0]}.{AUTO_V4[1]}.{(start + step) % 256}.0/24")
            if not any(_overlap(candidate, t) for t in taken):
                subnets.append(str(candidate))
                break
        else:
            raise NetworkError(f"network {name}: no free /24 left in 10.89.0.0/16; give a Subnet=")
    if spec.ipv6 and AF_INET6 not in families:
        a, b = zlib.crc32(name.encode()), zlib.crc32(name.encode() + b"/6") & 0xFF
        subnets.append(f"fd{a >> 24:02x}:{(a >> 8) & 0xFFFF:04x}:{(a & 0xFF) << 8 | b:04x}::/64")
    for s in subnets:
        for n in others:
            for t in n.subnets:
                if _overlap(Subnet.parse(s), Subnet.parse(t)):
                    raise NetworkError(f"network {name}: subnet {s} overlaps {t} of network {n.name}")
        if _overlap(Subnet.parse(s), Subnet.parse(DEFAULT_SUBNET)):
            raise NetworkError(f"network {name}: subnet {s} overlaps the default network's {DEFAULT_SUBNET}")
    gateways, ranges = [], []
    for i, s in enumerate(subnets):
        pool = ipam.Pool(s, spec.gateways[i] if i < len(spec.gateways) else None)
        assert pool.gateway is not None
        gateways.append(pool.subnet.address(pool.gateway))
        ranges.append(spec.ip_ranges[i] if i < len(spec.ip_ranges) else "")
    bridge = spec.interface_name or bridge_name(name)
    for n in others:
        if n.bridge == bridge:
            raise NetworkError(f"network {name}: bridge {bridge} is network {n.name}'s")
    if bridge == DEFAULT_BRIDGE:
        raise NetworkError(f"network {name}: bridge {bridge} is the default network's")
    mtu = next((int(o.partition("=")[2]) for o in reversed(spec.options) if o.startswith("mtu=")), None)
    return Network(
        name=name,
        bridge=bridge,
        subnets=tuple(subnets),
        gateways=tuple(gateways),
        ranges=tuple(ranges),
        internal=spec.internal,
        dns=spec.dns,
        disable_dns=spec.disable_dns,
        labels=spec.labels,
        mtu=mtu,
    )


def unit_alive(unit: str) -> bool:
    """The unit is active (or starting, or stopping): its RuntimeDirectory= exists (as
    sdcontainer.network's, which imports this module)."""
    return os.path.isdir(state.container_dir(unit))


def users(network: Network, alive: Callable[[str], bool]) -> list[str]:
    """The running units with an address on `network`."""
    return sorted({unit for unit in ipam.Ipam(network.name, []).leases().values() if alive(unit)})


def create(spec: NetworkSpec, *, file: str = "", persist: bool = False) -> Network:
    """Make the network of `spec` (named spec.name): its definition, its bridge, its
    masquerade. Again with the same options, it only makes sure of the bridge (a service
    started again, a boot); with other options, the network is made anew when no running
    container is on it, else NetworkError names them."""
    if not spec.name:
        raise UsageError("a network needs a name")
    argv = tuple(to_argv(spec))
    lock = _lock()
    try:
        others = [n for n in defined() if n.name != spec.name]
        try:
            old: Network | None = Network.from_json(_read_json(definition_path(spec.name)))
        except (OSError, ValueError, KeyError, TypeError):
            old = None
        if old is not None and old.file and file and old.file != file:
            raise NetworkError(
                f"network {spec.name} is made by {old.file} already; give {file} a NetworkName= of its own"
            )
        if old is not None and (old.argv != argv or old.file != file):
            using = users(old, unit_alive)
            if using:
                raise NetworkError(
                    f"network {spec.name} exists with other settings and is in use by {', '.join(using)}; "
                    "stop them to change it"
                )
            _teardown(old)
            old = None
        network = old or replace(_choose(spec, spec.name, others), file=file, argv=argv)
        _write_json(definition_path(network.name), network.to_json())
        if file:
            link = os.path.join(FILES_DIR, file)
            os.makedirs(FILES_DIR, mode=0o755, exist_ok=True)
            _unlink(link)
            os.symlink(network.name, link)
        if persist:
            _write_json(os.path.join(PERSISTENT_DIR, f"{network.name}.json"), list(argv))
        bring_up(network)
        return network
    finally:
        os.close(lock)


def bring_up(network: Network) -> None:
    """The bridge (created if missing, with the gateways) and the masquerade of its subnets."""
    from sdcontainer import netlink

    netlink.ensure_bridge(network.bridge, network.gateway_interfaces(), mtu=network.mtu, internal=network.internal)
    if not network.internal:
        from sdcontainer.firewall import Firewall

        with Firewall() as fw:
            fw.add_network(network.name, network.subnets)


def _teardown(network: Network) -> None:
    """Remove the bridge, the nft elements, the leases and the definition of `network`."""
    import shutil

    from sdcontainer import netlink
    from sdcontainer.firewall import Firewall

    netlink.detach(network.bridge)  # a link by name: the bridge
    with Firewall() as fw:
        fw.remove_network(network.name)
    if network.file:
        link = os.path.join(FILES_DIR, network.file)
        if _readlink(link) == network.name:
            _unlink(link)
    shutil.rmtree(os.path.join(ipam.STATE_DIR, network.name), ignore_errors=True)


def remove(name: str, *, alive: Callable[[str], bool] | None = None) -> Network:
    """Remove network `name` (as a container names it): refused while a running unit is on
    it (NetworkError naming them)."""
    if name == DEFAULT_NETWORK:
        raise NetworkError(f"{DEFAULT_NETWORK} is the default network; it cannot be removed")
    name = resolve(name)
    lock = _lock()
    try:
        try:
            network = Network.from_json(_read_json(definition_path(name)))
        except FileNotFoundError:
            saved = os.path.join(PERSISTENT_DIR, f"{name}.json")
            if _unlink(saved):
                return Network(name, "", (), (), ())
            raise NetworkError(f"network {name} does not exist") from None
        using = users(network, alive or unit_alive)
        if using:
            raise NetworkError(f"network {name} is in use by {', '.join(using)}; stop them first")
        _teardown(network)
        _unlink(os.path.join(PERSISTENT_DIR, f"{name}.json"))
        return network
    finally:
        os.close(lock)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# --- the launcher's verbs -------------------------------------------------------------------


def create_command(args: list[str]) -> int:
    """`sdcontainer-launcher network-create [--file FILE.network] OPTIONS`: ExecStart= of a
    .network file's service."""
    file = ""
    if args[:1] == ["--file"] and len(args) > 1:
        file, args = args[1], args[2:]
        if not file.endswith(".network") or "/" in file:
            raise UsageError(f"--file {file!r}: expected NAME.network")
    create(spec_from_argv(args), file=file)
    return 0


def remove_command(args: list[str]) -> int:
    """`sdcontainer-launcher network-remove NAME`: ExecStopPost= with NetworkDeleteOnStop=yes."""
    if len(args) != 1:
        raise UsageError("usage: network-remove NAME")
    try:
        remove(args[0])
    except NetworkError as error:
        if "does not exist" not in str(error):
            raise
    return 0


# --- a container's side -------------------------------------------------------------------


def check_address(network: Network, address: str, key: str) -> None:
    """IP=/IP6= inside one of the network's subnets, else NetworkError saying which."""
    family, value = parse_address(address)
    for s in network.subnets:
        subnet = Subnet.parse(s)
        if subnet.family == family and value in subnet:
            return
    subnets = ", ".join(network.subnets)
    version = 4 if family == AF_INET else 6
    if not any(Subnet.parse(s).family == family for s in network.subnets):
        raise NetworkError(f"{key}={address}: network {network.name} has no IPv{version} subnet ({subnets})")
    raise NetworkError(f"{key}={address} is not in a subnet of network {network.name} ({subnets})")


# --- `sdcontainer network` ----------------------------------------------------------------


def listing() -> list[Network]:
    """The default network and every named one made on this boot, by name."""
    return [DEFAULT, *defined()]


def containers(network: Network) -> dict[str, list[str]]:
    """unit -> its addresses on `network`, for the running units."""
    found: dict[str, list[str]] = {}
    for address, unit in sorted(ipam.Ipam(network.name, []).leases().items()):
        if unit_alive(unit):
            found.setdefault(unit, []).append(address)
    return found


def inspect(name: str) -> dict[str, Any]:
    network = load(name)
    return {**network.to_json(), "containers": containers(network)}
