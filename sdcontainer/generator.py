"""systemd generator: `.container` files (and the other kinds of sdcontainer.sources) in,
`.service` units out.

systemd runs this at boot and on every daemon-reload, in parallel with the other generators,
and waits for the slowest; it imports only the standard library and the parsing modules.
A bad file fails alone: every other file is still generated, the error names file, line
and key, goes to stderr and the journal, and the exit status says something failed.
"""

from __future__ import annotations

import os
import stat
import sys

from sdcontainer.errors import ConfigError, ErrorList, ImageError, TooManyErrors, UsageError, run_main
from sdcontainer.keys import did_you_mean, section_errors, spec_from_unit
from sdcontainer.service import ServicePolicy, exec_line, launcher_command, service_policy
from sdcontainer.sources import (
    CONTAINER,
    DEPENDENCY_KEYS,
    Generated,
    Known,
    Source,
    find_dropins,
    find_sources,
    install_links,
    load,
    translate_dependency,
)
from sdcontainer.spec import ContainerSpec
from sdcontainer.text import nearest, printable, shown
from sdcontainer.unitfile import (
    Entry,
    UnitFile,
    escape_specifiers,
    parse_boolean,
    parse_file,
    unit_name_problem,
    unit_path_problem,
)
from sdcontainer.values import has_variable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from sdcontainer.sockets import SocketPlan

# the names tests and tools import from here, which moved to sdcontainer.sources
__all__ = ["Generated", "Source", "find_dropins", "find_sources", "install_links", "load"]
SUFFIX = CONTAINER.suffix

PROGRAM = "sdcontainer-generator"
SYSTEM_UNIT_PATH = ("/etc/sdcontainer", "/run/sdcontainer/units", "/usr/lib/sdcontainer/units")

PASS_THROUGH_SECTIONS = ("Unit", "Service", "Install")
# [Service] settings the generated unit relies on; a file may not replace them.
FORBIDDEN_SERVICE_KEYS = {
    "ExecStart": "the container's command is Exec= in [Container]",
    "User": "the launcher must start as root; set User= in [Container] for the container's user",
    "Group": "the launcher must start as root; set Group= in [Container]",
    "DynamicUser": "the launcher must start as root; set User= in [Container]",
    "RootDirectory": "the container's root is Rootfs= in [Container]",
    "RootImage": "the container's root is Rootfs= in [Container]",
}
ALLOWED_SERVICE_VALUES = {
    # oneshot: the launcher stays and ends with the container; simple and exec: see _service_type
    "Type": ("notify", "oneshot", "simple", "exec"),
    "NotifyAccess": ("all",),
    "KillMode": ("mixed", "control-group"),
    # the container's record lives in its RuntimeDirectory=: kept after a stop, it would be stale
    "RuntimeDirectoryPreserve": ("no", "restart"),
}


def unit_search_path() -> list[str]:
    override = os.environ.get("SDCONTAINER_UNIT_PATH")
    if override is not None:
        return [os.path.abspath(p) for p in override.split(":") if p]
    return list(SYSTEM_UNIT_PATH)


_launcher_cache: list[list[str]] = []


def _launcher() -> list[str]:
    """launcher_command(), looked up once per run (it checks the file system)."""
    if not _launcher_cache:
        # literal paths on Exec*= lines, where systemd would expand a % in them
        _launcher_cache.append([escape_specifiers(word) for word in launcher_command()])
    return _launcher_cache[0]


KNOWN_SECTIONS = ("Container", "Quadlet", "Socket", *PASS_THROUGH_SECTIONS)


def _check_sections(unit: UnitFile) -> None:
    known = set(KNOWN_SECTIONS)
    for header in unit.headers:
        if header.section not in known and not header.section.startswith("X-"):
            raise header.error(_unknown_section(header.section))
    for entry in unit.entries:
        if entry.section not in known and not entry.section.startswith("X-"):
            raise entry.error(_unknown_section(entry.section))
    if not unit.has_section("Container"):
        raise ConfigError("no [Container] section", unit.path)


def _unknown_section(section: str) -> str:
    message = (
        f"unknown section [{section}] (known: [Container], [Unit], [Service], "
        "[Socket], [Install], [Quadlet] and X- sections)"
    )
    found = nearest(section, list(KNOWN_SECTIONS))
    return message + (f"; did you mean [{found}]?" if found else "")


def _quadlet_default_dependencies(unit: UnitFile) -> bool:
    enabled = True
    for entry in unit.section("Quadlet"):
        enabled = _quadlet_setting(entry)
    return enabled


def _quadlet_setting(entry: Entry) -> bool:
    if entry.key != "DefaultDependencies":
        raise entry.error(f"unknown key {entry.key}= in [Quadlet]" + did_you_mean(entry.key, ["DefaultDependencies"]))
    try:
        return parse_boolean(entry.value)
    except ValueError as error:
        raise entry.error(f"invalid DefaultDependencies=: {error}") from None


