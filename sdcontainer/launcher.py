"""The program systemd runs as a container unit's ExecStart.

    <python> -I -m sdcontainer.launcher start [OPTIONS] -- CMD...
    <python> -I -m sdcontainer.launcher cleanup --unit UNIT   (older units' ExecStopPost=)
    <python> -I -m sdcontainer.launcher exec --unit UNIT -- CMD...   (ReloadCmd=, see sdcontainer.enter)

`start` builds the container and gets out of the way. The launcher forks an intermediate
process that unshares the pid namespace, forks the container's PID 1 and exits at once, so
the container's init is orphaned to the service manager. The init unshares the other
namespaces, sets up the root file system, resolves the user and the program, drops
privileges, then reports "set up" on a close-on-exec pipe and waits. The launcher tells
systemd `MAINPID=<init>` + READY=1 (only MAINPID with Notify=yes, where the container says
READY=1 itself through the socket bound into it and relayed by the launcher, and with
Notify=healthy, where the first passing health check does), waits for BARRIER=1 to be answered, and lets the init
exec; EOF on the pipe means it did, a line on it means it failed (the launcher prints that
line to the journal). The container's init is then the unit's main process and systemd's
own child, which systemd needs to wait for it after SIGTERM and to collect its exit status.
With Notify=yes the launcher does not exit yet: the container's socket is one of its own
(sdcontainer.notify.Relay, never the manager's, which would take MAINPID= from the container),
and it passes the container's messages on, filtered, until READY=1 (with WatchdogSec=, for
the container's whole life), or until the init exits.
Without $NOTIFY_SOCKET (by hand, or tests) the launcher is a subreaper instead, takes the
init back, stays in the foreground, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT and exits with
the container's status.

Exit status of `start`:
  0        under systemd: the container is running;
           in the foreground: the container's own exit status (128+N if killed by signal N)
  2        bad command line (UsageError)
  4        the container could not be set up (LaunchError): missing rootfs, mount refused, ...
  5        systemd could not be told (SystemdError)
  126      the command was found but cannot be executed (permission, format, magic link)
  127      the command was not found in the container
The same codes come back from the child over the pipe, so the parent's status names the
step that failed and the journal has one line saying why.

Ordering inside the child follows runc's, for reasons worth keeping:
  * /dev, /proc and /sys are fresh mounts made before anything from the image is looked at,
    and mount targets from the image are resolved with openat2(RESOLVE_IN_ROOT) and mounted
    by fd, so an image symlink can never redirect a mount outside the new root (see
    sdcontainer.rootfs);
  * the bounding set is dropped while CAP_SETPCAP is still held, then setgroups/setgid/
    setuid, then capset (for root inheritable and ambient empty, CVE-2022-29162; a non-root
    User= gets only AddCapability='s capabilities, ambient included, as podman gives them);
  * with NoNewPrivileges=yes the seccomp filter is installed last, right before execve, so
    it restricts only the container; with NoNewPrivileges=no the kernel demands
    CAP_SYS_ADMIN to install it, so it goes in before the capabilities are dropped;
  * every fd but stdio, the LISTEN_FDS sockets and the sync pipe (close-on-exec) is closed
    right before execve (CVE-2024-21626).

This module keeps the order of operations: building the Plan (sdcontainer.plan: everything
decided on the host, with the image found in the store or pulled first), the child's
sequence from unshare to execve, the fork and the hand-off to systemd, and the state file
(sdcontainer.errors.run_main turns errors into exit statuses). What the steps do lives below it:
sdcontainer.rootfs builds the root file system, sdcontainer.process resolves the user, the
environment and the program, sdcontainer.security holds the policy (capabilities, the seccomp
deny list, masked paths) as data, and sdcontainer.step turns a failed step into one line.
The launcher is the one module above both the store and sdcontainer.images: it decides to
pull, and imports the pulling code only then.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~4 ms at every start
import os
import stat
import sys

from sdcontainer import linux, state
from sdcontainer.errors import ImageError, LaunchError, SystemdError, UsageError, reason
from sdcontainer.keys import spec_from_argv
from sdcontainer.plan import Plan
from sdcontainer.process import (
    DEFAULT_PATH,
    build_environment,
    ensure_stdio,
    execve,
    exit_status,
    find_program,
    parse_env_file,
    read_all,
    resolve_identity,
)
from sdcontainer.record import replace
from sdcontainer.rootfs import (
    SCRATCH_DIR,
    TINI,
    build_root,
    chown_volumes,
    etc_hosts,
    etc_resolv_conf,
    pivot,
    resolve_mounts,
    zone_file,
)
from sdcontainer.security import capability_mask, confine, load_last, own_bounding_set, user_capabilities
from sdcontainer.spec import ContainerSpec
from sdcontainer.step import Step, launch_error, outcome_in_child
from sdcontainer.values import is_bridge, is_service_unit_name, joins_container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sdcontainer.notify import Notifier, Relay

PROG = state.PROG
STATE_DIR = state.STATE_DIR

READY_LINE = b"R\n"  # from the child: set up, waiting for the go to exec
GO = b"G"  # to the child, before the go pipe closes: EOF alone means the launcher died

# --- the container's name ------------------------------------------------------------------


def sanitize_hostname(name: str) -> str:
    """A container name made fit for a host name: letters, digits, '-' and '.', at most 63."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "-" for c in name)
    cleaned = cleaned[:63].strip("-.")
    return cleaned or "sdcontainer"


