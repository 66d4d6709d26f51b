"""The program systemd runs as a container unit's ExecStart (and ExecStopPost).

    <python> -I -m sdcontainer.launcher start [OPTIONS] -- CMD...
    <python> -I -m sdcontainer.launcher cleanup --unit UNIT

`start` builds the container and gets out of the way. The launcher forks an intermediate
process that unshares the pid namespace, forks the container's PID 1 and exits at once, so
the container's init is orphaned to the service manager. The init unshares the other
namespaces, sets up the root file system, resolves the user and the program, drops
privileges, then reports "set up" on a close-on-exec pipe and waits. The launcher tells
systemd `MAINPID=<init>` + READY=1, waits for BARRIER=1 to be answered, and lets the init
exec; EOF on the pipe means it did, a line on it means it failed (the launcher prints that
line to the journal). The container's init is then the unit's main process and systemd's
own child, which systemd needs to wait for it after SIGTERM and to collect its exit status.
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
    by fd, so an image symlink can never redirect a mount outside the new root;
  * the bounding set is dropped while CAP_SETPCAP is still held, then setgroups/setgid/
    setuid, then capset (inheritable and ambient always empty, CVE-2022-29162);
  * with NoNewPrivileges=yes the seccomp filter is installed last, right before execve, so
    it restricts only the container; with NoNewPrivileges=no the kernel demands
    CAP_SYS_ADMIN to install it, so it goes in before the capabilities are dropped;
  * every fd but stdio, the LISTEN_FDS sockets and the sync pipe (close-on-exec) is closed
    right before execve (CVE-2024-21626).

The policy itself (capabilities, the seccomp deny list, masked paths) is data in
sdcontainer.security.
"""

from __future__ import annotations

import os
import signal
import stat
import sys

from sdcontainer import linux
from sdcontainer.errors import LaunchError, SdcontainerError, SystemdError, UsageError
from sdcontainer.keys import spec_from_argv
from sdcontainer.process import (
    DEFAULT_PATH,
    EXIT_CANNOT_EXEC,
    EXIT_NOT_FOUND,
    build_environment,
    find_program,
    parse_env_file,
    resolve_identity,
)
from sdcontainer.security import MASKED_PATHS, READONLY_PATHS, capability_mask, own_bounding_set, seccomp_program
from sdcontainer.spec import ContainerSpec
from sdcontainer.step import Step, launch_error, reason

PROG = "sdcontainer-launcher"
RUN_DIR = "/run/sdcontainer"
STATE_DIR = f"{RUN_DIR}/containers"
# An empty host directory the container's scratch tmpfs is mounted on; the mount exists only
# in the container's private mount namespace, so the host never sees anything there.
SCRATCH_DIR = f"{RUN_DIR}/scratch"
TINI = "/usr/bin/tini-static"

READY_LINE = b"R\n"  # from the child: set up, waiting for the go to exec

# --- small helpers -------------------------------------------------------------------------


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


class Plan:
    """What the child needs, computed (and checked) in the parent so that most mistakes are
    reported before any namespace or mount exists."""

    def __init__(self, spec: ContainerSpec, foreground: bool) -> None:
        self.spec = spec
        self.foreground = foreground
        if not spec.rootfs:
            raise launch_error("no rootfs given")
        with Step(f"rootfs {spec.rootfs}"):
            if not stat.S_ISDIR(os.stat(spec.rootfs).st_mode):
                raise NotADirectoryError(20, "Not a directory")
        self.rootfs = spec.rootfs
        self.command = list(spec.command)
        if spec.run_init:
            if not os.access(TINI, os.X_OK):
                raise launch_error(f"RunInit=yes needs {TINI} (Debian package tini): not found")
            self.command = ["/dev/init", "--", *self.command]
        for volume in spec.volumes:
            with Step(f"volume source {volume.source}"):
                os.stat(volume.source)
        self.file_env: dict[str, str] = {}
        for path in spec.environment_files:
            self.file_env.update(parse_env_file(path))
        self.name = container_name(spec)
        self.hostname = spec.hostname or sanitize_hostname(self.name)
        self.last_cap = linux.cap_last_cap()
        # A capability the launcher does not hold cannot be handed on; asking for it (CAP_ALL
        # on a host that lacks one) keeps what there is rather than failing in capset.
        self.caps = capability_mask(spec.add_capabilities, spec.drop_capabilities, self.last_cap)
        self.caps &= own_bounding_set()
        self.listen_fds = _listen_fds()
        self.listen_fdnames = os.environ.get("LISTEN_FDNAMES") if self.listen_fds else None
        self.hosts = (
            "127.0.0.1\tlocalhost localhost.localdomain\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{self.hostname}\n"
        )
        self.resolv_conf = _resolv_conf(spec.network)