def _check_service_entry(entry: Entry) -> None:
    if entry.key in FORBIDDEN_SERVICE_KEYS:
        raise entry.error(f"{entry.key}= in [Service] is not allowed here: {FORBIDDEN_SERVICE_KEYS[entry.key]}")
    allowed = ALLOWED_SERVICE_VALUES.get(entry.key)
    if allowed and entry.value not in allowed:
        raise entry.error(f"{entry.key}={entry.value} in [Service] is not supported; allowed: {', '.join(allowed)}")


def render(source: Source, unit: UnitFile, spec: ContainerSpec, known: set[str]) -> Generated:
    """The `.service` text: user's [Unit], ours, user's [Service] after ours (so a user's
    scalar such as TimeoutStopSec= wins), [Install] and X- sections as written; and the
    units beside it (socket, proxy, health check)."""
    _check_joined_container(unit, spec, known)
    default_dependencies = _quadlet_default_dependencies(unit)
    _oneshot_problems(unit, spec)
    spec, volume_services = _volume_files(unit, spec, known)
    _check_network_file(unit, spec, known)
    sockets = _socket_plan(source, unit, spec)
    health = HealthUnits(source, spec) if spec.health_cmd else None
    policy = service_policy(
        spec,
        _launcher(),
        private_network=sockets is not None and sockets.private_network,
        default_dependencies=default_dependencies,
    )
    out = [
        f"# Automatically generated by {PROGRAM} from {source.path}",
        "# Edit the .container file (or add a drop-in) and run systemctl daemon-reload.",
        "",
        "[X-Container]",
    ]
    out += [f"{e.key}={e.value}" for e in unit.section("Container")]
    out += _unit_section(source, unit, known, policy, sockets, health)
    if volume_services:  # after the file's own [Unit] lines, before [Service]
        index = out.index("[Service]") - 1 if "[Service]" in out else len(out)
        services = " ".join(volume_services)
        out[index:index] = [f"Requires={services}", f"After={services}"]
    out += _service_section(unit, policy)
    for section in unit.sections:
        if (section == "Install" and sockets is None) or section.startswith("X-"):
            out += ["", f"[{section}]"] + [f"{e.key}={e.value}" for e in unit.section(section)]
    text = "\n".join(out) + "\n"
    others = health.files() if health is not None else []
    links = []
    if spec.pod:
        from sdcontainer.pods import container_links  # the pod's service wants its containers

        links = container_links(source, unit, spec.start_with_pod)
    if sockets is None:
        return Generated(source.service, text, install_links(source.service, unit) + links, others, policy)
    others += _socket_units(source, unit, sockets)
    # [Install] belongs to the socket: enabling a socket-activated container means listening
    return Generated(source.service, text, install_links(sockets.socket, unit), others, policy)


def _check_joined_container(unit: UnitFile, spec: ContainerSpec, known: set[str]) -> None:
    """Network=NAME.container names a file on the search path, as a dependency line must
    (an instance, db@1.container, may come from its template, db@.container)."""
    name = spec.network
    if not name.endswith(".container") or "%" in name:
        return
    template = name.partition("@")[0] + "@.container" if "@" in name else name
    if name in known or template in known:
        return
    entry = unit.lookup_last("Container", "Network")
    message = f"Network= names {name}, but no such file is on the search path"
    raise entry.error(message) if entry else ConfigError(message, unit.path)


def _volume_files(unit: UnitFile, spec: ContainerSpec, known: set[str]) -> tuple[ContainerSpec, list[str]]:
    """Volume=NAME.volume:/path (and Mount=...,source=NAME.volume): the volume that file
    makes (sdcontainer.volumefile), and its service to require."""
    from sdcontainer.spec import BindMount

    def refers(mount: object) -> bool:
        return isinstance(mount, BindMount) and mount.source.endswith(".volume")

    if not any(refers(m) for m in (*spec.volumes, *spec.mounts)):
        return spec, []
    from sdcontainer.record import replace
    from sdcontainer.volumefile import volume_of

    services: list[str] = []

    def resolve(mount: Any) -> Any:
        if not refers(mount):
            return mount
        entry = next(
            (
                e
                for e in unit.entries
                if e.section == "Container" and e.key in ("Volume", "Mount") and mount.source in e.value
            ),
            None,
        )
        name, service = volume_of(mount.source, entry, known)
        if service not in services:
            services.append(service)
        return replace(mount, source=name)

    volumes = tuple(resolve(m) for m in spec.volumes)
    mounts = tuple(resolve(m) for m in spec.mounts)
    return replace(spec, volumes=volumes, mounts=mounts), services


def _check_network_file(unit: UnitFile, spec: ContainerSpec, known: set[str]) -> None:
    """Network=NAME.network names a file on the search path, as a dependency does."""
    if spec.network.endswith(".network") and spec.network not in known:
        entry = unit.lookup_last("Container", "Network")
        message = f"Network={spec.network}: no such file is on the search path"
        raise entry.error(message) if entry else ConfigError(message, unit.path)