def container_name(spec: ContainerSpec) -> str:
    """ContainerName=, or what its default %N means: the unit name without its suffix.
    spec_to_argv leaves defaults out, so systemd never gets to expand that one."""
    if "%" not in spec.name:
        return spec.name
    unit = spec.unit if "%" not in spec.unit else ""
    return unit.rpartition(".")[0] or unit or "sdcontainer"


# --- the plan: everything decided on the host before any namespace exists ------------------


def make_plan(spec: ContainerSpec, foreground: bool, notifier: Notifier | None = None) -> Plan:
    """The Plan of a start, computed and checked here, in the parent, so that most mistakes
    are reported before any namespace or mount exists. With Image= the image is found in the
    store, or pulled first when its Pull= says so (image_for_start)."""
    rootfs: str | None = None
    layers: tuple[str, ...] | None = None
    image_id: str | None = None
    image_env: tuple[str, ...] = ()
    working_dir = spec.working_dir or "/"
    user, group = spec.user, spec.group
    command = spec.command
    if spec.image:
        from sdcontainer.store import layer_dirs

        record = image_for_start(spec, notifier)
        image_id = record["id"]
        layers = tuple(layer_dirs(record))
        # what the image's config says where the unit says nothing
        config = record.get("config") or {}
        command = _image_command(spec, config)
        image_env = tuple(item for item in _strings(config.get("Env")) if "=" in item)
        image_workdir = config.get("WorkingDir")
        if spec.working_dir is None and isinstance(image_workdir, str) and image_workdir.startswith("/"):
            working_dir = image_workdir
        image_user = config.get("User")
        if spec.user is None and isinstance(image_user, str) and image_user:
            user, _, image_group = image_user.partition(":")
            group = image_group or None
    elif not spec.rootfs:
        raise launch_error("no rootfs given")
    else:
        with Step(f"rootfs {spec.rootfs}"):
            if not stat.S_ISDIR(os.stat(spec.rootfs).st_mode):
                raise NotADirectoryError(20, "Not a directory")
        rootfs = spec.rootfs
    if not command:
        raise launch_error(
            f"no command: image {spec.image} has no Entrypoint or Cmd; set Exec=" if spec.image else "no command"
        )
    if spec.run_init:
        if not os.access(TINI, os.X_OK):
            raise launch_error(f"RunInit=yes needs {TINI} (Debian package tini): not found")
        command = ("/dev/init", "--", *command)
    mounts = resolve_mounts(spec)
    used = sorted({m.volume for m in mounts if m.volume})
    if used and is_service_unit_name(spec.unit):
        state.write_volumes(spec.unit, used)  # `sdcontainer volume rm` refuses them while the unit runs
    file_env: dict[str, str] = {}
    for path in spec.environment_files:
        file_env.update(parse_env_file(path))
    name = container_name(spec)
    if "%" not in spec.name:  # ContainerName=: no other running container may have it
        _check_name_free(name, spec.unit)
    hostname = spec.hostname or sanitize_hostname(name)
    pod_addresses: tuple[str, ...] = ()
    resolv_spec = spec
    if spec.pod:
        from sdcontainer.pods import pod_info

        # the pod's UTS and network namespaces: its name and addresses go in /etc/hosts
        hostname, pod_network, pod_addresses = pod_info(spec.pod)
        resolv_spec = replace(spec, network=pod_network)
    last_cap = linux.cap_last_cap()
    # A capability the launcher does not hold cannot be handed on; asking for it (CAP_ALL
    # on a host that lacks one) keeps what there is rather than failing in capset.
    caps = capability_mask(spec.add_capabilities, spec.drop_capabilities, last_cap) & own_bounding_set()
    listen_fds = _listen_fds()
    secret_files, secret_env = _read_secrets(spec) if spec.secrets else ((), ())
    addresses: tuple[str, ...] = ()
    gateway = None
    netns_fd, names = -1, hostname
    joined_addresses: tuple[str, ...] = ()
    hosts_file = None
    network_dns: tuple[str, ...] = ()
    if is_bridge(spec.network):
        from sdcontainer import network

        addresses = network.lease(spec)  # released by the unit's ExecStopPost= (network.release)
        gateway = network.gateways(spec.network)[0]
        hosts = etc_hosts(names, spec.add_hosts, addresses, gateway)
        # a named network's: the other containers' names too, kept up to date (sdcontainer.names)
        hosts_file = network.hosts_file(spec, name, hostname, addresses, hosts)
        network_dns = network.definition(spec.network).dns
    else:
        if joins_container(spec.network):
            netns_fd, joined_addresses, names, gateway = _join_plan(spec, hostname)
        elif pod_addresses:
            from sdcontainer import network

            gateway = network.gateways(resolv_spec.network)[0]
        hosts = etc_hosts(names, spec.add_hosts, joined_addresses or pod_addresses, gateway)
    return Plan(
        spec=spec,
        foreground=foreground,
        rootfs=rootfs,
        layers=layers,
        image_id=image_id,
        image_env=image_env,
        working_dir=working_dir,
        user=user,
        group=group,
        command=tuple(command),
        file_env=file_env,
        name=name,
        hostname=hostname,
        last_cap=last_cap,
        caps=caps,
        listen_fds=listen_fds,
        listen_fdnames=_listen_fdnames(listen_fds),
        hosts=hosts,
        hosts_file=hosts_file,
        resolv_conf=etc_resolv_conf(resolv_spec, network_dns),
        localtime=zone_file(spec.timezone) if spec.timezone else None,
        addresses=addresses,
        secret_files=secret_files,
        secret_env=secret_env,
        netns_fd=netns_fd,
        joined_addresses=joined_addresses,
        mounts=mounts,
    )


