"""`sdcontainer-launcher release --unit UNIT`: the ExecStopPost= of a container on a bridge
network, which systemd runs after any end of the unit (a stop, a crash, `kill -9`, a failed
start). It drops the unit's leases of this run ($INVOCATION_ID) on every network that has a
lease directory, and its published ports.

It is on the path of every stop, so it imports as little as it can: the lease files
(sdcontainer.ipam) and the record (sdcontainer.state), not the start path's modules (netlink,
ctypes, the key grammars). The firewall (libnftables, a listing of the table) is asked only
when this run may have published something: the record of the run, which is still there
while ExecStopPost= runs (systemd removes the unit's RuntimeDirectory= after it), lists the
ports the run published; without a record (a start that failed or was killed before the
launcher wrote it, or a run in the foreground) the table is asked.
"""

from __future__ import annotations

import os

from sdcontainer import ipam, state
from sdcontainer.errors import RecordError


def release(unit: str, tag: str | None = None) -> tuple[list[str], list[str]]:
    """Drop what `unit` holds: its leases on every network (only this run's, with `tag`) and
    its place in their hosts files, and its published ports. Idempotent. Returns (addresses, ports) released."""
    addresses: list[str] = []
    try:
        networks = sorted(os.listdir(ipam.STATE_DIR))
    except FileNotFoundError:
        networks = []
    for name in networks:
        network = ipam.Ipam(name, [])  # releasing needs no pools
        addresses += network.release(unit, tag)
        if os.path.exists(os.path.join(network.dir, "names", unit)):
            _leave_names(network, name, unit)
    ports: list[str] = []
    if _may_have_published(unit):
        from sdcontainer.firewall import Firewall

        with Firewall() as fw:
            ports = [str(p) for p in fw.release(unit)]
    return addresses, ports


def _leave_names(network: ipam.Ipam, name: str, unit: str) -> None:
    """A named network's name list (sdcontainer.names): the unit's names go, from the other
    members' hosts files too. Only containers on such networks pay for these imports."""
    from sdcontainer import names, networks
    from sdcontainer.errors import LaunchError

    try:
        peers = not networks.load(name).disable_dns
    except LaunchError:  # removed meanwhile: its hosts files are no one's
        peers = False
    names.leave(network, unit, peers=peers, alive=_alive)


def _alive(unit: str) -> bool:
    """As sdcontainer.network.unit_alive: the unit's RuntimeDirectory= exists."""
    return os.path.isdir(state.container_dir(unit))


def _may_have_published(unit: str) -> bool:
    try:
        record = state.read(unit)
    except RecordError:
        return True
    return record is None or bool(record.ports)


def release_command(args: list[str]) -> int:
    """`release --unit UNIT`, the verb (sdcontainer.verbs)."""
    from sdcontainer.errors import UsageError
    from sdcontainer.verbs import parse

    usage = "usage: release --unit UNIT"
    unit = parse(args, options=("--unit",), usage=usage).options.get("--unit")
    if unit is None:
        raise UsageError(usage)
    release(unit, os.environ.get("INVOCATION_ID") or None)
    return 0