def _socket_plan(source: Source, unit: UnitFile, spec: ContainerSpec) -> SocketPlan | None:
    if unit.has_section("Socket"):
        from sdcontainer.sockets import SocketPlan  # only files with sockets pay for it

        return SocketPlan(source.stem, source.path, unit, spec)
    if spec.socket_proxy:
        entry = unit.lookup_last("Container", "SocketProxy")
        message = "SocketProxy= needs a [Socket] section: the socket the proxy serves"
        raise entry.error(message) if entry else ConfigError(message, source.path)
    return None


def _unit_section(
    source: Source,
    unit: UnitFile,
    known: set[str],
    policy: ServicePolicy,
    sockets: SocketPlan | None,
    health: HealthUnits | None,
) -> list[str]:
    """[Unit]: the file's own lines (a dependency on a .container file made one on its
    service), then ours."""
    out = ["", "[Unit]"]
    for entry in unit.section("Unit"):
        value = translate_dependency(entry, known) if entry.key in DEPENDENCY_KEYS else entry.value
        out.append(f"{entry.key}={value}")
    out.append(f"SourcePath={source.source_path}")
    out += [f"{name}={value}" for name, value in (*policy.unit_file_only, *policy.unit)]
    image = unit.lookup_last("Container", "Image")
    if image is not None and image.value.endswith(".image"):
        from sdcontainer.imagefile import image_unit_lines  # Image=NAME.image: its service

        out += image_unit_lines(unit)
    if unit.lookup_last("Container", "Pod") is not None:
        from sdcontainer.pods import container_unit_lines  # Pod=NAME.pod: bound to its service

        out += container_unit_lines(source, unit, known)
    if sockets is not None:
        out += sockets.service_unit_lines()
    if health is not None and health.startup is not None:
        # HealthStartupCmd=: its timer starts with the service; the check starts the regular one
        out.append(f"Wants={health.startup.timer}")
    elif health is not None and health.timer_text is not None:
        # started with the service, and started again should it stop while the service runs
        out += [f"Wants={health.timer}", f"Upholds={health.timer}"]
    return out


def _service_section(unit: UnitFile, policy: ServicePolicy) -> list[str]:
    """[Service]: the policy, with the file's own lines (checked) between its two parts: after
    its scalars, which they override, and before its RuntimeDirectory=, which a file's own
    line adds to and an empty one cannot reset."""
    service_entries = unit.section("Service")
    for entry in service_entries:
        _check_service_entry(entry)
    out = ["", "[Service]"]
    out += [f"{name}={value}" for name, value in policy.service]
    out += [f"{e.key}={e.value}" if e.key != "Type" else _service_type(e) for e in service_entries]
    if service_type(unit) == "oneshot":
        out.append("NotifyAccess=none")
    out += [f"{name}={value}" for name, value in policy.service_last]
    return out


def service_type(unit: UnitFile) -> str:
    entry = unit.lookup_last("Service", "Type")
    return entry.value if entry is not None else "notify"


def _service_type(entry: Entry) -> str:
    """[Service] Type=, as our launcher makes it true. notify: what the unit has anyway.
    oneshot (a container run to completion, Quadlet's oneshot.container): the launcher stays
    in the foreground as the main process and exits with the container's status, which is
    what it does when systemd gives it no notification socket (NotifyAccess=none). simple and
    exec: taken as notify, which counts the unit started once the container's command has been
    executed, as exec does; simple counts it at the fork, before podman had even run, so a
    container that cannot start failed after its unit was "active": here the start fails."""
    if entry.value in ("simple", "exec"):
        return f"# Type={entry.value} (line {entry.line}): taken as Type=notify, see sdcontainer.container(5)"
    return f"Type={entry.value}"


def _oneshot_problems(unit: UnitFile, spec: ContainerSpec) -> None:
    """Type=oneshot: the launcher keeps the container as its child and writes no record, so
    nothing can find the container to enter it, and systemd reads no readiness from it."""
    if service_type(unit) != "oneshot":
        return
    entry = unit.lookup_last("Service", "Type")
    for present, what in (
        (spec.notify != "no", f"Notify={spec.notify}"),
        (spec.health_cmd, "HealthCmd="),
        (spec.reload_cmd, "ReloadCmd="),
        (unit.lookup_last("Service", "NotifyAccess") is not None, "NotifyAccess="),
    ):
        if present and entry is not None:
            raise entry.error(
                f"Type=oneshot cannot be combined with {what}: a oneshot container is the launcher's "
                "child, which systemd takes no notification from and nothing can enter"
            )