def _check_name_free(name: str, unit: str) -> None:
    """podman refuses a second container of one name (Quadlet's --replace would remove the
    first instead, stopping another unit's container behind its back): the start fails
    naming the unit whose running container has the name. Two starting at the same moment
    can both pass; `sdcontainer exec NAME` then refuses to guess."""
    for record in state.records():
        if record.name == name and record.unit != unit and os.path.exists(f"/proc/{record.pid}"):
            raise launch_error(f"ContainerName={name} is in use by the running container of {record.unit}")


def _read_secrets(spec: ContainerSpec) -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, str], ...]]:
    """Secret=: each value, from the unit's credentials (sdcontainer.secrets); a missing
    secret fails the start naming it, before any namespace exists."""
    from sdcontainer.secrets import read_for_start
    from sdcontainer.values import secret_ref

    files: list[tuple[str, bytes]] = []
    env: list[tuple[str, str]] = []
    for item in spec.secrets:
        ref = secret_ref(item)
        try:
            with Step(f"read secret {ref.name}"):
                data = read_for_start(ref.name)
        except LookupError:
            raise launch_error(
                f"secret {ref.name} does not exist: create it with 'sdcontainer secret create {ref.name} FILE'"
            ) from None
        if ref.type == "env":
            if b"\0" in data:
                raise launch_error(f"secret {ref.name}: a value with a NUL byte cannot be an environment variable")
            env.append((ref.destination, data.decode("utf-8", "surrogateescape")))
        else:
            files.append((item, data))
    return tuple(files), tuple(env)