def _resolv_conf(network: str) -> str:
    if network != "host":
        return "# sdcontainer: Network=none, this container has no network and no name servers\n"
    path = "/etc/resolv.conf"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        # The systemd-resolved stub works in the host netns too, but the upstream list is what
        # podman uses, and keeps working if the container later gets a network of its own.
        if any(line.split()[:2] == ["nameserver", "127.0.0.53"] for line in text.splitlines()):
            with open("/run/systemd/resolve/resolv.conf", encoding="utf-8", errors="replace") as f:
                text = f.read()
    except FileNotFoundError:
        text = ""
    return text


def _listen_fds() -> int:
    """Socket activation: the fds systemd passed to *this* process (sd_listen_fds rules)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    value = os.environ.get("LISTEN_FDS", "0")
    if not value.isdigit():
        raise launch_error(f"LISTEN_FDS={value!r} is not a number")
    count = int(value)
    for fd in range(3, 3 + count):
        with Step(f"LISTEN_FDS={count}: fd {fd}"):
            os.fstat(fd)
        os.set_inheritable(fd, True)
    return count


# --- the child: from a fresh pid namespace to execve ---------------------------------------


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, path: str, create: str | None = None, no_symlinks: bool = False,
                 _depth: int = 0) -> int:
    """An O_PATH fd for `path` resolved as if `root_fd` were `/` (symlinks in the image stay
    inside it; /proc magic links refused). `create` = "dir" or "file" makes what is missing
    (in the overlay's upper layer, never in the source tree), following a dangling symlink
    inside the root the way runc's securejoin does."""
    resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
    if no_symlinks:
        resolve |= linux.RESOLVE_NO_SYMLINKS
    relative = "/".join(p for p in path.split("/") if p) or "."
    try:
        return linux.openat2(root_fd, relative, os.O_PATH, resolve)
    except FileNotFoundError:
        if create is None:
            raise
    if _depth > 40:
        raise OSError(40, os.strerror(40), path)  # ELOOP, as the kernel would say
    parts = relative.split("/")
    for i, name in enumerate(parts):
        try:
            os.close(linux.openat2(root_fd, "/".join(parts[: i + 1]), os.O_PATH, resolve))
            continue
        except FileNotFoundError:
            pass
        parent_path = "/".join(parts[:i]) or "."
        parent = linux.openat2(root_fd, parent_path, os.O_PATH | os.O_DIRECTORY, resolve)
        try:
            try:
                link = os.readlink(name, dir_fd=parent)
            except OSError:
                link = None
            if link is not None and not no_symlinks:
                # Dangling: create where it points, then resolve the whole path again.
                base = "" if link.startswith("/") else parent_path
                rest = "/".join(parts[i + 1 :])
                target = "/".join(p for p in (base, link, rest) if p)
                os.close(open_in_root(root_fd, target, create, no_symlinks, _depth + 1))
                break
            if i == len(parts) - 1 and create == "file":
                flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(name, flags, 0o644, dir_fd=parent))
            else:
                os.mkdir(name, 0o755, dir_fd=parent)
        finally:
            os.close(parent)
    return linux.openat2(root_fd, relative, os.O_PATH, resolve)