def _socket_units(source: Source, unit: UnitFile, sockets: SocketPlan) -> list[tuple[str, str]]:
    """NAME.socket, with the file's [Install], and NAME-proxy.service for SocketProxy=."""
    description = unit.lookup_last("Unit", "Description")
    text = sockets.socket_text(PROGRAM, source.path, description.value if description else None)
    if unit.has_section("Install"):
        text += "\n[Install]\n" + "".join(f"{e.key}={e.value}\n" for e in unit.section("Install"))
    files = [(sockets.socket, text)]
    if sockets.proxy:
        start_limits = [f"{e.key}={e.value}" for e in unit.section("Unit") if e.key.startswith("StartLimit")]
        proxy = sockets.proxy_text(
            PROGRAM, source.path, _launcher(), description.value if description else None, start_limits
        )
        files.append((sockets.proxy, proxy))
    return files


# podman's defaults: 30s between checks, unhealthy after 3 failures, a check may take 30s
HEALTH_INTERVAL, HEALTH_RETRIES, HEALTH_TIMEOUT = 30_000, 3, 30_000


def _ms(value: int) -> str:
    return f"{value // 1000}s" if value % 1000 == 0 else f"{value}ms"


class HealthUnits:
    """NAME-health.timer and NAME-health.service: the check, run inside the container by
    `sdcontainer-launcher health` every HealthInterval=. The timer is bound to the container's
    service (BindsTo=), which wants and upholds it: it starts and stops with the container,
    also when the container dies on its own, so no timer outlives it (unlike podman's
    transient timers, podman#22884). No ordering against the service: with Notify=healthy
    the service is still starting when the first checks run."""

    def __init__(self, source: Source, spec: ContainerSpec) -> None:
        prefix, at, instance = source.stem.partition("@")
        name = f"{prefix}-health@{instance}" if at else f"{source.stem}-health"
        self.file_names = (f"{name}.service", f"{name}.timer")
        # how the units name each other: a template's instance is the container's, %i
        reference = f"{prefix}-health@%i" if at else name
        self.container_unit = f"{prefix}@%i.service" if at else source.service
        self.timer = f"{reference}.timer"
        self.service = f"{reference}.service"
        self.source = source
        self.spec = spec
        interval = spec.health_interval if spec.health_interval is not None else HEALTH_INTERVAL
        self.timer_text = None if interval == 0 else self._timer(interval)
        self.startup = StartupHealthUnits(self) if spec.health_startup_cmd else None

    def _header(self, what: str) -> list[str]:
        return [
            f"# Automatically generated by {PROGRAM} from {self.source.path}",
            "# Edit the .container file (or add a drop-in) and run systemctl daemon-reload.",
            "",
            "[Unit]",
            f"Description={what} of {self.container_unit}",
            f"SourcePath={self.source.source_path}",
        ]

    def _timer(self, interval: int) -> str:
        out = self._header("Health check timer")
        out += [
            f"BindsTo={self.container_unit}",
            "",
            "[Timer]",
            f"OnActiveSec={_ms(interval)}",
            f"OnUnitInactiveSec={_ms(interval)}",
            "AccuracySec=1ms",
            f"Unit={self.service}",
        ]
        return "\n".join(out) + "\n"

    def _service(self) -> str:
        spec = self.spec
        retries = spec.health_retries if spec.health_retries is not None else HEALTH_RETRIES
        timeout = spec.health_timeout if spec.health_timeout is not None else HEALTH_TIMEOUT
        start_period = spec.health_start_period or 0
        on_failure = spec.health_on_failure or "none"
        argv = [*_launcher(), "health", "--unit", self.container_unit, "--retries", str(retries)]
        argv += ["--timeout", str(timeout), "--start-period", str(start_period), "--on-failure", str(on_failure)]
        if spec.notify == "healthy":
            argv.append("--notify-healthy")
        argv.append("--")
        out = self._header("Health check")
        out += [
            # checks run every few seconds: no start limit, and only the failures in the journal
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "Type=oneshot",
            # the check's words are the file's value: its `$` is systemd's, as Exec='s
            "ExecStart=" + exec_line(argv, list(spec.health_cmd or ())),
            f"TimeoutStartSec={_ms(timeout + 30_000)}",
            "LogLevelMax=notice",
            "SyslogLevel=warning",
        ]
        return "\n".join(out) + "\n"

    def files(self) -> list[tuple[str, str]]:
        files = [(self.file_names[0], self._service())]
        if self.timer_text is not None:
            files.append((self.file_names[1], self.timer_text))
        return files + (self.startup.files() if self.startup is not None else [])


