"""Named volumes: the store, and the two walks that touch a volume's content.

Layout, podman's under sdcontainer's storage directory (`store.storage_dir()`, so
/var/lib/sdcontainer/storage/volumes/NAME/ for root; $SDCONTAINER_STORAGE moves it):

    volumes/             0700: the only way to a volume's content from the host is root's
      NAME/volume.json   what `sdcontainer volume inspect` shows (VERSION, labels, options)
      NAME/_data/        the content, bind-mounted into the containers that use it

Beside the images because that is the one directory sdcontainer keeps data in (a unit with
Image= already has RequiresMountsFor= on it, one backup covers both), and in podman's
layout so that `cp -a /var/lib/containers/storage/volumes/NAME/_data ...` is a migration.

A volume's content belongs to the containers that use it, and a container's root is
assumed hostile: between two starts it can leave any symlink, hard link or special file in
its volumes. The host side therefore never follows a name inside a volume: `chown_tree`
(the `:U` option) and `copy_up` (a new volume seeded from the image) walk with directory fds,
O_NOFOLLOW at each step, and change a symlink itself, never what it points to. The image
side of copy_up is opened by the caller with openat2(RESOLVE_IN_ROOT) (sdcontainer.rootfs),
so an image's symlink resolves inside the image.

A volume in use is one named in the `volumes` file of a running container's state
directory (sdcontainer.state), which systemd removes when the unit stops.
"""

from __future__ import annotations

import os
import stat

from sdcontainer.errors import LaunchError, UsageError
from sdcontainer.record import record
from sdcontainer.text import shown
from sdcontainer.values import VOLUME_NAME_MAX as NAME_MAX
from sdcontainer.values import is_volume_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

VERSION = 1
METADATA = "volume.json"
DATA = "_data"
DIR_MODE = 0o700
# What `Options=` of a mount-backed volume may hold besides file-system data (size=, uid=):
# the flags the launcher turns into mount flags (sdcontainer.rootfs.mount_flags).
# Levels of directories the walks go down (each holds one or two fds; a path past PATH_MAX
# needs ~2000): deeper is an error, never a silent partial copy or chown.
MAX_DEPTH = 256


def check_name(name: str) -> str:
    """A volume name is a directory name in the store: podman's grammar, so never `.`,
    `..`, a `/` or anything a shell or a unit file would read otherwise."""
    if not is_volume_name(name):
        raise ValueError(
            f"{shown(name)} is not a valid volume name (a letter or digit, then letters, digits "
            f"and _.-, at most {NAME_MAX})"
        )
    return name


def volumes_dir() -> str:
    from sdcontainer.store import storage_dir

    return os.path.join(storage_dir(), "volumes")


def volume_dir(name: str) -> str:
    return os.path.join(volumes_dir(), check_name(name))


def data_dir(name: str) -> str:
    return os.path.join(volume_dir(name), DATA)


@record
class Volume:
    name: str
    created: int  # seconds since the epoch
    labels: tuple[str, ...] = ()  # KEY=VALUE
    device: str | None = None  # Device=: mounted in place of _data at each start
    fstype: str | None = None  # Type=
    options: str | None = None  # Options= (and uid=,gid= of User=/Group= with a device)
    uid: int | None = None
    gid: int | None = None
    copy: bool = True  # seed it from the image at its first use
    seeded: bool = False  # the first use has happened (a copy-up is done once)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "name": self.name,
            "driver": "local",
            "created": self.created,
            "labels": dict(label.partition("=")[::2] for label in self.labels),
            "options": {
                key: value
                for key, value in (("device", self.device), ("type", self.fstype), ("o", self.options))
                if value is not None
            },
            "uid": self.uid,
            "gid": self.gid,
            "copy": self.copy,
            "seeded": self.seeded,
            "mountpoint": data_dir(self.name),
        }

    @property
    def mount_backed(self) -> bool:
        return self.device is not None or (self.fstype is not None and self.fstype != "bind")


