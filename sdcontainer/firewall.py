"""NAT and published ports in one nftables table of our own, `table inet sdcontainer`.

    map any4   inet_proto . inet_service             : ipv4_addr . inet_service
    map addr4  ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
    map any6 / addr6                                   (the same for IPv6)
    set masq4 / masq6                                  (interval: the networks' subnets)
    chain published     dnat through addr4, then any4 (addr6, then any6)
    chain prerouting    nat, dstnat:   fib daddr type local jump published
    chain output        nat, -100:     fib daddr type local jump published
                                       (the host itself, 127.0.0.1 included, reaches
                                       published ports; needs route_localnet=1 on the
                                       bridge, which netlink.ensure_bridge sets)
    chain postrouting   nat, srcnat:   ip saddr @masq4 ip daddr != @masq4 masquerade
                                       ip saddr @masq4 ct status dnat masquerade (hairpin:
                                         a container reaching a published port of its own
                                         network, itself included)
                                       ip saddr 127.0.0.0/8 ct status dnat masquerade
                                       (and the IPv6 pair without the loopback rule)

Per container nothing but map elements is added or removed (as systemd's firewall-util
does): each element carries its unit's name as its comment, which is how `published(unit)`
lists and `release(unit)` deletes them; per network, one masq element commented with the
network's name. Rules are written once, when the table is created (and again after
`nft flush ruleset`, by the next change: the table is re-created on ENOENT).

Port conflicts: a host port (per protocol) can be published by one unit, unless both name
different host addresses; "any" conflicts with every address. The check reads the maps and
the change is one transaction, both under a flock of their own (`/run/sdcontainer/
firewall.lock`) held for about a millisecond, never across a whole start. A conflict with a
unit that `alive` says is gone removes that unit's elements instead (the reclaim after a
`kill -9`); otherwise NetworkError names both units. A mapping without a host port
(PublishPort=80) gets one under the same lock (choose_ports): a port of the kernel's
ephemeral range that nothing on the host is bound to and no running unit publishes.

nft is driven in-process through libnftables (`libnftables.so.1`, Debian's libnftables1)
with JSON commands, loaded with the same ctypes subset as sdcontainer.linux; without the
library, `nft -j -f -` is run instead (8-16 ms per change rather than about 0.1 ms). JSON
is written and read with the `_json` C module directly: `json` imports `re` (~8 ms).
"""

from __future__ import annotations

import _ctypes
import _json
import fcntl
import os

from sdcontainer import linux
from sdcontainer.errors import NetworkError
from sdcontainer.inet import AF_INET, AF_INET6, canonical, parse_address
from sdcontainer.record import record
from sdcontainer.values import PortMapping as PortMapping  # re-exported: publish() takes them

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

TABLE = "sdcontainer"
LOCK_PATH = "/run/sdcontainer/firewall.lock"
LIBNFTABLES = "libnftables.so.1"

NFT_CTX_OUTPUT_JSON = 1 << 4


# --- JSON without the json package ----------------------------------------------------------


