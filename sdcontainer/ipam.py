"""Address leases per network, keyed by unit, in files under the runtime state directory.

    STATE_DIR/NAME/lock              flock()ed while a lease is chosen or dropped (this
                                     network only: starts on different networks never wait
                                     for each other)
    STATE_DIR/NAME/leases/ADDRESS    "UNIT\\nTAG\\n": who holds the address (TAG: e.g. the
                                     unit's InvocationID, so that a late stop of an old
                                     run cannot drop a new run's lease)
    STATE_DIR/NAME/units/UNIT        the unit's addresses, one per line (the index)
    STATE_DIR/NAME/cursor-SUBNET     where the next search starts: addresses are handed out
                                     round-robin, as podman does, so a freed address is not
                                     reused at once (stale ARP caches)

STATE_DIR defaults to /run/sdcontainer/networks: tmpfs, so leases go at reboot with the
links and the nft state. A unit holds at most one address per subnet; leasing again gives
the same address back, so the next start after a crash or `kill -9` reuses the lease it
left. A lease whose unit is gone is taken over when its address is wanted (requested as a
static IP, or the pool is full); the caller says what "gone" means with `alive(unit)`, e.g.
"systemd says the unit is not active". The index is written before a lease file and removed
after it, so a crash between the two leaves an index line without a lease, which the next
lease() repairs, never a lease no index knows.

Stdlib only and no ipaddress: this is on the start path (see sdcontainer/inet.py).
"""

from __future__ import annotations

import fcntl
import os

from sdcontainer.errors import NetworkError
from sdcontainer.inet import AF_INET, Subnet, parse_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

STATE_DIR = "/run/sdcontainer/networks"


def _check_name(what: str, name: str) -> str:
    if not name or "/" in name or "\0" in name or "\n" in name or name.startswith(".") or len(name) > 255:
        raise ValueError(f"bad {what} name for a lease: {name!r}")
    return name


class Pool:
    """The assignable addresses of one subnet: [first, last], without the gateway."""

    def __init__(self, subnet: str, gateway: str | None = None, ip_range: str | None = None) -> None:
        self.subnet = Subnet.parse(subnet)
        first, last = self.subnet.hosts()
        if ip_range is not None:  # Quadlet's IPRange=: a subnet inside the subnet
            inner = Subnet.parse(ip_range)
            if not self.subnet.contains_subnet(inner):
                raise ValueError(f"IP range {ip_range} is not inside {subnet}")
            first, last = max(first, inner.network), min(last, inner.last)
        self.first, self.last = first, last
        if gateway is None:  # podman's default: the first host address
            self.gateway: int | None = self.subnet.hosts()[0]
        else:
            family, value = parse_address(gateway)
            if family != self.subnet.family or value not in self.subnet:
                raise ValueError(f"gateway {gateway} is not in {subnet}")
            self.gateway = value

    @property
    def size(self) -> int:
        gateway_inside = self.gateway is not None and self.first <= self.gateway <= self.last
        return max(0, self.last - self.first + 1 - gateway_inside)

    def assignable(self, value: int) -> bool:
        return self.first <= value <= self.last and value != self.gateway

    def __str__(self) -> str:
        return str(self.subnet)


