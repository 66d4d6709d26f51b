"""The lifecycle verbs: `ps`, `logs`, `start`, `stop`, `restart`, `inspect`, `top`, `rm`.

Each is a thin layer over systemd, never a second source of truth: what a container is
comes from its unit's ExecStart= (the launcher's options are the spec, `keys.spec_from_argv`
reads them back), whether and how it runs from the unit's state over D-Bus, and what only
the running container knows (its init's command, its start) from the launcher's record
(`state`). The D-Bus client is `transient`'s own wire protocol: no library to import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from sdcontainer import state
from sdcontainer.errors import RecordError, SdcontainerError, SystemdError
from sdcontainer.transient import MANAGER, MANAGER_PATH, MEMBER, PROPERTIES_INTERFACE, SERVICE, UNIT, Bus

JOB = "org.freedesktop.systemd1.Job"
GENERATOR_DIRS = ("/run/systemd/generator", "/run/systemd/generator.early", "/run/systemd/generator.late")
WINDOW = 64  # calls sent before their replies are read (the system bus allows 128)
WAIT_SECONDS = 1.0  # between checks of a job whose JobRemoved signal we may have missed

#: The properties read for each unit, by interface; `Unit.from_properties` turns them into a Unit.
UNIT_PROPERTIES = (
    "LoadState", "ActiveState", "SubState", "ActiveEnterTimestamp", "InactiveEnterTimestamp", "Transient",
    "FragmentPath", "SourcePath",
)  # fmt: skip
SERVICE_PROPERTIES = ("ExecStart", "MainPID", "ExecMainCode", "ExecMainStatus", "Result", "ControlGroup")
RUNNING_STATES = ("active", "activating", "deactivating", "reloading")


class NoSuchContainer(SdcontainerError):
    """NAME names no unit (exit status 1)."""


class NotAContainer(NoSuchContainer):
    """NAME names a unit, but not one whose main process is a container of ours."""


# --- what the launcher's options say ---------------------------------------------------------


def launcher_options(exec_start: Iterable[tuple[Any, ...]]) -> list[str] | None:
    """The launcher's options in a unit's ExecStart (D-Bus: a(sasbttttuii), the argv second):
    what follows `start` when `--unit` comes next, however the launcher itself is spelled
    (the installed script, `python -I -m sdcontainer.launcher`, SDCONTAINER_LAUNCHER). None:
    the unit is not a container of ours."""
    for entry in exec_start:
        argv = list(entry[1])
        for i in range(1, len(argv) - 1):
            if argv[i] == "start" and argv[i + 1] == "--unit":
                return argv[i + 1 :]
    return None


def spec_of(options: list[str]) -> Any:
    """The ContainerSpec the options describe, or None when this version cannot read them
    (a unit started by another version, until its restart)."""
    from sdcontainer.keys import spec_from_argv

    try:
        return spec_from_argv(options)
    except (SdcontainerError, ValueError):
        return None


def port_text(mapping: str) -> str:
    """A PublishPort= as podman's ps shows it: 0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp."""
    from sdcontainer.values import PortMapping

    port = PortMapping.parse(mapping)

    def ports(first: int) -> str:
        return str(first) if port.count == 1 else f"{first}-{first + port.count - 1}"

    host_ip = port.host_ip or "0.0.0.0"
    if ":" in host_ip:
        host_ip = f"[{host_ip}]"
    return f"{host_ip}:{ports(port.host_port)}->{ports(port.container_port)}/{port.proto}"