def _join_plan(spec: ContainerSpec, hostname: str) -> tuple[int, tuple[str, ...], str, str | None]:
    """Network=container:NAME: the other container's netns (an fd), its addresses, the names
    for /etc/hosts at them (this container's host name and that one's) and the gateway."""
    from sdcontainer import network

    fd, other = network.join_target(spec.network)
    names = hostname if other.hostname in ("", hostname) else f"{hostname} {other.hostname}"
    gateway = network.gateways(other.network)[0] if is_bridge(other.network) else None
    return fd, other.addresses, names, gateway


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _image_command(spec: ContainerSpec, config: dict[str, object]) -> tuple[str, ...]:
    """Entrypoint and Cmd: the unit's, else the image's, by podman's rules (an Entrypoint=
    given drops the image's Cmd unless it is empty)."""
    entrypoint = spec.entrypoint if spec.entrypoint is not None else _strings(config.get("Entrypoint"))
    if spec.exec is not None:
        cmd = spec.exec
    elif not spec.entrypoint:
        cmd = _strings(config.get("Cmd"))
    else:
        cmd = ()
    return entrypoint + cmd


EXTEND_SECONDS = 30  # each EXTEND_TIMEOUT_USEC= while pulling asks for this much more time


def image_for_start(spec: ContainerSpec, notifier: Notifier | None = None) -> dict[str, Any]:
    """The record of the image a starting unit runs, pulled first when its Pull= says so.

    The common start reads two small files of the store (the name and the record) and
    imports nothing of pulling; sdcontainer.images comes in only when a pull is due (or
    Pull=never has to say the image is missing). Under systemd the start timeout is pushed
    back while the pull runs: every few seconds the launcher sends EXTEND_TIMEOUT_USEC=30s
    (and a STATUS= line), so a slow download is not killed by TimeoutStartSec=; skopeo's
    own timeouts end a stuck one."""
    from sdcontainer.store import find_image

    name = spec.image or ""
    if spec.pull in ("missing", "never"):
        try:
            record = find_image(name)
        except OSError as error:
            raise ImageError(f"image {name}: reading the store: {reason(error)}") from None
        if record is not None:
            return record  # the common start: two small files read, nothing else
    from sdcontainer.images import pull

    def tick() -> None:
        if notifier is not None:
            notifier.send(f"EXTEND_TIMEOUT_USEC={EXTEND_SECONDS * 1_000_000}")

    if notifier is not None:
        notifier.send(f"STATUS=Pulling image {name}\nEXTEND_TIMEOUT_USEC={EXTEND_SECONDS * 1_000_000}")
    if spec.pull != "never":
        print(f"sdcontainer-launcher: pulling image {name} (Pull={spec.pull})", file=sys.stderr, flush=True)
    from sdcontainer.values import duration_seconds

    record = pull(
        name,
        policy=spec.pull,
        retry=spec.retry if spec.retry is not None else 3,
        retry_delay=duration_seconds(spec.retry_delay) if spec.retry_delay else None,
        tick=tick,
        quiet=True,
    )
    if notifier is not None:
        notifier.send("STATUS=")
    return record


# sd_listen_fds' own bound on LISTEN_FDS; no socket unit comes near it
_LISTEN_FDS_MAX = 0x7FFFFFFF - 3