class Ipam:
    """The leases of network `name`; `subnets` are its pools (IPv4 and/or IPv6)."""

    def __init__(self, name: str, pools: Sequence[Pool], state_dir: str | None = None) -> None:
        self.name = _check_name("network", name)
        self.pools = list(pools)
        self.dir = os.path.join(state_dir if state_dir is not None else STATE_DIR, name)

    @classmethod
    def for_subnets(cls, name: str, subnets: Iterable[str], state_dir: str | None = None) -> Ipam:
        return cls(name, [Pool(s) for s in subnets], state_dir)

    @property
    def gateways(self) -> list[str]:
        """Each pool's gateway address ('10.90.0.1'), for default routes."""
        return [p.subnet.address(p.gateway) for p in self.pools if p.gateway is not None]

    # -- files --

    def lock(self) -> int:
        """flock() the network's lock file (this network only); closing the fd unlocks.
        sdcontainer.names rewrites the members' hosts files under it."""
        return self._lock()

    def _lock(self) -> int:
        for sub in ("leases", "units"):
            os.makedirs(os.path.join(self.dir, sub), mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd  # closing it unlocks

    def _lease_path(self, address: str) -> str:
        return os.path.join(self.dir, "leases", address)

    def _read_lease(self, address: str) -> tuple[str, str] | None:
        try:
            with open(self._lease_path(address)) as f:
                unit, _, tag = f.read().partition("\n")
        except FileNotFoundError:
            return None
        return unit, tag.strip()

    def _write_lease(self, address: str, unit: str, tag: str) -> None:
        path = self._lease_path(address)
        _unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{unit}\n{tag}\n".encode())
        finally:
            os.close(fd)

    def _index(self, unit: str) -> list[str]:
        try:
            with open(os.path.join(self.dir, "units", unit)) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def _write_index(self, unit: str, addresses: list[str]) -> None:
        path = os.path.join(self.dir, "units", unit)
        if not addresses:
            _unlink(path)
            return
        tmp = os.path.join(self.dir, "units", f".{unit}.tmp")
        with open(tmp, "w") as f:
            f.write("".join(a + "\n" for a in addresses))
        os.replace(tmp, path)

    def _cursor(self, pool: Pool) -> str:
        return os.path.join(self.dir, f"cursor-{pool.subnet.address(pool.subnet.network)}_{pool.subnet.prefixlen}")

    # -- leasing --

    def lease(
        self,
        unit: str,
        requested: Iterable[str] = (),
        *,
        alive: Callable[[str], bool] | None = None,
        tag: str = "",
    ) -> list[str]:
        """One address per pool for `unit`, as '10.90.0.10/24', in pool order.

        `requested` are static addresses (IP=, IP6=), each in one of the pools; taken by a
        unit for which `alive` is true (or with no `alive` given) they fail with "10.90.0.10
        is already leased to api.service". Other pools get the unit's previous address, if
        it has one, or the next free one; when none is free, an address of a unit that is
        not alive is taken over. NetworkError when nothing can be had."""
        _check_name("unit", unit)
        wanted: dict[int, int] = {}
        for text in requested:
            family, value = parse_address(text)
            for i, pool in enumerate(self.pools):
                if pool.subnet.family == family and value in pool.subnet:
                    if not pool.assignable(value):
                        raise NetworkError(f"{text} cannot be leased on network {self.name}: {_why_not(pool, value)}")
                    wanted[i] = value
                    break
            else:
                subnets = ", ".join(str(p) for p in self.pools) or "none"
                raise NetworkError(f"{text} is not in a subnet of network {self.name} ({subnets})")
        tag = tag.replace("\n", " ")
        living: dict[str, bool] = {}

        def is_alive(owner: str) -> bool:
            if alive is None:
                return True
            if owner not in living:
                living[owner] = alive(owner)
            return living[owner]

        lock = self._lock()
        try:
            held = self._index(unit)
            result: list[str] = []
            for i, pool in enumerate(self.pools):
                mine = [a for a in held if _in_pool(pool, a)]
                if i in wanted:
                    address = pool.subnet.address(wanted[i])
                    owner = self._read_lease(address)
                    if owner is not None and owner[0] != unit:
                        if is_alive(owner[0]):
                            raise NetworkError(f"{address} is already leased to {owner[0]}")
                        self._drop(address, owner[0])
                else:
                    address = self._previous(unit, mine) or self._choose(pool, is_alive)
                # the index first, then the lease (see the module's docstring)
                held = [a for a in held if a not in mine or a == address]
                if address not in held:
                    held.append(address)
                self._write_index(unit, held)
                for old in mine:
                    if old != address and (self._read_lease(old) or ("",))[0] == unit:
                        os.unlink(self._lease_path(old))
                self._write_lease(address, unit, tag)
                result.append(f"{address}/{pool.subnet.prefixlen}")
            return result
        finally:
            os.close(lock)

    def _previous(self, unit: str, mine: list[str]) -> str | None:
        """The unit's address in this pool from an earlier lease, if it is still its own or
        free (an index line whose lease was never written)."""
        for address in mine:
            owner = self._read_lease(address)
            if owner is None or owner[0] == unit:
                return address
        return None

    def _choose(self, pool: Pool, is_alive: Callable[[str], bool]) -> str:
        taken = {a for a in os.listdir(os.path.join(self.dir, "leases")) if _in_pool(pool, a)}
        span = pool.last - pool.first + 1
        if span <= 0:
            raise NetworkError(f"network {self.name} has no assignable address in {pool}")
        cursor_path = self._cursor(pool)
        try:
            with open(cursor_path) as f:
                start = parse_address(f.read().strip())[1]
        except (FileNotFoundError, ValueError):
            start = pool.first
        if not pool.first <= start <= pool.last:
            start = pool.first
        # among len(taken) + 2 consecutive candidates one is free unless the pool is full
        for step in range(min(span, len(taken) + 2)):
            value = pool.first + (start - pool.first + step) % span
            address = pool.subnet.address(value)
            if value != pool.gateway and address not in taken:
                break
        else:
            address = self._take_over(pool, taken, is_alive)
            value = parse_address(address)[1]
        following = pool.first + (value + 1 - pool.first) % span
        with open(cursor_path, "w") as f:
            f.write(pool.subnet.address(following) + "\n")
        return address

    def _take_over(self, pool: Pool, taken: set[str], is_alive: Callable[[str], bool]) -> str:
        """The pool is full: the first address whose unit is gone, dropped from its index."""
        for address in sorted(taken, key=lambda a: parse_address(a)[1]):
            owner = self._read_lease(address)
            if owner is None:
                return address
            if not is_alive(owner[0]):
                self._drop(address, owner[0])
                return address
        raise NetworkError(
            f"network {self.name} has no free address in {pool}: all {pool.size} are leased to running units"
        )

    def _drop(self, address: str, unit: str) -> None:
        """Remove `unit`'s lease of `address`: the lease file, then its index line."""
        _unlink(self._lease_path(address))
        self._write_index(unit, [a for a in self._index(unit) if a != address])

    # -- releasing and listing --

    def release(self, unit: str, tag: str | None = None) -> list[str]:
        """Drop the unit's leases (only those with `tag`, when given); returns their addresses.
        Idempotent: meant for ExecStopPost=, which also runs after a crash."""
        _check_name("unit", unit)
        if not os.path.isdir(self.dir):
            return []
        lock = self._lock()
        try:
            keep, dropped = [], []
            for address in self._index(unit):
                owner = self._read_lease(address)
                if owner is None or owner[0] != unit:
                    continue  # an index line without its lease: drop the line
                if tag is not None and owner[1] != tag.replace("\n", " "):
                    keep.append(address)  # a newer run's lease: keep it
                    continue
                os.unlink(self._lease_path(address))
                dropped.append(address)
            self._write_index(unit, keep)
            return dropped
        finally:
            os.close(lock)

    def leases(self) -> dict[str, str]:
        """Address -> unit, every lease of the network (read without the lock: a snapshot)."""
        found: dict[str, str] = {}
        try:
            names = os.listdir(os.path.join(self.dir, "leases"))
        except FileNotFoundError:
            return found
        for address in names:
            owner = self._read_lease(address)
            if owner is not None:
                found[address] = owner[0]
        return found

    def reclaim(self, alive: Callable[[str], bool]) -> list[str]:
        """Drop every lease whose unit is not alive; returns the freed addresses."""
        if not os.path.isdir(self.dir):
            return []
        lock = self._lock()
        try:
            freed = []
            living: dict[str, bool] = {}
            for address in os.listdir(os.path.join(self.dir, "leases")):
                owner = self._read_lease(address)
                if owner is None:
                    continue
                if owner[0] not in living:
                    living[owner[0]] = alive(owner[0])
                if not living[owner[0]]:
                    self._drop(address, owner[0])
                    freed.append(address)
            return freed
        finally:
            os.close(lock)


def _unlink(path: str) -> bool:
    """Remove a file; False if it was not there (no contextlib: it imports functools)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _in_pool(pool: Pool, address: str) -> bool:
    try:
        family, value = parse_address(address)
    except ValueError:
        return False
    return family == pool.subnet.family and value in pool.subnet


def _why_not(pool: Pool, value: int) -> str:
    subnet = pool.subnet
    if value == pool.gateway:
        return "it is the gateway"
    if value == subnet.network:
        return f"it is the network address of {subnet}"
    if subnet.family == AF_INET and subnet.prefixlen < 31 and value == subnet.last:
        return f"it is the broadcast address of {subnet}"
    return f"it is outside the range {subnet.address(pool.first)}-{subnet.address(pool.last)}"
