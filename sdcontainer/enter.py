"""Run a command inside a running container: `sdcontainer exec`, every health check, and
ReloadCmd= (`sdcontainer-launcher exec`, main() below, a unit's ExecReload=).

Three processes, so that what stays on the host never enters the container:

  caller (P)   the `sdcontainer exec`, health-check or reload process: finds the container, opens a
               pidfd for its init and an fd for the init's root, reads the init's environment
               and resource limits, then forks B and waits for it (restoring the terminal);
  entered (B)  writes itself into the init's cgroup in every hierarchy (while it still sees
               the host's cgroup tree), joins the init's namespaces with one setns() on the
               pidfd (mount, uts, ipc, net, pid, cgroup), takes the init's root, allocates
               a pseudo-terminal from the container's own /dev/pts if asked, and forks C;
               then relays the terminal, or waits, and exits with C's status;
  command (C)  is in the container's pid namespace (a child forked after setns), resolves
               the user in the container's /etc/passwd, goes through the same confinement as
               the container's init (sdcontainer.security.confine: no_new_privs, bounding set,
               uid/gid, capabilities, seccomp), closes every other fd and execs.

The pidfd makes the container's identity race-free: the cgroup check is made after opening
it, and setns() on a pidfd of a process that has died fails instead of entering whatever
reused its pid. C reports a failure before execve as one line on a close-on-exec pipe,
as the launcher's child does; EOF means the exec happened.

The health check (sdcontainer.health) imports this module on every run, and the launcher
script runs main() for `exec` without its own imports: the standard library's C modules
and ours only.
"""

from __future__ import annotations

import _signal as signal
import os
import select

from sdcontainer import linux, state
from sdcontainer.errors import ExecError, SdcontainerError, UsageError
from sdcontainer.process import (
    DEFAULT_PATH,
    execve,
    exit_status,
    find_program,
    read_all,
    resolve_identity,
)
from sdcontainer.security import CAP_NUMBERS, DEFAULT_CAPABILITIES, confine, load_last
from sdcontainer.step import Step, outcome_in_child

NAMESPACES = (
    linux.CLONE_NEWNS
    | linux.CLONE_NEWUTS
    | linux.CLONE_NEWIPC
    | linux.CLONE_NEWNET
    | linux.CLONE_NEWPID
    | linux.CLONE_NEWCGROUP
)
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
PTMX_RDEV = os.makedev(5, 2)
OUTPUT_LIMIT = 4096  # of a captured command's output, the tail kept
PROG = "sdcontainer-launcher exec"  # its messages, in the journal of the unit reloaded


class Container:
    """A running container as its launcher recorded it, checked against the live process."""

    def __init__(self, record: dict[str, object]) -> None:
        self.record = record
        self.unit = str(record.get("unit", ""))
        self.name = str(record.get("name", ""))
        pid = record.get("pid")
        self.pid = pid if isinstance(pid, int) else 0

    def get(self, key: str, default: object = None) -> object:
        value = self.record.get(key, default)
        return default if value is None else value


def find(name: str) -> Container:
    """The container called `name`: a unit (web, web.service) or a ContainerName=."""
    if not name or "/" in name or name.startswith("."):
        raise ExecError(f"invalid container name {name!r}")
    unit = name if name.endswith(".service") else f"{name}.service"
    record = state.read(unit) if "%" not in unit else None
    if record is None:
        matches = [r for r in state.records() if r.get("name") == name]
        if len(matches) > 1:
            units = ", ".join(str(r.get("unit")) for r in matches)
            raise ExecError(f"several containers are called {name!r} ({units}); name the unit")
        record = matches[0] if matches else None
    if record is None:
        raise ExecError(f"no running container {name!r} (sdcontainer list shows them)")
    return Container(record)