def _bind(source: str, root_fd: int, target: str, kind: str, attr_set: int = 0, attr_clr: int = 0,
          recursive: bool = False) -> None:
    """Bind `source` (a host path) onto `target` inside the root, with mount attributes set on
    the detached copy before it becomes visible."""
    tree = linux.open_tree(source, linux.OPEN_TREE_CLONE | (linux.AT_RECURSIVE if recursive else 0))
    try:
        if attr_set or attr_clr:
            linux.mount_setattr(tree, attr_set, attr_clr, recursive=recursive)
        target_fd = open_in_root(root_fd, target, create=kind)
        try:
            linux.move_mount(tree, target_fd, filename=target)
        finally:
            os.close(target_fd)
    finally:
        os.close(tree)


_TMPFS_FLAGS = {
    "ro": (linux.MS_RDONLY, 0), "rw": (0, linux.MS_RDONLY),
    "nosuid": (linux.MS_NOSUID, 0), "suid": (0, linux.MS_NOSUID),
    "nodev": (linux.MS_NODEV, 0), "dev": (0, linux.MS_NODEV),
    "noexec": (linux.MS_NOEXEC, 0), "exec": (0, linux.MS_NOEXEC),
    "noatime": (linux.MS_NOATIME, 0), "relatime": (linux.MS_RELATIME, 0),
    "strictatime": (linux.MS_STRICTATIME, 0), "sync": (linux.MS_SYNCHRONOUS, 0),
}  # fmt: skip


def tmpfs_flags(options: tuple[str, ...]) -> tuple[int, str]:
    """Mount flags and the data string for a Tmpfs= entry; nosuid,nodev,noexec by default."""
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    data = []
    for option in options:
        if option in _TMPFS_FLAGS:
            on, off = _TMPFS_FLAGS[option]
            flags = (flags | on) & ~off
        else:
            data.append(option)
    return flags, ",".join(data)


def _mount_tmpfs(root_fd: int, target: str, flags: int, data: str) -> None:
    with Step(f"mount tmpfs on {target}"):
        fd = open_in_root(root_fd, target, create="dir")
        try:
            linux.mount("tmpfs", _fd_path(fd), "tmpfs", flags, data or None)
        finally:
            os.close(fd)


