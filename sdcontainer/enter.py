"""Run a command inside a running container: `sdcontainer exec`, every health check, and
ReloadCmd= (`sdcontainer-launcher exec`, main() below, a unit's ExecReload=).

Three processes, so that what stays on the host never enters the container:

  caller (P)   the `sdcontainer exec`, health-check or reload process: finds the container, opens a
               pidfd for its init and an fd for the init's root, reads the init's environment
               and resource limits, makes the command's stdin, stdout and stderr (below), then
               forks B, relays them and waits for it (restoring the terminal);
  entered (B)  leaves the caller's session, puts /dev/null on its own 0, 1 and 2, writes itself
               into the init's cgroup in every hierarchy (while it still sees the host's cgroup
               tree), joins the init's namespaces with one setns() on the pidfd (mount, uts,
               ipc, net, pid, cgroup), takes the init's root and forks C; then waits, and
               exits with C's status;
  command (C)  is in the container's pid namespace (a child forked after setns), leads a
               session of its own, resolves the user in the container's /etc/passwd, goes
               through the same confinement as the container's init
               (sdcontainer.security.confine: no_new_privs, bounding set, uid/gid,
               capabilities, seccomp), closes every other fd and execs.

The command never gets the caller's own fds 0, 1 and 2, whatever they are: given the caller's
terminal it could push keystrokes into the caller's shell (TIOCSTI) or change the terminal;
given a file, reopen it through /proc/self/fd for reading and writing; given a pipe, read
what others write to it. So its stdout and stderr are pipes that P copies to the caller's
fds 1 and 2, its stdin /dev/null or, with -i, a pipe P feeds from fd 0 (_relay); with -t
all three are a pty of the container's own devpts instance, opened by P through the init's
root, whose master stays in P. A health check's stdout and stderr are a memfd B reads.

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
import stat

from sdcontainer import linux, state
from sdcontainer.errors import ExecError, RecordError, UsageError
from sdcontainer.process import (
    DEFAULT_PATH,
    ensure_stdio,
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
FIONREAD = 0x541B
PTY_BACKLOG = 1 << 20  # more than a pty holds: 4 KiB in its line discipline, 640 KiB of buffers
OUTPUT_LIMIT = 4096  # of a captured command's output, the tail kept
PROG = "sdcontainer-launcher exec"  # its messages, in the journal of the unit reloaded


def find(name: str) -> state.ContainerRecord:
    """The record of the container called `name`: a unit (web, web.service) or a ContainerName=.
    `run` checks it against the live process."""
    try:
        unit = state.unit_of(name)
    except UsageError as error:
        raise ExecError(str(error)) from None
    unreadable: list[RecordError] = []
    try:
        record = state.read(unit)
        if record is None:
            matches = [r for r in state.records(unreadable) if r.name == name]
            if len(matches) > 1:
                units = ", ".join(r.unit for r in matches)
                raise ExecError(f"several containers are called {name!r} ({units}); name the unit")
            record = matches[0] if matches else None
    except RecordError as error:
        raise ExecError(str(error)) from None
    if record is None:
        also = f"; {len(unreadable)} unreadable record(s): {unreadable[0]}" if unreadable else ""
        raise ExecError(f"no running container {name!r} (sdcontainer ps shows them){also}")
    return record


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


def run(container: state.ContainerRecord, request: Request, after: object = None) -> int:
    """Run the request in the container; its exit status (128+N if killed by signal N).
    `after(status)`, if given, runs in B (inside the container's cgroup) once C has ended."""
    pid = container.pid
    ensure_stdio()
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


def _command_stdio(request: Request, root_fd: int) -> tuple[int, int, dict[int, int], tuple[int, int, int]]:
    """The command's stdin, stdout and stderr (never the caller's own, see _relay): `stdio`
    goes through B to C as its 0, 1 and 2 (-1: B's /dev/null); `sources` (what to copy from
    -> the caller's 1 or 2), `stdin_to` and the pty's `master` stay here and are relayed."""
    master = -1
    stdin_to = -1
    sources: dict[int, int] = {}  # what to copy from (ours) -> where to (the caller's 1 or 2)
    stdio = (-1, -1, -1)
    if request.capture:
        pass  # B gives the command /dev/null and a memfd
    elif request.tty:
        master, slave = _open_pty(root_fd)
        stdio = (slave, slave, slave)
        sources[master] = 1
        stdin_to = master if request.interactive else -1
    else:
        in_r = -1  # B's /dev/null, without -i
        if request.interactive:
            in_r, stdin_to = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sources = {out_r: 1, err_r: 2}
        stdio = (in_r, out_w, err_w)
        for fd in (*sources, stdin_to):
            if fd >= 0:
                os.set_blocking(fd, False)
    return master, stdin_to, sources, stdio


def _fork_entered(
    container: state.ContainerRecord,
    request: Request,
    pidfd: int,
    root_fd: int,
    procs: list[str],
    environ: dict[str, str],
    limits: list[tuple[int, tuple[int, int]]],
    after: object,
) -> int:
    master, stdin_to, sources, stdio = _command_stdio(request, root_fd)
    ours = [*sources, *([stdin_to] if stdin_to >= 0 and stdin_to not in sources else [])]
    theirs = sorted({fd for fd in stdio if fd >= 0})
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
    try:
        entered = os.fork()
    except BaseException:
        for fd in (*ours, *theirs, report_r, report_w):
            os.close(fd)
        raise
    if entered == 0:
        os.close(report_r)

        def enter() -> int:
            for fd in ours:
                os.close(fd)
            # out of the caller's session: only the caller gets its terminal's signals (and
            # passes each on once); B never reads or writes that terminal
            os.setsid()
            if request.die_with_caller:
                linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != caller:
                    raise ExecError("the caller ended before the command could start")
            return _entered(container, request, pidfd, root_fd, procs, environ, limits, stdio, report_w, after)

        status, message = ExecError.exit_status, None
        try:
            status, message = outcome_in_child(enter, ExecError.exit_status)
            if message is not None:
                _send(report_w, b"E" + message.encode(errors="replace"))
        finally:
            os._exit(status)
    os.close(report_w)
    for fd in theirs:
        os.close(fd)

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is one more import on every health check
            os.kill(entered, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    try:
        report = _relay(report_r, sources, stdin_to, master) if sources else read_all(report_r)
        _, wait_status = os.waitpid(entered, 0)
    finally:
        os.close(report_r)
        for sig in forwarded:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return _outcome(request, report, wait_status)


def _outcome(request: Request, report: bytes, wait_status: int) -> int:
    """B's report read into `request` (error, timed_out, output); the exit status."""
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


def _join(
    container: state.ContainerRecord,
    pidfd: int,
    root_fd: int,
    procs: list[str],
    limits: list[tuple[int, tuple[int, int]]],
) -> None:
    """B into the init's cgroups, with its resource limits, then into its namespaces (one
    setns() on the pidfd) and its root; closes `pidfd` and `root_fd`."""
    import resource

    for path in procs:
        with Step(f"join the container's cgroup {path}", ExecError.exit_status), open(path, "w") as f:
            f.write(str(os.getpid()))
    for which, limit in limits:
        try:  # noqa: SIM105 - a limit the kernel refuses stays as it is
            resource.setrlimit(which, limit)
        except (OSError, ValueError):
            pass
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


def _entered(
    container: state.ContainerRecord,
    request: Request,
    pidfd: int,
    root_fd: int,
    procs: list[str],
    environ: dict[str, str],
    limits: list[tuple[int, tuple[int, int]]],
    stdio: tuple[int, int, int],
    report_w: int,
    after: object,
) -> int:
    """B: into the container's cgroup, namespaces and root; fork C; wait for it."""
    # No /proc/self/exe of the host's python for anything in the container to open, and no
    # ptrace by the container's root while this process still holds every capability.
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    # the host's /dev/null, opened before entering: the container's could be a FIFO. It
    # replaces the caller's 0, 1 and 2 here: nothing of the caller's enters the container.
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _join(container, pidfd, root_fd, procs, limits)
    output = -1
    if request.capture:  # the health check's: stdout and stderr kept, in memory
        output = os.memfd_create("sdcontainer-exec-output", 0)
        stdio = (null, output, output)
    elif stdio[0] < 0:  # without -i
        stdio = (null, stdio[1], stdio[2])
    sync_r, sync_w = os.pipe()  # C -> B: one error line, or EOF at execve (close-on-exec)
    command = os.fork()  # in the container's pid namespace: setns(CLONE_NEWPID) is for children
    if command == 0:
        os.close(sync_r)
        os.close(report_w)
        _command(container, request, environ, stdio, sync_w)
    os.close(sync_w)
    for fd in {*stdio} - {null, output}:
        os.close(fd)  # only the command (and what it starts) holds them: their EOF is its end

    def forward(signum: int, frame: object) -> None:
        # C leads a session of its own, away from the caller's terminal: the keyboard's
        # SIGINT and SIGQUIT go to its process group, as a terminal sends them
        target = -command if signum in (signal.SIGINT, signal.SIGQUIT) else command
        try:
            os.kill(target, signum)
        except ProcessLookupError:  # not its own group yet (C has not reached setsid)
            try:  # noqa: SIM105
                os.kill(command, signum)
            except ProcessLookupError:
                pass

    forwarded = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
    for sig in forwarded:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    status = _wait_command(command, request, sync_r, output, report_w)
    if after is not None:
        after(status)  # type: ignore[operator]
    return status


def _wait_command(command: int, request: Request, sync_r: int, output: int, report_w: int) -> int:
    """B waits for C: its error line if it did not exec, a kill at the request's timeout, its
    exit status; reports them, and the captured output, to the caller."""
    error_line = read_all(sync_r)
    os.close(sync_r)
    if request.timeout is not None:
        command_fd = linux.pidfd_open(command)
        poller = select.poll()
        poller.register(command_fd, select.POLLIN)
        if not poller.poll(max(0, int(request.timeout * 1000))):
            os.kill(command, signal.SIGKILL)
            _send(report_w, b"T")
        os.close(command_fd)
    _, wait_status = os.waitpid(command, 0)
    status = exit_status(wait_status)
    if error_line:
        code, _, message = error_line.decode(errors="replace").strip().partition(" ")
        _send(report_w, b"E" + message.encode(errors="replace"))
        status = int(code) if code.isdigit() else ExecError.exit_status
    if output >= 0:
        size = os.fstat(output).st_size
        _send(report_w, b"O" + os.pread(output, OUTPUT_LIMIT, max(0, size - OUTPUT_LIMIT)))
        os.close(output)
    return status


def _open_pty(root_fd: int) -> tuple[int, int]:
    """In the caller, before forking: a pseudo-terminal of the container's own devpts
    instance, from its /dev/ptmx looked up inside its root (symlinks resolved there, no magic
    links), checked to be the ptmx device (the container could have put anything there); the
    peer opened through the master (no path lookup in /dev/pts). The master never leaves
    the caller; the peer goes to the command."""
    import fcntl

    with Step("open the container's /dev/ptmx", ExecError.exit_status):
        master = linux.openat2(
            root_fd,
            "dev/ptmx",
            os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
            linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS,
        )
        try:
            st = os.fstat(master)
            if not (st.st_mode & 0o170000 == 0o020000 and st.st_rdev == PTMX_RDEV):
                raise ExecError("the container's /dev/ptmx is not the pseudo-terminal multiplexer")
            fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            if os.isatty(0):
                fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
        except BaseException:
            os.close(master)
            raise
    return master, slave


def _relay(report_r: int, sources: dict[int, int], stdin_to: int, master: int) -> bytes:
    """In the caller: copy the command's output (`sources`: our ends of its stdout and stderr
    pipes, or the pty's master, each to the caller's fd 1 or 2) and, with -i, the caller's
    stdin to `stdin_to` (the command's stdin pipe, or the master) until B has ended (EOF on its
    report pipe: the command has ended too). Then pass on what the command and its children
    wrote until then, and stop: a process it left running gets EPIPE (SIGPIPE) if it writes.

    Our ends are non-blocking, and the caller's stdin is read only once what was read before
    has been written, so neither side can fill a pipe while the other waits on it. The
    caller's fds keep their flags (shared with whoever else holds them): a write there may
    block, at the pace of their reader. If their reader has gone (EPIPE), the pipe that fed
    it is closed, so the command gets SIGPIPE as it would have writing there itself. Our ends
    are closed on return; the result is B's report."""
    import fcntl

    if master >= 0 and os.isatty(0):

        def resize(signum: int, frame: object) -> None:
            try:  # noqa: SIM105
                fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

        signal.signal(signal.SIGWINCH, resize)
    relay = _Relay(report_r, sources, stdin_to, master)
    try:
        relay.run()
        relay.drain()
    finally:
        relay.close()
        if master >= 0 and os.isatty(0):
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
    return b"".join(relay.report)


class _Relay:
    """The state of _relay's poll loop, one method per kind of event."""

    def __init__(self, report_r: int, sources: dict[int, int], stdin_to: int, master: int) -> None:
        self.report_r, self.sources, self.stdin_to, self.master = report_r, sources, stdin_to, master
        self.poller = select.poll()
        self.masks: dict[int, int] = {}
        self.report: list[bytes] = []
        self.pending = b""  # read from the caller's stdin, not yet written to stdin_to
        self.at_eof = False  # the caller's stdin has ended: pending is the last of it
        self.watch(report_r, select.POLLIN)
        for fd in sources:
            self.watch(fd, select.POLLIN)
        if stdin_to >= 0:
            self.watch(0, select.POLLIN)

    def watch(self, fd: int, mask: int) -> None:
        if mask:
            self.poller.register(fd, mask)  # registers or modifies
            self.masks[fd] = mask
        elif self.masks.pop(fd, 0):
            self.poller.unregister(fd)

    def stop_input(self) -> None:
        """Nothing more for the command's stdin: its pipe is closed (EOF); a master stays."""
        self.watch(0, 0)
        self.pending = b""
        if self.stdin_to in self.sources:
            self.watch(self.stdin_to, self.masks[self.stdin_to] & ~select.POLLOUT)
        elif self.stdin_to >= 0:
            self.watch(self.stdin_to, 0)
            os.close(self.stdin_to)
        self.stdin_to = -1

    def close_source(self, fd: int) -> None:
        if fd == self.stdin_to:
            self.stop_input()
        self.watch(fd, 0)
        del self.sources[fd]
        os.close(fd)

    def run(self) -> None:
        """Until B has ended (EOF on its report)."""
        while self.report_r in self.masks:
            for fd, event in self.poller.poll():
                if fd == self.report_r:
                    if not self.on_report():
                        break
                    continue
                if fd == 0 and 0 in self.masks:
                    self.on_stdin(event)
                    continue
                readable = event & (select.POLLIN | select.POLLHUP | select.POLLERR)
                if fd in self.sources and readable and not self.on_output(fd):
                    continue
                if fd == self.stdin_to and self.pending and event & (select.POLLOUT | select.POLLERR):
                    self.on_writable()

    def on_report(self) -> bool:
        chunk = os.read(self.report_r, 65536)
        self.report.append(chunk)
        if not chunk:
            self.watch(self.report_r, 0)  # B has ended
        return bool(chunk)

    def on_stdin(self, event: int) -> None:
        data = os.read(0, 65536) if event & (select.POLLIN | select.POLLHUP) else b""
        if not data:
            self.at_eof = True
            if self.stdin_to != self.master or os.isatty(0):
                self.stop_input()
                return
            data = b"\x04"  # end of input, as a terminal says it
        self.pending = data
        self.watch(0, 0)
        self.watch(self.stdin_to, self.masks.get(self.stdin_to, 0) | select.POLLOUT)

    def on_output(self, fd: int) -> bool:
        """Copy what `fd` has; False once it is closed (or nothing was there after all)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:  # nothing after all (poll says so again if need be)
            return False
        except OSError:  # EIO: every holder of the terminal has closed it
            data = b""
        if not (data and _write_out(self.sources[fd], data)):
            self.close_source(fd)  # EOF, or no one reads the caller's end any more
            return False
        return True

    def on_writable(self) -> None:
        try:
            self.pending = self.pending[os.write(self.stdin_to, self.pending) :]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the command has closed its stdin; the rest is dropped
            self.stop_input()
            return
        if not self.pending:
            if self.at_eof:
                self.stop_input()
            else:
                self.watch(self.stdin_to, self.masks[self.stdin_to] & ~select.POLLOUT)
                self.watch(0, select.POLLIN)

    def drain(self) -> None:
        """What the command (and its children) wrote before it ended, and no more (a process
        left behind could write forever): what a pipe holds now; a pty's line discipline and
        buffers, read until EAGAIN, at most PTY_BACKLOG (more than they can hold)."""
        for fd, dest in self.sources.items():
            left = PTY_BACKLOG if fd == self.master else _unread(fd)
            while left > 0:
                try:
                    data = os.read(fd, min(left, 65536))
                except OSError:  # EAGAIN: drained; EIO: closed
                    break
                if not data or not _write_out(dest, data):
                    break
                left -= len(data)

    def close(self) -> None:
        for fd in {*self.sources, self.stdin_to} - {-1}:
            os.close(fd)


def _unread(fd: int) -> int:
    """How many bytes a pipe holds."""
    import fcntl

    return int.from_bytes(fcntl.ioctl(fd, FIONREAD, b"\0\0\0\0"), "little")


def _write_out(fd: int, data: bytes) -> bool:
    """All of `data` to the caller's fd; False if it cannot take it (EPIPE: its reader is gone)."""
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:  # the caller's fd is non-blocking: wait as a blocking one would
            waiter = select.poll()
            waiter.register(fd, select.POLLOUT)
            waiter.poll()
        except OSError:
            return False
    return True


def _command(
    container: state.ContainerRecord,
    request: Request,
    environ: dict[str, str],
    stdio: tuple[int, int, int],
    sync_w: int,
) -> None:
    """C: from the container's pid namespace to execve. Never returns."""
    status, message = outcome_in_child(lambda: _exec(container, request, environ, stdio, sync_w), ExecError.exit_status)
    try:
        os.write(sync_w, f"{status} {message}".replace("\n", " ").encode(errors="replace"))
    finally:
        os._exit(status)


def _exec(
    container: state.ContainerRecord,
    request: Request,
    environ: dict[str, str],
    stdio: tuple[int, int, int],
    sync_w: int,
) -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)  # an ignored signal stays ignored across execve
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    # a session of its own: no controlling terminal but the pty of -t, none of the caller's
    os.setsid()
    if request.tty:
        import fcntl

        fcntl.ioctl(stdio[0], TIOCSCTTY, 0)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)  # every fd here is above 2 (B's own 0, 1, 2 are /dev/null)
    if request.user is not None:
        user, _, group = request.user.partition(":")
        ident = resolve_identity(user, group or None)
    else:
        ident = resolve_identity(container.user, container.group, container.group_add)
    if not request.capture:
        # the command's pipes (or pty) are its user's, as a login's terminal is: a program
        # that reopens /dev/stderr (`echo >/dev/stderr`, a log file linked there) can. Only
        # those: B's /dev/null (stdin without -i) is the host's.
        for fd in range(3):
            if request.tty or stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.fchown(fd, ident.uid, ident.gid)
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
    caps = container.caps if container.caps is not None else _default_caps()
    seccomp = confine(caps, linux.cap_last_cap(), container.no_new_privileges, ident)
    workdir = request.workdir or container.working_dir
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