def _from_json(name: str, data: object) -> Volume:
    problem = f"{os.path.join(volume_dir(name), METADATA)}: not a volume record of this version"
    if not isinstance(data, dict) or data.get("version") != VERSION or data.get("name") != name:
        raise LaunchError(problem)
    options = data.get("options") or {}
    labels = data.get("labels") or {}
    try:
        return Volume(
            name=name,
            created=int(data["created"]),
            labels=tuple(f"{k}={v}" for k, v in labels.items()),
            device=options.get("device"),
            fstype=options.get("type"),
            options=options.get("o"),
            uid=data.get("uid"),
            gid=data.get("gid"),
            copy=bool(data.get("copy", True)),
            seeded=bool(data.get("seeded", False)),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LaunchError(problem) from None


def read(name: str) -> Volume | None:
    """The volume's record, None when there is no such volume. Read at every start of a
    container using it: with state's JSON reader, not the json module (re, enum: ~7 ms)."""
    from sdcontainer.state import from_json

    path = os.path.join(volume_dir(name), METADATA)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8") as f:
        try:
            data = from_json(f.read(1 << 20))
        except ValueError:
            raise LaunchError(f"{path}: not valid JSON") from None
    return _from_json(name, data)


def _write_record(directory: str, volume: Volume) -> None:
    from sdcontainer.state import to_json

    tmp = os.path.join(directory, f".{METADATA}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(to_json(volume.to_json()) + "\n")
    os.replace(tmp, os.path.join(directory, METADATA))


def _ensure_root() -> str:
    top = volumes_dir()
    os.makedirs(os.path.dirname(top), 0o700, exist_ok=True)
    if not os.path.isdir(top):
        os.mkdir(top, DIR_MODE)
    info = os.lstat(top)
    if not stat.S_ISDIR(info.st_mode):
        raise LaunchError(f"{top}: not a directory")
    if info.st_mode & 0o077:
        os.chmod(top, DIR_MODE)  # never reachable by anyone but root, whatever made it
    return top


def create(volume: Volume, *, ignore: bool = False) -> tuple[Volume, bool]:
    """Make the volume (atomically: a half-made one is never seen under its name). With
    `ignore`, an existing volume of that name is kept as it is (podman's `--ignore`), else it
    is an error. Returns the volume and whether it was made now."""
    import time

    top = _ensure_root()
    final = os.path.join(top, check_name(volume.name))
    existing = read(volume.name)
    if existing is not None:
        if ignore:
            return existing, False
        raise UsageError(f"volume {volume.name} exists already")
    if volume.created == 0:
        from sdcontainer.record import replace

        volume = replace(volume, created=int(time.time()))
    tmp = os.path.join(top, f".{volume.name}.{os.getpid()}.tmp")
    os.mkdir(tmp, DIR_MODE)
    try:
        data = os.path.join(tmp, DATA)
        os.mkdir(data, 0o755)
        os.chmod(data, 0o755)  # whatever the umask
        # a device's owner comes from its uid=,gid= options
        if (volume.uid is not None or volume.gid is not None) and not volume.mount_backed:
            os.chown(data, -1 if volume.uid is None else volume.uid, -1 if volume.gid is None else volume.gid)
        _write_record(tmp, volume)
        try:
            os.rename(tmp, final)
        except OSError:
            if read(volume.name) is not None and ignore:  # made meanwhile by another start
                _remove_tree(tmp)
                return read(volume.name) or volume, False
            raise
    except BaseException:
        _remove_tree(tmp)
        raise
    return volume, True


def ensure(name: str) -> Volume:
    """`Volume=NAME:/path`: the volume, made on its first use as podman does."""
    volume, _ = create(Volume(name=name, created=0), ignore=True)
    return volume


def mark_seeded(name: str) -> None:
    from sdcontainer.record import replace

    volume = read(name)
    if volume is not None and not volume.seeded:
        _write_record(volume_dir(name), replace(volume, seeded=True))


def names() -> list[str]:
    try:
        entries = os.listdir(volumes_dir())
    except FileNotFoundError:
        return []
    return sorted(
        n for n in entries if not n.startswith(".") and os.path.isfile(os.path.join(volumes_dir(), n, METADATA))
    )


def users() -> dict[str, list[str]]:
    """Volume name -> the running units that use it."""
    from sdcontainer.state import volumes_in_use

    found: dict[str, list[str]] = {}
    for unit, used in volumes_in_use():
        for name in used:
            found.setdefault(name, []).append(unit)
    return found


def inspect(name: str) -> dict[str, Any]:
    try:
        check_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    volume = read(name)
    if volume is None:
        raise UsageError(f"no such volume: {name}")
    return {**volume.to_json(), "used_by": users().get(name, [])}


def listing() -> list[dict[str, Any]]:
    in_use = users()
    found = []
    for name in names():
        volume = read(name)
        if volume is not None:
            found.append({**volume.to_json(), "used_by": in_use.get(name, [])})
    return found


def remove(name: str, *, force: bool = False) -> bool:
    """Remove a volume no running container uses. `force`: a missing volume is no error
    (podman's -f also stops and removes the containers using it; this one stops nothing, a
    volume in use is refused all the same). Returns whether one was removed."""
    try:
        check_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if read(name) is None:
        if force:
            return False
        raise UsageError(f"no such volume: {name}")
    units = users().get(name)
    if units:
        raise UsageError(f"volume {name} is in use by {', '.join(units)}: stop it first")
    top = volumes_dir()
    doomed = os.path.join(top, f".{name}.{os.getpid()}.rm")
    os.rename(os.path.join(top, name), doomed)  # gone from view at once; the rest may take time
    _remove_tree(doomed)
    return True


def prune() -> list[str]:
    """Remove every volume no running container uses; the names removed."""
    in_use = users()
    removed = []
    for name in names():
        if name not in in_use:
            remove(name)
            removed.append(name)
    return removed


def _remove_tree(path: str) -> None:
    import shutil

    # rmtree uses fd-based walking (shutil.rmtree.avoids_symlink_attacks): a symlink in a
    # volume is removed, never followed
    shutil.rmtree(path, ignore_errors=True)


# --- the walks over a volume's content ---------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _too_deep() -> LaunchError:
    return LaunchError(f"a volume's directories nest deeper than {MAX_DEPTH} levels; not walked")


def _walk(top_fd: int) -> Iterator[tuple[int, str, os.stat_result]]:
    """(directory fd, name, lstat) of everything below the directory `top_fd`, parents before
    children, depth first: one fd per level is open, whatever the width of the tree. Never
    follows a symlink (a directory swapped for one between the lstat and the open fails the
    open with ELOOP or ENOTDIR and is skipped)."""
    stack = [(os.dup(top_fd), iter(os.listdir(top_fd)))]
    try:
        while stack:
            fd, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield fd, name, info
            if stat.S_ISDIR(info.st_mode):
                if len(stack) >= MAX_DEPTH:
                    raise _too_deep()
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # replaced by a symlink or gone meanwhile
                try:
                    stack.append((sub, iter(os.listdir(sub))))
                except BaseException:
                    os.close(sub)
                    raise
    finally:
        for fd, _ in stack:
            os.close(fd)


def chown_tree(top_fd: int, uid: int, gid: int) -> None:
    """podman's `:U`: the directory `top_fd` and everything below it made uid:gid; a symlink is
    changed itself (lchown), never its target."""
    os.fchown(top_fd, uid, gid)
    for fd, name, info in _walk(top_fd):
        if info.st_uid != uid or info.st_gid != gid:
            try:
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def copy_up(source_fd: int, target_fd: int) -> int:
    """Copy the image's directory `source_fd` into the new, empty volume `target_fd`: files,
    directories, symlinks (as symlinks) and fifos, with their modes, owners and times.
    Nothing is followed on either side and nothing existing is replaced; device nodes and
    sockets are skipped (a volume is mounted nodev). Depth first, two fds open per level.
    Returns the number of entries copied."""
    count = 0
    stack = [(os.dup(source_fd), os.dup(target_fd), iter(os.listdir(source_fd)))]
    try:
        while stack:
            src, dst, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(src)
                os.close(dst)
                stack.pop()
                continue
            try:
                info = os.stat(name, dir_fd=src, follow_symlinks=False)
            except FileNotFoundError:
                continue
            mode = info.st_mode
            try:
                if stat.S_ISDIR(mode):
                    if len(stack) >= MAX_DEPTH:
                        raise _too_deep()
                    os.mkdir(name, 0o700, dir_fd=dst)
                    sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst)
                    try:
                        sub_src = os.open(name, _DIR_FLAGS, dir_fd=src)
                    except OSError:
                        os.close(sub_dst)
                        continue  # swapped since the lstat
                    try:
                        _set_attributes(sub_dst, info)
                        stack.append((sub_src, sub_dst, iter(os.listdir(sub_src))))
                    except BaseException:
                        os.close(sub_src)
                        os.close(sub_dst)
                        raise
                elif stat.S_ISREG(mode):
                    _copy_file(src, dst, name, info)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                    os.chown(name, info.st_uid, info.st_gid, dir_fd=dst, follow_symlinks=False)
                elif stat.S_ISFIFO(mode):
                    os.mkfifo(name, stat.S_IMODE(mode) & 0o777, dir_fd=dst)
                    os.chown(name, info.st_uid, info.st_gid, dir_fd=dst, follow_symlinks=False)
                else:
                    continue
            except FileExistsError:
                continue  # never replaced, whatever it is
            count += 1
    finally:
        for src, dst, _ in stack:
            os.close(src)
            os.close(dst)
    return count


def _copy_file(src: int, dst: int, name: str, info: os.stat_result) -> None:
    fd_in = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=src)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            return  # swapped since the lstat
        fd_out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst)
        try:
            try:
                while os.copy_file_range(fd_in, fd_out, 1 << 30):
                    pass
            except OSError:  # EXDEV (another file system, before Linux 5.19), EINVAL, ENOSYS
                os.lseek(fd_in, 0, os.SEEK_SET)
                os.lseek(fd_out, 0, os.SEEK_SET)
                os.ftruncate(fd_out, 0)
                while chunk := os.read(fd_in, 1 << 20):
                    os.write(fd_out, chunk)
            _set_attributes(fd_out, info)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _set_attributes(fd: int, info: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-user-ID bits), then times."""
    os.fchown(fd, info.st_uid, info.st_gid)
    os.fchmod(fd, stat.S_IMODE(info.st_mode))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))


# --- sdcontainer-launcher volume-create (NAME-volume.service) ------------------------------------

CREATE_USAGE = (
    "usage: volume-create --name NAME [--device PATH] [--type TYPE] [--options OPTIONS] [--user USER] "
    "[--group GROUP] [--uid N] [--gid N] [--label KEY=VALUE] [--no-copy]"
)


def _host_id(value: str | None, number: str | None, group: bool) -> int | None:
    """A host user or group: a number, or a name from the host's passwd or group file."""
    value = number or value
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        if group:
            import grp

            return grp.getgrnam(value).gr_gid
        import pwd

        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise UsageError(f"no {'group' if group else 'user'} {value!r} on this host") from None