def _make_dev(root: str, stdin_is_tty: bool) -> None:
    dev = f"{root}/dev"
    with Step("mount tmpfs on /dev"):
        linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k")
    with Step("populate /dev"):
        for name, major, minor in (
            ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0),
        ):  # fmt: skip
            os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        for name, target in (
            ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"),
        ):  # fmt: skip
            os.symlink(target, f"{dev}/{name}")
        for name in ("pts", "shm", "mqueue"):
            os.mkdir(f"{dev}/{name}", 0o755)
    if stdin_is_tty:
        with Step("bind the terminal on /dev/console"):
            os.close(os.open(f"{dev}/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            linux.mount(os.ttyname(0), f"{dev}/console", None, linux.MS_BIND)
    with Step("mount devpts on /dev/pts"):
        linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620,gid=5")
    nosuid_nodev_noexec = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    with Step("mount tmpfs on /dev/shm"):
        linux.mount("shm", f"{dev}/shm", "tmpfs", nosuid_nodev_noexec, "mode=1777,size=65536k")
    try:
        linux.mount("mqueue", f"{dev}/mqueue", "mqueue", nosuid_nodev_noexec)
    except OSError as error:
        if error.errno != 19:  # ENODEV: a kernel without POSIX message queues
            raise launch_error(f"mount mqueue on /dev/mqueue: {reason(error)}") from None
        os.rmdir(f"{dev}/mqueue")


def _mount_sys(root: str) -> None:
    ro = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    try:
        linux.mount("sysfs", f"{root}/sys", "sysfs", ro)
        return
    except OSError as error:
        if error.errno not in (1, 13):  # EPERM, EACCES: sysfs refused in this netns
            raise launch_error(f"mount sysfs on /sys: {reason(error)}") from None
    # Like podman with the host's network: the host's /sys, read-only all the way down.
    with Step("bind /sys read-only"):
        tree = linux.open_tree("/sys", linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE)
        try:
            attrs = linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV
            linux.mount_setattr(tree, attrs | linux.MOUNT_ATTR_NOEXEC, recursive=True)
            target = os.open(f"{root}/sys", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                linux.move_mount(tree, target, filename="/sys")
            finally:
                os.close(target)
        finally:
            os.close(tree)


def _mask_paths(root: str) -> None:
    """Hide kernel information podman hides. These paths are inside the fresh proc and sysfs
    mounts, which the image cannot have planted symlinks in."""
    for path in MASKED_PATHS:
        full = root + path
        try:
            mode = os.lstat(full).st_mode
        except FileNotFoundError:
            continue
        with Step(f"mask {path}"):
            if stat.S_ISDIR(mode):
                linux.mount("tmpfs", full, "tmpfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV
                            | linux.MS_NOEXEC, "size=0")
            else:
                linux.mount(f"{root}/dev/null", full, None, linux.MS_BIND)
    flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV
    for path in READONLY_PATHS:
        full = root + path
        if not os.path.lexists(full):
            continue
        with Step(f"make {path} read-only"):
            linux.mount(full, full, None, linux.MS_BIND | linux.MS_REC)
            linux.mount(None, full, None, flags | linux.MS_NOEXEC)


def _write_etc_files(plan: Plan, root_fd: int, scratch: str) -> None:
    """/etc/hostname, hosts and resolv.conf: written in the scratch tmpfs and bind-mounted
    over the image's, so the source tree is never written and a symlink in the image
    (resolv.conf -> ../run/...) cannot send them elsewhere."""
    files = {"hostname": plan.hostname + "\n", "hosts": plan.hosts, "resolv.conf": plan.resolv_conf}
    os.mkdir(f"{scratch}/etc", 0o755)
    with Step("create /etc"):
        etc = open_in_root(root_fd, "/etc", create="dir")
    try:
        for name, content in files.items():
            source = f"{scratch}/etc/{name}"
            with open(source, "w", encoding="utf-8") as f:
                f.write(content)
            os.chmod(source, 0o644)
            with Step(f"bind /etc/{name}"):
                try:
                    mode = os.stat(name, dir_fd=etc, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    mode = None
                if mode is not None and not stat.S_ISREG(mode):
                    os.unlink(name, dir_fd=etc)  # a symlink (or other) in the overlay: replace it
                    mode = None
                if mode is None:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=etc))
                tree = linux.open_tree(source, linux.OPEN_TREE_CLONE)
                target = linux.openat2(etc, name, os.O_PATH, linux.RESOLVE_NO_SYMLINKS)
                try:
                    linux.move_mount(tree, target, filename=f"/etc/{name}")
                finally:
                    os.close(target)
                    os.close(tree)
    finally:
        os.close(etc)


def build_root(plan: Plan) -> str:
    """Every mount of the container, made in its private mount namespace; returns the new root."""
    spec = plan.spec
    with Step("make the mount namespace private"):
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    scratch = SCRATCH_DIR
    with Step(f"mount tmpfs on {scratch}"):
        # The overlay's upper layer: the container's writes live in memory, charged to the
        # unit's memory cgroup, and vanish with the mount namespace.
        linux.mount("tmpfs", scratch, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0700")
        for name in ("lower", "upper", "work", "root"):
            os.mkdir(f"{scratch}/{name}", 0o755)
    root = f"{scratch}/root"
    with Step(f"bind rootfs {plan.rootfs}"):
        # Through a bind mount, so a rootfs path with ',' or ':' cannot break the options.
        linux.mount(plan.rootfs, f"{scratch}/lower", None, linux.MS_BIND | linux.MS_REC)
    with Step("mount overlay on /"):
        linux.mount("overlay", root, "overlay", 0,
                    f"lowerdir={scratch}/lower,upperdir={scratch}/upper,workdir={scratch}/work")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Mount points for the API file systems: a symlink there is refused, never followed.
        for name in ("proc", "dev", "sys"):
            try:
                os.close(open_in_root(root_fd, f"/{name}", create="dir", no_symlinks=True))
            except OSError as error:
                if error.errno == 40:  # ELOOP from RESOLVE_NO_SYMLINKS
                    raise launch_error(f"the image's /{name} is a symlink; refusing to follow it") from None
                raise launch_error(f"create /{name}: {reason(error)}") from None
        with Step("mount proc on /proc"):
            linux.mount("proc", f"{root}/proc", "proc", linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_NODEV)
        _make_dev(root, os.isatty(0))
        _mount_sys(root)
        with Step("set the host name"):
            linux.sethostname(plan.hostname)
        if spec.network == "none":
            with Step("bring up the loopback interface"):
                linux.interface_up("lo")
        if spec.read_only and spec.read_only_tmpfs:
            for target, mode in (("/tmp", "1777"), ("/var/tmp", "1777"), ("/run", "755")):
                _mount_tmpfs(root_fd, target, linux.MS_NOSUID | linux.MS_NODEV, f"mode={mode}")
        for volume in spec.volumes:
            attr_set = linux.MOUNT_ATTR_RDONLY if volume.readonly else 0
            attr_clr = 0
            for option, bit in (("suid", linux.MOUNT_ATTR_NOSUID), ("dev", linux.MOUNT_ATTR_NODEV),
                                ("exec", linux.MOUNT_ATTR_NOEXEC)):
                if f"no{option}" in volume.options:
                    attr_set |= bit
                elif option in volume.options:
                    attr_clr |= bit
            with Step(f"volume {volume.source} on {volume.target}"):
                kind = "dir" if stat.S_ISDIR(os.stat(volume.source).st_mode) else "file"
                _bind(volume.source, root_fd, volume.target, kind, attr_set, attr_clr,
                      recursive="bind" not in volume.options)
        for tmpfs in spec.tmpfs:
            flags, data = tmpfs_flags(tmpfs.options)
            _mount_tmpfs(root_fd, tmpfs.target, flags, data)
        _write_etc_files(plan, root_fd, scratch)
        if spec.run_init:
            with Step(f"bind {TINI} on /dev/init"):
                # read-only, so the container cannot rewrite the host's tini (CVE-2019-5736)
                _bind(TINI, root_fd, "/dev/init", "file", linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID
                      | linux.MOUNT_ATTR_NODEV)
        _mask_paths(root)
        if spec.read_only:
            with Step("make / read-only"):
                linux.mount_setattr(root_fd, linux.MOUNT_ATTR_RDONLY, filename="/")
    finally:
        os.close(root_fd)
    return root


def pivot(root: str) -> None:
    with Step("pivot_root"):
        os.chdir(root)
        # pivot_root(".", ".") stacks the old root on top of the new one; detaching it then
        # leaves the new root alone, with no directory needed to park the old one in.
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")


def _close_fds(keep_below: int, sync_fd: int) -> None:
    """Close everything but stdio, the LISTEN_FDS block 3..keep_below-1 and the sync pipe."""
    os.closerange(keep_below, sync_fd)
    os.closerange(sync_fd + 1, 0x7FFFFFFF)


def container_main(plan: Plan, sync_fd: int, go_fd: int) -> None:
    """The child's whole life: mounts, pivot, identity, privileges, execve. Raises on failure."""
    spec = plan.spec
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)  # python ignores SIGPIPE/SIGXFSZ; ignoring survives exec
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWCGROUP
    if spec.network == "none":
        flags |= linux.CLONE_NEWNET
    with Step("unshare namespaces"):
        linux.unshare(flags)
    os.umask(0)
    pivot(build_root(plan))
    ident = resolve_identity(spec.user, spec.group)
    env = build_environment(plan, ident.home, os.environ)

    seccomp = seccomp_program()
    with Step("set no_new_privs"):
        if spec.no_new_privileges:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    with Step("drop capabilities from the bounding set"):
        linux.drop_bounding_set(plan.caps, plan.last_cap)
    if not spec.no_new_privileges:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
    with Step(f"switch to uid {ident.uid} gid {ident.gid}"):
        os.setgroups(ident.groups)
        os.setgid(ident.gid)
        os.setuid(ident.uid)
    with Step("set capabilities"):
        caps = plan.caps if ident.uid == 0 else 0
        linux.capset(caps, caps, 0)
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    workdir = spec.working_dir or "/"
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
    # systemd who we are (it closes its end of go_fd) before running anything of the image's.
    os.write(sync_fd, READY_LINE)
    while os.read(go_fd, 64):
        pass
    os.close(go_fd)
    if plan.foreground:
        # Only now: until the intermediate process exited and we were reparented to the
        # launcher (a subreaper in this mode), the "parent" whose death counts was that one.
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o022)
    _close_fds(3 + plan.listen_fds, sync_fd)
    if spec.no_new_privileges:
        with Step("install the seccomp filter"):
            linux.seccomp_load(seccomp)
    try:
        os.execve(program, plan.command, env)
    except OSError as error:
        status = EXIT_NOT_FOUND if error.errno == 2 else EXIT_CANNOT_EXEC
        raise launch_error(f"exec {program}: {reason(error)}", status) from None


def _child(plan: Plan, sync_fd: int, go_fd: int) -> None:
    """Run container_main; on any failure report one line on the pipe and _exit."""
    status = LaunchError.exit_status
    try:
        container_main(plan, sync_fd, go_fd)
        message = "execve returned"
    except SdcontainerError as error:
        status, message = error.exit_status, str(error)
    except OSError as error:
        message = f"{error.filename}: {reason(error)}" if error.filename else reason(error)
    except BaseException as error:  # noqa: B036 - nothing may escape a forked child
        message = f"internal error: {type(error).__name__}: {error}"
    if os.environ.get("SDCONTAINER_DEBUG") == "1":
        import traceback

        traceback.print_exc()
    try:
        os.write(sync_fd, (f"{status} {message}".replace("\n", " ") + "\n").encode(errors="replace"))
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


def _ensure_stdio() -> None:
    """A closed 0/1/2 would be reused by the first file we open and end up in the container."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            else:
                os.set_inheritable(fd, True)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_line(fd: int) -> bytes:
    """One line from the child (written with a single write, so atomic), or b"" at EOF."""
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(fd, 4096)):
        data += chunk
    return data


def _exit_code(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


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
    return _exit_code(wait_status)


def _state_path(unit: str) -> str:
    if not unit or "/" in unit or unit.startswith(".") or "%" in unit:
        raise UsageError(f"invalid unit name {unit!r}")
    return f"{STATE_DIR}/{unit}.json"


def write_state(plan: Plan, pid: int) -> None:
    import json
    import time

    spec = plan.spec
    state = {
        "name": plan.name,
        "unit": spec.unit,
        "pid": pid,
        "rootfs": plan.rootfs,
        "command": plan.command,
        "hostname": plan.hostname,
        "network": spec.network,
        "labels": dict(item.split("=", 1) for item in spec.labels),
        "annotations": dict(item.split("=", 1) for item in spec.annotations),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # UTC; `sdcontainer list` parses it
    }
    path = _state_path(spec.unit)
    os.makedirs(STATE_DIR, 0o755, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def start(spec: ContainerSpec) -> int:
    _ensure_stdio()
    notify_socket = os.environ.get("NOTIFY_SOCKET")
    plan = Plan(spec, foreground=not notify_socket)
    notifier = None
    if notify_socket:
        from sdcontainer.notify import Notifier

        with Step(f"connect to NOTIFY_SOCKET={notify_socket}", SystemdError.exit_status):
            notifier = Notifier(notify_socket)
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
    os.waitpid(middle, 0)
    reported = _read_all(pid_r)
    os.close(pid_r)
    pid = int(reported) if reported.isdigit() else None
    line = _read_line(sync_r)
    if line != READY_LINE:
        _fail_start(line + _read_all(sync_r), pid, plan.foreground)
    if notifier is not None and pid is not None:
        try:
            write_state(plan, pid)
            notifier.send(f"MAINPID={pid}\nREADY=1")
            if not notifier.barrier(5.0):
                raise TimeoutError(110, "no answer to BARRIER=1 within 5 s")
        except OSError as error:
            os.kill(pid, signal.SIGKILL)
            cleanup(["--unit", spec.unit])
            raise SystemdError(f"telling systemd the container's pid: {reason(error)}") from None
    os.close(go_w)
    rest = _read_all(sync_r)
    os.close(sync_r)
    if rest:
        _fail_start(rest, pid, plan.foreground)
    if pid is not None and plan.foreground:
        return _wait_foreground(pid)
    return 0


def _fail_start(report: bytes, pid: int | None, foreground: bool) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    if pid is not None and foreground:
        os.waitpid(pid, 0)  # under systemd it is the manager's child now, and reaped there
    code, _, message = report.decode(errors="replace").strip().partition(" ")
    if not code.isdigit():
        code, message = str(LaunchError.exit_status), "the container's init died during setup"
    raise launch_error(message, int(code))


def cleanup(args: list[str]) -> int:
    """ExecStopPost: forget the container. Idempotent; what died with the namespaces (mounts,
    the overlay's upper layer, loopback) needs nothing."""
    if len(args) == 2 and args[0] == "--unit":
        unit = args[1]
    elif len(args) == 1 and args[0].startswith("--unit="):
        unit = args[0].partition("=")[2]
    else:
        raise UsageError("usage: cleanup --unit UNIT")
    try:
        os.unlink(_state_path(unit))
    except FileNotFoundError:
        return 0  # already clean: a second stop, or a start that never got that far
    return 0


def _usage() -> str:
    from sdcontainer.keys import KEYS

    lines = [
        f"usage: {PROG} start [OPTIONS] -- COMMAND [ARG...]",
        f"       {PROG} cleanup --unit UNIT",
        "",
        "Runs a container as the calling systemd unit's main process; without $NOTIFY_SOCKET it",
        "stays in the foreground and exits with the container's status. Options (one per",
        "[Container] key, see sdcontainer.container(5)):",
        "  --unit UNIT",
    ]
    lines += [f"  {key.option} {key.metavar}" for key in KEYS if key.option]
    return "\n".join(lines)


def run(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help") or args[1:2] == ["--help"]:
        print(_usage())
        return 0 if args else UsageError.exit_status
    verb, rest = args[0], args[1:]
    if verb == "start":
        return start(spec_from_argv(rest))
    if verb == "cleanup":
        return cleanup(rest)
    raise UsageError(f"unknown command {verb!r}; expected start or cleanup")


def exit_status_for(error: BaseException) -> int:
    """The one place errors become an exit status and a single line on stderr (the journal)."""
    if os.environ.get("SDCONTAINER_DEBUG") == "1":
        import traceback

        traceback.print_exception(error)
    if isinstance(error, SdcontainerError):
        message, status = str(error), error.exit_status
    elif isinstance(error, OSError):
        message = f"{error.filename}: {reason(error)}" if error.filename else reason(error)
        status = LaunchError.exit_status
    elif isinstance(error, KeyboardInterrupt):
        return 130
    else:
        message = f"internal error: {type(error).__name__}: {error} (SDCONTAINER_DEBUG=1 shows more)"
        status = 1
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BaseException as error:  # noqa: B036 - every failure ends as one line and a status
        if isinstance(error, SystemExit):
            raise
        return exit_status_for(error)


if __name__ == "__main__":
    sys.exit(main())