def _cgroup_lines(pid: int) -> list[tuple[str, str]]:
    """(controllers, path) of each hierarchy the process is in: ("", path) for cgroup2."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        lines = f.read().splitlines()
    result = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        result.append((controllers, path))
    return result


def _belongs_to(lines: list[tuple[str, str]], unit: str) -> bool:
    """The process lives in the unit's cgroup (or below it, with Delegate=yes)."""
    return any(f"/{unit}/" in path + "/" for _, path in lines)


def cgroup_procs(lines: list[tuple[str, str]]) -> list[str]:
    """The cgroup.procs file of each of those cgroups, found through this process's mounts
    (a hybrid host has v1 controllers, name=systemd and a cgroup2 beside them)."""
    mounts: list[tuple[str, set[str], str, str]] = []  # (fstype, options, root, mount point)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            fstype = fields[dash + 1]
            if fstype in ("cgroup", "cgroup2"):
                options = set(fields[dash + 3].split(","))
                mounts.append((fstype, options, fields[3], fields[4].replace("\\040", " ")))
    files = []
    for controllers, path in lines:
        for fstype, options, root, point in mounts:
            if (
                controllers == ""
                and fstype == "cgroup2"
                or (controllers and fstype == "cgroup" and set(controllers.split(",")) <= options)
            ):
                if root != "/" and not (path + "/").startswith(root + "/"):
                    continue
                relative = path[len(root) :] if root != "/" else path
                files.append(f"{point}{relative}/cgroup.procs")
                break
    return files


def _read_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        data = f.read()
    env = {}
    for item in data.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def _default_caps() -> int:
    mask = 0
    for name in DEFAULT_CAPABILITIES:
        mask |= 1 << CAP_NUMBERS[name]
    return mask


class Request:
    """What to run and how."""

    def __init__(
        self,
        argv: list[str],
        *,
        user: str | None = None,
        env: tuple[str, ...] = (),
        workdir: str | None = None,
        tty: bool = False,
        interactive: bool = False,
        timeout: float | None = None,
        capture: bool = False,
        die_with_caller: bool = False,
        prog: str = "sdcontainer exec",
    ) -> None:
        if not argv:
            raise ExecError("no command given")
        self.argv = argv
        self.user = user
        self.env = env
        self.workdir = workdir
        self.tty = tty
        self.interactive = interactive
        self.timeout = timeout  # seconds; then the command is killed (status 137, timed_out)
        self.capture = capture  # stdout and stderr kept in memory (the tail: self.output)
        # B and C are SIGKILLed when the caller is: systemd kills only an ExecReload= that
        # timed out, its control process, which would leave the command running in the container
        self.die_with_caller = die_with_caller
        self.prog = prog  # the caller's name, in front of the message of an execve that failed
        self.output = b""
        self.timed_out = False
        self.error: str | None = None  # why it could not run, when C failed before execve


def run(container: Container, request: Request, after: object = None) -> int:
    """Run the request in the container; its exit status (128+N if killed by signal N).
    `after(status)`, if given, runs in B (inside the container's cgroup) once C has ended."""
    pid = container.pid
    try:
        pidfd = linux.pidfd_open(pid)
    except OSError:
        raise ExecError(f"container {container.name!r} is not running (its init, pid {pid}, is gone)") from None
    try:
        try:
            lines = _cgroup_lines(pid)
            if not _belongs_to(lines, container.unit):
                raise ExecError(f"container {container.name!r} is not running (pid {pid} is not {container.unit}'s)")
            procs = cgroup_procs(lines)
            root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            environ = _read_environ(pid)
            limits = _limits(pid)
        except FileNotFoundError:
            raise ExecError(f"container {container.name!r} is not running") from None
        except ProcessLookupError:
            raise ExecError(f"container {container.name!r} is not running") from None
        try:
            return _fork_entered(container, request, pidfd, root_fd, procs, environ, limits, after)
        finally:
            os.close(root_fd)
    finally:
        os.close(pidfd)


