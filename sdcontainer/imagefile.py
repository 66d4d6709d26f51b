"""`.image` files: `NAME.image` -> `NAME-image.service`, a oneshot that pulls an image.

As Quadlet's: the service pulls `Image=` when it starts and stays active after
(RemainAfterExit=yes), and a `.container` file with `Image=NAME.image` requires it, is ordered
after it and runs the image it names (`ImageTag=` if set, else `Image=`) without a pull of its
own. The pull is `sdcontainer-launcher pull` (pull_command below), with sdcontainer.images
and skopeo, into the store every container starts from. The [Image] keys are a table of
sdcontainer.keys' `Key`s (IMAGE_KEYS), each mapped to a skopeo option or refused naming the
file, line and key.

The generator imports this module for every .container file that names a .image file and
every .image file: only the parsing modules at the top; the pull's are imported by the verb.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ConfigError, ErrorList, UsageError
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
from sdcontainer.unitfile import Entry, UnitFile, escape_specifiers, parse_boolean
from sdcontainer.values import (
    ParseContext,
    parse_bool,
    parse_count,
    parse_host_path,
    parse_pull,
    parse_retry_delay,
    parse_string,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sdcontainer.spec import ContainerSpec

PROGRAM = "sdcontainer-generator"
SECTION = "Image"
KNOWN_SECTIONS = ("Image", "Unit", "Service", "Install", "Quadlet")

# skopeo's transports that are not a registry: Quadlet pulls them with podman; here an archive
# or layout is imported by hand (`sdcontainer image import`)
OTHER_TRANSPORTS = ("docker-archive", "oci-archive", "oci", "dir", "containers-storage", "docker-daemon")


def parse_image_reference(value: str, ctx: ParseContext) -> str:
    """Image= of a .image file: a registry reference, `docker://` allowed in front."""
    transport, colon, rest = value.partition(":")
    if colon and transport in OTHER_TRANSPORTS:
        raise ValueError(
            f"{value}: the {transport}: transport is not supported (only registries); import an "
            "archive or layout with `sdcontainer image import` and name it in the .container file"
        )
    value = value.removeprefix("docker://")
    from sdcontainer.reference import parse_reference

    parse_reference(value)
    return value


def parse_tag(value: str, ctx: ParseContext) -> str:
    from sdcontainer.reference import parse_reference

    parse_reference(value)
    return value


# Quadlet's names and podman's aliases of architectures, as skopeo (the OCI platform) names them
_ARCHES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386", "armhf": "arm"}
_PLATFORM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./")


def _platform_word(value: str) -> str:
    if not value or len(value) > 64 or not set(value) <= _PLATFORM_CHARS:
        raise ValueError(f"{value!r} is not a platform name (letters, digits, _ - . /)")
    return value


def parse_arch(value: str, ctx: ParseContext) -> str:
    return _ARCHES.get(value, _platform_word(value))


def parse_platform(value: str, ctx: ParseContext) -> str:
    return _platform_word(value)


def parse_creds(value: str, ctx: ParseContext) -> str:
    if not value or value.startswith(":"):
        raise ValueError("expected USERNAME[:PASSWORD]")
    return parse_string(value, ctx)


@record
class ImageSpec:
    """A .image file's [Image] section, checked."""

    image: str | None = None
    image_tag: str | None = None
    all_tags: bool = False
    arch: str | None = None
    os: str | None = None
    variant: str | None = None
    authfile: str | None = None
    cert_dir: str | None = None
    creds: str | None = None
    tls_verify: bool | None = None
    policy: str | None = None
    retry: int | None = None
    retry_delay: str | None = None

    def name(self) -> str:
        """The name other units run: ImageTag=, else Image=."""
        return self.image_tag or self.image or ""


