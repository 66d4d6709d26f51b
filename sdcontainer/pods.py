"""`.pod` files: `NAME.pod` -> `NAME-pod.service`, which holds the namespaces its containers share.

As Quadlet's: a `.container` file with `Pod=NAME.pod` is bound to NAME-pod.service (BindsTo=,
After=: starting the container starts the pod first, stopping the pod stops the container),
and the pod's service wants its containers (the generator links them into
NAME-pod.service.wants/), so starting the pod starts them. The containers share the pod's
network, IPC and UTS namespaces; each keeps its own mount, pid and cgroup namespaces (podman
shares no pid namespace by default either).

No process holds the pod's namespaces. NAME-pod.service is a oneshot that stays active
(RemainAfterExit=yes); its ExecStart= (`sdcontainer-launcher pod-create`) forks a child that
unshares the three namespaces, and bind-mounts the child's /proc/PID/ns/{net,ipc,uts} on files
in /run/sdcontainer/pods/NAME/ before the child exits: an nsfs bind mount keeps a namespace
alive by itself. The pod's network (lease, veth on the bridge, PublishPort=) is set up there by
sdcontainer.network, keyed by the pod's unit. A container's launcher setns()es into those files
instead of unsharing (sdcontainer.launcher). ExecStopPost= (`pod-remove`) releases the lease
and the published ports and unmounts the files; the namespaces end with the last container
still in them.
"""

from __future__ import annotations

import os

