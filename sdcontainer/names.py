"""Names without a daemon: each container's /etc/hosts lists the other containers of its network.

    /run/sdcontainer/networks/NET/names/UNIT        "ADDRESS NAME...\\n" per address: how
                                                    UNIT is found on NET (its container name,
                                                    HostName=, NetworkAlias=)
    /run/sdcontainer/containers/UNIT/hosts          the container's /etc/hosts, bound
                                                    read-only into it (the RuntimeDirectory=,
                                                    gone with the unit)
    /run/sdcontainer/containers/UNIT/hosts.base     its own part: localhost, its own name,
                                                    AddHost= (sdcontainer.rootfs.etc_hosts)

A container's hosts file is its base, then one line per address of every other running
member of its network. When a container joins (at start, before its init runs) or leaves
(ExecStopPost=), the launcher rewrites the hosts files of all the members, under the
network's IPAM lock (sdcontainer.ipam: one network's starts only), so 50 starts at once
each see the names file of every start before them, and the last rewrite lists all 50.

A rewrite keeps the file's inode (the bind mount shows that inode, a rename would not be
seen) and is one pwrite() from offset 0, never a truncate: a shorter text is padded to the
old length with a comment line of spaces, so a reader in the container sees the old text
or the new, never an empty or half-cut file (a write of under a page to a cached file is
copied in one piece; readers take no lock, and none is needed for that).
"""

from __future__ import annotations

import os

from sdcontainer import state
from sdcontainer.text import ALNUM, word

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sdcontainer.ipam import Ipam

HOSTS = "hosts"
BASE = "hosts.base"
NAMES = "names"
_NAME_CHARS = ALNUM + "-._"


def hosts_path(unit: str) -> str:
    return f"{state.container_dir(unit)}/{HOSTS}"


def host_names(*candidates: str | None) -> list[str]:
    """The names a resolver can look up, in order, each once (a container name such as
    web@1 is left out: not a host name)."""
    found: list[str] = []
    for name in candidates:
        if name and word(name, ALNUM, _NAME_CHARS, 253) and name not in found:
            found.append(name)
    return found


def _names_dir(network: Ipam) -> str:
    return os.path.join(network.dir, NAMES)


def _members(network: Ipam, alive: Callable[[str], bool]) -> dict[str, str]:
    """unit -> its lines, for every running member of the network."""
    directory = _names_dir(network)
    members: dict[str, str] = {}
    for unit in sorted(os.listdir(directory)):
        if unit.startswith(".") or not alive(unit):
            continue
        try:
            with open(os.path.join(directory, unit), encoding="utf-8") as f:
                members[unit] = f.read()
        except FileNotFoundError:
            continue
    return members


def _compose(unit: str, members: dict[str, str], peers: bool) -> str | None:
    """The hosts text of `unit`: its base and, with `peers`, the lines of the others; None
    when the unit has no hosts file (not a container started by this version)."""
    try:
        with open(f"{state.container_dir(unit)}/{BASE}", encoding="utf-8") as f:
            base = f.read()
    except FileNotFoundError:
        return None
    if not peers:
        return base
    return base + "".join(lines for other, lines in members.items() if other != unit)


def rewrite(path: str, text: str) -> bool:
    """Replace the content of the file at `path` in place: one pwrite(), padded to the old
    length rather than truncated. False when the file is not there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        data = text.encode()
        old = os.fstat(fd).st_size
        if len(data) < old:
            pad = old - len(data)
            data += b"\n" if pad == 1 else b"#" + b" " * (pad - 2) + b"\n"
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return True


def _write_new(path: str, text: str) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp")  # a dot file: never taken for a member
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def join(
    network: Ipam,
    unit: str,
    addresses: Iterable[str],
    names: list[str],
    base: str,
    *,
    peers: bool,
    alive: Callable[[str], bool],
) -> str:
    """Put `unit` on the network's name list (each of its `addresses` with `names`), write its
    hosts file (`base` and, with `peers`, the other members) and rewrite every other
    member's. Returns the path of its hosts file, for the bind mount."""
    os.makedirs(state.container_dir(unit), mode=state.DIR_MODE, exist_ok=True)
    _write_new(f"{state.container_dir(unit)}/{BASE}", base)
    lines = "".join(f"{a.partition('/')[0]}\t{' '.join(names)}\n" for a in addresses) if names else ""
    lock = network.lock()
    try:
        directory = _names_dir(network)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        _write_new(os.path.join(directory, unit), lines)
        members = _members(network, lambda u: u == unit or alive(u))
        own = hosts_path(unit)
        _write_new(own, _compose(unit, members, peers) or base)
        _update_others(unit, members, peers)
        return own
    finally:
        os.close(lock)


def leave(network: Ipam, unit: str, *, peers: bool, alive: Callable[[str], bool]) -> bool:
    """Take `unit` off the network's name list and rewrite the others' hosts files. False
    when it was not on it."""
    directory = _names_dir(network)
    if not os.path.exists(os.path.join(directory, unit)):
        return False
    lock = network.lock()
    try:
        try:
            os.unlink(os.path.join(directory, unit))
        except FileNotFoundError:
            return False
        _update_others(unit, _members(network, alive), peers)
        return True
    finally:
        os.close(lock)


def _update_others(unit: str, members: dict[str, str], peers: bool) -> None:
    if not peers:
        return
    for other in members:
        if other == unit:
            continue
        text = _compose(other, members, peers)
        if text is not None:
            rewrite(hosts_path(other), text)