IMAGE_KEYS: tuple[Key, ...] = (
    Key(
        "Image",
        Kind.SINGLE,
        "image",
        parse_image_reference,
        metavar="IMAGE",
        doc="The image to pull (required): _[REGISTRY/]NAME[:TAG][@sha256:DIGEST]_, with or without "
        "docker:// in front. A short name is resolved as *Image=* in a .container file resolves it. "
        "Other transports (docker-archive:, oci:, ...) are refused: import those with *sdcontainer "
        "image import*.",
    ),
    Key(
        "ImageTag",
        Kind.SINGLE,
        "image_tag",
        parse_tag,
        option="--tag",
        metavar="NAME",
        doc="Another name for the pulled image, which the store gives it after the pull (a name "
        "without a registry becomes localhost/_NAME_); a .container file with *Image=*_NAME_*.image* "
        "runs the image by this name.",
    ),
    Key(
        "AllTags",
        Kind.SINGLE,
        "all_tags",
        parse_bool,
        option="--all-tags",
        metavar="BOOL",
        doc="Pulls every tag of the repository of *Image=* (skopeo list-tags), each under its own name. Default: no.",
    ),
    Key(
        "Arch",
        Kind.SINGLE,
        "arch",
        parse_arch,
        option="--arch",
        metavar="ARCH",
        doc="The architecture chosen from a multi-platform image, in place of the host's (skopeo's "
        "*--override-arch*; aarch64 and x86_64 are taken as arm64 and amd64).",
    ),
    Key(
        "OS",
        Kind.SINGLE,
        "os",
        parse_platform,
        option="--os",
        metavar="OS",
        doc="The operating system chosen from a multi-platform image (skopeo's *--override-os*).",
    ),
    Key(
        "Variant",
        Kind.SINGLE,
        "variant",
        parse_platform,
        option="--variant",
        metavar="VARIANT",
        doc="The architecture variant chosen from a multi-platform image (skopeo's *--override-variant*).",
    ),
    Key(
        "AuthFile",
        Kind.SINGLE,
        "authfile",
        parse_host_path,
        option="--authfile",
        metavar="PATH",
        doc="The registry credentials file (auth.json) to use, in place of the default ones (skopeo's *--authfile*).",
    ),
    Key(
        "CertDir",
        Kind.SINGLE,
        "cert_dir",
        parse_host_path,
        option="--cert-dir",
        metavar="PATH",
        doc="A directory of certificates (files ending in .crt, .cert and .key) for the registry "
        "(skopeo's *--cert-dir*).",
    ),
    Key(
        "Creds",
        Kind.SINGLE,
        "creds",
        parse_creds,
        option="--creds",
        metavar="USERNAME[:PASSWORD]",
        doc="Credentials for the registry. They are part of the generated unit and of the pull's "
        "command line, visible to *systemctl cat* and to every process on the host: prefer *AuthFile=*.",
    ),
    Key(
        "TLSVerify",
        Kind.SINGLE,
        "tls_verify",
        parse_bool,
        option="--tls-verify",
        metavar="BOOL",
        doc="Whether HTTPS is required and the registry's certificate checked. Default: as "
        "registries.conf says (yes, unless the registry is marked insecure there).",
    ),
    Key(
        "Policy",
        Kind.SINGLE,
        "policy",
        parse_pull,
        option="--policy",
        metavar="POLICY",
        doc="When the service pulls: *always* (the default, as podman's: the registry is asked "
        "at every start and the image copied when its digest changed), *missing*, *newer* (as "
        "always, but a registry that cannot be reached leaves the stored image) or *never*.",
    ),
    Key(
        "Retry",
        Kind.SINGLE,
        "retry",
        parse_count,
        option="--retry",
        metavar="N",
        doc="How many times a failed pull is tried again (network errors). Default: 3.",
    ),
    Key(
        "RetryDelay",
        Kind.SINGLE,
        "retry_delay",
        parse_retry_delay,
        option="--retry-delay",
        metavar="DURATION",
        doc="The wait between pull attempts (500ms, 10s, 1m). Default: 2s, doubled after each failure.",
    ),
)
IMAGE_KEYS_BY_NAME = {key.name: key for key in IMAGE_KEYS}
IMAGE_KEYS_BY_OPTION = {key.option: key for key in IMAGE_KEYS if key.option}

# Quadlet's [Image] keys that sdcontainer does not implement
QUADLET_ONLY_IMAGE_KEYS = {
    "ContainersConfModule": "there is no podman whose configuration to extend",
    "DecryptionKey": "encrypted images are not supported yet",
    "GlobalArgs": "there is no podman to pass arguments to",
    "PodmanArgs": "there is no podman to pass arguments to",
    "ServiceName": "name the file after the service instead",
}

# [Service] settings the image service relies on; a file may not change them
FORBIDDEN_SERVICE_KEYS = {
    "ExecStart": "the service's command is the pull of Image=",
    "User": "the pull writes root's image store",
    "Group": "the pull writes root's image store",
    "DynamicUser": "the pull writes root's image store",
}
ALLOWED_SERVICE_VALUES = {"Type": ("oneshot",)}