class StartupHealthUnits:
    """NAME-health-startup.timer and .service: HealthStartupCmd=, podman's startup check. Its
    timer is wanted by the container's service and bound to it (not upheld: it stops itself);
    the check runs every HealthStartupInterval= until it has passed HealthStartupSuccess=
    times in a row, then starts the regular check's timer and stops its own; after
    HealthStartupRetries= failures in a row it restarts the service, which starts it again."""

    def __init__(self, health: HealthUnits) -> None:
        source, spec = health.source, health.spec
        prefix, at, instance = source.stem.partition("@")
        name = f"{prefix}-health-startup@{instance}" if at else f"{source.stem}-health-startup"
        reference = f"{prefix}-health-startup@%i" if at else name
        self.file_names = (f"{name}.service", f"{name}.timer")
        self.timer, self.service = f"{reference}.timer", f"{reference}.service"
        self.health = health
        self.interval = spec.health_startup_interval or HEALTH_INTERVAL
        self.timeout = spec.health_startup_timeout or HEALTH_TIMEOUT

    def files(self) -> list[tuple[str, str]]:
        health, spec = self.health, self.health.spec
        timer = health._header("Startup health check timer") + [
            f"BindsTo={health.container_unit}",
            "",
            "[Timer]",
            f"OnActiveSec={_ms(self.interval)}",
            f"OnUnitInactiveSec={_ms(self.interval)}",
            "AccuracySec=1ms",
            f"Unit={self.service}",
        ]
        argv = [*_launcher(), "health", "--unit", health.container_unit, "--startup", "--timeout", str(self.timeout)]
        argv += ["--retries", str(spec.health_startup_retries or 0), "--success", str(spec.health_startup_success or 1)]
        if health.timer_text is not None:
            argv += ["--then-start", health.timer]
        argv += ["--then-stop", self.timer, "--", *(spec.health_startup_cmd or ())]
        service = health._header("Startup health check") + [
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "Type=oneshot",
            "ExecStart=" + exec_line(argv),
            f"TimeoutStartSec={_ms(self.timeout + 30_000)}",
            "SyslogLevel=warning",
        ]
        return [(self.file_names[0], "\n".join(service) + "\n"), (self.file_names[1], "\n".join(timer) + "\n")]


def generate(source: Source, known: set[str], dropin_index: dict[str, list[str]]) -> Generated:
    source.check_names()
    if source.kind is not CONTAINER:
        return _generate_other(source, known, dropin_index)
    unit = load(source, dropin_index)
    _check_sections(unit)
    spec = spec_from_unit(unit)
    if spec.image and spec.image.endswith(".image"):
        from sdcontainer.imagefile import resolve

        spec = resolve(source, unit, spec, known, dropin_index)
    if spec.pod:
        from sdcontainer.pods import resolve as resolve_pod  # its Volume= lines; refused with it

        spec = resolve_pod(source, unit, spec, known, dropin_index)
    if spec.image and spec.stop_signal is None and not has_variable(spec.image):
        spec = _image_stop_signal(spec)
    generated = render(source, unit, spec, known)
    _check_other_names(source, generated)
    return generated


def _generate_other(source: Source, known: set[str], dropin_index: dict[str, list[str]]) -> Generated:
    """A file of another kind than .container: its kind's module renders it."""
    kind = source.kind
    if kind.module is None:
        from sdcontainer.sources import KINDS

        supported = ", ".join(k.suffix for k in KINDS if k.module is not None)
        raise ConfigError(f"{kind.suffix} files are not supported yet (only {supported})", source.path)
    from importlib import import_module

    render_kind = import_module(kind.module).render
    generated: Generated = render_kind(source, load(source, dropin_index), known)
    _check_other_names(source, generated)
    return generated


def _check_other_names(source: Source, generated: Generated) -> None:
    for name, _ in generated.others:  # the service's own name is checked: the file's
        problem = unit_name_problem(name)
        if problem:  # NAME-health.service, NAME-proxy.service: longer than the file's own
            raise ConfigError(f"would write {shown(name)}, not a valid unit name: {problem}", source.path)


def _image_stop_signal(spec: ContainerSpec) -> ContainerSpec:
    """The StopSignal of the image's config, if the image is in the store already (and
    named by a full reference: no registries.conf is read here); the unit's KillSignal= and
    SuccessExitStatus= are written now, before any start could pull it."""
    from sdcontainer.record import replace
    from sdcontainer.store import image_stop_signal
    from sdcontainer.values import ParseContext, parse_signal

    try:
        signal = image_stop_signal(spec.image or "")
        return replace(spec, stop_signal=parse_signal(signal, ParseContext())) if signal else spec
    except (OSError, ValueError, KeyError, ImageError):
        return spec  # not readable here (a store on a file system not mounted yet): the default


# --- a refused file: a unit of its name that says why ------------------------------------------

# The stand-in's ExecStart=: Python's sys.exit() with a string prints it to stderr and exits 1.
# The messages are arguments, quoted as every Exec*= word is: no shell, nothing to escape twice.
REFUSED_CODE = "import sys; sys.exit(chr(10).join(sys.argv[1:]))"
# A message may quote a whole line of the file; a line of a unit file is read up to 1 MiB and
# an argument of execve() up to 128 KiB: the stand-in keeps the start of a longer one.
REFUSED_MESSAGE_MAX = 2000


