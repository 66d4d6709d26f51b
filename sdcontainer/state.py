"""The record a running container leaves in /run/sdcontainer/containers/UNIT/.

That directory is the unit's RuntimeDirectory= (the generated unit and `sdcontainer run`
ask for it): systemd creates it before the launcher runs and removes it, with everything in
it, whenever the unit stops, also after a crash, a SIGKILL or a failed start, so no process
runs at stop to clean up. In it: `record.json`, written by the launcher once systemd knows
the container's pid (read by `sdcontainer ps`, `inspect`, `exec`, health checks, `rmi`), `health`,
the health check's failure count, and with Notify=yes `notify/notify.sock`, the socket the
launcher relays the container's notifications from (sdcontainer.notify.Relay). The record
and the count are root's alone (0600, in a 0700 directory): the record tells the
container's user, capabilities and command to no one else. This module is THE layout:
every reader goes through it. It imports nothing beyond `os`, the error classes, the
frozen-record decorator and `text`'s grammar of unit names (it is on the launcher's start
path and every health check's).

The record is a ContainerRecord: `write(record)` is its one writer (the launcher's), `read(unit)`
and `records()` its readers. Its JSON carries `version` (VERSION); a record of a newer version
is refused, one of an older version is converted (see `_from_version_0`), one with a field
missing, unknown or of the wrong type is reported as unreadable (RecordError). Any change to
the fields, even one more optional field, is a new VERSION with its conversion here.
"""

from __future__ import annotations

import os

from sdcontainer.errors import RecordError, UsageError
from sdcontainer.record import fields_of
from sdcontainer.record import record as frozen

RUN_DIR = "/run/sdcontainer"
STATE_DIR = f"{RUN_DIR}/containers"
POD_DIR = f"{RUN_DIR}/pods"  # a pod's namespaces, held by bind mounts (sdcontainer.pods)
RECORD = "record.json"
HEALTH = "health"  # consecutive failures of the unit's health check
VOLUMES = "volumes"  # the named volumes the container uses, one a line (sdcontainer.volumes)
NOTIFY = "notify"  # Notify=yes: a directory (root's only) with the relay's socket, notify.sock
PROG = "sdcontainer-launcher"
DIR_MODE = 0o700  # of the container's directory (systemd makes a RuntimeDirectory= 0755)
FILE_MODE = 0o600  # of the record and the health count


def unit_of(name: str) -> str:
    """The service a container NAME means, for every verb that takes one (exec, logs, stop,
    ...): web and web.service are web.service. UsageError for a name that is no service name."""
    from sdcontainer.text import is_service_unit_name

    unit = name if name.endswith(".service") else f"{name}.service"
    if not name or "/" in name or not is_service_unit_name(unit):
        raise UsageError(f"{name!r} is not a container name (web, or web.service)")
    return unit


def runtime_directory(unit: str) -> str:
    """The unit's RuntimeDirectory=, relative to /run as systemd wants it: for a unit file
    `%n` (the generator writes that, so a template's instances get one each), for a
    transient unit its name (D-Bus properties are not expanded)."""
    return f"{STATE_DIR[len('/run/') :]}/{unit}"


def container_dir(unit: str) -> str:
    if not unit or "/" in unit or unit.startswith(".") or "%" in unit:
        raise UsageError(f"invalid unit name {unit!r}")
    return f"{STATE_DIR}/{unit}"


def pod_dir(pod: str) -> str:
    """Where the pod of `NAME.pod` (or NAME) keeps its namespaces: /run/sdcontainer/pods/NAME."""
    name = pod.removesuffix(".pod")
    if not name or "/" in name or name.startswith(".") or "%" in name:
        raise UsageError(f"invalid pod name {pod!r}")
    return f"{POD_DIR}/{name}"


def state_path(unit: str) -> str:
    return f"{container_dir(unit)}/{RECORD}"


def _legacy(unit: str) -> tuple[str, str]:
    """Where a container started by a version before RuntimeDirectory= (still running after an
    upgrade) keeps its record and health count, until it is restarted."""
    container_dir(unit)  # the same checks of the name
    return f"{STATE_DIR}/{unit}.json", f"{RUN_DIR}/health/{unit}"


