"""One health check of a running container: what NAME-health.service runs.

    sdcontainer-launcher health --unit UNIT --retries N --timeout MS --start-period MS
                                --on-failure none|kill|restart|stop [--notify-healthy] -- CMD...

The command runs inside the container through sdcontainer.enter, the code path of
`sdcontainer exec`, so it is confined exactly as the container's own processes are. The
consecutive failures are counted in /run/sdcontainer/containers/UNIT/health, for the container's
current init (a new init starts from zero; systemd removes the unit's RuntimeDirectory= with
it when the container stops). After N in a
row, --on-failure applies. Failures within --start-period of the container's start do not
count until a check has passed.

The manager hears about it too, on its notification socket, from the process that entered
the container (it is in the unit's cgroup, so NotifyAccess=all lets it speak for the unit):
STATUS=healthy or STATUS=unhealthy when the state changes, and with --notify-healthy
(Notify=healthy) READY=1 after the first check that passes.

Exit status: 0 healthy, 1 the check failed (or the container is not running), 2 bad usage.
This runs every HealthInterval=: it imports only what sdcontainer.enter needs.
"""

from __future__ import annotations

import os
import sys

from sdcontainer import state
from sdcontainer.errors import SdcontainerError, UsageError, describe

PROG = "sdcontainer-health"
DEFAULT_NOTIFY_SOCKET = "/run/systemd/notify"


class Options:
    def __init__(self, args: list[str]) -> None:
        from sdcontainer.verbs import parse

        got = parse(args, options=("--unit", "--retries", "--timeout", "--start-period", "--on-failure",
                                   "--success", "--then-start", "--then-stop"),
                    flags=("--notify-healthy", "--startup"))  # fmt: skip

        def number(name: str, default: int) -> int:
            value = got.options.get(name)
            if value is not None and not value.isdigit():
                raise UsageError(f"{name} {value!r} is not a number")
            return default if value is None else int(value)

        self.unit = got.options.get("--unit", "")
        self.retries = max(1, number("--retries", 3))
        self.timeout_ms = number("--timeout", 30_000)
        self.start_period_ms = number("--start-period", 0)
        self.on_failure = got.options.get("--on-failure", "none")
        if self.on_failure not in ("none", "kill", "restart", "stop"):
            raise UsageError(f"--on-failure {self.on_failure!r}: expected none, kill, restart or stop")
        self.notify_healthy = "--notify-healthy" in got.options
        # HealthStartupCmd=: --retries 0 is never restart; passes needed, the units to switch
        self.startup = "--startup" in got.options
        if self.startup:
            self.retries = number("--retries", 0)
        self.success = max(1, number("--success", 1))
        self.then_start = got.options.get("--then-start")
        self.then_stop = got.options.get("--then-stop")
        self.argv = got.command or []
        if not self.unit:
            raise UsageError("--unit UNIT is required")
        if not self.argv:
            raise UsageError("no check command after --")


class Health:
    """The count kept between checks, for one init: `PID FAILURES PASSED READY`."""

    def __init__(self, unit: str, pid: int) -> None:
        self.unit, self.path = unit, state.health_path(unit)
        self.pid, self.failures, self.passed, self.ready = pid, 0, False, False
        try:
            with open(self.path, encoding="ascii") as f:
                fields = f.read().split()
        except (FileNotFoundError, UnicodeDecodeError):
            fields = []
        if len(fields) == 4 and all(x.isdigit() for x in fields) and int(fields[0]) == pid:
            self.failures, self.passed, self.ready = int(fields[1]), fields[2] == "1", fields[3] == "1"
        self.saved = self.line()

    def line(self) -> str:
        return f"{self.pid} {self.failures} {int(self.passed)} {int(self.ready)}\n"

    def save(self) -> None:
        if self.line() == self.saved:
            return
        state.write_health(self.unit, self.line())


def check(options: Options) -> int:
    from sdcontainer.enter import Request, run

    container = state.read(options.unit)  # RecordError: reported as a failed check
    if container is None:
        print(f"{PROG}: {options.unit} is not running; nothing to check", file=sys.stderr)
        return 1
    health = Health(options.unit, container.pid)
    retries = options.retries
    notifier = None
    socket_path = container.notify_socket or DEFAULT_NOTIFY_SOCKET
    try:
        from sdcontainer.notify import Notifier

        # connected here, on the host: the process that sends is inside the container's mounts
        notifier = Notifier(socket_path)
    except OSError:
        notifier = None  # no manager to tell (run by hand): the count still works

    # a failure now would not count: no STATUS=unhealthy for it either
    uncounted = not health.passed and _in_start_period(options)

    def tell_manager(status: int) -> None:
        """In the entered process, in the unit's cgroup: the manager takes it as the unit's."""
        if notifier is None:
            return
        message = []
        if status == 0:
            if options.notify_healthy and not health.ready:
                message.append("READY=1")
            if not health.passed or health.failures >= retries:
                message.append("STATUS=healthy")
        elif health.failures + 1 == retries and not uncounted:
            message.append("STATUS=unhealthy")
        if message:
            try:  # noqa: SIM105 - contextlib is one more import on every check
                notifier.send("\n".join(message))
                notifier.barrier(5.0)  # stay alive until the manager has read who sent it
            except OSError:
                pass

    request = Request(options.argv, timeout=options.timeout_ms / 1000, capture=True, prog=PROG)
    status = run(container, request, after=tell_manager)
    if notifier is not None:
        notifier.close()
    if status == 0:
        health.failures = 0
        health.passed = True
        health.ready = health.ready or options.notify_healthy
        health.save()
        return 0
    why = _why(status, request)
    if uncounted:
        print(f"{PROG}: {options.unit}: check failed in the start period, not counted: {why}", file=sys.stderr)
        return 1
    health.failures += 1
    print(f"{PROG}: {options.unit}: check failed ({health.failures} of {retries}): {why}", file=sys.stderr)
    if health.failures >= retries:
        print(f"{PROG}: {options.unit} is unhealthy; HealthOnFailure={options.on_failure}", file=sys.stderr)
        if options.on_failure != "none":
            _act(options.on_failure, options.unit, container)
            health.failures = 0
    health.save()
    return 1