def _limits(pid: int) -> list[tuple[int, tuple[int, int]]]:
    """The init's resource limits (the unit's Limit*=), for the command to have the same.
    From /proc/PID/limits, whose rows are in RLIMIT_* order (prlimit() on a process of
    another user is refused even to root here)."""
    with open(f"/proc/{pid}/limits", encoding="ascii") as f:
        rows = f.read().splitlines()[1:]
    import resource

    limits = []
    for which, row in enumerate(rows[:16]):
        # "Max open files            1024                 524288               files"
        fields = row[26:].split()[:2]
        if len(fields) == 2 and all(v == "unlimited" or v.isdigit() for v in fields):
            soft, hard = (resource.RLIM_INFINITY if v == "unlimited" else int(v) for v in fields)
            limits.append((which, (soft, hard)))
    return limits


def _fork_entered(
    container: Container,
    request: Request,
    pidfd: int,
    root_fd: int,
    procs: list[str],
    environ: dict[str, str],
    limits: list[tuple[int, tuple[int, int]]],
    after: object,
) -> int:
    saved = None
    if request.tty and request.interactive and os.isatty(0):
        import termios
        import tty

        saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)  # not the default TCSAFLUSH: what was typed ahead stays
    # the entered process's report: its exit status, C's error line or the captured output
    report_r, report_w = os.pipe()
    forwarded = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
    caller = os.getpid()
    entered = os.fork()
    if entered == 0:
        os.close(report_r)

        def enter() -> int:
            if request.die_with_caller:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != caller:
                    raise ExecError("the caller ended before the command could start")
            return _entered(container, request, pidfd, root_fd, procs, environ, limits, report_w, after)

        status, message = ExecError.exit_status, None
        try:
            status, message = outcome_in_child(enter, ExecError.exit_status)
            if message is not None:
                _send(report_w, b"E" + message.encode(errors="replace"))
        finally:
            os._exit(status)
    os.close(report_w)

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is one more import on every health check
            os.kill(entered, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    try:
        report = read_all(report_r)
        _, wait_status = os.waitpid(entered, 0)
    finally:
        os.close(report_r)
        for sig in forwarded:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    status = exit_status(wait_status)
    for kind, payload in _messages(report):
        if kind == "E":
            request.error = payload.decode(errors="replace")
        elif kind == "T":
            request.timed_out = True
        elif kind == "O":
            request.output = payload
    if request.error is not None and wait_status != 0 and status in (0, ExecError.exit_status):
        status = ExecError.exit_status
    return status


def _send(fd: int, message: bytes) -> None:
    """One framed message to the caller: length, then the bytes."""
    try:  # noqa: SIM105
        os.write(fd, len(message).to_bytes(4, "little") + message)
    except OSError:
        pass


def _messages(data: bytes) -> list[tuple[str, bytes]]:
    result = []
    while len(data) >= 5:
        size = int.from_bytes(data[:4], "little")
        body, data = data[4 : 4 + size], data[4 + size :]
        result.append((chr(body[0]), body[1:]))
    return result


def _entered(
    container: Container,
    request: Request,
    pidfd: int,
    root_fd: int,
    procs: list[str],
    environ: dict[str, str],
    limits: list[tuple[int, tuple[int, int]]],
    report_w: int,
    after: object,
) -> int:
    """B: into the container's cgroup, namespaces and root; fork C; relay or wait."""
    import resource

    # No /proc/self/exe of the host's python for anything in the container to open, and no
    # ptrace by the container's root while this process still holds every capability.
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    for path in procs:
        with Step(f"join the container's cgroup {path}", ExecError.exit_status), open(path, "w") as f:
            f.write(str(os.getpid()))
    for which, limit in limits:
        try:  # noqa: SIM105 - a limit the kernel refuses stays as it is
            resource.setrlimit(which, limit)
        except (OSError, ValueError):
            pass
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    with Step(f"join the namespaces of {container.name}", ExecError.exit_status):
        try:
            linux.setns(pidfd, NAMESPACES)
        except ProcessLookupError:
            raise ExecError(f"container {container.name!r} is not running") from None
    with Step("enter the container's root", ExecError.exit_status):
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
    os.close(root_fd)
    os.close(pidfd)
    master = slave = -1
    if request.tty:
        master, slave = _open_pty()
    output = os.memfd_create("sdcontainer-exec-output", 0) if request.capture else -1
    sync_r, sync_w = os.pipe()  # C -> B: one error line, or EOF at execve (close-on-exec)
    command = os.fork()  # in the container's pid namespace: setns(CLONE_NEWPID) is for children
    if command == 0:
        os.close(sync_r)
        os.close(report_w)
        if master >= 0:
            os.close(master)
        _command(container, request, environ, slave, output, null, sync_w)
    os.close(sync_w)
    if slave >= 0:
        os.close(slave)
    command_fd = linux.pidfd_open(command)

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105
            os.kill(command, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to C itself
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT))
    error_line = read_all(sync_r)
    os.close(sync_r)
    if master >= 0:
        _relay(master, command_fd, request)
    if request.timeout is not None:
        poller = select.poll()
        poller.register(command_fd, select.POLLIN)
        if not poller.poll(max(0, int(request.timeout * 1000))):
            os.kill(command, signal.SIGKILL)
            _send(report_w, b"T")
    _, wait_status = os.waitpid(command, 0)
    os.close(command_fd)
    status = exit_status(wait_status)
    if error_line:
        code, _, message = error_line.decode(errors="replace").strip().partition(" ")
        _send(report_w, b"E" + message.encode(errors="replace"))
        status = int(code) if code.isdigit() else ExecError.exit_status
    if output >= 0:
        size = os.fstat(output).st_size
        _send(report_w, b"O" + os.pread(output, OUTPUT_LIMIT, max(0, size - OUTPUT_LIMIT)))
        os.close(output)
    if after is not None:
        after(status)  # type: ignore[operator]
    return status


