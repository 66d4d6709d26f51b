"""`sdcontainer run`: the same container path without a file, as a transient service.

Like `systemd-run`, it asks the service manager over D-Bus (StartTransientUnit) for a
service whose ExecStart is the launcher, so even an ad-hoc container is a unit with a
cgroup, a journal and `systemctl status`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from sdcontainer.errors import SystemdError
from sdcontainer.record import replace
from sdcontainer.service import Setting, launcher_command, service_policy
from sdcontainer.spec import ContainerSpec
from sdcontainer.text import SIGNALS
from sdcontainer.unitfile import parse_boolean, split_words
from sdcontainer.values import ULIMIT_SETTINGS, size_in_bytes


def unit_name(requested: str | None) -> str:
    name = requested or f"sdcontainer-run-{os.urandom(4).hex()}"
    return name if name.endswith(".service") else name + ".service"


# --- the service policy as D-Bus properties ---------------------------------------------------

INFINITY = 2**64 - 1  # what D-Bus carries for "infinity" in these properties


def _string(value: str) -> bytes:
    return value.encode()


def _words(value: str) -> list[bytes]:
    return [word.encode() for word in split_words(value)]


def _command(value: str) -> list[tuple[bytes, list[bytes], bool]]:
    """An Exec*= line: (path, argv, ignore failure). Its `$$` stay doubled: systemd expands
    $VAR in the arguments at exec time, for a transient unit as for a unit file."""
    argv = _words(value)
    return [(argv[0], argv, False)]


def _device(value: str) -> list[tuple[bytes, bytes]]:
    device, _, access = value.partition(" ")
    return [(device.encode(), access.encode())]


def _seconds(value: str) -> int:
    return int(value) * 1_000_000  # the policy writes whole seconds


def _exit_statuses(value: str) -> tuple[list[int], list[int]]:
    return [int(status) for status in value.split()], []  # (exit statuses, signals)


def _number(value: str) -> int:
    return INFINITY if value == "infinity" else size_in_bytes(value)


def _hard_limit(value: str) -> int:
    soft, _, hard = value.partition(":")
    return _number(hard or soft)


def _soft_limit(value: str) -> int:
    return _number(value.partition(":")[0])


Conversion = tuple[bytes, bytes, Callable[[str], Any]]  # D-Bus property, signature, converter

#: Each setting of the service policy (sdcontainer.service), as the D-Bus properties it
#: becomes (org.freedesktop.systemd1(5)). A property whose signature is an array collects
#: the values of every line of its setting (DeviceAllow=).
PROPERTIES: dict[str, tuple[Conversion, ...]] = {
    "Type": ((b"Type", b"s", _string),),
    "NotifyAccess": ((b"NotifyAccess", b"s", _string),),
    "KillMode": ((b"KillMode", b"s", _string),),
    "Delegate": ((b"Delegate", b"b", parse_boolean),),
    "DevicePolicy": ((b"DevicePolicy", b"s", _string),),
    "DeviceAllow": ((b"DeviceAllow", b"a(ss)", _device),),
    "SyslogIdentifier": ((b"SyslogIdentifier", b"s", _string),),
    "Slice": ((b"Slice", b"s", _string),),
    "TimeoutStopSec": ((b"TimeoutStopUSec", b"t", _seconds),),
    "SuccessExitStatus": ((b"SuccessExitStatus", b"(aiai)", _exit_statuses),),
    "KillSignal": ((b"KillSignal", b"i", SIGNALS.__getitem__),),
    "MemoryMax": ((b"MemoryMax", b"t", _number),),
    "TasksMax": ((b"TasksMax", b"t", _number),),
    # LimitNOFILE=SOFT:HARD: the hard limit in LimitNOFILE, the soft one in LimitNOFILESoft
    **{
        limit: ((limit.encode(), b"t", _hard_limit), (f"{limit}Soft".encode(), b"t", _soft_limit))
        for limit in ULIMIT_SETTINGS.values()
    },
    "ExecReload": ((b"ExecReload", b"a(sasb)", _command),),
    "PrivateNetwork": ((b"PrivateNetwork", b"b", parse_boolean),),
    "ExecStart": ((b"ExecStart", b"a(sasb)", _command),),
    "ExecStopPost": ((b"ExecStopPost", b"a(sasb)", _command),),
    "RuntimeDirectory": ((b"RuntimeDirectory", b"as", _words),),
}

#: The properties only a transient unit has, and their signatures.
TRANSIENT_ONLY = {
    b"Description": b"s",  # a unit file's comes from the file's own [Unit]
    # attached (`sdcontainer run` without -d): the caller's stdin, stdout and stderr, and a
    # reference that keeps the unit loaded until its exit status has been read
    b"AddRef": b"b",
    b"CollectMode": b"s",
    b"StandardInputFileDescriptor": b"h",
    b"StandardOutputFileDescriptor": b"h",
    b"StandardErrorFileDescriptor": b"h",
}

SIGNATURES = {name: signature for conversions in PROPERTIES.values() for name, signature, _ in conversions}
SIGNATURES.update(TRANSIENT_ONLY)


def dbus_properties(settings: Iterable[Setting]) -> dict[bytes, Any]:
    """Unit-file settings as D-Bus properties; a setting PROPERTIES does not know is an
    error here, so the two renderings cannot drift apart unnoticed."""
    properties: dict[bytes, Any] = {}
    for name, value in settings:
        conversions = PROPERTIES.get(name)
        if conversions is None:
            raise LookupError(f"{name}= has no D-Bus property: add it to transient.PROPERTIES")
        for prop, signature, convert in conversions:
            if signature.startswith(b"a"):
                properties.setdefault(prop, []).extend(convert(value))
            else:
                properties[prop] = convert(value)
    return properties


SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SERVICE = b"org.freedesktop.systemd1.Service"
WAIT_USEC = 1_000_000  # an upper bound between state checks; signals wake us earlier


def _namespace_package(name: str) -> None:
    """Make `name` importable as a bare package whose __init__.py does not run."""
    if name in sys.modules:
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemdError(f"{name} is not installed")
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package


def _dbuslib() -> Any:
    """pystemd's sd-bus binding, without running the __init__.py of pystemd: it imports
    every high-level wrapper and lxml (20-50 ms here), none of which this talk with systemd
    needs."""
    _namespace_package("pystemd")
    try:
        import pystemd.dbuslib as dbuslib
    except ImportError as error:  # pragma: no cover - pystemd is a dependency
        raise SystemdError(f"pystemd is not available: {error}") from None
    return dbuslib


def property_args(apply_signature: Callable[[bytes, list[Any]], list[Any]], properties: dict[bytes, Any]) -> list[Any]:
    """The a(sv) argument of StartTransientUnit, each value marshalled by its signature in
    SIGNATURES (pystemd's dbuslib.apply_signature does the marshalling)."""
    args: list[Any] = [(ord("a"), b"(sv)")]
    for name, value in properties.items():
        signature = SIGNATURES[name]
        args += [(ord("r"), b"sv"), (ord("s"), name), (ord("v"), signature)]
        args += apply_signature(signature, [value])
        args += [(-1, None), (-1, None)]
    args.append((-1, None))
    return args


def transient_properties(
    spec: ContainerSpec, unit: str, *, stdio: tuple[int, int, int] | None, description: str | None
) -> dict[bytes, Any]:
    """The unit's D-Bus properties: the service policy a generated unit has (but for its
    `unit_file_only` settings), and, with `stdio` (attached), the caller's
    stdin/stdout/stderr and a reference that keeps the unit loaded until its exit status
    has been read."""
    policy = service_policy(spec, launcher_command(), unit=unit)
    properties: dict[bytes, Any] = {
        b"Description": (description or f"sdcontainer run {' '.join(spec.command)}").encode(),
    }
    properties.update(dbus_properties(policy.both()))
    if stdio is not None:
        # Attached, like `systemd-run --wait`: the unit stays loaded while we hold a reference,
        # so its exit status can be read after it is gone, and is collected even if it failed.
        properties[b"AddRef"] = True
        properties[b"CollectMode"] = b"inactive-or-failed"
        for name, fd in zip(("Input", "Output", "Error"), stdio, strict=True):
            properties[f"Standard{name}FileDescriptor".encode()] = fd
    return properties


class _Unit:
    """One transient unit, watched over one bus connection."""

    def __init__(self, dbuslib: Any, name: str) -> None:
        self.dbuslib = dbuslib
        self.name = name.encode()
        self.path = dbuslib.path_encode(b"/org/freedesktop/systemd1/unit", self.name)
        self.bus = dbuslib.DBus()
        self.bus.open()

        def wake(*args: object, **kwargs: object) -> None:
            pass  # a PropertiesChanged of our unit: only wakes up the wait loop

        self._wake = wake  # sd-bus keeps a bare pointer to it
        self.bus.match_signal(SYSTEMD, self.path, b"org.freedesktop.DBus.Properties", b"PropertiesChanged", wake)
        self.call(MANAGER_PATH, MANAGER, b"Subscribe", [])

    def call(self, path: bytes, interface: bytes, method: bytes, args: list[Any]) -> Any:
        return self.bus.call_method(SYSTEMD, path, interface, method, args).body

    def get(self, interface: bytes, name: bytes, signature: bytes) -> Any:
        return self.bus.get_property(SYSTEMD, self.path, interface, name, signature)

    def start(self, properties: dict[bytes, Any]) -> None:
        args = self.dbuslib.apply_signature(b"ss", [self.name, b"fail"])
        args += property_args(self.dbuslib.apply_signature, properties)
        args += [(ord("a"), b"(sa(sv))"), (-1, None)]  # no auxiliary units
        self.call(MANAGER_PATH, MANAGER, b"StartTransientUnit", args)

    def wait_until(self, done: Callable[[str], bool]) -> str:
        """Wait until no job is pending on the unit and `done(ActiveState)`; that state."""
        while True:
            job_id, _ = self.get(UNIT, b"Job", b"(uo)")
            state = self.get(UNIT, b"ActiveState", b"s").decode()
            if job_id == 0 and done(state):
                return state
            self.bus.wait(WAIT_USEC)
            self.bus.process()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.path, UNIT, b"Stop", self.dbuslib.apply_signature(b"s", [b"replace"]))

    def close(self) -> None:
        self.bus.close()


