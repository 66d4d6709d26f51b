"""`.volume` files: `data.volume` -> data-volume.service, and what a `.container` file's
`Volume=data.volume:/path` means.

The service is Quadlet's: Type=oneshot, RemainAfterExit=yes, its ExecStart the launcher's
`volume-create` verb (sdcontainer.volumes.create_command), which makes the volume unless it
exists (podman's `volume create --ignore`: an existing volume is kept as it is). A container
naming the file requires the service and starts after it.

The [Volume] keys are a table in the style of sdcontainer.keys (`Key`, `Kind`, the value
grammars of sdcontainer.values), which drives the parser, the verb's options and the man
page's cross-check (tests/test_man.py). Imported only when a `.volume` file exists or a
`.container` file names one.
"""

from __future__ import annotations

from sdcontainer.errors import ConfigError, ErrorList
from sdcontainer.keys import Key, Kind, did_you_mean
from sdcontainer.service import exec_line, launcher_command
from sdcontainer.sources import DEPENDENCY_KEYS, Generated, Source, install_links, translate_dependency
from sdcontainer.text import ALNUM, LOWER, nearest, word
from sdcontainer.unitfile import Entry, UnitFile, escape_specifiers, parse_boolean, split_words, unquote
from sdcontainer.values import ParseContext, is_volume_name, parse_abs_path, parse_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROGRAM = "sdcontainer-generator"
SECTION = "Volume"
SECTIONS = ("Volume", "Unit", "Service", "Install", "Quadlet")
# [Service] lines the generated unit relies on
FORBIDDEN_SERVICE_KEYS = {
    "ExecStart": "the service runs the launcher's volume-create",
    "Type": "the service is Type=oneshot",
    "User": "volume-create must run as root: the store is root's",
    "Group": "volume-create must run as root: the store is root's",
    "DynamicUser": "volume-create must run as root: the store is root's",
}


def parse_volume_name(value: str, ctx: ParseContext) -> str:
    if not is_volume_name(value.replace("%", "x")):  # a specifier (%i) is expanded by systemd
        raise ValueError(f"{value!r} is not a valid volume name (a letter or digit, then letters, digits and _.-)")
    return value


def parse_driver(value: str, ctx: ParseContext) -> str:
    if value != "local":
        raise ValueError(f"driver {value!r} is not supported (only local, the default)")
    return value


def parse_fstype(value: str, ctx: ParseContext) -> str:
    if not word(value, LOWER + ALNUM, ALNUM + "._-", 64):
        raise ValueError(f"{value!r} is not a file system type (tmpfs, ext4, bind, ...)")
    return value


def parse_mount_options(value: str, ctx: ParseContext) -> str:
    for option in value.split(","):
        name, eq, setting = option.partition("=")
        if not word(name, LOWER + "_", ALNUM + "_-") or (
            eq and not word(setting, ALNUM + "%._:/+-", ALNUM + "%._:/+-")
        ):
            raise ValueError(f"invalid mount option {option!r}")
    return value


def parse_owner(value: str, ctx: ParseContext) -> str:
    """A user or group on the host: a number, or a name looked up when the volume is made."""
    if not word(value, ALNUM + "_", ALNUM + "_.-", 64):
        raise ValueError(f"{value!r} is not a user or group name or number")
    return value


def parse_uid(value: str, ctx: ParseContext) -> str:
    if not value.isdigit() or int(value) >= 1 << 32:
        raise ValueError(f"{value!r} is not a number")
    return value


def parse_copy(value: str, ctx: ParseContext) -> bool:
    return parse_boolean(value)


def parse_device(value: str, ctx: ParseContext) -> str:
    if value in ("tmpfs", "none"):  # the source of a pseudo file system
        return value
    return parse_abs_path(value, ctx)


