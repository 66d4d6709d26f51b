"""The container's root file system, built in its private mount namespace and pivoted into.

The image is the lower layer of an overlay whose upper layer is a tmpfs under SCRATCH_DIR, so
the container's writes live in memory and the source tree is never written. On top of it come
fresh /proc, /dev and /sys, the volumes and tmpfs mounts, /etc/hostname, hosts and
resolv.conf (bind-mounted, never written into the image), tini on /dev/init with RunInit=,
and the masked and read-only paths of sdcontainer.security.

/dev, /proc and /sys are fresh mounts made before anything from the image is looked at, and
mount targets from the image are resolved with openat2(RESOLVE_IN_ROOT) and mounted by fd
(open_in_root), so an image symlink can never redirect a mount outside the new root.
"""

from __future__ import annotations

import os
import stat

from sdcontainer import linux
from sdcontainer.errors import reason
from sdcontainer.plan import NOTIFY_SOCKET_INSIDE
from sdcontainer.security import MASKED_PATHS, READONLY_PATHS
from sdcontainer.step import Step, launch_error
from sdcontainer.text import glob_match

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from sdcontainer.plan import Attachment, Plan
    from sdcontainer.spec import BindMount, ContainerSpec

# An empty host directory the container's scratch tmpfs is mounted on; the mount exists only
# in the container's private mount namespace, so the host never sees anything there.
SCRATCH_DIR = "/run/sdcontainer/scratch"
TINI = "/usr/bin/tini-static"


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, path: str, create: str | None = None, no_symlinks: bool = False, _depth: int = 0) -> int:
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


def _bind(
    source: str, root_fd: int, target: str, kind: str, attr_set: int = 0, attr_clr: int = 0, recursive: bool = False
) -> None:
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


def _make_dev(root: str, stdin_is_tty: bool, shm_size: str) -> None:
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
        linux.mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            linux.MS_NOSUID | linux.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        )
    nosuid_nodev_noexec = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    with Step(f"mount tmpfs on /dev/shm (size={shm_size})"):
        linux.mount("shm", f"{dev}/shm", "tmpfs", nosuid_nodev_noexec, f"mode=1777,size={shm_size}")
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


def should_mask(path: str, unmasks: tuple[str, ...]) -> bool:
    """podman's shouldMask: a default masked or read-only path stays unless Unmask= names it
    (a filepath.Match pattern) or is ALL."""
    return not any(pattern == "ALL" or glob_match(pattern, path) for pattern in unmasks)


def _mask(root: str, fd_or_path: str, what: str) -> None:
    with Step(f"mask {what}"):
        if stat.S_ISDIR(os.stat(fd_or_path).st_mode):
            linux.mount(
                "tmpfs",
                fd_or_path,
                "tmpfs",
                linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "size=0",
            )
        else:
            linux.mount(f"{root}/dev/null", fd_or_path, None, linux.MS_BIND)