def _open_pty() -> tuple[int, int]:
    """A pseudo-terminal of the container's own devpts instance: its /dev/ptmx, checked to be
    the ptmx device (the container could have put anything there), and the peer opened through
    the master (no path lookup in /dev/pts)."""
    import fcntl

    with Step("open the container's /dev/ptmx", ExecError.exit_status):
        master = linux.openat2(
            linux.AT_FDCWD, "/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK, linux.RESOLVE_NO_MAGICLINKS
        )
        st = os.fstat(master)
        if not (st.st_mode & 0o170000 == 0o020000 and st.st_rdev == PTMX_RDEV):
            os.close(master)
            raise ExecError("the container's /dev/ptmx is not the pseudo-terminal multiplexer")
        os.set_blocking(master, True)
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if os.isatty(0):
            fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
    return master, slave


def _relay(master: int, command_fd: int, request: Request) -> None:
    """Copy the terminal both ways until the command has ended and its output is drained."""
    import fcntl

    def resize(signum: int, frame: object) -> None:
        try:  # noqa: SIM105
            fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    if os.isatty(0):
        signal.signal(signal.SIGWINCH, resize)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(command_fd, select.POLLIN)
    reading_stdin = request.interactive
    if reading_stdin:
        poller.register(0, select.POLLIN)
    ended = False
    while True:
        events = poller.poll(0 if ended else -1)
        if not events:
            return  # ended, and nothing left to read
        for fd, event in events:
            if fd == command_fd:
                ended = True
                poller.unregister(command_fd)
            elif fd == master:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    data = b""
                if not data:
                    return
                _write_all(1, data)
            elif fd == 0:
                data = os.read(0, 65536) if event & (select.POLLIN | select.POLLHUP) else b""
                if not data:
                    poller.unregister(0)
                    if not os.isatty(0):
                        _write_all(master, b"\x04")  # end of input, as a terminal says it
                    continue
                _write_all(master, data)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _command(
    container: Container, request: Request, environ: dict[str, str], slave: int, output: int, null: int, sync_w: int
) -> None:
    """C: from the container's pid namespace to execve. Never returns."""
    status, message = outcome_in_child(
        lambda: _exec(container, request, environ, slave, output, null, sync_w), ExecError.exit_status
    )
    try:
        os.write(sync_w, f"{status} {message}".replace("\n", " ").encode(errors="replace"))
    finally:
        os._exit(status)