from sdcontainer import linux, state
from sdcontainer.errors import ConfigError, ErrorList, LaunchError, UsageError
from sdcontainer.keys import Key, Kind, _values_for, did_you_mean
from sdcontainer.record import record, replace
from sdcontainer.service import exec_line, launcher_command
from sdcontainer.sources import (
    DEPENDENCY_KEYS,
    Generated,
    Source,
    install_links,
    load,
    service_of,
    translate_dependency,
)
from sdcontainer.spec import BindMount, ContainerSpec
from sdcontainer.unitfile import Entry, UnitFile, escape_specifiers, parse_boolean
from sdcontainer.values import (
    DEFAULT_NETWORK,
    ParseContext,
    is_bridge,
    parse_hostname,
    parse_ipv4,
    parse_network,
    parse_publish_port,
    parse_string,
    parse_volume,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROGRAM = "sdcontainer-generator"
SECTION = "Pod"
KNOWN_SECTIONS = ("Pod", "Unit", "Service", "Install", "Quadlet")
# the namespaces a pod's containers share: file name under the pod's directory, CLONE_NEW* flag
NAMESPACES = (("net", linux.CLONE_NEWNET), ("ipc", linux.CLONE_NEWIPC), ("uts", linux.CLONE_NEWUTS))


@record
class PodSpec:
    """A .pod file's [Pod] section, checked."""

    name: str | None = None  # PodName=; default: the file's stem
    hostname: str | None = None  # default: the pod's name
    network: str = DEFAULT_NETWORK
    ip: str | None = None
    publish_ports: tuple[str, ...] = ()
    volumes: tuple[BindMount, ...] = ()  # added to each container's own (the generator does)


POD_KEYS: tuple[Key, ...] = (
    Key(
        "PodName",
        Kind.SINGLE,
        "name",
        parse_string,
        option="--name",
        metavar="NAME",
        doc="The pod's name, and the host name of its containers unless *HostName=* says "
        "otherwise. Default: the file's name without .pod.",
    ),
    Key(
        "HostName",
        Kind.SINGLE,
        "hostname",
        parse_hostname,
        option="--hostname",
        metavar="NAME",
        doc="The host name of the pod's UTS namespace, which its containers share. Default: the pod's name.",
    ),
    Key(
        "Network",
        Kind.SINGLE,
        "network",
        parse_network,
        option="--network",
        metavar="MODE",
        doc="The pod's network, as *Network=* of a .container file: *bridge* (the default: one "
        "address on the default bridge network for the whole pod), *none* (loopback only) or "
        "*host*.",
    ),
    Key(
        "IP",
        Kind.SINGLE,
        "ip",
        parse_ipv4,
        option="--ip",
        metavar="ADDRESS",
        doc="A static IPv4 address for the pod on its bridge network.",
    ),
    Key(
        "PublishPort",
        Kind.LIST,
        "publish_ports",
        parse_publish_port,
        option="--publish",
        metavar="[[IP:]HOSTPORT:]CONTAINERPORT[/PROTO]",
        doc="Forwards the host's port _HOSTPORT_ to _CONTAINERPORT_ of the pod's network "
        "namespace, where whichever of its containers listens on that port gets the "
        "connections; as *PublishPort=* of a .container file.",
    ),
    Key(
        "Volume",
        Kind.LIST,
        "volumes",
        parse_volume,
        metavar="SOURCE:TARGET[:OPTIONS]",
        doc="A bind mount every container of the pod gets, before its own *Volume=* lines; as "
        "*Volume=* of a .container file (a relative _SOURCE_ is taken from the directory of the "
        ".pod file).",
    ),
)
POD_KEYS_BY_NAME = {key.name: key for key in POD_KEYS}
POD_KEYS_BY_OPTION = {key.option: key for key in POD_KEYS if key.option}

# Quadlet's [Pod] keys that sdcontainer does not implement
QUADLET_ONLY_POD_KEYS = {
    "AddHost": "not supported yet",
    "ContainersConfModule": "there is no podman whose configuration to extend",
    "DNS": "not supported yet",
    "DNSOption": "not supported yet",
    "DNSSearch": "not supported yet",
    "ExitPolicy": "not supported yet; the pod stays up when its containers exit",
    "GIDMap": "user namespaces are not supported yet",
    "GlobalArgs": "there is no podman to pass arguments to",
    "IP6": "IPv6 is not supported yet",
    "Label": "not supported yet",
    "NetworkAlias": "not supported yet",
    "PodmanArgs": "there is no podman to pass arguments to",
    "RemapGid": "user namespaces are not supported yet",
    "RemapUid": "user namespaces are not supported yet",
    "RemapUidSize": "user namespaces are not supported yet",
    "RemapUsers": "user namespaces are not supported yet",
    "ServiceName": "name the file after the service instead",
    "ShmSize": "not supported yet; set ShmSize= in each .container file",
    "StopTimeout": "not supported yet",
    "SubGIDMap": "user namespaces are not supported yet",
    "SubUIDMap": "user namespaces are not supported yet",
    "UIDMap": "user namespaces are not supported yet",
    "UserNS": "user namespaces are not supported yet",
}

# [Service] settings the pod's service relies on
FORBIDDEN_SERVICE_KEYS = {
    "ExecStart": "the service's command creates the pod",
    "ExecStopPost": "the service's last command removes the pod",
    "Type": "the pod's service is a oneshot that stays active",
    "RemainAfterExit": "the pod's service is a oneshot that stays active",
    "User": "the pod's namespaces and network need root",
    "Group": "the pod's namespaces and network need root",
    "DynamicUser": "the pod's namespaces and network need root",
}


def _check_key(entry: Entry) -> Key:
    key = POD_KEYS_BY_NAME.get(entry.key)
    if key is not None:
        return key
    why = QUADLET_ONLY_POD_KEYS.get(entry.key)
    if why is not None:
        raise entry.error(f"key {entry.key}= in [Pod] is a Quadlet key that sdcontainer does not support yet ({why})")
    raise entry.error(f"unknown key {entry.key}= in [Pod]" + did_you_mean(entry.key, list(POD_KEYS_BY_NAME)))


def _pod_values(unit: UnitFile, errors: list[ConfigError] | None) -> tuple[dict[str, Any], dict[str, list[Entry]]]:
    ctx = ParseContext(unit_dir=escape_specifiers(os.path.dirname(os.path.abspath(unit.path))))
    grouped: dict[str, list[Entry]] = {}
    for entry in unit.section(SECTION):
        try:
            grouped.setdefault(_check_key(entry).field, []).append(entry)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
    values: dict[str, Any] = {}
    for field, entries in grouped.items():
        try:
            value = _values_for(POD_KEYS_BY_NAME[entries[0].key], entries, ctx, errors)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        if value is not None:
            values[field] = value
    return values, grouped


def _check_sections(unit: UnitFile, errors: list[ConfigError] | None) -> None:
    for header in unit.headers:
        if header.section not in KNOWN_SECTIONS and not header.section.startswith("X-"):
            error = header.error(
                f"unknown section [{header.section}] in a .pod file (known: [Pod], [Unit], "
                "[Service], [Install], [Quadlet] and X- sections)"
            )
            if errors is None:
                raise error
            errors.append(error)


def _check_spec(spec: PodSpec, grouped: dict[str, list[Entry]], unit: UnitFile) -> None:
    if spec.network == "host" and spec.publish_ports:
        # podman discards the mappings with a warning; a refusal says it where it is written
        raise grouped["publish_ports"][-1].error(
            "PublishPort= is not supported with Network=host: the pod has the host's ports"
        )
    if not is_bridge(spec.network):
        for field, key in (("publish_ports", "PublishPort"), ("ip", "IP")):
            if getattr(spec, field):
                raise grouped[field][-1].error(f"{key}= needs a bridge network, not Network={spec.network}")
    if spec.network == "host" and spec.hostname:
        raise grouped["hostname"][-1].error("HostName= cannot be set with Network=host")


def _check_service_entry(entry: Entry) -> None:
    if entry.key in FORBIDDEN_SERVICE_KEYS:
        raise entry.error(f"{entry.key}= in [Service] is not allowed here: {FORBIDDEN_SERVICE_KEYS[entry.key]}")


def _default_dependencies(unit: UnitFile) -> bool:
    enabled = True
    for entry in unit.section("Quadlet"):
        if entry.key != "DefaultDependencies":
            raise entry.error(
                f"unknown key {entry.key}= in [Quadlet]" + did_you_mean(entry.key, ["DefaultDependencies"])
            )
        try:
            enabled = parse_boolean(entry.value)
        except ValueError as error:
            raise entry.error(f"invalid DefaultDependencies=: {error}") from None
    return enabled


def pod_spec(unit: UnitFile) -> PodSpec:
    """The checked [Pod] section of a .pod file; ConfigError for the first bad line. A file
    without [Pod] is a pod with every default, as Quadlet's."""
    _check_sections(unit, None)
    values, grouped = _pod_values(unit, None)
    spec = PodSpec(**values)
    _check_spec(spec, grouped, unit)
    return spec


def pod_argv(spec: PodSpec) -> list[str]:
    argv = []
    for key in POD_KEYS:
        value = getattr(spec, key.field)
        if key.option is None or value is None or value == getattr(PodSpec(), key.field):
            continue  # a default: left out, for a readable systemctl cat
        for item in value if isinstance(value, tuple) else (value,):
            argv += [key.option, str(item)]
    return argv


def render(source: Source, unit: UnitFile, known: set[str]) -> Generated:
    """NAME-pod.service: [X-Pod] (the file's lines), [Unit] (the file's lines after the
    network dependencies), [Service] a oneshot that stays active, creating the pod at start
    and removing it after any end, [Install] and X- sections as written."""
    if "@" in source.stem:
        raise ConfigError("a .pod file cannot be a template or an instance (no @ in its name) yet", source.path)
    spec = pod_spec(unit)
    default_dependencies = _default_dependencies(unit)
    for entry in unit.section("Service"):
        _check_service_entry(entry)
    launcher = [escape_specifiers(word) for word in launcher_command()]
    pod = ["--pod", escape_specifiers(source.stem), "--unit", "%n"]
    out = [
        f"# Automatically generated by {PROGRAM} from {source.path}",
        "# Edit the .pod file (or add a drop-in) and run systemctl daemon-reload.",
        "",
        "[X-Pod]",
        *(f"{e.key}={e.value}" for e in unit.section(SECTION)),
        "",
        "[Unit]",
    ]
    if default_dependencies and is_bridge(spec.network):
        out += ["Wants=network-online.target", "After=network-online.target"]
    for entry in unit.section("Unit"):
        value = translate_dependency(entry, known) if entry.key in DEPENDENCY_KEYS else entry.value
        out.append(f"{entry.key}={value}")
    out.append(f"SourcePath={source.source_path}")
    out += [
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "SyslogIdentifier=%N",
        "ExecStart=" + exec_line([*launcher, "pod-create", *pod, *pod_argv(spec)]),
        # after any end (a stop, a failed start): the lease, the published ports, the mounts
        "ExecStopPost=" + exec_line([*launcher, "pod-remove", *pod]),
    ]
    out += [f"{e.key}={e.value}" for e in unit.section("Service")]
    # the unit counts as running while it exists (sdcontainer.network.unit_alive)
    out.append(f"RuntimeDirectory={state.runtime_directory('%n')}")
    for section in unit.sections:
        if section == "Install" or section.startswith("X-"):
            out += ["", f"[{section}]"] + [f"{e.key}={e.value}" for e in unit.section(section)]
    return Generated(source.service, "\n".join(out) + "\n", install_links(source.service, unit))


def diagnose(source: Source, unit: UnitFile, known: set[str], errors: ErrorList) -> None:
    """Every error of a .pod file: each unknown section or key, bad value, refused [Service]
    or [Unit] line; then, if there was none, what render() finds."""
    _check_sections(unit, errors)
    _pod_values(unit, errors)
    for entry in unit.section("Service"):
        try:
            _check_service_entry(entry)
        except ConfigError as error:
            errors.append(error)
    for entry in unit.section("Unit"):
        try:
            if entry.key in DEPENDENCY_KEYS:
                translate_dependency(entry, known)
        except ConfigError as error:
            errors.append(error)
    if not errors:
        try:
            render(source, unit, known)
        except ConfigError as error:
            errors.append(error)


# --- Pod=NAME.pod in a .container file -------------------------------------------------------


def pod_entry(unit: UnitFile) -> Entry | None:
    return unit.lookup_last("Container", "Pod")


def container_unit_lines(source: Source, unit: UnitFile, known: set[str]) -> list[str]:
    """[Unit] lines of a container in a pod: bound to the pod's service, started after it."""
    entry = pod_entry(unit)
    if entry is None:
        return []
    if entry.value not in known:
        raise entry.error(f"Pod= names {entry.value}, but no such file is on the search path")
    service = service_of(entry.value)
    return [f"BindsTo={service}", f"After={service}"]


def resolve(
    source: Source, unit: UnitFile, spec: ContainerSpec, known: set[str], dropin_index: dict[str, list[str]]
) -> ContainerSpec:
    """The spec of a container in a pod, with the pod's Volume= lines before its own. A
    container whose .pod file is missing or refused is refused too, naming it."""
    entry = pod_entry(unit)
    if entry is None:
        return spec
    name = entry.value
    paths = getattr(known, "paths", None)
    path = paths.get(name) if isinstance(paths, dict) else os.path.join(os.path.dirname(source.path), name)
    if name not in known or not path:
        raise entry.error(f"Pod= names {name}, but no such file is on the search path")
    try:
        pod = pod_spec(load(Source(name, path), dropin_index))
    except ConfigError as error:
        raise entry.error(f"Pod= names {name}, which is refused: {error}") from None
    return replace(spec, volumes=pod.volumes + spec.volumes) if pod.volumes else spec


def container_links(source: Source, unit: UnitFile, start_with_pod: bool) -> list[tuple[str, str]]:
    """The pod's service wants the container (as Quadlet's Wants= in it): a link in its
    .wants/ directory, unless StartWithPod=no. A template has no instance to start."""
    entry = pod_entry(unit)
    if entry is None or not start_with_pod or source.stem.endswith("@"):
        return []
    return [(f"{service_of(entry.value)}.wants/{source.service}", f"../{source.service}")]


# --- the service's commands: sdcontainer-launcher pod-create / pod-remove ----------------------

CREATE_USAGE = (
    "usage: pod-create --pod NAME --unit UNIT [--name NAME] [--hostname NAME] [--network MODE] "
    "[--ip ADDRESS] [--publish PORT]..."
)
REMOVE_USAGE = "usage: pod-remove --pod NAME --unit UNIT"


def _parse_create(args: list[str]) -> tuple[str, str, PodSpec]:
    from sdcontainer.verbs import parse

    parsed = parse(args, options=("--pod", "--unit", *POD_KEYS_BY_OPTION), usage=CREATE_USAGE)
    # parse() keeps the last of an option repeated; --publish may be: read them all here
    pod, unit = parsed.options.get("--pod"), parsed.options.get("--unit")
    if not pod or not unit or parsed.command:
        raise UsageError(CREATE_USAGE)
    ctx = ParseContext(expanded=True)
    values: dict[str, Any] = {}
    publish = [args[i + 1] for i, word in enumerate(args[:-1]) if word == "--publish"]
    for option, value in parsed.options.items():
        key = POD_KEYS_BY_OPTION.get(option)
        if key is None:
            continue
        try:
            if option == "--publish":
                values[key.field] = tuple(key.parse(item, ctx) for item in publish)
            else:
                values[key.field] = key.parse(value, ctx)
        except ValueError as error:
            raise UsageError(f"{option} {value!r}: {error}") from None
    return pod, unit, PodSpec(**values)


def create_command(args: list[str]) -> int:
    """`sdcontainer-launcher pod-create --pod NAME --unit UNIT [OPTIONS]`: NAME-pod.service's
    ExecStart=. On failure, everything made is undone (and ExecStopPost= would do it again)."""
    pod, unit, spec = _parse_create(args)
    try:
        create(pod, unit, spec)
    except BaseException:
        remove(pod, unit)
        raise
    return 0


def remove_command(args: list[str]) -> int:
    """`sdcontainer-launcher pod-remove --pod NAME --unit UNIT`: NAME-pod.service's ExecStopPost=."""
    from sdcontainer.verbs import parse

    parsed = parse(args, options=("--pod", "--unit"), usage=REMOVE_USAGE)
    pod, unit = parsed.options.get("--pod"), parsed.options.get("--unit")
    if not pod or not unit or parsed.command:
        raise UsageError(REMOVE_USAGE)
    remove(pod, unit)
    return 0


def create(pod: str, unit: str, spec: PodSpec) -> None:
    """The pod's namespaces, held by bind mounts in its directory, and its network."""
    from sdcontainer.step import Step

    directory = state.pod_dir(pod)
    remove(pod, unit, release_network=False)  # what a run killed before its ExecStopPost= left
    os.makedirs(directory, 0o700)
    hostname = spec.hostname or spec.name or pod
    with Step(f"create the namespaces of pod {pod}"):
        _hold_namespaces(directory, hostname, new_net=spec.network != "host")
    addresses: tuple[str, ...] = ()
    if is_bridge(spec.network):
        from sdcontainer import network

        # the pod is one host on the network, its unit the key of its lease and ports
        as_container = ContainerSpec(unit=unit, network=spec.network, ip=spec.ip, publish_ports=spec.publish_ports)
        addresses = network.lease(as_container)
        with Step(f"connect pod {pod} to network {spec.network}"):
            network.connect(as_container, f"{directory}/net", addresses)
    # what a container's launcher reads to write its /etc files
    for name, text in (("hostname", hostname), ("network", spec.network), ("addresses", " ".join(addresses))):
        with open(f"{directory}/{name}", "w") as file:
            file.write(text + "\n")


def _hold_namespaces(directory: str, hostname: str, *, new_net: bool) -> None:
    """Fork a child that unshares the namespaces and waits; bind its /proc/PID/ns files; let it go."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            flags = linux.CLONE_NEWIPC | linux.CLONE_NEWUTS | (linux.CLONE_NEWNET if new_net else 0)
            linux.unshare(flags)
            linux.sethostname(hostname)
            if new_net:
                linux.interface_up("lo")
            os.write(ready_w, b"1")
            os.read(go_r, 1)  # EOF: the parent has bound the namespaces
            status = 0
        except BaseException as error:  # noqa: B036 - nothing may escape a forked child
            os.write(2, f"pod-create: {error}\n".encode(errors="replace"))
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise LaunchError("the pod's namespaces could not be created")
        for name, _ in NAMESPACES:
            target = f"{directory}/{name}"
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400))
            linux.mount(f"/proc/{pid}/ns/{name}", target, None, linux.MS_BIND)
    finally:
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def remove(pod: str, unit: str, *, release_network: bool = True) -> None:
    """Undo create(): the lease and ports (of this run), the bind mounts, the directory.
    Idempotent; the mounts go even when the release fails."""
    directory = state.pod_dir(pod)
    try:
        with open(f"{directory}/network") as file:
            network: str | None = file.read().strip()
    except OSError:
        network = None  # a start that failed half-way: release whatever it may have leased
    try:
        if release_network and (network is None or is_bridge(network)):
            from sdcontainer import network as bridge

            bridge.release(unit, os.environ.get("INVOCATION_ID") or None)
    finally:
        _unmount(directory)


def _unmount(directory: str) -> None:
    for name, _ in NAMESPACES:
        target = f"{directory}/{name}"
        try:  # noqa: SIM105 - contextlib is not imported on this path
            linux.umount2(target, linux.MNT_DETACH)
        except OSError:
            pass  # not mounted
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        os.unlink(f"{directory}/{name}")
    os.rmdir(directory)


def pod_info(pod: str) -> tuple[str, str, tuple[str, ...]]:
    """What a container of the pod writes in its /etc files: the pod's host name, network and
    addresses. LaunchError when the pod is not up."""
    directory = state.pod_dir(pod)
    try:
        with open(f"{directory}/hostname") as file:
            hostname = file.read().strip()
        with open(f"{directory}/network") as file:
            network = file.read().strip()
        with open(f"{directory}/addresses") as file:
            addresses = tuple(file.read().split())
    except FileNotFoundError:
        raise LaunchError(f"pod {pod} is not running (start {service_of(pod)})") from None
    return hostname, network, addresses


def join(pod: str) -> None:
    """Join the pod's namespaces (the container's init, before it unshares the others)."""
    directory = state.pod_dir(pod)
    for name, flag in NAMESPACES:
        fd = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, flag)
        finally:
            os.close(fd)