def check_startup(options: Options) -> int:
    """One run of HealthStartupCmd=: counts passes and failures in a row for the container's
    current init; enough passes start the regular check's timer and stop the startup timer,
    too many failures restart the service (whose new init starts from zero)."""
    from sdcontainer.enter import Request, run

    container = state.read(options.unit)
    if container is None:
        print(f"{PROG}: {options.unit} is not running; nothing to check", file=sys.stderr)
        return 1
    failures = passes = 0
    try:
        with open(state.startup_health_path(options.unit), encoding="ascii") as f:
            fields = f.read().split()
        if len(fields) == 3 and all(x.isdigit() for x in fields) and int(fields[0]) == container.pid:
            failures, passes = int(fields[1]), int(fields[2])
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    request = Request(options.argv, timeout=options.timeout_ms / 1000, capture=True, prog=PROG)
    status = run(container, request)
    if status == 0:
        failures, passes = 0, passes + 1
        if passes >= options.success:
            print(f"{PROG}: {options.unit}: startup check passed; the health check begins", file=sys.stderr)
            for action, unit in (("start", options.then_start), ("stop", options.then_stop)):
                if unit:
                    _systemctl(action, unit)
    else:
        failures, passes = failures + 1, 0
        of = f" of {options.retries}" if options.retries else ""
        why = _why(status, request)
        print(f"{PROG}: {options.unit}: startup check failed ({failures}{of}): {why}", file=sys.stderr)
        if options.retries and failures >= options.retries:
            print(f"{PROG}: {options.unit}: startup checks failed; restarting it", file=sys.stderr)
            _systemctl("restart", options.unit)
            failures = 0
    state.write_startup_health(options.unit, f"{container.pid} {failures} {passes}\n")
    return 0 if status == 0 else 1


def _systemctl(action: str, unit: str) -> None:
    import subprocess

    # --no-block: this service is not to wait for what it sets off (a restart ends it too)
    result = subprocess.run(["systemctl", "--no-block", action, unit], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{PROG}: systemctl {action} {unit}: {result.stderr.strip()}", file=sys.stderr)


def _why(status: int, request: object) -> str:
    from sdcontainer.enter import Request

    assert isinstance(request, Request)
    if request.timed_out:
        text = "timed out, killed"
    elif request.error is not None:
        text = request.error
    else:
        text = f"exit status {status}"
    output = request.output.decode(errors="replace").strip().replace("\n", " | ")
    if output:
        text += f"; output: {output[-500:]}"
    return text


def _in_start_period(options: Options) -> bool:
    if options.start_period_ms <= 0:
        return False
    import time

    try:
        started = os.stat(state.record_path(options.unit)).st_mtime
    except FileNotFoundError:
        return True
    return (time.time() - started) * 1000 < options.start_period_ms


def _act(action: str, unit: str, container: state.ContainerRecord) -> None:
    if action == "kill":
        import _signal

        from sdcontainer import linux

        try:
            fd = linux.pidfd_open(container.pid)
        except OSError:
            return  # gone already
        try:
            _signal.pidfd_send_signal(fd, _signal.SIGKILL)
        except OSError as error:
            print(f"{PROG}: {unit}: SIGKILL to pid {container.pid}: {error.strerror}", file=sys.stderr)
        finally:
            os.close(fd)
        return
    import subprocess

    # --no-block: this service is not to wait for the container's stop (which ends it too)
    result = subprocess.run(["systemctl", "--no-block", action, unit], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{PROG}: systemctl {action} {unit}: {result.stderr.strip()}", file=sys.stderr)


def check_command(args: list[str]) -> int:
    """`sdcontainer-launcher health ...`, as sdcontainer.verbs runs it. A check that could
    not run is a failed check, 1, whatever stopped it; only a bad command line is 2."""
    options = Options(args)
    try:
        return check_startup(options) if options.startup else check(options)
    except UsageError:
        raise
    except SdcontainerError as error:
        raise SdcontainerError(str(error)) from error
    except OSError as error:
        raise SdcontainerError(describe(error)) from error