def _exec(
    container: Container, request: Request, environ: dict[str, str], slave: int, output: int, null: int, sync_w: int
) -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)  # an ignored signal stays ignored across execve
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if slave >= 0:
        import fcntl

        os.setsid()
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
    else:
        if not request.interactive:
            os.dup2(null, 0)  # the host's, opened before entering: the container's could be a FIFO
        if output >= 0:
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.close(output)
    if request.user is not None:
        user, _, group = request.user.partition(":")
        ident = resolve_identity(user, group or None)
    else:
        user_value = container.get("user")
        group_value = container.get("group")
        group_add = container.get("group_add", [])
        ident = resolve_identity(
            str(user_value) if user_value is not None else None,
            str(group_value) if group_value is not None else None,
            tuple(str(g) for g in group_add) if isinstance(group_add, list) else (),
        )
    env = dict(environ)
    if request.user is not None:
        env["HOME"] = ident.home
    if request.tty and "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    for item in request.env:
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    caps = container.get("caps")
    nnp = container.get("no_new_privileges", True)
    seccomp = confine(
        caps if isinstance(caps, int) else _default_caps(),
        linux.cap_last_cap(),
        nnp is not False,
        ident,
    )
    workdir = request.workdir or str(container.get("working_dir", "/"))
    with Step(f"working directory {workdir}", ExecError.exit_status):
        fd = linux.openat2(linux.AT_FDCWD, workdir, os.O_PATH | os.O_DIRECTORY, linux.RESOLVE_NO_MAGICLINKS)
        try:
            os.fchdir(fd)
        finally:
            os.close(fd)
    program = find_program(request.argv[0], env.get("PATH", DEFAULT_PATH))
    os.umask(0o022)
    os.closerange(3, sync_w)
    os.closerange(sync_w + 1, 0x7FFFFFFF)
    if request.die_with_caller:
        # only now: changing the uid cleared it. B, outside the pid namespace, is parent 0
        # here; once it has died the container's init (or a subreaper in it) is the parent.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != 0:
            raise ExecError("the process that entered the container ended before the command started")
    load_last(seccomp)
    execve(program, request.argv, env, request.prog)


def main(argv: list[str] | None = None) -> int:
    """`sdcontainer-launcher exec --unit UNIT -- CMD...`: a unit's ExecReload= (ReloadCmd=).
    The command runs as `sdcontainer exec UNIT CMD...` runs it; its stdout and stderr are
    this process's (the journal) and its exit status is the reload's; 125 when it could not
    run (the container is not running, joining it failed), 2 for a bad command line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["exec"]:
        args = args[1:]
    try:
        if len(args) < 4 or args[0] != "--unit" or args[2] != "--":
            raise UsageError("usage: exec --unit UNIT -- COMMAND [ARG...]")
        unit = args[1]
        record = state.read(unit)
        if record is None:
            raise ExecError(f"{unit} is not running; nothing to run {args[3]!r} in")
        request = Request(args[3:], die_with_caller=True, prog=PROG)
        status = run(Container(record), request)
        if request.error is not None:
            print(f"{PROG}: {request.error}", file=sys.stderr, flush=True)
    except SdcontainerError as error:
        print(f"{PROG}: {error}", file=sys.stderr, flush=True)
        status = error.exit_status
    return status