# (key, verb option). The option carries the value to `sdcontainer-launcher volume-create`.
VOLUME_KEYS: tuple[Key, ...] = (
    Key(
        "VolumeName",
        Kind.SINGLE,
        "name",
        parse_volume_name,
        option="--name",
        metavar="NAME",
        doc="The volume's name. Default: *systemd-*_NAME_ for _NAME_.volume, as with Quadlet.",
    ),
    Key(
        "Driver",
        Kind.SINGLE,
        "driver",
        parse_driver,
        metavar="local",
        doc="Only *local* (the default): a directory in the store, or a mount (*Device=*). "
        "Other drivers, image among them, are refused.",
    ),
    Key(
        "Device",
        Kind.SINGLE,
        "device",
        parse_device,
        option="--device",
        metavar="PATH",
        doc="What is mounted as the volume at each start of a container that uses it, in the "
        "container's own mount namespace (a block device, *tmpfs*, or a host directory with "
        "*Type=bind*), in place of a directory in the store. Such a volume is never seeded "
        "from the image.",
    ),
    Key(
        "Type",
        Kind.SINGLE,
        "fstype",
        parse_fstype,
        option="--type",
        metavar="TYPE",
        doc="The file system type of *Device=* (mount(8)'s -t): tmpfs, ext4, btrfs, ...; *bind* "
        "bind-mounts the host directory *Device=*.",
    ),
    Key(
        "Options",
        Kind.SINGLE,
        "options",
        parse_mount_options,
        option="--options",
        metavar="OPTIONS",
        doc="Mount options of *Device=* (mount(8)'s -o), comma-separated: flags such as ro, "
        "nosuid, noexec, and the file system's own (size=64m, mode=0755).",
    ),
    Key(
        "Copy",
        Kind.SINGLE,
        "copy",
        parse_copy,
        metavar="BOOL",
        doc="Whether the new volume is seeded, at its first use, with what the container's "
        "image has at the mount point (podman's copy-up). Default: yes.",
    ),
    Key(
        "User",
        Kind.SINGLE,
        "user",
        parse_owner,
        option="--user",
        metavar="USER",
        doc="The owner of the volume's top directory: a host user name or number, looked up when "
        "the volume is made. With *Device=*, uid= in the mount options instead.",
    ),
    Key(
        "Group",
        Kind.SINGLE,
        "group",
        parse_owner,
        option="--group",
        metavar="GROUP",
        doc="The group of the volume's top directory, as *User=*.",
    ),
    Key(
        "UID",
        Kind.SINGLE,
        "uid",
        parse_uid,
        option="--uid",
        metavar="N",
        doc="The owner as a number, as *User=*.",
    ),
    Key(
        "GID",
        Kind.SINGLE,
        "gid",
        parse_uid,
        option="--gid",
        metavar="N",
        doc="The group as a number, as *Group=*.",
    ),
    Key(
        "Label",
        Kind.WORDS,
        "labels",
        parse_label,
        option="--label",
        metavar="KEY=VALUE",
        doc="Labels of the volume (see *sdcontainer volume inspect*), space-separated.",
    ),
)
VOLUME_KEYS_BY_NAME = {key.name: key for key in VOLUME_KEYS}
# Quadlet's [Volume] keys that are refused with the reason
QUADLET_ONLY = {
    "ServiceName": "not supported yet; name the file after the service instead",
    "Image": "volumes of the image driver are not supported",
    "PodmanArgs": "there is no podman command line to add to",
    "GlobalArgs": "there is no podman command line to add to",
    "ContainersConfModule": "containers.conf is not read",
}


def volume_settings(unit: UnitFile, errors: ErrorList | None = None) -> dict[str, Any]:
    """The [Volume] values by field. The first bad line raises ConfigError; with `errors`,
    each is appended to it and the line left out."""
    ctx = ParseContext()
    values: dict[str, Any] = {}
    for entry in unit.section(SECTION):
        try:
            key = _key(entry)
            if key.kind is Kind.WORDS:
                items = [] if entry.value == "" else list(values.get(key.field, ()))
                for item in split_words(entry.value, entry):
                    items.append(_parse(key, entry, item, ctx))
                values[key.field] = tuple(items)
            else:
                value = unquote(entry.value)
                values[key.field] = None if value == "" else _parse(key, entry, value, ctx)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
    return values


def _key(entry: Entry) -> Key:
    key = VOLUME_KEYS_BY_NAME.get(entry.key)
    if key is not None:
        return key
    if entry.key in QUADLET_ONLY:
        raise entry.error(f"key {entry.key}= in [Volume] is not supported: {QUADLET_ONLY[entry.key]}")
    raise entry.error(f"unknown key {entry.key}= in [Volume]" + did_you_mean(entry.key, list(VOLUME_KEYS_BY_NAME)))


def _parse(key: Key, entry: Entry, value: str, ctx: ParseContext) -> Any:
    try:
        return key.parse(value, ctx)
    except ValueError as error:
        raise entry.error(f"invalid {key.name}=: {error}") from None


def default_name(stem: str) -> str:
    """Quadlet's: systemd-NAME for NAME.volume; an instance's is systemd-NAME-INSTANCE."""
    prefix, at, instance = stem.partition("@")
    return f"systemd-{prefix}-{instance or '%i'}" if at else f"systemd-{stem}"


def _check_unit(source: Source, unit: UnitFile, known: set[str], errors: ErrorList | None) -> None:
    def fail(error: ConfigError) -> None:
        if errors is None:
            raise error
        errors.append(error)

    for header in unit.headers:
        if header.section not in SECTIONS and not header.section.startswith("X-"):
            found = nearest(header.section, list(SECTIONS))
            hint = f"; did you mean [{found}]?" if found else ""
            fail(header.error(f"unknown section [{header.section}] in a .volume file{hint}"))
    for entry in unit.section("Service"):
        if entry.key in FORBIDDEN_SERVICE_KEYS:
            fail(entry.error(f"{entry.key}= in [Service] is not allowed here: {FORBIDDEN_SERVICE_KEYS[entry.key]}"))
    for entry in unit.section("Quadlet"):
        if entry.key != "DefaultDependencies":
            fail(entry.error(f"unknown key {entry.key}= in [Quadlet]"))
    for entry in unit.section("Unit"):
        if entry.key in DEPENDENCY_KEYS:
            try:
                translate_dependency(entry, known)
            except ConfigError as error:
                fail(error)