def refused_unit(source: Source, messages: list[str]) -> Generated | None:
    """NAME.service for a file the generator refuses (`messages`: why, one line each), so that
    `systemctl start NAME` fails at once with the reason where a user looks, instead of "Unit
    NAME.service not found": the first message in Description= (`systemctl status`, the
    "Failed to start" line), all of them on stderr at error priority (the unit's journal,
    which `systemctl status` shows). Nothing else of the file: no [Install] links, no socket,
    no health check. None for a file whose name gives no unit name: there is no unit to stand
    in for. Every text in it is one printable line with % doubled (systemd expands specifiers
    in Description= and ExecStart=); ExecStart='s words are quoted as Exec='s are."""
    if unit_name_problem(source.service) is not None or source.stem.startswith("."):
        return None
    shown_messages = [_refused_text(message) for message in messages]
    description = shown_messages[0]
    if len(shown_messages) > 1:
        description += f" (and {len(shown_messages) - 1} more)"
    elif description.endswith("\\"):
        description += "."  # a trailing backslash would continue the line
    python = escape_specifiers(sys.executable or "/usr/bin/python3")
    out = [
        f"# Automatically generated by {PROGRAM} from {printable(shown(source.path))},",
        "# which it refused: this unit only fails, saying why. Fix the file and run systemctl daemon-reload.",
        "",
        "[Unit]",
        f"Description=Refused by {PROGRAM}: {description}",
        f"Documentation=man:sdcontainer-generator(8) man:sdcontainer{source.suffix}(5)",
    ]
    if unit_path_problem(source.path) is None:
        out.append(f"SourcePath={source.source_path}")
    out += [
        "",
        "[Service]",
        "Type=oneshot",
        f"SyslogIdentifier={PROGRAM}",
        # every line at error priority, none read as a <N> priority prefix
        "SyslogLevel=err",
        "SyslogLevelPrefix=no",
        "ExecStart=" + exec_line([python, "-I", "-S", "-c", REFUSED_CODE, *shown_messages]),
    ]
    return Generated(source.service, "\n".join(out) + "\n", [])


def _refused_text(message: str) -> str:
    text = printable(message)
    if len(text) > REFUSED_MESSAGE_MAX:
        text = text[:REFUSED_MESSAGE_MAX] + " [...]"
    return escape_specifiers(text)


def refuse(
    source: Source, known: set[str], dropin_index: dict[str, list[str]], error: ConfigError, output_dir: str | None
) -> None:
    """Report why `source` is refused (`error`: what generate() raised; every error of the
    file, see diagnose) and write its stand-in unit into `output_dir` (print it, with None:
    --dry-run). The caller counts the file as failed."""
    messages = [str(problem) for problem in refusal_errors(source, known, dropin_index, error)]
    for message in messages:
        report(message)
    stand_in = refused_unit(source, messages)
    if stand_in is None:
        return
    if output_dir is None:
        print(f"--- {stand_in.service} ---")
        print(stand_in.text, end="")
        return
    try:
        write(output_dir, stand_in)
    except OSError as failure:
        report(f"{shown(source.path)}: cannot write {stand_in.service}: {failure.strerror}")
    except UnicodeError:  # an interpreter path that is not UTF-8
        report(f"{shown(source.path)}: cannot write {stand_in.service}: a name in it is not UTF-8")


# --- every error of a refused file; what a good one meets on this host -------------------------


def refusal_errors(
    source: Source, known: set[str], dropin_index: dict[str, list[str]], first: ConfigError
) -> list[ConfigError]:
    """The errors to report for a file generate() refused with `first`: diagnose()'s, with
    `first` among them whatever happens."""
    errors = diagnose(source, known, dropin_index)
    if str(first) not in {str(error) for error in errors}:
        errors.insert(0, first)
    return errors


def diagnose(source: Source, known: set[str], dropin_index: dict[str, list[str]]) -> list[ConfigError]:
    """Every error of a file that can be found on its own, in the order of the files (the
    .container, then its drop-ins) and their lines: each bad line, unknown section, unknown
    key (with a "did you mean" for a misspelt one), bad value and refused [Service] or
    [Unit] line. Only in a file without any of those come the checks of the file as a
    whole, where a bad or missing line would make noise: each between keys, then the first
    of the rest (install links, sockets, names of the units beside the service). After
    MAX_ERRORS it stops, with a last line saying so. Error paths only (`sdcontainer check`,
    a refused file): the file is parsed again, more slowly than generate() does."""
    paths = [source.path, *find_dropins(source, dropin_index)]
    errors = ErrorList()
    stopped = False
    try:
        _diagnose(source, known, dropin_index, paths, errors)
    except TooManyErrors:
        stopped = True
    rank = {path: i for i, path in enumerate(paths)}
    found = sorted(errors, key=lambda error: (rank.get(error.path or "", 0), error.line or 0))
    if stopped:
        found.append(ConfigError(f"stopped after {errors.limit} errors; the rest is not checked", source.path))
    return found


