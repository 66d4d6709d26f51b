"""`sdcontainer run`: the same container path without a file, as a transient service.

Like `systemd-run`, it asks the service manager over D-Bus (StartTransientUnit) for a
service whose ExecStart is the launcher, so even an ad-hoc container is a unit with a
cgroup, a journal and `systemctl status`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from sdcontainer.errors import SystemdError
from sdcontainer.generator import DEFAULT_STOP_TIMEOUT, DEVICE_ALLOW, SLICE, launcher_command, stop_exit_status
from sdcontainer.keys import service_settings, spec_to_argv
from sdcontainer.record import replace
from sdcontainer.spec import ContainerSpec
from sdcontainer.state import runtime_directory
from sdcontainer.values import size_in_bytes


def unit_name(requested: str | None) -> str:
    name = requested or f"sdcontainer-run-{os.urandom(4).hex()}"
    return name if name.endswith(".service") else name + ".service"


INFINITY = 2**64 - 1  # what D-Bus carries for "infinity" in these properties


def _number(value: str) -> int:
    return INFINITY if value == "infinity" else size_in_bytes(value)


def resource_properties(spec: ContainerSpec) -> dict[bytes, int]:
    """Memory=, PidsLimit= and Ulimit= as the D-Bus properties of a transient unit: what the
    generator writes as MemoryMax=, TasksMax= and Limit*=, with a Limit's soft value in
    Limit*Soft."""
    properties: dict[bytes, int] = {}
    for name, value in service_settings(spec):
        if name.startswith("Limit"):
            soft, _, hard = value.partition(":")
            properties[name.encode()] = _number(hard or soft)
            properties[f"{name}Soft".encode()] = _number(soft)
        elif name in ("MemoryMax", "TasksMax"):
            properties[name.encode()] = _number(value)
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
    """pystemd's sd-bus binding and its table of unit property signatures, without running
    the __init__.py of pystemd and pystemd.systemd1: those import every high-level wrapper
    and lxml (20-50 ms here), none of which this talk with systemd needs."""
    _namespace_package("pystemd")
    _namespace_package("pystemd.systemd1")
    try:
        import pystemd.dbuslib as dbuslib
        from pystemd.systemd1 import unit_signatures
    except ImportError as error:  # pragma: no cover - pystemd is a dependency
        raise SystemdError(f"pystemd is not available: {error}") from None
    # pystemd's table of D-Bus property signatures lacks these two (see org.freedesktop.systemd1(5))
    unit_signatures.KNOWN_UNIT_SIGNATURES.setdefault(b"DeviceAllow", b"a(ss)")
    unit_signatures.KNOWN_UNIT_SIGNATURES.setdefault(b"AddRef", b"b")
    dbuslib.signature_array = unit_signatures.signature_array
    return dbuslib


def transient_properties(
    spec: ContainerSpec, unit: str, *, stdio: tuple[int, int, int] | None, description: str | None
) -> dict[bytes, Any]:
    """The unit's D-Bus properties: what the generator writes for a .container file, and,
    with `stdio` (attached), the caller's stdin/stdout/stderr and a reference that keeps the
    unit loaded until its exit status has been read."""
    stem = unit[: -len(".service")]
    launcher = launcher_command()
    timeout = spec.stop_timeout if spec.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
    # systemd expands $VAR in ExecStart= arguments at exec time, also for transient units
    argv = [word.replace("$", "$$") for word in [*launcher, "start", *spec_to_argv(spec)]]
    properties: dict[bytes, Any] = {
        b"Description": (description or f"sdcontainer run {' '.join(spec.command)}").encode(),
        b"Type": b"notify",
        b"ExecStart": [(argv[0].encode(), [a.encode() for a in argv], False)],
        b"RuntimeDirectory": [runtime_directory(unit).encode()],  # the record; systemd removes it
        b"NotifyAccess": b"all",
        b"KillMode": b"mixed",
        b"Delegate": True,
        b"DevicePolicy": b"closed",
        b"DeviceAllow": [(device.encode(), access.encode()) for device, access in DEVICE_ALLOW],
        b"Slice": SLICE.encode(),
        b"SyslogIdentifier": stem.encode(),
        b"TimeoutStopUSec": timeout * 1_000_000,
        b"SuccessExitStatus": ([stop_exit_status(spec)], []),
    }
    if stdio is not None:
        # Attached, like `systemd-run --wait`: the unit stays loaded while we hold a reference,
        # so its exit status can be read after it is gone, and is collected even if it failed.
        properties[b"AddRef"] = True
        properties[b"CollectMode"] = b"inactive-or-failed"
        for name, fd in zip(("Input", "Output", "Error"), stdio, strict=True):
            properties[f"Standard{name}FileDescriptor".encode()] = fd
    properties.update(resource_properties(spec))
    if spec.stop_signal:
        import signal

        properties[b"KillSignal"] = int(signal.Signals[spec.stop_signal])
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
        args += self.dbuslib.signature_array(properties)
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