def create_command(args: list[str]) -> int:
    """The ExecStart= of NAME-volume.service: make the volume unless it exists."""
    from sdcontainer.verbs import parse

    labels: list[str] = []
    words = list(args)
    rest: list[str] = []
    while words:  # --label may repeat; parse() keeps the last of an option
        word_ = words.pop(0)
        if word_ == "--label" and words:
            labels.append(words.pop(0))
        elif word_.startswith("--label="):
            labels.append(word_.partition("=")[2])
        else:
            rest.append(word_)
    options = ("--name", "--device", "--type", "--options", "--user", "--group", "--uid", "--gid")
    found = parse(rest, options=options, flags=("--no-copy",), usage=CREATE_USAGE).options
    name = found.get("--name")
    if not name:
        raise UsageError(CREATE_USAGE)
    try:
        check_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    uid = _host_id(found.get("--user"), found.get("--uid"), group=False)
    gid = _host_id(found.get("--group"), found.get("--gid"), group=True)
    device, fstype, mount_options = found.get("--device"), found.get("--type"), found.get("--options")
    if device is not None and (uid is not None or gid is not None):  # podman: o=uid=,gid= for the mount
        owner = [f"uid={uid}"] if uid is not None else []
        owner += [f"gid={gid}"] if gid is not None else []
        mount_options = ",".join([*owner, *([mount_options] if mount_options else [])])
    volume = Volume(
        name=name,
        created=0,
        labels=tuple(labels),
        device=device,
        fstype=fstype,
        options=mount_options,
        uid=uid,
        gid=gid,
        copy="--no-copy" not in found,
    )
    made, new = create(volume, ignore=True)
    print(f"volume {name} {'created' if new else 'exists already; kept as it is'}: {data_dir(name)}")
    return 0