def _check_key(entry: Entry) -> Key:
    key = IMAGE_KEYS_BY_NAME.get(entry.key)
    if key is not None:
        return key
    why = QUADLET_ONLY_IMAGE_KEYS.get(entry.key)
    if why is not None:
        raise entry.error(f"key {entry.key}= in [Image] is a Quadlet key that sdcontainer does not support yet ({why})")
    raise entry.error(f"unknown key {entry.key}= in [Image]" + did_you_mean(entry.key, list(IMAGE_KEYS_BY_NAME)))


def _image_values(unit: UnitFile, errors: list[ConfigError] | None) -> dict[str, Any]:
    """The fields of [Image]; the first bad line raises ConfigError, or with `errors` each is
    appended to it."""
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
            value = _values_for(IMAGE_KEYS_BY_NAME[entries[0].key], entries, ctx, errors)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        if value is not None:
            values[field] = value
    return values


def _check_sections(unit: UnitFile, errors: list[ConfigError] | None) -> None:
    for header in unit.headers:
        if header.section not in KNOWN_SECTIONS and not header.section.startswith("X-"):
            error = header.error(
                f"unknown section [{header.section}] in a .image file (known: [Image], [Unit], "
                "[Service], [Install], [Quadlet] and X- sections)"
            )
            if errors is None:
                raise error
            errors.append(error)


def _check_service_entry(entry: Entry) -> None:
    if entry.key in FORBIDDEN_SERVICE_KEYS:
        raise entry.error(f"{entry.key}= in [Service] is not allowed here: {FORBIDDEN_SERVICE_KEYS[entry.key]}")
    allowed = ALLOWED_SERVICE_VALUES.get(entry.key)
    if allowed and entry.value not in allowed:
        raise entry.error(f"{entry.key}={entry.value} in [Service] of a .image file is not supported; allowed: oneshot")


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


def image_spec(unit: UnitFile) -> ImageSpec:
    """The checked [Image] section of a .image file; ConfigError for the first bad line."""
    _check_sections(unit, None)
    if not unit.has_section(SECTION):
        raise ConfigError("no [Image] section", unit.path)
    spec = ImageSpec(**_image_values(unit, None))
    if spec.image is None:
        raise ConfigError("no Image= in [Image]: the image to pull is required", unit.path)
    return spec


def pull_argv(spec: ImageSpec) -> list[str]:
    """The pull verb's options for the spec, then `--` and the image."""
    argv = []
    for key in IMAGE_KEYS:
        value = getattr(spec, key.field)
        if key.option is None or value is None or (key.field == "all_tags" and not value):
            continue
        argv += [key.option] if key.field == "all_tags" else [key.option, _word(value)]
    return [*argv, "--", spec.image or ""]


def _word(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(source: Source, unit: UnitFile, known: set[str]) -> Generated:
    """NAME-image.service: [X-Image] (the file's lines, for systemctl cat), [Unit] with the
    network dependencies first and the file's lines after (so its After= can reset them, as
    Quadlet's do), [Service] a oneshot that stays active, [Install] and X- sections as written."""
    spec = image_spec(unit)
    default_dependencies = _default_dependencies(unit)
    for entry in unit.section("Service"):
        _check_service_entry(entry)
    launcher = [escape_specifiers(word) for word in launcher_command()]
    out = [
        f"# Automatically generated by {PROGRAM} from {source.path}",
        "# Edit the .image file (or add a drop-in) and run systemctl daemon-reload.",
        "",
        "[X-Image]",
        *(f"{e.key}={e.value}" for e in unit.section(SECTION)),
        "",
        "[Unit]",
    ]
    if default_dependencies:  # the pull needs the network
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
        "ExecStart=" + exec_line([*launcher, "pull", *pull_argv(spec)]),
    ]
    out += [f"{e.key}={e.value}" for e in unit.section("Service")]
    for section in unit.sections:
        if section == "Install" or section.startswith("X-"):
            out += ["", f"[{section}]"] + [f"{e.key}={e.value}" for e in unit.section(section)]
    return Generated(source.service, "\n".join(out) + "\n", install_links(source.service, unit))


def diagnose(source: Source, unit: UnitFile, known: set[str], errors: ErrorList) -> None:
    """Every error of a .image file: each unknown section or key, bad value, refused
    [Service] or [Unit] line; then, if there was none, what render() finds."""
    _check_sections(unit, errors)
    _image_values(unit, errors)
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