def _listen_fds() -> int:
    """Socket activation: the fds systemd passed to *this* process (sd_listen_fds rules).
    LISTEN_PID must name this process: variables inherited from some other activated
    process (a shell started by one, `systemd-run` from a socket unit's service) describe
    fds that are not ours, and passing them on would hand the container whatever happens to
    sit at fd 3. Each of fds 3..3+N-1 must be open; they are made inheritable here and are
    the only fds besides stdio that survive into the container (_close_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    value = os.environ.get("LISTEN_FDS", "0")
    if not value.isdigit() or int(value) > _LISTEN_FDS_MAX:
        raise launch_error(f"LISTEN_FDS={value!r} is not a number of fds")
    count = int(value)
    for fd in range(3, 3 + count):
        with Step(f"LISTEN_FDS={count}: fd {fd}"):
            os.fstat(fd)
        os.set_inheritable(fd, True)
    return count


def _listen_fdnames(count: int) -> str | None:
    """LISTEN_FDNAMES as systemd set it: one name per fd, colon-separated (FileDescriptorName=,
    else the socket unit's name). A list of another length describes other fds: refused, as
    sd_listen_fds_with_names refuses it."""
    names = os.environ.get("LISTEN_FDNAMES") if count else None
    if names is not None and len(names.split(":")) != count:
        raise launch_error(f"LISTEN_FDNAMES={names!r} does not name LISTEN_FDS={count} fds")
    return names


# --- the child: from a fresh pid namespace to execve ---------------------------------------


def _close_fds(keep_below: int, sync_fd: int) -> None:
    """Close everything but stdio, the LISTEN_FDS block 3..keep_below-1 and the sync pipe
    (close-on-exec: gone at execve)."""
    if sync_fd < keep_below:  # opened after the LISTEN_FDS block was checked: cannot be in it
        raise launch_error(f"internal error: sync pipe fd {sync_fd} inside the LISTEN_FDS block")
    os.closerange(keep_below, sync_fd)
    os.closerange(sync_fd + 1, 0x7FFFFFFF)


def container_main(plan: Plan, sync_fd: int, go_fd: int) -> None:
    """The child's whole life: mounts, pivot, identity, privileges, execve. Raises on failure."""
    spec = plan.spec
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)  # python ignores SIGPIPE/SIGXFSZ; ignoring survives exec
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWCGROUP
    if spec.pod:
        from sdcontainer.pods import join

        with Step(f"join the namespaces of pod {spec.pod}"):
            join(spec.pod)  # net, ipc and uts: the pod's, held by its bind mounts
    else:
        flags |= linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        if plan.netns_fd >= 0:
            with Step(f"join the network namespace of Network={spec.network}"):
                linux.setns(plan.netns_fd, linux.CLONE_NEWNET)
        elif spec.network != "host":
            flags |= linux.CLONE_NEWNET  # a bridge network's veth comes in from the launcher
    # nothing in the container may open this process's /proc/PID/exe (the host's python)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    with Step("unshare namespaces"):
        linux.unshare(flags)
    os.umask(0)
    pivot(build_root(plan))
    if plan.working_dir != (spec.working_dir or "/"):
        with Step(f"create the image's working directory {plan.working_dir}"):
            os.makedirs(plan.working_dir, 0o755, exist_ok=True)  # as docker does: as root, in the overlay
    ident = resolve_identity(plan.user, plan.group, spec.group_add)
    chown_volumes(ident.uid, ident.gid)
    env = build_environment(plan, ident.home, os.environ)

    user_caps = user_capabilities(spec.add_capabilities, plan.caps, plan.last_cap)
    seccomp = confine(plan.caps, plan.last_cap, spec.no_new_privileges, ident, user_caps)
    workdir = plan.working_dir
    with Step(f"working directory {workdir}"):
        fd = linux.openat2(linux.AT_FDCWD, workdir, os.O_PATH | os.O_DIRECTORY, linux.RESOLVE_NO_MAGICLINKS)
        try:
            os.fchdir(fd)
        finally:
            os.close(fd)
        if not os.getcwd().startswith("/"):  # "(unreachable)/...": outside the root
            raise launch_error(f"working directory {workdir}: outside the container")
    program = find_program(plan.command[0], env.get("PATH", DEFAULT_PATH))
    # Everything that can fail has been done: tell the launcher, and wait until it has told
    # systemd who we are (it writes GO and closes its end of go_fd) before running anything of the image's.
    os.write(sync_fd, READY_LINE)
    go = b""
    while chunk := os.read(go_fd, 64):
        go += chunk
    os.close(go_fd)
    if go != GO:
        # killed mid-setup (its network half made, systemd not told): never run the payload
        raise launch_error("the launcher ended before the container could start")
    if plan.foreground:
        # Only now: until the intermediate process exited and we were reparented to the
        # launcher (a subreaper in this mode), the "parent" whose death counts was that one.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o022)
    if spec.log_driver == "none":
        _discard_output()
    _close_fds(3 + plan.listen_fds, sync_fd)
    load_last(seccomp)
    execve(program, list(plan.command), env, PROG)