def _diagnose(
    source: Source, known: set[str], dropin_index: dict[str, list[str]], paths: list[str], errors: ErrorList
) -> None:
    try:
        source.check_names()
    except ConfigError as error:
        errors.append(error)
    unit = None
    for path in paths:
        try:
            part = parse_file(path, errors)
        except ConfigError as error:  # unreadable, not UTF-8, a NUL: nothing more of it to check
            errors.append(error)
            if unit is None:
                return
            continue
        if unit is None:
            unit = part
        else:
            unit.merge(part)
    assert unit is not None
    if source.kind is not CONTAINER:
        _diagnose_other(source, unit, known, dropin_index, errors)
        return
    for header in unit.headers:
        if header.section not in KNOWN_SECTIONS and not header.section.startswith("X-"):
            errors.append(header.error(_unknown_section(header.section)))
    if not unit.has_section("Container"):
        errors.append(ConfigError("no [Container] section", unit.path))
        return  # every check of [Container] would say what is missing
    dependencies = [entry for entry in unit.section("Unit") if entry.key in DEPENDENCY_KEYS]
    checks: list[tuple[Callable[[Entry], object], list[Entry]]] = [
        (_quadlet_setting, unit.section("Quadlet")),
        (_check_service_entry, unit.section("Service")),
        (lambda entry: translate_dependency(entry, known), dependencies),
    ]
    section_errors(unit, errors, whole=False)
    for check, entries in checks:
        for entry in entries:
            try:
                check(entry)
            except ConfigError as error:
                errors.append(error)
    if errors:
        return
    section_errors(unit, errors, whole=True)  # the checks between keys, now that each key is good
    if not errors:
        try:
            generate(source, known, dropin_index)
        except ConfigError as error:
            errors.append(error)


def _diagnose_other(
    source: Source, unit: UnitFile, known: set[str], dropin_index: dict[str, list[str]], errors: ErrorList
) -> None:
    """Another kind's errors: its module's diagnose(source, unit, known, errors) if it has one
    (every error it can find), else the first error of generating it."""
    if source.kind.module is not None and not errors:
        from importlib import import_module

        diagnose_kind = getattr(import_module(source.kind.module), "diagnose", None)
        if diagnose_kind is not None:
            diagnose_kind(source, unit, known, errors)
            return
    if not errors:
        try:
            generate(source, known, dropin_index)
        except ConfigError as error:
            errors.append(error)


def host_warnings(source: Source, dropin_index: dict[str, list[str]]) -> list[str]:
    """What a file the generator accepts would meet when it starts on this host, for
    `sdcontainer check`: a Rootfs= that is not a directory here, an Image= the store does not
    hold. Warnings, not errors: the generator accepts the file all the same (check's errors
    are the generator's refusals), and the file may be meant for another host, a file system
    not mounted yet (RequiresMountsFor=), or an image pulled at the first start."""
    unit = load(source, dropin_index)
    spec = spec_from_unit(unit)
    warnings = []
    rootfs = unit.lookup_last("Container", "Rootfs")
    if spec.rootfs and rootfs is not None and "%" not in spec.rootfs.replace("%%", ""):  # no specifiers
        path = spec.rootfs.replace("%%", "%")
        problem = None
        try:
            if not stat.S_ISDIR(os.stat(path).st_mode):
                problem = "is not a directory on this host: the unit cannot start here"
        except (FileNotFoundError, NotADirectoryError):
            problem = "does not exist on this host: the unit cannot start here"
        except OSError as error:
            problem = f"cannot be checked: {error.strerror}"
        if problem:
            warnings.append(str(rootfs.error(f"warning: Rootfs={shown(path)} {problem}")))
    image = unit.lookup_last("Container", "Image")
    if spec.image and image is not None and "%" not in spec.image and not spec.image.endswith(".image"):
        from sdcontainer.store import find_image, storage_dir

        try:
            stored = find_image(spec.image) is not None
        except (OSError, ValueError, ImageError) as error:
            reason = error.strerror if isinstance(error, OSError) else str(error)
            warnings.append(str(image.error(f"warning: the image store {storage_dir()} cannot be read: {reason}")))
        else:
            if not stored and spec.pull == "never":
                problem = "is not in the image store, and Pull=never: the unit cannot start here"
                warnings.append(str(image.error(f"warning: {spec.image} {problem}")))
            elif not stored:
                warnings.append(
                    str(image.error(f"note: {spec.image} is not in the image store: the first start pulls it"))
                )
    warnings += _secret_warnings(unit, spec)
    return warnings