def record_path(unit: str) -> str:
    """The unit's record as it is now: in its directory, or else where an older version put it."""
    path = state_path(unit)
    if not os.path.exists(path):
        legacy = _legacy(unit)[0]
        if os.path.exists(legacy):
            return legacy
    return path


def notify_dir(unit: str) -> str:
    return f"{container_dir(unit)}/{NOTIFY}"


def health_path(unit: str) -> str:
    """The health count beside the record (the older layout's place for an older record)."""
    if record_path(unit) == state_path(unit):
        return f"{container_dir(unit)}/{HEALTH}"
    return _legacy(unit)[1]


def write_health(unit: str, text: str) -> None:
    """Atomically. Never creates the container's directory: a check that ends after the stop
    (systemd removed it) must not leave one behind; then this is a no-op."""
    path = health_path(unit)
    if not path.startswith(f"{STATE_DIR}/"):
        os.makedirs(os.path.dirname(path), DIR_MODE, exist_ok=True)
    try:  # noqa: SIM105 - contextlib is one more import
        _write_private(path, text)
    except FileNotFoundError:
        pass  # the container stopped meanwhile: nothing left to count for


def startup_health_path(unit: str) -> str:
    """HealthStartupCmd='s counts, beside the record (`PID FAILURES PASSES`)."""
    return f"{container_dir(unit)}/{HEALTH}-startup"


def write_startup_health(unit: str, text: str) -> None:
    """As write_health: atomically, and a no-op once the container's directory is gone."""
    try:  # noqa: SIM105 - contextlib is one more import
        _write_private(startup_health_path(unit), text)
    except FileNotFoundError:
        pass


def _write_private(path: str, text: str) -> None:
    """Replace `path` atomically with a file only root can read, whatever the umask."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an old temporary file of the same name kept its mode
        with open(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def to_json(value: object) -> str:
    """JSON for the few shapes a record has. The json module imports re and enum (~7 ms at
    every start); its C string encoder is all this needs."""
    from _json import encode_basestring_ascii

    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{to_json(str(k))}: {to_json(v)}" for k, v in value.items())
        return "{\n " + ",\n ".join(items) + "\n}"
    raise TypeError(f"no JSON for {type(value).__name__}")


class _JSONContext:
    """What the C scanner of `_json` reads from json.JSONDecoder, without importing json
    (re and enum: ~7 ms on every start and health check)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not allowed in a record")


def from_json(text: str) -> object:
    """JSON text to Python with the json module's own C scanner (records here, image records
    and configs in the store); ValueError if it is not exactly one JSON value."""
    from _json import make_scanner

    scan = make_scanner(_JSONContext())  # type: ignore[arg-type]  # any object with these attributes
    start = len(text) - len(text.lstrip())
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


VERSION = 2  # of the record's fields; 0: a record without `version`, from before there was one


@frozen
class ContainerRecord:
    """What the launcher records once systemd knows the container's pid: what `list` shows,
    and what `exec` and health checks need to be no more privileged than the init. The JSON
    object has these keys in this order; a field's annotation says how its JSON value reads
    (_decode)."""

    name: str  # ContainerName=, expanded
    unit: str
    pid: int  # the container's init, as the host sees it
    rootfs: str | None  # Rootfs=; None with Image=
    image: str | None
    image_id: str | None  # `sdcontainer rmi` refuses to remove it while the container runs
    command: tuple[str, ...]  # what the init runs (behind /dev/init -- with RunInit=yes)
    hostname: str
    network: str
    labels: tuple[tuple[str, str], ...]  # a JSON object in the file and in `list --format json`
    annotations: tuple[tuple[str, str], ...]
    started: str  # UTC: 2026-11-27T17:31:31Z
    user: str | None  # User= (or the image's User); None: root
    group: str | None
    group_add: tuple[str, ...]
    caps: int | None  # the init's capability mask; None only in a version 0 record without it
    no_new_privileges: bool
    working_dir: str
    notify: str  # Notify=
    notify_socket: str | None  # the manager's NOTIFY_SOCKET, for health checks to speak to it
    # since version 2: its addresses ('10.88.0.2/16'; with Network=container:, the other
    # container's) and its published ports, each 'HOSTIP:HOSTPORT->PORT/PROTO' with the
    # host port actually published (PublishPort=80 gets a free one at start)
    addresses: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    version: int = VERSION