def render(source: Source, unit: UnitFile, known: set[str]) -> Generated:
    _check_unit(source, unit, known, None)
    values = volume_settings(unit)
    return _render(source, unit, known, values)


def diagnose(source: Source, unit: UnitFile, known: set[str], errors: ErrorList) -> None:
    _check_unit(source, unit, known, errors)
    values = volume_settings(unit, errors)
    if not errors:
        try:
            _render(source, unit, known, values)
        except ConfigError as error:
            errors.append(error)


def _render(source: Source, unit: UnitFile, known: set[str], values: dict[str, Any]) -> Generated:
    from sdcontainer.store import SYSTEM_STORAGE

    name = values.get("name") or escape_specifiers(default_name(source.stem))
    fstype, device = values.get("fstype"), values.get("device")
    if fstype and not device:
        entry = unit.lookup_last(SECTION, "Type")
        raise entry.error("Type= needs Device=: what to mount") if entry else ConfigError("Type= needs Device=")
    if device and fstype is None:
        # podman's mount(8) probes a device's file system; the launcher's mount(2) cannot
        entry = unit.lookup_last(SECTION, "Device")
        message = f"Device={device} needs Type= (the file system: tmpfs, ext4, ...; bind for a directory)"
        raise entry.error(message) if entry else ConfigError(message)
    argv = [*(escape_specifiers(w) for w in launcher_command()), "volume-create", "--name", name]
    for key in VOLUME_KEYS:
        value = values.get(key.field)
        if key.option is None or key.field == "name" or value is None:
            continue
        for item in value if key.kind is Kind.WORDS else (value,):
            argv += [key.option, item]
    if values.get("copy") is False:
        argv.append("--no-copy")
    mounts = [SYSTEM_STORAGE]
    if device and fstype == "bind":
        mounts.append(device)
    out = [
        f"# Automatically generated by {PROGRAM} from {source.path}",
        "# Edit the .volume file (or add a drop-in) and run systemctl daemon-reload.",
        "",
        "[X-Volume]",
        *(f"{e.key}={e.value}" for e in unit.section(SECTION)),
        "",
        "[Unit]",
    ]
    for entry in unit.section("Unit"):
        value = translate_dependency(entry, known) if entry.key in DEPENDENCY_KEYS else entry.value
        out.append(f"{entry.key}={value}")
    out += [
        f"SourcePath={source.source_path}",
        "RequiresMountsFor=" + " ".join(mounts),
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=" + exec_line(argv),
        "SyslogIdentifier=%N",
        *(f"{e.key}={e.value}" for e in unit.section("Service")),
    ]
    for section in unit.sections:
        if section == "Install" or section.startswith("X-"):
            out += ["", f"[{section}]", *(f"{e.key}={e.value}" for e in unit.section(section))]
    return Generated(source.service, "\n".join(out) + "\n", install_links(source.service, unit))


# --- a .container file's Volume=NAME.volume ------------------------------------------------------


def volume_of(file_name: str, entry: Entry | None, known: set[str]) -> tuple[str, str]:
    """The volume `NAME.volume` stands for (its VolumeName=, else systemd-NAME) and the
    service that makes it. A template's (`NAME@.volume`) is the instance's of the same
    instance name as the container: systemd-NAME-%i, made by NAME-volume@%i.service.
    The file is read where the search found it (sdcontainer.sources.Known), with its drop-ins."""
    from sdcontainer.sources import load

    if file_name not in known:
        message = f"{file_name}: no such file is on the search path"
        raise entry.error(message) if entry is not None else ConfigError(message)
    stem = file_name[: -len(".volume")]
    prefix, at, instance = stem.partition("@")
    if at and not instance:
        service = f"{prefix}-volume@%i.service"
        name = f"systemd-{prefix}-%i"
    else:
        service = f"{prefix}-volume{at}{instance}.service"
        name = default_name(stem)
    path = getattr(known, "paths", {}).get(file_name)
    if path is None:
        return name, service
    unit = load(Source(file_name, path), getattr(known, "dropin_index", {}))
    entries = [e for e in unit.section(SECTION) if e.key == "VolumeName"]
    if not entries or not entries[-1].value:  # none, or reset by a drop-in
        return name, service
    value = unquote(entries[-1].value)
    try:
        return parse_volume_name(value, ParseContext()), service
    except ValueError as error:
        raise entries[-1].error(f"invalid VolumeName=: {error}") from None