def run_transient(spec: ContainerSpec, unit: str, *, detach: bool, description: str | None = None) -> int:
    """Start `spec` as the transient service `unit`. Attached (the default), the container
    gets this terminal's stdin/stdout/stderr and the exit status is the container's;
    detached, return once the start job is done (like `systemctl start`)."""
    dbuslib = _dbuslib()
    stem = unit[: -len(".service")]
    spec = replace(spec, unit=unit, name=spec.name if spec.name != "%N" else stem)
    stdio = None if detach else (sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno())
    properties = transient_properties(spec, unit, stdio=stdio, description=description)
    try:
        transient = _Unit(dbuslib, unit)
    except Exception as error:  # pystemd raises several unrelated types for D-Bus failures
        raise SystemdError(f"cannot connect to systemd: {error}") from None
    try:
        try:
            transient.start(properties)
        except Exception as error:
            raise SystemdError(f"cannot start {unit}: {error}") from None
        if detach:
            state = transient.wait_until(lambda state: True)
            if state != "active":
                print(f"sdcontainer: {unit} failed to start ({state}); see journalctl -u {unit}", file=sys.stderr)
                return 125
            return 0
        try:
            transient.wait_until(lambda state: state in ("inactive", "failed"))
        except KeyboardInterrupt:  # Ctrl-C stops the container, then reports how it ended
            transient.stop()
            transient.wait_until(lambda state: state in ("inactive", "failed"))
        code = int(transient.get(SERVICE, b"ExecMainCode", b"i"))
        status = int(transient.get(SERVICE, b"ExecMainStatus", b"i"))
        result = transient.get(SERVICE, b"Result", b"s").decode()
    finally:
        transient.close()
    # siginfo codes: 1 = exited, 2 = killed, 3 = dumped
    if code == 1:
        return status
    if code in (2, 3):
        return 128 + status
    if result != "success":
        print(f"sdcontainer: {unit} failed to start ({result}); see journalctl -u {unit}", file=sys.stderr)
        return 125
    return status