_PAIRS = "tuple[tuple[str, str], ...]"
_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "tuple[str, ...]": "an array of strings",
    _PAIRS: "an object of strings",
}


def _decode(kind: str, value: object) -> object:
    """The JSON value of a field whose annotation is `kind`; ValueError if it has another type."""
    if kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind[: -len(" | None")]
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "tuple[str, ...]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if kind == _PAIRS and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return tuple(value.items())
    raise ValueError(f"expected {_EXPECTED[kind]}")


def to_dict(record: ContainerRecord) -> dict[str, object]:
    """The record as its JSON object (labels and annotations as objects)."""
    kinds = ContainerRecord.__annotations__
    values = {}
    for name in fields_of(record):
        value = getattr(record, name)
        values[name] = dict(value) if kinds[name] == _PAIRS else value
    return values


def _from_version_0(unit: str, found: dict[str, object]) -> dict[str, object]:
    """A record without `version`, written before there was one (by a container started
    before an upgrade, in its directory or, older, in containers/UNIT.json): the same keys,
    but the later ones may be absent, and `working_dir` null. What is absent reads as the
    readers of then read it: exec with the default capabilities, no_new_privs, in /."""
    converted: dict[str, object] = {
        "name": "",
        "unit": unit,
        "rootfs": None,
        "image": None,
        "image_id": None,
        "command": [],
        "hostname": "",
        "network": "",
        "labels": {},
        "annotations": {},
        "started": "",
        "user": None,
        "group": None,
        "group_add": [],
        "caps": None,
        "no_new_privileges": True,
        "working_dir": "/",
        "notify": "no",
        "notify_socket": None,
    }  # no "pid": a record without one was never written
    converted.update(found)
    if converted["working_dir"] is None:
        converted["working_dir"] = "/"
    return converted


def _parse(unit: str, text: str, where: str) -> ContainerRecord:
    """The record of `unit` from the JSON text of its file `where`; RecordError if it is not one."""
    try:
        found = from_json(text)
    except ValueError as error:
        raise RecordError(f"{where}: unreadable record: {error}") from None
    if not isinstance(found, dict):
        raise RecordError(f"{where}: unreadable record: not a JSON object")
    version = found.pop("version", 0)  # absent: version 0
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RecordError(f"{where}: unreadable record: version {version!r}")
    if version > VERSION:
        raise RecordError(
            f"{unit}: record written by a newer sdcontainer (record version {version}, this one reads"
            f" up to {VERSION}); restart the container or upgrade"
        )
    if version == 0:
        found = _from_version_0(unit, found)
    if version < 2:  # no network fields yet: what was recorded had none to show
        found.setdefault("addresses", [])
        found.setdefault("ports", [])
    kinds = ContainerRecord.__annotations__
    names = [n for n in kinds if n != "version"]
    unknown = [n for n in found if n not in kinds]
    missing = [n for n in names if n not in found]
    if unknown or missing:
        problem = f"unknown field {unknown[0]!r}" if unknown else f"missing field {missing[0]!r}"
        raise RecordError(f"{where}: unreadable record: {problem}")
    values = {}
    for name in names:
        try:
            values[name] = _decode(kinds[name], found[name])
        except ValueError as error:
            raise RecordError(f"{where}: unreadable record: {name}: {error}") from None
    if values["unit"] != unit:
        raise RecordError(f"{where}: unreadable record: it is {values['unit']!r}'s")
    return ContainerRecord(**values)  # type: ignore[arg-type]  # each value checked against its field


def read(unit: str) -> ContainerRecord | None:
    """The record of a running (or uncleanly ended) container, None if there is none;
    RecordError if there is one this version cannot use."""
    path = record_path(unit)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None  # none, or the container stopped meanwhile (systemd removed its directory)
    except UnicodeDecodeError:
        raise RecordError(f"{path}: unreadable record: not UTF-8") from None
    return _parse(unit, text, path)