def age(seconds: float) -> str:
    """A short time span: 42s, 5m, 3h, 2d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


# --- one unit, as systemd and the record describe it ------------------------------------------


class Unit:
    """What ps, inspect and the others know of one unit: its D-Bus properties, and for a
    container of ours the spec its ExecStart carries and the launcher's record while it runs."""

    def __init__(self, name: str, properties: dict[str, Any]) -> None:
        self.name = name
        self.properties = properties
        options = launcher_options(properties.get("ExecStart") or [])
        self.ours = options is not None
        self.spec = spec_of(options) if options is not None else None
        self.record: state.ContainerRecord | None = None

    def __getitem__(self, name: str) -> Any:
        return self.properties.get(name)

    @property
    def running(self) -> bool:
        return self["ActiveState"] in RUNNING_STATES

    @property
    def container_name(self) -> str:
        if self.record is not None:
            return self.record.name
        spec_name = getattr(self.spec, "name", "%N")
        return self.name[: -len(".service")] if spec_name in ("%N", None) else spec_name

    @property
    def image(self) -> str:
        spec = self.spec
        if self.record is not None:
            return self.record.image or self.record.rootfs or "-"
        return (spec.image or spec.rootfs or "-") if spec is not None else "?"

    @property
    def ports(self) -> list[str]:
        """While it runs, what its run published (the record: a host port chosen at start
        for PublishPort=80 included); else what its unit asks for."""
        if self.record is not None and self.record.ports:
            return list(self.record.ports)
        return [port_text(p) for p in getattr(self.spec, "publish_ports", ())]

    @property
    def command(self) -> list[str]:
        if self.record is not None:
            return list(self.record.command)
        spec = self.spec
        if spec is None:
            return []
        return [*(spec.entrypoint or ()), *(spec.exec or ())]

    @property
    def labels(self) -> dict[str, str]:
        if self.record is not None:
            return dict(self.record.labels)
        return dict(label.partition("=")[::2] for label in getattr(self.spec, "labels", ()))

    def status(self, now: float) -> str:
        """podman's STATUS: Up 5m; Exited (3) 2m ago; Failed (signal 9) 1h ago; Starting; Stopped."""
        active = self["ActiveState"]
        if active == "active":
            return f"Up {age(now - self['ActiveEnterTimestamp'] / 1e6)}" if self["ActiveEnterTimestamp"] else "Up"
        if active in ("activating", "deactivating", "reloading"):
            return {"activating": "Starting", "deactivating": "Stopping", "reloading": "Reloading"}[active]
        code, status = self["ExecMainCode"], self["ExecMainStatus"]
        how = "Failed" if active == "failed" else "Exited"
        if code in (2, 3):  # killed, dumped
            how += f" (signal {status})"
        elif code == 1:
            how += f" ({status})"
        elif active == "failed":
            how += f" ({self['Result']})"
        elif not self["InactiveEnterTimestamp"]:
            # never started, or stopped and then unloaded by systemd, which keeps no history
            # of an unreferenced inactive unit: only the journal still knows
            return "Stopped"
        ended = self["InactiveEnterTimestamp"]
        return f"{how} {age(now - ended / 1e6)} ago" if ended else how

    def to_dict(self, now: float) -> dict[str, Any]:
        """`ps --format json`: one object per unit."""
        started = self["ActiveEnterTimestamp"] if self.running else 0
        return {
            "name": self.container_name,
            "unit": self.name,
            "image": self.image,
            "state": self["ActiveState"],
            "sub_state": self["SubState"],
            "status": self.status(now),
            "result": self["Result"],
            "exit_code": self["ExecMainStatus"] if self["ExecMainCode"] == 1 else None,
            "pid": self["MainPID"] or None,
            "image_id": self.record.image_id if self.record is not None else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started / 1e6)) if started else None,
            "ports": self.ports,
            "network": getattr(self.spec, "network", None),
            "command": self.command,
            "labels": self.labels,
            "transient": bool(self["Transient"]),
            "source": self["SourcePath"] or None,
        }


# --- the conversation with systemd ----------------------------------------------------------