def exec_command(args: list[str]) -> int:
    """`sdcontainer-launcher exec --unit UNIT -- CMD...`: a unit's ExecReload= (ReloadCmd=).
    The command runs as `sdcontainer exec UNIT CMD...` runs it; its stdout and stderr are
    copied to this process's (the journal) and its exit status is the reload's; 125 when it could not
    run (the container is not running, joining it failed), 2 for a bad command line."""
    import sys

    from sdcontainer.verbs import parse

    usage = "usage: exec --unit UNIT -- COMMAND [ARG...]"
    got = parse(args, options=("--unit",), usage=usage)
    unit = got.options.get("--unit")
    if unit is None or not got.command:
        raise UsageError(usage)
    try:
        record = state.read(unit)
    except RecordError as error:
        raise ExecError(str(error)) from None
    if record is None:
        raise ExecError(f"{unit} is not running; nothing to run {got.command[0]!r} in")
    request = Request(got.command, die_with_caller=True, prog=PROG)
    status = run(record, request)
    if request.error is not None:
        print(f"{PROG}: {request.error}", file=sys.stderr, flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    """`sdcontainer-launcher exec ...` (`argv` as in sys.argv[1:], the verb first or not), as
    sdcontainer.verbs runs it."""
    import sys

    from sdcontainer.verbs import run_verb

    args = sys.argv[1:] if argv is None else argv
    return run_verb("exec", args[1:] if args[:1] == ["exec"] else args)