def dumps(obj: object) -> str:
    """JSON for the few types nft commands use: dict, list/tuple, str, int, bool, None."""
    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(int(obj))
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{dumps(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ", ".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]  # any object with these attributes


def loads(text: str) -> Any:
    text = text.strip()
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if end != len(text):
        raise ValueError(f"trailing data after JSON: {text[end : end + 80]!r}")
    return value


# --- nft ---------------------------------------------------------------------------------


class NftError(OSError):
    """nft refused a command; the message is nft's, with the command's gist."""


class _NftFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL
    _restype_ = linux.c_int


class Nft:
    """One libnftables context (JSON in and out), or `nft -j -f -` without the library. Its
    netlink socket belongs to the network namespace the context was made in."""

    def __init__(self, library: str | None = LIBNFTABLES) -> None:
        self._ctx: int | None = None
        if library is None:
            return
        try:
            self._handle = _ctypes.dlopen(library, os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError:
            return  # the fallback: the nft program
        f = self._function
        self._new = f("nft_ctx_new", linux.c_void_p, linux.c_uint32)
        self._free = f("nft_ctx_free", None, linux.c_void_p)
        self._set_flags = f("nft_ctx_output_set_flags", None, linux.c_void_p, linux.c_uint32)
        self._buffer_output = f("nft_ctx_buffer_output", linux.c_int, linux.c_void_p)
        self._buffer_error = f("nft_ctx_buffer_error", linux.c_int, linux.c_void_p)
        self._run = f("nft_run_cmd_from_buffer", linux.c_int, linux.c_void_p, linux.c_char_p)
        self._output = f("nft_ctx_get_output_buffer", linux.c_char_p, linux.c_void_p)
        self._error = f("nft_ctx_get_error_buffer", linux.c_char_p, linux.c_void_p)
        ctx = self._new(0)
        if not ctx:
            raise NftError("libnftables: cannot create a context")
        self._set_flags(ctx, NFT_CTX_OUTPUT_JSON)
        if self._buffer_output(ctx) or self._buffer_error(ctx):
            self._free(ctx)
            raise NftError("libnftables: cannot buffer its output")
        self._ctx = ctx

    def _function(self, name: str, restype: Any, *argtypes: Any) -> Any:
        function = _NftFunction((name, self))  # type: ignore[arg-type]  # any object with _handle
        function.restype = restype
        function.argtypes = argtypes
        return function

    @property
    def in_process(self) -> bool:
        return self._ctx is not None

    def close(self) -> None:
        if self._ctx is not None:
            self._free(self._ctx)
            self._ctx = None

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, commands: list[dict[str, Any]]) -> Any:
        """Run a batch (one transaction) of JSON commands; returns nft's JSON output (for
        list commands) or None."""
        output = self.run_text(dumps({"nftables": commands}))
        return loads(output) if output.strip() else None

    def run_text(self, text: str) -> str:
        """Run commands (JSON, or nft's own syntax) as one transaction; nft's output."""
        if self._ctx is not None:
            status = self._run(self._ctx, text.encode())
            output = (self._output(self._ctx) or b"").decode(errors="replace")
            error = (self._error(self._ctx) or b"").decode(errors="replace")
        else:
            import subprocess

            try:
                # -j only for JSON: with it, nft reads stdin as JSON and, failing, finds it empty
                json_flag = ["-j"] if text.lstrip().startswith("{") else []
                done = subprocess.run(["nft", *json_flag, "-f", "-"], input=text, capture_output=True, text=True)
            except FileNotFoundError:
                raise NftError("neither libnftables.so.1 nor the nft program is installed") from None
            status, output, error = done.returncode, done.stdout, done.stderr
        if status != 0:
            raise NftError(_first_error(error) or f"nft failed with status {status}")
        return output


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Error:"):
            return line[len("Error:") :].strip()
    return text.strip()


# --- what is published (PortMapping, PublishPort='s grammar, is sdcontainer.values') ---------


@record
class Published:
    """One published port as the table holds it: one map element."""

    unit: str
    proto: str
    host_ip: str  # "": any
    host_port: int
    container_ip: str
    container_port: int

    def host(self) -> str:
        ip = self.host_ip or ("0.0.0.0" if ":" not in self.container_ip else "::")
        return f"[{ip}]:{self.host_port}" if ":" in ip else f"{ip}:{self.host_port}"

    def __str__(self) -> str:
        ip = f"[{self.container_ip}]" if ":" in self.container_ip else self.container_ip
        return f"{self.host()}/{self.proto} -> {ip}:{self.container_port} ({self.unit})"


def _map_name(family: int, specific: bool) -> str:
    return ("addr" if specific else "any") + ("4" if family == AF_INET else "6")


def _key(p: Published, family: int) -> dict[str, Any]:
    parts: list[Any] = [p.proto, p.host_port]
    if p.host_ip:
        parts.insert(0, p.host_ip)
    return {"concat": parts}


# --- the table ---------------------------------------------------------------------------


def _skeleton(table: str) -> str:
    """The table in nft's own syntax: nft 1.0.6 (Debian 12) cannot create a map with a
    concatenated data type from JSON (a list for "map" silently makes a plain set, and a
    DNAT rule using it then crashes nft), so the table is created from text, once, through
    the same context; every per-container change is JSON."""
    return f"""
table inet {table} {{
    map any4 {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
    map addr4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
    map any6 {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
    map addr6 {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
    set masq4 {{ type ipv4_addr; flags interval; }}
    set masq6 {{ type ipv6_addr; flags interval; }}
    chain published {{
        meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @addr4
        meta nfproto ipv4 dnat ip to meta l4proto . th dport map @any4
        meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @addr6
        meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @any6
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump published
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        fib daddr type local jump published
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @masq4 ip daddr != @masq4 masquerade
        ip saddr @masq4 ct status dnat masquerade
        ip saddr 127.0.0.0/8 ct status dnat masquerade
        ip6 saddr @masq6 ip6 daddr != @masq6 masquerade
        ip6 saddr @masq6 ct status dnat masquerade
    }}
}}
"""


class Firewall:
    """The table `inet sdcontainer` in the caller's network namespace."""

    def __init__(self, *, lock_path: str | None = None, table: str = TABLE, nft: Nft | None = None) -> None:
        self.table = table
        self.lock_path = lock_path if lock_path is not None else LOCK_PATH
        self._nft = nft

    @property
    def nft(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    def close(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None

    def __enter__(self) -> Firewall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock(self) -> int:
        os.makedirs(os.path.dirname(self.lock_path) or ".", mode=0o755, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _ref(self, **fields: Any) -> dict[str, Any]:
        return {"family": "inet", "table": self.table, **fields}

    def _list(self) -> list[dict[str, Any]] | None:
        """The table's objects, or None when it does not exist."""
        try:
            out = self.nft.run([{"list": {"table": {"family": "inet", "name": self.table}}}])
        except NftError as e:
            if "No such file or directory" in str(e):
                return None
            raise
        return list(out["nftables"]) if out else []

    def _read(self, create: bool) -> tuple[list[Published], dict[str, list[tuple[int, Any]]]] | None:
        """The published ports and the masq elements (by network) of the table; None when
        it does not exist, unless `create`, which creates it."""
        objects = self._list()
        if objects is None:
            if not create:
                return None
            self.nft.run_text(_skeleton(self.table))
            return [], {}
        published: list[Published] = []
        masq: dict[str, list[tuple[int, Any]]] = {}
        for obj in objects:
            if "map" in obj and obj["map"].get("name") in ("any4", "addr4", "any6", "addr6"):
                for key, value in obj["map"].get("elem", []):
                    elem = key.get("elem", {})
                    parts = elem.get("val", {}).get("concat", [])
                    target = value.get("concat", [])
                    if len(parts) not in (2, 3) or len(target) != 2:
                        continue
                    host_ip = parts[0] if len(parts) == 3 else ""
                    unit = elem.get("comment", "")
                    published.append(Published(unit, parts[-2], host_ip, int(parts[-1]), target[0], int(target[1])))
            elif "set" in obj and obj["set"].get("name") in ("masq4", "masq6"):
                family = AF_INET if obj["set"]["name"] == "masq4" else AF_INET6
                for item in obj["set"].get("elem", []):
                    elem = item.get("elem", {}) if isinstance(item, dict) else {}
                    masq.setdefault(elem.get("comment", ""), []).append((family, elem.get("val")))
        return published, masq

    def _state(self) -> tuple[list[Published], dict[str, list[tuple[int, Any]]]]:
        state = self._read(create=True)
        assert state is not None
        return state

    def ensure(self) -> None:
        """Create the table if it is missing (also done by every change)."""
        lock = self._lock()
        try:
            self._state()
        finally:
            os.close(lock)

    # -- per container --

    def publish(
        self,
        unit: str,
        ports: Iterable[PortMapping],
        *,
        ipv4: str | None = None,
        ipv6: str | None = None,
        alive: Callable[[str], bool] | None = None,
    ) -> list[Published]:
        """Publish `ports` of `unit`, whose container has addresses `ipv4`/`ipv6`; replaces
        whatever the unit had published before (a restart, a crash). A port mapping with no
        host IP is published on every address of each family the container has; one without
        a host port (host_port 0) gets free ones (choose_ports), chosen under the lock."""
        mappings = list(ports)
        lock = self._lock()
        try:
            existing, _ = self._state()
            if any(m.host_port == 0 for m in mappings):
                others = [q for q in existing if q.unit != unit and (alive is None or alive(q.unit))]
                mappings = choose_ports(mappings, others)
            wanted = self._expand(unit, mappings, ipv4, ipv6)
            gone: set[str] = set()
            for p in wanted:
                for q in existing:
                    if q.unit == unit or q.unit in gone or not _clash(p, q):
                        continue
                    if alive is not None and not alive(q.unit):
                        gone.add(q.unit)
                        continue
                    raise NetworkError(
                        f"{unit} cannot publish {p.host()}/{p.proto}: "
                        f"host port {p.host_port}/{p.proto} is already published by {q.unit} ({q.host()})"
                    )
            stale = [q for q in existing if q.unit == unit or q.unit in gone]
            commands = self._deletes(stale) + self._adds(wanted)
            if commands:
                self.nft.run(commands)
            return wanted
        finally:
            os.close(lock)

    def _expand(self, unit: str, ports: list[PortMapping], ipv4: str | None, ipv6: str | None) -> list[Published]:
        addresses = {f: a for f, a in ((AF_INET, ipv4), (AF_INET6, ipv6)) if a}
        for family, address in addresses.items():
            if parse_address(address)[0] != family:
                raise ValueError(f"{address} is not an IPv{4 if family == AF_INET else 6} address")
        if "\n" in unit or '"' in unit or not unit:
            raise ValueError(f"bad unit name: {unit!r}")
        wanted: list[Published] = []
        for m in ports:
            if m.host_ip:
                families = [parse_address(m.host_ip)[0]]
                if families[0] not in addresses:
                    v = 4 if families[0] == AF_INET else 6
                    raise NetworkError(f"{unit} cannot publish {m}: the container has no IPv{v} address")
            else:
                families = list(addresses)
                if not families:
                    raise NetworkError(f"{unit} cannot publish {m}: the container has no address")
            for family in families:
                for i in range(m.count):
                    wanted.append(
                        Published(unit, m.proto, m.host_ip, m.host_port + i, addresses[family], m.container_port + i)
                    )
        for i, p in enumerate(wanted):  # a unit's own ports must not clash either
            for q in wanted[:i]:
                if _clash(p, q) and parse_address(p.container_ip)[0] == parse_address(q.container_ip)[0]:
                    raise NetworkError(f"{unit} publishes host port {p.host_port}/{p.proto} twice")
        return wanted

    def _elements(self, items: list[Published], with_values: bool) -> list[dict[str, Any]]:
        by_map: dict[str, list[Any]] = {}
        for p in items:
            family = parse_address(p.container_ip)[0]
            key = _key(p, family)
            if with_values:
                entry: Any = [{"elem": {"val": key, "comment": p.unit}}, {"concat": [p.container_ip, p.container_port]}]
            else:
                entry = key
            by_map.setdefault(_map_name(family, bool(p.host_ip)), []).append(entry)
        return [{"element": self._ref(name=name, elem=elems)} for name, elems in by_map.items()]

    def _adds(self, items: list[Published]) -> list[dict[str, Any]]:
        return [{"add": e} for e in self._elements(items, True)]

    def _deletes(self, items: list[Published]) -> list[dict[str, Any]]:
        return [{"delete": e} for e in self._elements(items, False)]

    def release(self, unit: str) -> list[Published]:
        """Remove everything `unit` published; returns what was removed. Idempotent (for
        ExecStopPost=, which also runs after a crash)."""
        lock = self._lock()
        try:
            state = self._read(create=False)
            if state is None:
                return []
            mine = [p for p in state[0] if p.unit == unit]
            if mine:
                self.nft.run(self._deletes(mine))
            return mine
        finally:
            os.close(lock)

    def published(self, unit: str | None = None) -> list[Published]:
        """What the table publishes (for `unit` only, if given)."""
        state = self._read(create=False)
        return [] if state is None else [p for p in state[0] if unit is None or p.unit == unit]

    # -- per network --

    def add_network(self, name: str, subnets: Iterable[str]) -> None:
        """Masquerade traffic from `subnets` ('10.90.0.0/24', 'fd90::/64') leaving them, and
        DNATed traffic from them (hairpin). Not for internal networks."""
        if "\n" in name or '"' in name or not name:
            raise ValueError(f"bad network name: {name!r}")
        elements: dict[str, list[Any]] = {}
        for subnet in subnets:
            address, _, length = subnet.partition("/")
            family = parse_address(address)[0]
            value = {"prefix": {"addr": canonical(address), "len": int(length)}}
            elements.setdefault(f"masq{4 if family == AF_INET else 6}", []).append(
                {"elem": {"val": value, "comment": name}}
            )
        lock = self._lock()
        try:
            _, masq = self._state()
            commands = [{"add": {"element": self._ref(name=s, elem=e)}} for s, e in elements.items()]
            if name in masq:  # replace: the subnets may have changed
                commands = self._masq_deletes(masq[name]) + commands
            self.nft.run(commands)
        finally:
            os.close(lock)

    def _masq_deletes(self, items: list[tuple[int, Any]]) -> list[dict[str, Any]]:
        by_set: dict[str, list[Any]] = {}
        for family, value in items:
            by_set.setdefault(f"masq{4 if family == AF_INET else 6}", []).append(value)
        return [{"delete": {"element": self._ref(name=s, elem=e)}} for s, e in by_set.items()]

    def remove_network(self, name: str) -> bool:
        lock = self._lock()
        try:
            state = self._read(create=False)
            if state is None or name not in state[1]:
                return False
            self.nft.run(self._masq_deletes(state[1][name]))
            return True
        finally:
            os.close(lock)

    def networks(self) -> dict[str, list[str]]:
        """Network name -> its masqueraded subnets."""
        state = self._read(create=False)
        masq = {} if state is None else state[1]
        return {
            name: [f"{v['prefix']['addr']}/{v['prefix']['len']}" if isinstance(v, dict) else str(v) for _, v in items]
            for name, items in masq.items()
        }

    def delete_table(self) -> bool:
        """Remove the whole table (every network's and unit's rules)."""
        lock = self._lock()
        try:
            if self._list() is None:
                return False
            self.nft.run([{"delete": {"table": {"family": "inet", "name": self.table}}}])
            return True
        finally:
            os.close(lock)


# --- free host ports (PublishPort=80) -----------------------------------------------------------

CHOOSE_ATTEMPTS = 64


def choose_ports(mappings: list[PortMapping], published: list[Published]) -> list[PortMapping]:
    """`mappings` with each host_port 0 replaced by free host ports: as podman does, ports of
    the kernel's ephemeral range that nothing on the host is bound to (a bind test, which
    asks the kernel for one) and that `published` (the other units' elements, read under the
    firewall's lock that the caller holds, so two starts never choose the same one) does not
    hold, nor an earlier mapping of this list. A range gets consecutive ports. NetworkError
    when none is found."""
    chosen: list[PortMapping] = []
    for m in mappings:
        if m.host_port:
            chosen.append(m)
            continue
        taken = [
            Published("", c.proto, c.host_ip, c.host_port + i, "", 0) for c in chosen for i in range(c.count)
        ] + published
        for _ in range(CHOOSE_ATTEMPTS):
            first = _bindable(m.proto, m.host_ip, 0) if m.count == 1 else _random_start(m.count)
            ports = range(first, first + m.count)
            if first and all(
                not any(_clash(Published("", m.proto, m.host_ip, port, "", 0), q) for q in taken)
                and (m.count == 1 or _bindable(m.proto, m.host_ip, port))
                for port in ports
            ):
                chosen.append(PortMapping(first, m.container_port, m.proto, m.host_ip, m.count))
                break
        else:
            raise NetworkError(f"PublishPort={m}: no free host port found ({CHOOSE_ATTEMPTS} tries)")
    return chosen


def _bindable(proto: str, host_ip: str, port: int) -> int:
    """Bind a socket of `proto` on host_ip (every address when "") and `port` (0: the kernel
    picks a free one of its ephemeral range), and close it: the port bound, or 0 if taken.
    IP_FREEBIND: a host address that is not up yet may still be published."""
    import _socket

    family = _socket.AF_INET6 if ":" in host_ip else _socket.AF_INET
    kind = _socket.SOCK_DGRAM if proto == "udp" else _socket.SOCK_STREAM
    sock = _socket.socket(family, kind)
    try:
        if host_ip:
            level, option = (_socket.IPPROTO_IPV6, 42) if family == _socket.AF_INET6 else (_socket.IPPROTO_IP, 15)
            sock.setsockopt(level, option, 1)  # IPV6_FREEBIND / IP_FREEBIND
        sock.bind((host_ip or ("::" if family == _socket.AF_INET6 else "0.0.0.0"), port))
        return int(sock.getsockname()[1])
    except OSError:
        return 0
    finally:
        sock.close()


def _random_start(count: int) -> int:
    """The first port of a random run of `count` inside the ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(n) for n in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if high - low + 1 < count:
        return 0
    return low + int.from_bytes(os.urandom(4), "little") % (high - low + 2 - count)


def _clash(p: Published, q: Published) -> bool:
    """Two publications collide: same protocol and host port, and one of them is on every
    address or both are on the same one."""
    return (
        p.proto == q.proto and p.host_port == q.host_port and (not p.host_ip or not q.host_ip or p.host_ip == q.host_ip)
    )
