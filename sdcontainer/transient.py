"""`sdcontainer run`: the same container path without a file, as a transient service.

Like `systemd-run`, it asks the service manager over D-Bus (StartTransientUnit) for a
service whose ExecStart is the launcher, so even an ad-hoc container is a unit with a
cgroup, a journal and `systemctl status`.
"""

from __future__ import annotations

import contextlib
import secrets
import sys

from sdcontainer.errors import SystemdError
from sdcontainer.generator import DEFAULT_STOP_TIMEOUT, DEVICE_ALLOW, SLICE, launcher_command, stop_exit_status
from sdcontainer.keys import service_settings, size_in_bytes, spec_to_argv
from sdcontainer.record import replace
from sdcontainer.spec import ContainerSpec


def unit_name(requested: str | None) -> str:
    name = requested or f"sdcontainer-run-{secrets.token_hex(4)}"
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


def run_transient(spec: ContainerSpec, unit: str, *, detach: bool, description: str | None = None) -> int:
    """Start `spec` as the transient service `unit`. Attached (the default), the container
    gets this terminal's stdin/stdout/stderr and the exit status is the container's."""
    try:
        import pystemd.run
        from pystemd.systemd1 import Unit
        from pystemd.systemd1.unit_signatures import KNOWN_UNIT_SIGNATURES
    except ImportError as error:  # pragma: no cover - pystemd is a dependency
        raise SystemdError(f"pystemd is not available: {error}") from None

    # pystemd's table of D-Bus property signatures lacks DeviceAllow (systemd: a(ss))
    KNOWN_UNIT_SIGNATURES.setdefault(b"DeviceAllow", b"a(ss)")
    stem = unit[: -len(".service")]
    spec = replace(spec, unit=unit, name=spec.name if spec.name != "%N" else stem)
    launcher = launcher_command()
    timeout = spec.stop_timeout if spec.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
    extra: dict[bytes, object] = {
        b"NotifyAccess": b"all",
        b"KillMode": b"mixed",
        b"Delegate": True,
        b"DevicePolicy": b"closed",
        b"DeviceAllow": [(device.encode(), access.encode()) for device, access in DEVICE_ALLOW],
        b"Slice": SLICE.encode(),
        b"SyslogIdentifier": stem.encode(),
        b"TimeoutStopUSec": timeout * 1_000_000,
        b"Description": (description or f"sdcontainer run {' '.join(spec.command)}").encode(),
    }
    extra[b"SuccessExitStatus"] = ([stop_exit_status(spec)], [])
    extra.update(resource_properties(spec))
    if spec.stop_signal:
        import signal

        extra[b"KillSignal"] = int(signal.Signals[spec.stop_signal])
    stdio = {} if detach else {"stdin": sys.stdin, "stdout": sys.stdout, "stderr": sys.stderr}
    # systemd expands $VAR in ExecStart= arguments at exec time, also for transient units
    argv = [word.replace("$", "$$") for word in [*launcher, "start", *spec_to_argv(spec)]]
    try:
        pystemd.run(
            argv,
            name=unit.encode(),
            service_type=b"notify",
            user_mode=False,
            stop_post_cmd=[*launcher, "cleanup", "--unit", unit],
            extra=extra,
            wait=not detach,
            wait_for_activation=detach,
            remain_after_exit=not detach,
            **stdio,
        )
    except Exception as error:  # pystemd raises several unrelated types for D-Bus failures
        raise SystemdError(f"cannot start {unit}: {error}") from None
    if detach:
        return 0
    with Unit(unit.encode(), _autoload=True) as loaded:
        code = int(loaded.Service.ExecMainCode)
        status = int(loaded.Service.ExecMainStatus)
        result = loaded.Service.Result.decode()
        # the unit stayed (RemainAfterExit=) only so its status could be read: let it go
        with contextlib.suppress(Exception):
            loaded.Unit.Stop(b"replace")
        with contextlib.suppress(Exception):
            loaded.Unit.ResetFailed()
    # siginfo codes: 1 = exited, 2 = killed, 3 = dumped
    if code == 1:
        return status
    if code in (2, 3):
        return 128 + status
    if result != "success":
        print(f"sdcontainer: {unit} failed to start ({result}); see journalctl -u {unit}", file=sys.stderr)
        return 125
    return status