# --- Image=NAME.image in a .container file ---------------------------------------------------


def image_file_entry(unit: UnitFile) -> Entry | None:
    """The .container's Image= line if it names a .image file."""
    entry = unit.lookup_last("Container", "Image")
    return entry if entry is not None and entry.value.endswith(".image") else None


def resolve(
    source: Source, unit: UnitFile, spec: ContainerSpec, known: set[str], dropin_index: dict[str, list[str]]
) -> ContainerSpec:
    """The spec of a .container file whose Image= names a .image file, with the image that
    file names (ImageTag=, else Image=) and, unless the file sets Pull=, no pull at start:
    the image's service pulled it before (the unit requires it, image_unit_lines)."""
    entry = image_file_entry(unit)
    if entry is None:
        return spec
    name = entry.value
    path = _path_of(name, source, known)
    if path is None:
        raise entry.error(f"Image= names {name}, but no such file is on the search path")
    try:
        image = image_spec(load(Source(name, path), dropin_index))
    except ConfigError as error:
        raise entry.error(f"Image= names {name}, which is refused: {error}") from None
    pull = spec.pull if unit.lookup_last("Container", "Pull") is not None else "never"
    resolved = replace(spec, image=image.name(), pull=pull)
    if spec.auto_update == "registry":
        from sdcontainer.keys import _names_registry

        if not _names_registry(image.name()):
            raise entry.error(f"AutoUpdate=registry needs an image name with its registry; {name} names {image.name()}")
    return resolved


def _path_of(name: str, source: Source, known: set[str]) -> str | None:
    """Where the file `name` found on the search path is (sdcontainer.sources.Known keeps
    the paths); for a plain set of names, beside the .container file."""
    if name not in known:
        return None
    paths = getattr(known, "paths", None)
    if isinstance(paths, dict) and name in paths:
        return str(paths[name])
    beside = os.path.join(os.path.dirname(source.path), name)
    return beside if os.path.isfile(beside) else None


def image_unit_lines(unit: UnitFile) -> list[str]:
    """[Unit] lines of a .container whose Image= names a .image file: its service first."""
    entry = image_file_entry(unit)
    if entry is None:
        return []
    service = service_of(entry.value)
    return [f"Requires={service}", f"After={service}"]


# --- the service's command: sdcontainer-launcher pull ------------------------------------------

USAGE = (
    "usage: pull [--tag NAME] [--all-tags] [--arch A] [--os O] [--variant V] [--authfile P] [--cert-dir P] "
    "[--creds U:P] [--tls-verify BOOL] [--policy P] [--retry N] [--retry-delay D] -- IMAGE"
)


def pull_command(args: list[str]) -> int:
    """`sdcontainer-launcher pull [OPTIONS] -- IMAGE`: what NAME-image.service runs. Prints
    each image pulled as NAME ID."""
    from sdcontainer.verbs import parse

    options = tuple(option for option in IMAGE_KEYS_BY_OPTION if option != "--all-tags")
    parsed = parse(args, options=options, flags=("--all-tags",), usage=USAGE)
    if not parsed.command or len(parsed.command) != 1:
        raise UsageError(USAGE)
    ctx = ParseContext(expanded=True)
    values: dict[str, Any] = {"image": parse_image_reference(parsed.command[0], ctx)}
    for option, value in parsed.options.items():
        key = IMAGE_KEYS_BY_OPTION[option]
        try:
            values[key.field] = True if option == "--all-tags" else key.parse(value, ctx)
        except ValueError as error:
            raise UsageError(f"{option} {value!r}: {error}") from None
    spec = ImageSpec(**values)
    from sdcontainer.images import Transport, pull_image
    from sdcontainer.values import duration_seconds

    transport = Transport(spec.tls_verify, spec.authfile, spec.cert_dir, spec.creds, spec.arch, spec.os, spec.variant)
    records = pull_image(
        spec.image or "",
        transport,
        policy=spec.policy or "always",
        all_tags=spec.all_tags,
        tag=spec.image_tag,
        retry=spec.retry if spec.retry is not None else 3,
        retry_delay=duration_seconds(spec.retry_delay) if spec.retry_delay else None,
    )
    for found in records:
        print(f"{' '.join(found.get('names') or ['(no name)'])} {found['id']}", flush=True)
    return 0