def _mask_paths(root: str, root_fd: int, masks: tuple[str, ...], unmasks: tuple[str, ...]) -> None:
    """Hide kernel information podman hides, and make its read-only paths read-only, but for
    what Unmask= takes out. Those paths are inside the fresh proc and sysfs mounts, which the
    image cannot have planted symlinks in. Mask= paths may be anywhere in the image: they are
    resolved inside the root (open_in_root) and mounted over by fd; a missing one is skipped,
    as runc does."""
    for path in MASKED_PATHS:
        if os.path.lexists(root + path) and should_mask(path, unmasks):
            _mask(root, root + path, path)
    for path in masks:
        try:
            fd = open_in_root(root_fd, path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            raise launch_error(f"mask {path}: {reason(error)}") from None
        try:
            _mask(root, _fd_path(fd), path)
        finally:
            os.close(fd)
    flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV
    for path in READONLY_PATHS:
        full = root + path
        if not os.path.lexists(full) or not should_mask(path, unmasks):
            continue
        with Step(f"make {path} read-only"):
            linux.mount(full, full, None, linux.MS_BIND | linux.MS_REC)
            linux.mount(None, full, None, flags | linux.MS_NOEXEC)


def _set_sysctls(root: str, sysctls: tuple[str, ...]) -> None:
    """Sysctl=, written in the fresh /proc before /proc/sys becomes read-only: the values
    belong to the container's own IPC and network namespaces (keys.parse_sysctl allows no
    other, and no net.* with Network=host)."""
    for item in sysctls:
        name, _, value = item.partition("=")
        with Step(f"sysctl {name}={value}"):
            fd = os.open(f"{root}/proc/sys/{name.replace('.', '/')}", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)


def etc_hosts(
    hostname: str, add_hosts: tuple[str, ...] = (), addresses: tuple[str, ...] = (), gateway: str | None = None
) -> str:
    """The container's /etc/hosts: AddHost= lines first (so they win, as in podman), then
    localhost and its own name: at its own address on a bridge network (`addresses`, with
    the network's `gateway`, a host address, as host.containers.internal), else 127.0.1.1."""
    extra = ""
    for item in add_hosts:
        names, _, address = item.partition(":")
        extra += f"{address}\t{' '.join(names.split(';'))}\n"
    own = "".join(f"{a.partition('/')[0]}\t{hostname}\n" for a in addresses) or f"127.0.1.1\t{hostname}\n"
    if gateway:
        own += f"{gateway}\thost.containers.internal host.docker.internal\n"
    return extra + "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n" + own


def _host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
            text = f.read()
        # The systemd-resolved stub works in the host netns too, but the upstream list is what
        # podman uses, and keeps working if the container later gets a network of its own.
        if any(line.split()[:2] == ["nameserver", "127.0.0.53"] for line in text.splitlines()):
            with open("/run/systemd/resolve/resolv.conf", encoding="utf-8", errors="replace") as f:
                text = f.read()
    except FileNotFoundError:
        text = ""
    return text


#: podman's name servers for a bridge network when the host has only loopback ones
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


def etc_resolv_conf(spec: ContainerSpec, network_dns: tuple[str, ...] = ()) -> str | None:
    """The container's /etc/resolv.conf, read on the host when the launcher plans the start;
    None with DNS=none (the image's own is left alone). DNS=, DNSSearch= and DNSOption= each
    replace that part of the host's file, as podman does; `network_dns`, the DNS= of the
    container's network, replaces the host's servers unless the container has its own."""
    if spec.dns_servers == ("none",):
        return None
    bridge = spec.network not in ("none", "host")
    if not (spec.dns_servers or spec.dns_search or spec.dns_options or network_dns):
        if spec.network == "host":
            return _host_resolv_conf()
        if not bridge:
            return "# sdcontainer: Network=none, this container has no network and no name servers\n"
    text = _host_resolv_conf() if spec.network != "none" else ""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            servers.append(words[1])
        elif words[:1] in (["search"], ["domain"]):
            search = words[1:]  # the last of them counts (resolv.conf(5))
        elif words[:1] == ["options"]:
            options += words[1:]
    if bridge:
        # the host's loopback resolvers (dnsmasq, resolved's stub) are not the container's:
        # dropped, and with none left podman's fallback, Google's public servers
        servers = [s for s in servers if not (s.startswith("127.") or s == "::1")] or list(FALLBACK_DNS)
    servers = list(spec.dns_servers) or list(network_dns) or servers
    search = [] if spec.dns_search == (".",) else list(spec.dns_search) or search
    options = list(spec.dns_options) or options
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {server}" for server in servers]
    lines += [f"options {' '.join(options)}"] if options else []
    return "".join(line + "\n" for line in lines)


def zone_file(timezone: str) -> str:
    """The host's file for Timezone=, checked when the launcher plans the start: the zone
    below $TZDIR or /usr/share/zoneinfo, or with local what the host's /etc/localtime is."""
    if timezone == "local":
        path, where = os.path.realpath("/etc/localtime"), "the host's /etc/localtime"
    else:
        zoneinfo = os.environ.get("TZDIR") or "/usr/share/zoneinfo"
        path = where = os.path.realpath(f"{zoneinfo}/{timezone}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        if error.errno in (2, 20):  # ENOENT, ENOTDIR
            raise launch_error(
                f"Timezone={timezone}: {where} does not exist on the host (is tzdata installed?)"
            ) from None
        raise launch_error(f"Timezone={timezone}: {where}: {reason(error)}") from None
    if magic != b"TZif":
        raise launch_error(f"Timezone={timezone}: {where} is not a time zone file")
    return path


def _bind_into_etc(etc: int, name: str, source: str, attr_set: int = 0) -> None:
    """Bind `source` (a host path) over /etc/NAME: a symlink (or anything but a file) there
    is replaced, in the overlay, so it can send the mount nowhere else."""
    with Step(f"bind /etc/{name}"):
        try:
            mode = os.stat(name, dir_fd=etc, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            os.unlink(name, dir_fd=etc)  # a symlink (or other) in the overlay: replace it
            mode = None
        if mode is None:
            os.close(
                os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=etc)
            )
        tree = linux.open_tree(source, linux.OPEN_TREE_CLONE)
        try:
            if attr_set:
                linux.mount_setattr(tree, attr_set)
            target = linux.openat2(etc, name, os.O_PATH, linux.RESOLVE_NO_SYMLINKS)
            try:
                linux.move_mount(tree, target, filename=f"/etc/{name}")
            finally:
                os.close(target)
        finally:
            os.close(tree)


def _write_etc_files(plan: Plan, root_fd: int, scratch: str) -> None:
    """/etc/hostname, hosts and resolv.conf: written in the scratch tmpfs and bind-mounted
    over the image's, so the source tree is never written and a symlink in the image
    (resolv.conf -> ../run/...) cannot send them elsewhere. Timezone= binds the host's zone
    file read-only over /etc/localtime the same way."""
    files = {"hostname": plan.hostname + "\n"}
    if plan.hosts_file is None:
        files["hosts"] = plan.hosts
    if plan.resolv_conf is not None:
        files["resolv.conf"] = plan.resolv_conf
    os.mkdir(f"{scratch}/etc", 0o755)
    with Step("create /etc"):
        etc = open_in_root(root_fd, "/etc", create="dir")
    try:
        for name, content in files.items():
            source = f"{scratch}/etc/{name}"
            with open(source, "w", encoding="utf-8") as f:
                f.write(content)
            os.chmod(source, 0o644)
            _bind_into_etc(etc, name, source)
        if plan.hosts_file is not None:
            # the host's file, rewritten in place as the network's containers come and go
            _bind_into_etc(
                etc,
                "hosts",
                plan.hosts_file,
                linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC,
            )
        if plan.localtime is not None:
            _bind_into_etc(
                etc,
                "localtime",
                plan.localtime,
                linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC,
            )
    finally:
        os.close(etc)


def _mount_secrets(plan: Plan, root_fd: int, scratch: str) -> None:
    """Secret=...,type=mount: each value written into the scratch tmpfs (this mount namespace's
    own, gone with it) with its owner and mode, and bound read-only on its target."""
    from sdcontainer.values import secret_ref

    os.mkdir(f"{scratch}/secrets", 0o700)
    for index, (item, data) in enumerate(plan.secret_files):
        ref = secret_ref(item)
        source = f"{scratch}/secrets/{index}"
        with Step(f"secret {ref.name} on {ref.destination}"):
            fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, ref.uid, ref.gid)
                os.fchmod(fd, ref.mode)
            finally:
                os.close(fd)
            flags = linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC
            _bind(source, root_fd, ref.destination, "file", flags)


def mount_layers(layers: Sequence[str], upper: str, work: str, target: str) -> None:
    """An overlay of an image's layers (`layers` from the base up) on `target`, nodev.

    Each layer is one fsconfig(lowerdir+) call (Linux 6.8+), so there is no limit on the
    number of layers but the kernel's own (500) and no option string to overflow. Older
    kernels get lowerdir= with the layers' short names relative to their store directory,
    where the one-page limit of mount options leaves room for about 60 layers."""
    try:
        fs = linux.fsopen("overlay")
    except OSError:
        fs = -1
    if fs >= 0:
        try:
            try:
                for layer in reversed(layers):  # the first lower directory is the top one
                    linux.fsconfig_string(fs, "lowerdir+", layer)
            except OSError as error:
                if error.errno != 22:  # EINVAL: no lowerdir+ before Linux 6.8
                    raise
            else:
                linux.fsconfig_string(fs, "upperdir", upper)
                linux.fsconfig_string(fs, "workdir", work)
                linux.fsconfig_create(fs)
                mnt = linux.fsmount(fs, linux.MOUNT_ATTR_NODEV)
                try:
                    to = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        linux.move_mount(mnt, to, filename=target)
                    finally:
                        os.close(to)
                finally:
                    os.close(mnt)
                return
        finally:
            os.close(fs)
    parents = {os.path.dirname(layer) for layer in layers}
    if len(parents) != 1:
        raise launch_error("the image's layers are not in one store directory")
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(parents.pop())
        lower = ":".join(os.path.basename(layer) for layer in reversed(layers))
        linux.mount("overlay", target, "overlay", linux.MS_NODEV, f"lowerdir={lower},upperdir={upper},workdir={work}")
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def build_root(plan: Plan) -> str:
    """Every mount of the container, made in its private mount namespace; returns the new root.
    The order is the one the module's docstring gives: the overlay, then the API file
    systems before anything of the image is looked at, then what goes into the image's tree."""
    spec = plan.spec
    root = _mount_overlay(plan)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _mount_api_filesystems(root, root_fd, spec.shm_size or "64M")
        with Step("set the host name"):
            linux.sethostname(plan.hostname)
        if spec.network == "none":
            with Step("bring up the loopback interface"):
                linux.interface_up("lo")
        _set_sysctls(root, spec.sysctls)
        _mount_volumes(root_fd, plan)
        if plan.notify_socket:
            with Step(f"bind NOTIFY_SOCKET {plan.notify_socket} on {NOTIFY_SOCKET_INSIDE}"):
                flags = linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC
                _bind(plan.notify_socket, root_fd, NOTIFY_SOCKET_INSIDE, "file", flags)
        _write_etc_files(plan, root_fd, SCRATCH_DIR)
        if plan.secret_files:
            _mount_secrets(plan, root_fd, SCRATCH_DIR)
        if spec.run_init:
            with Step(f"bind {TINI} on /dev/init"):
                # read-only, so the container cannot rewrite the host's tini (CVE-2019-5736)
                _bind(
                    TINI,
                    root_fd,
                    "/dev/init",
                    "file",
                    linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV,
                )
        _mask_paths(root, root_fd, spec.masks, spec.unmasks)
        if spec.read_only:
            with Step("make / read-only"):
                linux.mount_setattr(root_fd, linux.MOUNT_ATTR_RDONLY, filename="/")
    finally:
        os.close(root_fd)
    return root


def _mount_overlay(plan: Plan) -> str:
    """The container's root: an overlay of the rootfs (or the image's layers) under a tmpfs
    upper layer, in SCRATCH_DIR of the now private mount namespace; returns its path."""
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
    if plan.layers is not None:
        with Step(f"mount the layers of image {plan.spec.image} on /"):
            mount_layers(plan.layers or [f"{scratch}/lower"], f"{scratch}/upper", f"{scratch}/work", root)
        return root
    with Step(f"bind rootfs {plan.rootfs}"):
        # Through a bind mount, so a rootfs path with ',' or ':' cannot break the options.
        linux.mount(plan.rootfs, f"{scratch}/lower", None, linux.MS_BIND | linux.MS_REC)
    with Step("mount overlay on /"):
        # nodev: a device node in the image (the host's disk, say) must not open; the
        # container's devices are the fresh /dev's
        linux.mount(
            "overlay",
            root,
            "overlay",
            linux.MS_NODEV,
            f"lowerdir={scratch}/lower,upperdir={scratch}/upper,workdir={scratch}/work",
        )
    return root


def _mount_api_filesystems(root: str, root_fd: int, shm_size: str) -> None:
    """Fresh /proc, /dev and /sys, before anything of the image is looked at; a symlink
    where their mount points belong is refused, never followed."""
    for name in ("proc", "dev", "sys"):
        try:
            os.close(open_in_root(root_fd, f"/{name}", create="dir", no_symlinks=True))
        except OSError as error:
            if error.errno == 40:  # ELOOP from RESOLVE_NO_SYMLINKS
                raise launch_error(f"the image's /{name} is a symlink; refusing to follow it") from None
            raise launch_error(f"create /{name}: {reason(error)}") from None
    with Step("mount proc on /proc"):
        linux.mount("proc", f"{root}/proc", "proc", linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_NODEV)
    _make_dev(root, os.isatty(0), shm_size)
    _mount_sys(root)


# volumes (named or anonymous) are nosuid and nodev unless their options say suid or dev
VOLUME_DEFAULTS = ("nosuid", "nodev")


def _attr_bits(options: tuple[str, ...], readonly: bool) -> tuple[int, int]:
    attr_set = linux.MOUNT_ATTR_RDONLY if readonly else 0
    attr_clr = 0
    for option, bit in (
        ("suid", linux.MOUNT_ATTR_NOSUID),
        ("dev", linux.MOUNT_ATTR_NODEV),
        ("exec", linux.MOUNT_ATTR_NOEXEC),
    ):
        if f"no{option}" in options:
            attr_set |= bit
        elif option in options:
            attr_clr |= bit
    return attr_set, attr_clr


def mount_flags(options: str, default: int = 0) -> tuple[int, str]:
    """Mount flags and the data string of a comma-separated option list (mount(8)'s -o)."""
    flags = default
    data = []
    for option in (o for o in options.split(",") if o):
        if option in _TMPFS_FLAGS:
            on, off = _TMPFS_FLAGS[option]
            flags = (flags | on) & ~off
        else:
            data.append(option)
    return flags, ",".join(data)


def resolve_mounts(spec: ContainerSpec) -> tuple[Attachment, ...]:
    """Volume=, Mount= and Tmpfs= as the start mounts them, checked on the host (in the
    launcher, before any namespace): a host path must exist, a named volume is made at its
    first use (sdcontainer.volumes.ensure) and its kind (directory or device) read. Sorted
    by the depth of the target, so that /a is mounted before /a/b."""
    from sdcontainer.plan import Attachment
    from sdcontainer.spec import BindMount

    found: list[Attachment] = []
    for mount in (*spec.volumes, *spec.mounts, *spec.tmpfs):
        if not isinstance(mount, BindMount):
            flags, data = tmpfs_flags(mount.options)
            found.append(Attachment(mount.target, "tmpfs", flags=flags, data=data))
            continue
        options = mount.options
        if not mount.named:
            with Step(f"volume source {mount.source}"):
                os.stat(mount.source)
            found.append(Attachment(mount.target, "bind", mount.source, mount.readonly, options))
            continue
        options = (*(o for o in VOLUME_DEFAULTS if o[2:] not in options), *options)
        copy = "nocopy" not in options
        if not mount.source:
            found.append(Attachment(mount.target, "anonymous", "", mount.readonly, options, copy_up=copy))
            continue
        found.append(_named_volume(mount, options, copy))
    return tuple(sorted(found, key=lambda a: len([p for p in a.target.split("/") if p])))


def _named_volume(mount: BindMount, options: tuple[str, ...], copy: bool) -> Attachment:
    from sdcontainer import volumes
    from sdcontainer.plan import Attachment

    name = mount.source
    if not volumes.is_volume_name(name):
        raise launch_error(f"volume {name!r} for {mount.target}: not a valid volume name")
    with Step(f"volume {name}"):
        volume = volumes.ensure(name)
    if volume.mount_backed:
        flags, data = mount_flags(volume.options or "")
        source = volume.device or volume.fstype or "none"
        kind, fstype = "device", volume.fstype
        return Attachment(mount.target, kind, source, mount.readonly, options, name, False, fstype, flags, data)
    if volume.fstype == "bind" and volume.device:
        return Attachment(mount.target, "bind", volume.device, mount.readonly, options, name)
    copy_up = copy and ("copy" in options or volume.copy) and not volume.seeded
    return Attachment(mount.target, "bind", volumes.data_dir(name), mount.readonly, options, name, copy_up)


# fds of the sources of :U mounts, kept from the mounts until the user is known (chown_volumes)
_to_chown: list[int] = []


def _mount_volumes(root_fd: int, plan: Plan) -> None:
    """ReadOnlyTmpfs='s tmpfs on /tmp, /var/tmp and /run, then Volume=, Mount= and Tmpfs=."""
    spec = plan.spec
    if spec.read_only and spec.read_only_tmpfs:
        for target, mode in (("/tmp", "1777"), ("/var/tmp", "1777"), ("/run", "755")):
            _mount_tmpfs(root_fd, target, linux.MS_NOSUID | linux.MS_NODEV, f"mode={mode}")
    for number, mount in enumerate(plan.mounts):
        if mount.kind == "tmpfs":
            _mount_tmpfs(root_fd, mount.target, mount.flags, mount.data)
            continue
        attr_set, attr_clr = _attr_bits(mount.options, mount.readonly)
        if mount.kind == "device":
            with Step(f"mount volume {mount.volume} ({mount.source}) on {mount.target}"):
                fd = open_in_root(root_fd, mount.target, create="dir")
                try:
                    flags = mount.flags | (linux.MS_RDONLY if mount.readonly else 0)
                    for option, bit in (
                        ("nosuid", linux.MS_NOSUID),
                        ("nodev", linux.MS_NODEV),
                        ("noexec", linux.MS_NOEXEC),
                    ):
                        if option in mount.options:
                            flags |= bit
                    linux.mount(mount.source, _fd_path(fd), mount.fstype or "none", flags, mount.data or None)
                finally:
                    os.close(fd)
            if "U" in mount.options:
                from sdcontainer import volumes  # noqa: F401 - for chown_volumes, after the pivot

                _hold_for_chown(root_fd, mount.target)
            continue
        source = mount.source
        if mount.kind == "anonymous":
            source = f"{SCRATCH_DIR}/anonymous/{number}"
            os.makedirs(source, 0o755, exist_ok=True)
            os.chmod(source, 0o755)
        if mount.copy_up:
            with Step(f"copy the image's {mount.target} into volume {mount.volume or 'anonymous'}"):
                _copy_up(root_fd, mount.target, source, mount.volume)
        if "U" in mount.options:
            from sdcontainer import volumes  # noqa: F401 - for chown_volumes, after the pivot

            with Step(f"open {source} to chown it"):
                _to_chown.append(os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK))
        with Step(f"volume {mount.volume or source} on {mount.target}"):
            kind = "dir" if stat.S_ISDIR(os.stat(source).st_mode) else "file"
            _bind(source, root_fd, mount.target, kind, attr_set, attr_clr, recursive="bind" not in mount.options)