def _secret_warnings(unit: UnitFile, spec: ContainerSpec) -> list[str]:
    """Secret=: a secret not stored on this host (the start would fail naming it)."""
    if not spec.secrets:
        return []
    from sdcontainer.secrets import secret_path
    from sdcontainer.values import secret_ref

    warnings = []
    for entry in unit.section("Container"):
        if entry.key != "Secret" or not entry.value:
            continue
        name = secret_ref(entry.value.strip('"')).name
        path = secret_path(name)  # the store `secret create` writes (SDCONTAINER_SECRETS in tests)
        try:
            os.stat(path)
        except FileNotFoundError:
            warnings.append(
                str(entry.error(f"warning: secret {name} does not exist on this host: the unit cannot start here"))
            )
        except OSError as error:
            warnings.append(str(entry.error(f"warning: secret {name} cannot be checked: {error.strerror}")))
    return warnings


_made_dirs: set[str] = set()


def write(output_dir: str, generated: Generated) -> None:
    # systemd hands every generator run fresh output directories: no partial file from an
    # earlier run can be there, so no temporary file and rename are needed.
    with open(os.path.join(output_dir, generated.service), "w", encoding="utf-8") as f:
        f.write(generated.text)
    for name, text in generated.others:
        with open(os.path.join(output_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    for link, target in generated.links:
        link_path = os.path.join(output_dir, link)
        directory = os.path.dirname(link_path)
        if directory not in _made_dirs:  # most units share multi-user.target.wants/
            os.makedirs(directory, exist_ok=True)
            _made_dirs.add(directory)
        try:
            os.symlink(target, link_path)
        except FileExistsError:
            report(f"{link_path} exists already; not replacing it")


def report(message: str) -> None:
    """stderr, and the journal (at daemon-reload) or the kernel log (at boot, before
    journald runs; journald picks it up from there): systemd keeps no generator output.
    Non-printable characters are escaped: a newline would end a journal field and start
    another (PRIORITY=, SYSLOG_IDENTIFIER=), or forge a line of the log."""
    message = printable(message)
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)
    if not _send_to_journal(message):
        _send_to_kmsg(message)


def _send_to_journal(message: str) -> bool:
    import socket

    fields = f"PRIORITY=3\nSYSLOG_IDENTIFIER={PROGRAM}\nSYSLOG_PID={os.getpid()}\nMESSAGE={message}\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
            journal.sendto(fields.encode(errors="replace"), "/run/systemd/journal/socket")
    except OSError:
        return False
    return True


def _send_to_kmsg(message: str) -> None:
    try:
        fd = os.open("/dev/kmsg", os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return
    try:  # <27>: facility daemon, priority error, so journald reads it as ours, not the kernel's
        os.write(fd, f"<27>{PROGRAM}[{os.getpid()}]: {message}\n".encode(errors="replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


USAGE = f"""\
usage: {PROGRAM} [--dry-run] [NORMAL_DIR [EARLY_DIR LATE_DIR]]

Turns .container files into systemd services. systemd runs it with its three output
directories at boot and on daemon-reload; units are written to NORMAL_DIR.

  --dry-run   print every unit (and enablement symlink) it would write, write nothing
  --help      show this help

Search path: {":".join(SYSTEM_UNIT_PATH)}
(replaced by $SDCONTAINER_UNIT_PATH, colon-separated). See sdcontainer-generator(8).
"""


def main(argv: list[str] | None = None) -> int:
    """What systemd runs (argv None: sys.argv[1:]), through the one top level of every entry
    point (sdcontainer.errors.run_main)."""
    return run_main(PROGRAM, _generate_all, list(sys.argv[1:] if argv is None else argv))


def _generate_all(args: list[str]) -> int:
    dry_run = False
    dirs = []
    for arg in args:
        if arg in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        if arg in ("--dry-run", "--dryrun"):
            dry_run = True
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}\n{USAGE.rstrip()}")
        else:
            dirs.append(arg)
    if not dry_run and len(dirs) not in (1, 3):
        raise UsageError(f"expected 1 or 3 output directories\n{USAGE.rstrip()}")

    _made_dirs.clear()
    _launcher_cache.clear()
    problems: list[str] = []
    sources, dropin_index = find_sources(unit_search_path(), problems)
    for problem in problems:
        report(problem)
    known = Known(sources, dropin_index)
    failed = 0
    for source in sources:
        try:
            generated = generate(source, known, dropin_index)
        except ConfigError as error:
            refuse(source, known, dropin_index, error, None if dry_run else dirs[0])
            failed += 1
            continue
        if dry_run:
            print(f"--- {generated.service} ---")
            print(generated.text, end="")
            for name, text in generated.others:
                print(f"--- {name} ---")
                print(text, end="")
            for link, target in generated.links:
                print(f"--- symlink {link} -> {target} ---")
            continue
        try:
            write(dirs[0], generated)
        except OSError as error:
            report(f"{shown(source.path)}: cannot write {generated.service}: {error.strerror}")
            failed += 1
        except UnicodeError:  # a launcher path that is not UTF-8 (the file's names are checked)
            report(f"{shown(source.path)}: cannot write {generated.service}: a name in it is not UTF-8")
            failed += 1
    if failed:
        report(f"{failed} of {len(sources)} unit files failed; the others were generated")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