class Systemd:
    """The service manager over one bus connection: calls are sent back to back and their
    replies collected after, so reading N properties of M units costs one round trip."""

    def __init__(self) -> None:
        try:
            self.bus = Bus()
            self.bus.reply(self.bus.hello, "Hello")
        except (SystemdError, OSError) as error:
            raise SystemdError(f"cannot connect to systemd: {error}") from None

    def close(self) -> None:
        self.bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, member: str, signature: str = "", *args: Any, what: str | None = None) -> list[Any]:
        serial = self.bus.call(MANAGER_PATH, MANAGER, member, signature, *args)
        return self.bus.reply(serial, what or member)

    def pipeline(self, calls: list[tuple[str, str, str, str, tuple[Any, ...]]]) -> list[Any]:
        """Each call (path, interface, member, signature, args): its reply's first value, or
        None for an error. At most WINDOW calls wait for their replies at once: the system
        bus refuses more than 128 from one connection (max_replies_per_connection)."""
        results: list[Any] = []
        serials: list[int] = []

        def collect() -> None:
            try:
                results.append(self.bus.reply(serials[len(results)], "a property")[0])
            except SystemdError:
                results.append(None)  # no such property: a unit that is not loaded has no Service

        for path, interface, member, signature, args in calls:
            serials.append(self.bus.call(path, interface, member, signature, *args))
            if len(serials) - len(results) >= WINDOW:
                collect()
        while len(results) < len(serials):
            collect()
        return results

    def units(self, names: dict[str, str | None], *, ours_only: bool = False) -> list[Unit]:
        """Each unit, by name and object path (None: load it, LoadUnit), with its
        properties; with `ours_only`, only the containers of ours, the others' properties
        unread but for ExecStart."""
        missing = [name for name, path in names.items() if not path]
        loaded = self.pipeline([(MANAGER_PATH, MANAGER, "LoadUnit", "s", (name,)) for name in missing])
        paths = {**names, **dict(zip(missing, loaded, strict=True))}
        listed = [(name, path) for name, path in paths.items() if path]
        unloadable = [Unit(name, {"LoadState": "not-found"}) for name, path in paths.items() if not path]
        exec_starts = self.pipeline(
            [(path, PROPERTIES_INTERFACE, "Get", "ss", (SERVICE, "ExecStart")) for _, path in listed]
        )
        wanted = [
            (name, path, exec_start)
            for (name, path), exec_start in zip(listed, exec_starts, strict=True)
            if not ours_only or launcher_options(exec_start or []) is not None
        ]
        reads = [(UNIT, prop) for prop in UNIT_PROPERTIES] + [(SERVICE, prop) for prop in SERVICE_PROPERTIES[1:]]
        values = self.pipeline(
            [(path, PROPERTIES_INTERFACE, "Get", "ss", read) for _, path, _ in wanted for read in reads]
        )
        units = []
        for number, (name, _, exec_start) in enumerate(wanted):
            properties = dict(zip((prop for _, prop in reads), values[number * len(reads) :], strict=False))
            units.append(Unit(name, {**properties, "ExecStart": exec_start}))
        return units if ours_only else [*units, *unloadable]

    def unit(self, name: str) -> Unit:
        return self.units({name: None})[0]

    def service_names(self, *, every: bool) -> dict[str, str | None]:
        """The loaded services, with their object paths; with `every`, also those of the
        generators' files that are not loaded (a .container file's unit never started)."""
        loaded = self.call("ListUnitsByPatterns", "asas", [], ["*.service"], what="listing units")[0]
        names: dict[str, str | None] = {entry[0]: entry[6] for entry in loaded if every or entry[3] in RUNNING_STATES}
        if every:  # (ListUnitFilesByPatterns would say the same, in ~0.4 s of systemd's time)
            for directory in GENERATOR_DIRS:
                try:
                    files = os.listdir(directory)
                except OSError:
                    continue
                for file in files:
                    if file.endswith(".service") and not file.endswith("@.service"):
                        names.setdefault(file, None)
        return dict(sorted(names.items()))

    def job(self, method: str, unit: str) -> str:
        """Run StartUnit/StopUnit/RestartUnit on `unit` and wait for the job: its result
        (done, failed, canceled, timeout, dependency, skipped)."""
        rule = f"type='signal',sender='org.freedesktop.systemd1',interface='{MANAGER}',member='JobRemoved'"
        match = self.bus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", rule)
        subscribe = self.bus.call(MANAGER_PATH, MANAGER, "Subscribe")
        self.bus.reply(match, "subscribing to jobs")
        self.bus.reply(subscribe, "subscribing to jobs")
        verb = {"StartUnit": "start", "StopUnit": "stop", "RestartUnit": "restart"}[method]
        job = self.call(method, "ss", unit, "replace", what=f"cannot {verb} {unit}")[0]
        while True:
            message = self.bus.next_signal(WAIT_SECONDS)
            if message is None:
                # no signal for a while: is the job still there? (a lost signal must not hang us)
                serial = self.bus.call(job, PROPERTIES_INTERFACE, "Get", "ss", JOB, "State")
                try:
                    self.bus.reply(serial, "reading the job")
                except SystemdError:
                    return "done" if self.unit(unit)["ActiveState"] in ("active", "inactive") else "failed"
                continue
            if message.fields.get(MEMBER) == "JobRemoved":
                _, path, _, result = message.body()
                if path == job:
                    return str(result)