def _discard_output() -> None:
    """LogDriver=none: the container's stdout and stderr go nowhere (the container's own
    /dev/null), from the last moment on: every error before the exec still reached the journal."""
    with Step("LogDriver=none: open /dev/null"):
        null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _child(plan: Plan, sync_fd: int, go_fd: int) -> None:
    """Run container_main; on any failure report one line on the pipe and _exit."""
    status, message = outcome_in_child(lambda: container_main(plan, sync_fd, go_fd), LaunchError.exit_status)
    if os.environ.get("SDCONTAINER_DEBUG") == "1":
        import traceback

        traceback.print_exc()
    line = f"{status} {message}".replace("\n", " ") + "\n"
    try:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a gone launcher is EPIPE, not death
        os.write(sync_fd, line.encode(errors="replace"))
    except OSError:
        # Under systemd the launcher leaves once the container may exec: an exec that fails
        # after that is the container's to report, in the journal, as its exit status.
        try:  # noqa: SIM105 - contextlib costs ~1 ms of import on every start
            os.write(2, f"{PROG}: {message}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(status)


def _intermediate(plan: Plan, sync_w: int, pid_w: int, go_r: int) -> None:
    """Unshare the pid namespace, fork its PID 1, report that pid, exit.

    Exiting at once is the point: the container's init is orphaned and reparented to the
    service manager (or, in the foreground, to the launcher, a subreaper), so when systemd
    reads MAINPID= the process is its own child. A main PID that is not its child is
    "alien" to systemd 252: at stop it gets SIGTERM and, without any wait, SIGKILL, and if
    it had already exited its status is lost and the unit reported as a success.
    """
    status = LaunchError.exit_status
    try:
        linux.unshare(linux.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            os.close(pid_w)
            _child(plan, sync_w, go_r)
        os.write(pid_w, str(pid).encode())
        status = 0
    except BaseException as error:  # noqa: B036 - nothing may escape a forked child
        why = reason(error) if isinstance(error, OSError) else repr(error)
        os.write(sync_w, f"{status} unshare the pid namespace and fork: {why}\n".encode())
    finally:
        os._exit(status)


# --- the parent ----------------------------------------------------------------------------


def _read_line(fd: int) -> bytes:
    """One line from the child (written with a single write, so atomic), or b"" at EOF."""
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(fd, 4096)):
        data += chunk
    return data


_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def _wait_foreground(pid: int) -> int:
    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return  # already gone; waitpid will say how

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    _, wait_status = os.waitpid(pid, 0)
    return exit_status(wait_status)


def write_state(plan: Plan, pid: int, ports: tuple[str, ...] = ()) -> None:
    import time

    spec = plan.spec
    record = state.ContainerRecord(
        name=plan.name,
        unit=spec.unit,
        pid=pid,
        rootfs=plan.rootfs,
        image=spec.image,
        image_id=plan.image_id,
        command=tuple(plan.command),
        hostname=plan.hostname,
        network=spec.network,
        labels=_labels(spec),
        annotations=tuple(dict(item.split("=", 1) for item in spec.annotations).items()),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # UTC; `sdcontainer list` parses it
        # what `sdcontainer exec` and health checks need to be no more privileged than the init
        user=plan.user,  # the image's User= when the file has none
        group=plan.group,
        group_add=spec.group_add,
        caps=plan.caps,
        no_new_privileges=spec.no_new_privileges,
        working_dir=plan.working_dir,
        notify=spec.notify,
        notify_socket=os.environ.get("NOTIFY_SOCKET"),
        addresses=plan.addresses or plan.joined_addresses,
        ports=ports,
    )
    state.write(record)


AUTO_UPDATE_LABEL = "io.containers.autoupdate"  # podman's: what `sdcontainer auto-update` looks for


def _labels(spec: ContainerSpec) -> tuple[tuple[str, str], ...]:
    """Label= (the last of a key wins), and AutoUpdate= as podman records it, a label."""
    labels = dict(item.split("=", 1) for item in spec.labels)
    if spec.auto_update:
        labels[AUTO_UPDATE_LABEL] = spec.auto_update
    return tuple(labels.items())


def start(spec: ContainerSpec) -> int:
    ensure_stdio()
    notify_socket = os.environ.get("NOTIFY_SOCKET")
    notifier = None
    if notify_socket:
        from sdcontainer.notify import Notifier

        with Step(f"connect to NOTIFY_SOCKET={notify_socket}", SystemdError.exit_status):
            notifier = Notifier(notify_socket)
    plan = make_plan(spec, foreground=not notify_socket, notifier=notifier)
    if not (plan.foreground and plan.addresses):
        return _start(plan, notifier)
    # by hand, without systemd (and so without ExecStopPost=): the launcher releases the
    # address it leased and the ports it published itself, when the container is gone
    from sdcontainer import network

    try:
        return _start(plan, notifier)
    finally:
        network.release(spec.unit)


def _start(plan: Plan, notifier: Notifier | None) -> int:
    spec = plan.spec
    relay = None
    if notifier is not None and spec.notify == "yes":
        from sdcontainer.notify import Relay

        with Step("create the container's notification socket"):
            relay = Relay(state.notify_dir(spec.unit))
        plan = replace(plan, notify_socket=relay.path, watchdog_usec=_watchdog_usec())
    pid, sync_r, go_w = _fork_container(plan, warm_hand_off=notifier is not None)
    ports: tuple[str, ...] = ()
    if plan.addresses and pid is not None:
        ports = _connect(plan, pid)
    pidfd = -1
    if notifier is not None and pid is not None:
        try:
            if relay is not None:
                pidfd = linux.pidfd_open(pid)  # the relay ends with the container's init
            write_state(plan, pid, ports)
            # Notify=yes: the container says READY=1 itself; Notify=healthy: the health check does
            notifier.send(f"MAINPID={pid}\nREADY=1" if spec.notify == "no" else f"MAINPID={pid}")
            if not notifier.barrier(5.0):
                raise TimeoutError(110, "no answer to BARRIER=1 within 5 s")
        except OSError as error:
            os.kill(pid, signal.SIGKILL)
            state.remove(spec.unit)
            raise SystemdError(f"telling systemd the container's pid: {reason(error)}") from None
    os.write(go_w, GO)
    os.close(go_w)
    if not plan.foreground:
        # Done: systemd supervises the container now. Waiting to see the execve would keep
        # this process in the unit after a quick payload exits (systemd then SIGKILLs it);
        # the container reports a failed execve itself, as its exit status and in the journal.
        # os._exit: the interpreter's teardown would keep us around for a few more ms.
        sys.stdout.flush()
        sys.stderr.flush()
        if relay is not None and notifier is not None:
            # open here, the read end would swallow the line of an execve that fails from
            # now on, which the container writes to the journal when nobody reads it
            os.close(sync_r)
            _relay(relay, notifier, pidfd, plan)
        os._exit(0)
    rest = read_all(sync_r)
    os.close(sync_r)
    if rest:
        _fail_start(rest, pid, plan.foreground)
    if pid is not None:
        return _wait_foreground(pid)
    return 0


def _connect(plan: Plan, pid: int) -> tuple[str, ...]:
    """A bridge network: the container's init has unshared its netns and waits; give it
    its eth0 (sdcontainer.network). On failure the init is killed before it ran anything.
    Returns the published ports, for the record."""
    from sdcontainer import network

    spec = plan.spec
    try:
        with Step(f"connect the container to network {spec.network}"):
            return tuple(network.port_text(p) for p in network.connect(spec, f"/proc/{pid}/ns/net", plan.addresses))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.kill(pid, signal.SIGKILL)
        if plan.foreground:
            os.waitpid(pid, 0)
        raise


def _fork_container(plan: Plan, *, warm_hand_off: bool) -> tuple[int | None, int, int]:
    """Fork the intermediate process (which forks the container's init) and wait until the
    init is set up. Returns the init's pid, the read end of the sync pipe (EOF once it
    exec'd) and the write end of the go pipe, whose closing lets it exec."""
    os.makedirs(SCRATCH_DIR, 0o700, exist_ok=True)
    # sync: child -> launcher, READY_LINE or one error line; EOF when it exec'd (cloexec).
    # pid: the intermediate reports the container's pid. go: the launcher closes its end
    # once systemd knows the container's pid; only then does the container exec.
    sync_r, sync_w = os.pipe()
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    if plan.foreground:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # the orphaned container comes back to us
    # Signals that arrive before the parent's handlers are set wait instead of killing it
    # (which would leave the child orphaned mid-setup).
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    middle = os.fork()
    if middle == 0:
        os.close(sync_r)
        os.close(pid_r)
        os.close(go_w)
        _intermediate(plan, sync_w, pid_w, go_r)
    for fd in (sync_w, pid_w, go_r):
        os.close(fd)
    if plan.netns_fd >= 0:
        os.close(plan.netns_fd)  # the init has its copy, which it joins
    if warm_hand_off:
        # Loaded while the child builds the container, on the other CPU, rather than after
        # its READY line, where the hand-off to systemd waits for it: the JSON encoder of
        # the record (state.to_json), a shared library (~0.25 ms to load here).
        import _json  # noqa: F401
    os.waitpid(middle, 0)
    reported = read_all(pid_r)
    os.close(pid_r)
    pid = int(reported) if reported.isdigit() else None
    line = _read_line(sync_r)
    if line != READY_LINE:
        _fail_start(line + read_all(sync_r), pid, plan.foreground)
    return pid, sync_r, go_w


def _watchdog_usec() -> str | None:
    """WatchdogSec= of the unit, as systemd told this process (WATCHDOG_USEC, for WATCHDOG_PID
    if it names one): the container gets it, and the relay stays to pass its pings on."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    owner = os.environ.get("WATCHDOG_PID")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        return None
    return usec if owner is None or owner == str(os.getpid()) else None


def _relay(relay: Relay, notifier: Notifier, pidfd: int, plan: Plan) -> None:
    """Notify=yes: what this process does once the container runs. It stays in the unit's
    cgroup (not its main process, which the container's init is now) and passes the
    container's messages on through the relay until READY=1, or with a watchdog for the
    container's whole life. Nothing of the container's may stay open here: the sockets of
    socket activation (an Accept=yes connection would never see EOF) are closed."""
    for fd in range(3, 3 + plan.listen_fds):
        try:  # noqa: SIM105
            os.close(fd)
        except OSError:
            pass
    # a stop with KillMode=control-group sends SIGTERM here too: die of it, as by default
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        relay.serve(notifier, pidfd, watchdog=plan.watchdog_usec is not None)
    except Exception as error:  # noqa: BLE001 - the container runs on; say why its messages stop
        print(f"{PROG}: relaying the container's notifications: {error}", file=sys.stderr, flush=True)


def _fail_start(report: bytes, pid: int | None, foreground: bool) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if pid is not None and foreground:
        os.waitpid(pid, 0)  # under systemd it is the manager's child now, and reaped there
    code, _, message = report.decode(errors="replace").strip().partition(" ")
    if not code.isdigit():
        code, message = str(LaunchError.exit_status), "the container's init died during setup"
    raise launch_error(message, int(code))


def _usage() -> str:
    from sdcontainer.keys import KEYS

    lines = [
        f"usage: {PROG} start [OPTIONS] -- COMMAND [ARG...]",
        f"       {PROG} cleanup --unit UNIT",
        f"       {PROG} wait-port [ADDRESS:]PORT [--timeout SECONDS] [-- PROGRAM [ARG...]]",
        f"       {PROG} health --unit UNIT [--retries N] [--timeout MS] [--start-period MS]",
        "                 [--on-failure none|kill|restart|stop] [--notify-healthy] -- CHECK...",
        f"       {PROG} exec --unit UNIT -- COMMAND [ARG...]",
        f"       {PROG} pull [--tag NAME] [--all-tags] [--policy P] [registry options] -- IMAGE",
        "                 (the NAME-image.service of a .image file, see sdcontainer.image(5))",
        f"       {PROG} release --unit UNIT",
        f"       {PROG} network-create [--file NAME.network] --name NETWORK [OPTIONS] (sdcontainer.network(5))",
        f"       {PROG} network-remove NETWORK",
        "",
        "Runs a container as the calling systemd unit's main process; without $NOTIFY_SOCKET it",
        "stays in the foreground and exits with the container's status. Options (one per",
        "[Container] key, see sdcontainer.container(5)):",
        "  --unit UNIT",
    ]
    lines += [f"  {key.option} {key.metavar}" for key in KEYS if key.option]
    return "\n".join(lines)


def start_command(args: list[str]) -> int:
    """`start [OPTIONS] -- COMMAND...`, the verb of sdcontainer.verbs that units' ExecStart= runs."""
    return start(spec_from_argv(args))


def help_command(args: list[str]) -> int:
    """`--help` (or `VERB --help`), and no verb at all: the usage, on stdout."""
    print(_usage())
    return 0 if args else UsageError.exit_status


def main(argv: list[str] | None = None) -> int:
    """`python -m sdcontainer.launcher VERB ...`, what units run where the libexec script is
    not installed: the script's dispatch (sdcontainer.verbs), which maps errors to statuses."""
    from sdcontainer.verbs import main as verbs_main

    return verbs_main(argv)


if __name__ == "__main__":
    # the verb table imports sdcontainer.launcher for `start`: this module, not a second copy
    sys.modules.setdefault("sdcontainer.launcher", sys.modules[__name__])
    sys.exit(main())