def units() -> list[str]:
    """The units that have a record, sorted."""
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    found = {name for name in names if not name.startswith(".") and os.path.exists(f"{STATE_DIR}/{name}/{RECORD}")}
    found |= {name[: -len(".json")] for name in names if name.endswith(".json") and not name.startswith(".")}
    return sorted(found)


def records(unreadable: list[RecordError] | None = None) -> list[ContainerRecord]:
    """Every readable record, by unit name (stale ones too: the caller checks the pid). The
    errors of the others go to `unreadable`, if given, for the caller to report."""
    found = []
    for unit in units():
        try:
            record = read(unit)
        except RecordError as error:
            if unreadable is not None:
                unreadable.append(error)
            continue
        if record is not None:
            found.append(record)
    return found


def write(record: ContainerRecord) -> None:
    """The one writer (the launcher's), atomically: a reader sees the old record, the new one,
    or none. Under a unit made by this version the directory exists already
    (RuntimeDirectory=); one generated by an older version (until daemon-reload) has none, and
    its ExecStopPost= cleanup removes it."""
    unit = record.unit
    path = state_path(unit)
    directory = container_dir(unit)
    os.makedirs(directory, DIR_MODE, exist_ok=True)
    os.chmod(directory, DIR_MODE)  # systemd made it with RuntimeDirectoryMode=, 0755 by default
    _write_private(path, to_json(to_dict(record)) + "\n")
    for path in _legacy(unit):  # what a container stopped under a reloaded unit left there
        try:  # noqa: SIM105
            os.unlink(path)
        except FileNotFoundError:
            pass


def write_volumes(unit: str, names: list[str]) -> None:
    """The named volumes a starting container uses: `sdcontainer volume rm` refuses them
    while the unit runs (systemd removes the file with the directory at its stop)."""
    directory = container_dir(unit)
    os.makedirs(directory, DIR_MODE, exist_ok=True)
    os.chmod(directory, DIR_MODE)
    _write_private(f"{directory}/{VOLUMES}", "".join(f"{name}\n" for name in names))


def volumes_in_use() -> list[tuple[str, list[str]]]:
    """(unit, the volumes it uses) of every unit whose directory holds a volumes file."""
    try:
        names = sorted(os.listdir(STATE_DIR))
    except FileNotFoundError:
        return []
    found = []
    for unit in names:
        try:
            with open(f"{STATE_DIR}/{unit}/{VOLUMES}", encoding="utf-8") as f:
                found.append((unit, f.read().split()))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def remove(unit: str) -> None:
    """Forget the container: its record, health count and directory (either layout). Idempotent."""
    directory = container_dir(unit)
    for path in (
        f"{directory}/{RECORD}",
        f"{directory}/{HEALTH}",
        f"{directory}/{VOLUMES}",
        f"{directory}/{NOTIFY}/notify.sock",
        *_legacy(unit),
    ):
        try:  # noqa: SIM105 - contextlib is one more import
            os.unlink(path)
        except FileNotFoundError:
            pass  # already clean: a second stop, or a start that never got that far
    for path in (f"{directory}/{NOTIFY}", directory):
        try:  # noqa: SIM105
            os.rmdir(path)
        except OSError:
            pass  # gone, or holds something else (a RuntimeDirectory= systemd removes anyway)


def cleanup(args: list[str]) -> int:
    """`sdcontainer-launcher cleanup --unit UNIT`: the ExecStopPost= of units generated by
    versions before RuntimeDirectory= (they keep running it until daemon-reload); also a
    manual way to forget a record. What died with the namespaces (mounts, the overlay's
    upper layer, loopback) needs nothing."""
    from sdcontainer.verbs import parse

    usage = "usage: cleanup --unit UNIT"
    unit = parse(args, options=("--unit",), usage=usage).options.get("--unit")
    if unit is None:
        raise UsageError(usage)
    remove(unit)
    return 0