def resolve(systemd: Systemd, name: str) -> Unit:
    """The container NAME means, as every verb reads it: the unit `NAME.service` (or NAME,
    when it ends in .service), else the running container whose ContainerName= is NAME.
    NoSuchContainer when neither exists; also when the unit is not a container of ours."""
    unit_name = state.unit_of(name)
    unit = systemd.unit(unit_name)
    if unit["LoadState"] == "not-found" and not name.endswith(".service"):
        matches = [r.unit for r in _records() if r.name == name]
        if len(matches) > 1:
            raise NoSuchContainer(f"several containers are called {name!r} ({', '.join(matches)}); name the unit")
        if matches:
            unit = systemd.unit(matches[0])
    if unit["LoadState"] == "not-found":
        raise NoSuchContainer(
            f"no container {name!r}: there is no unit {unit_name} (a unit of `sdcontainer run` is gone once it "
            f"stopped; for a .container file, run systemctl daemon-reload)"
        )
    if not unit.ours:
        raise NotAContainer(f"{unit.name} is not a container of sdcontainer's; see systemctl status {unit.name}")
    unit.record = _record(unit.name) if unit.running else None
    return unit


def _record(unit: str) -> state.ContainerRecord | None:
    try:
        return state.read(unit)
    except (RecordError, OSError):  # not root, or of a newer version: systemd's view still holds
        return None


def _records() -> list[state.ContainerRecord]:
    try:
        return state.records()
    except OSError:
        return []


# --- the verbs --------------------------------------------------------------------------------


def ps(*, every: bool) -> list[Unit]:
    """The containers of sdcontainer's that run (with `every`, also those that do not):
    every service whose ExecStart is the launcher, by unit name."""
    with Systemd() as systemd:
        units = systemd.units(systemd.service_names(every=every), ours_only=True)
    for unit in units:
        if unit.running:
            unit.record = _record(unit.name)
    return [u for u in units if every or u.running]