def _hold_for_chown(root_fd: int, target: str) -> None:
    fd = open_in_root(root_fd, target)
    try:
        _to_chown.append(os.open(_fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    finally:
        os.close(fd)


def _copy_up(root_fd: int, target: str, destination: str, volume: str | None) -> None:
    """Seed a new volume with the image's content at `target`, once: under a lock on the
    volume, and only while it is empty (podman's copy-up). The image's side is resolved in
    the root (its symlinks stay inside it); nothing is followed on either side."""
    import fcntl

    from sdcontainer import volumes

    lock = os.open(os.path.dirname(destination) if volume else destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if volume is not None:
            current = volumes.read(volume)
            if current is None or current.seeded:
                return  # seeded by another start meanwhile
        dst = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not os.listdir(dst):
                try:
                    path_fd = open_in_root(root_fd, target)
                except (FileNotFoundError, NotADirectoryError):
                    path_fd = None  # nothing in the image there: nothing to copy
                if path_fd is not None:
                    try:
                        src = os.open(_fd_path(path_fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                    finally:
                        os.close(path_fd)
                    try:
                        if stat.S_ISDIR(os.fstat(src).st_mode):
                            volumes.copy_up(src, dst)
                            info = os.fstat(src)
                            os.fchown(dst, info.st_uid, info.st_gid)
                            os.fchmod(dst, stat.S_IMODE(info.st_mode))
                    finally:
                        os.close(src)
        finally:
            os.close(dst)
        if volume is not None:
            volumes.mark_seeded(volume)
    finally:
        os.close(lock)


def chown_volumes(uid: int, gid: int) -> None:
    """The :U volumes made the container user's, once it is known (after the pivot, from the
    container's /etc/passwd); through fds opened before the pivot, never by a path."""
    if not _to_chown:
        return
    from sdcontainer import volumes  # loaded before the pivot (_mount_volumes): no file is read now

    while _to_chown:
        fd = _to_chown.pop()
        try:
            with Step("chown a :U volume to the container's user"):
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    volumes.chown_tree(fd, uid, gid)
                else:
                    os.fchown(fd, uid, gid)
        finally:
            os.close(fd)


def pivot(root: str) -> None:
    with Step("pivot_root"):
        os.chdir(root)
        # pivot_root(".", ".") stacks the old root on top of the new one; detaching it then
        # leaves the new root alone, with no directory needed to park the old one in.
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")