def table(units: list[Unit], now: float) -> list[str]:
    """ps's table: a header and one line per unit."""
    rows = [("NAME", "UNIT", "IMAGE", "STATUS", "PORTS", "COMMAND")]
    for unit in units:
        ports = ", ".join(unit.ports) or "-"
        rows.append((unit.container_name, unit.name, unit.image, unit.status(now), ports, " ".join(unit.command)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip() for row in rows
    ]


def lifecycle_job(method: str, name: str) -> str:
    """start, stop, restart: the unit's name, once its job is done; SystemdError naming the
    unit and where to look when it failed."""
    verb = {"StartUnit": "start", "StopUnit": "stop", "RestartUnit": "restart"}[method]
    with Systemd() as systemd:
        unit = resolve(systemd, name)
        result = systemd.job(method, unit.name)
    if result != "done":
        raise SystemdError(
            f"{verb} of {unit.name} {result}; see systemctl status {unit.name} and journalctl -u {unit.name}"
        )
    return unit.name


def remove(name: str, *, force: bool) -> str:
    """rm: forget a stopped container of `sdcontainer run` (a failed one stays loaded until
    then), with `force` after stopping a running one. A .container file's unit is the
    file's: refused, saying so."""
    with Systemd() as systemd:
        unit = resolve(systemd, name)
        if not unit["Transient"]:
            source = unit["SourcePath"] or unit["FragmentPath"]
            raise SdcontainerError(
                f"{unit.name} comes from {source}: remove that file and run systemctl daemon-reload "
                f"(rm removes what `sdcontainer run` made)"
            )
        if unit.running:
            if not force:
                raise SdcontainerError(f"{unit.name} is running: stop it first (sdcontainer stop {name}), or rm -f")
            result = systemd.job("StopUnit", unit.name)
            if result != "done":
                raise SystemdError(f"stop of {unit.name} {result}; see journalctl -u {unit.name}")
        try:  # noqa: SIM105 - contextlib is one more import
            systemd.call("ResetFailedUnit", "s", unit.name)
        except SystemdError:
            pass  # gone already: an inactive transient unit is collected at once
    state.remove(unit.name)  # what a version before RuntimeDirectory= left behind; usually nothing
    return unit.name


def inspect(name: str) -> dict[str, Any]:
    """The record (null when not running) with the unit's state and the spec its ExecStart carries."""
    with Systemd() as systemd:
        unit = resolve(systemd, name)
    from sdcontainer.record import fields_of

    spec = None
    if unit.spec is not None:
        spec = {f: _plain(getattr(unit.spec, f)) for f in fields_of(unit.spec)}
    properties = {k: v for k, v in unit.properties.items() if k != "ExecStart"}
    return {
        **unit.to_dict(time.time()),
        "record": state.to_dict(unit.record) if unit.record is not None else None,
        "spec": spec,
        "systemd": properties,
    }


def _plain(value: Any) -> Any:
    """A spec value as JSON: tuples as lists, mounts as their text."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


# --- top ------------------------------------------------------------------------------------

CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")


def cgroup_pids(cgroup: str, roots: Iterable[str] = CGROUP_ROOTS) -> list[int]:
    """Every process in `cgroup` (a path as systemd's ControlGroup= has it) and below it, in
    the first hierarchy that has it (cgroup2; on a hybrid host the unified or name=systemd one)."""
    for root in roots:
        top = f"{root}{cgroup}"
        if not os.path.isfile(f"{top}/cgroup.procs"):
            continue
        pids: set[int] = set()
        for directory, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(f"{directory}/cgroup.procs", encoding="ascii") as f:
                        pids.update(int(line) for line in f if line.strip())
                except OSError:
                    pass  # removed meanwhile
        return sorted(pids)
    return []


def process_line(pid: int, proc: str = "/proc", ticks: int | None = None) -> tuple[str, ...] | None:
    """(PID, PID inside the container, UID, TIME, COMMAND) of one process, as podman top
    shows them; None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as f:
            status = dict(line.partition(":")[::2] for line in f.read().splitlines())
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    seconds = (int(fields[11]) + int(fields[12])) // ticks  # utime, stime
    command = " ".join(w.decode(errors="replace") for w in cmdline.split(b"\0") if w) or f"[{name}]"
    inside = status.get("NSpid", "").split()
    uid = status.get("Uid", "").split()
    return (
        str(pid),
        inside[-1] if inside else "?",
        uid[1] if len(uid) > 1 else "?",
        f"{seconds // 60}:{seconds % 60:02d}",
        command,
    )


def top(name: str, line_of: Callable[[int], tuple[str, ...] | None] = process_line) -> list[tuple[str, ...]]:
    with Systemd() as systemd:
        unit = resolve(systemd, name)
    if not unit.running or not unit["ControlGroup"]:
        raise SdcontainerError(f"{unit.name} is not running ({unit['ActiveState']})")
    rows: list[tuple[str, ...]] = [("PID", "CPID", "UID", "TIME", "COMMAND")]
    for pid in cgroup_pids(unit["ControlGroup"]):
        row = line_of(pid)
        if row is not None:
            rows.append(row)
    return rows


# --- logs -----------------------------------------------------------------------------------


def journalctl_argv(unit: str, *, follow: bool, lines: int | None, since: str | None, timestamps: bool) -> list[str]:
    """`logs`: the container's output only (the lines of the unit's processes, not
    systemd's about the unit), without decoration unless `timestamps`."""
    argv = ["journalctl", f"_SYSTEMD_UNIT={unit}", "--no-pager", "-o", "short-iso" if timestamps else "cat"]
    if follow:
        argv.append("--follow")
    if lines is not None:
        argv += ["--lines", str(lines)]
    if since is not None:
        argv += ["--since", since]
    return argv


def logs_unit(name: str) -> str:
    """The unit whose journal `logs NAME` shows: the unit of a container of ours, or one that
    is gone (a `sdcontainer run` that ended) but left lines in the journal."""
    import subprocess

    try:
        with Systemd() as systemd:
            return resolve(systemd, name).name
    except NotAContainer:
        raise
    except NoSuchContainer:
        unit = state.unit_of(name)
        probe = subprocess.run(
            ["journalctl", f"_SYSTEMD_UNIT={unit}", "--no-pager", "-q", "-o", "cat", "--lines", "1"],
            capture_output=True,
            check=False,
        )
        if probe.stdout:
            return unit
        raise NoSuchContainer(f"no container {name!r}: no unit {unit}, and nothing of it in the journal") from None
