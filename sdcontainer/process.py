"""The container's process as its image defines it: the user and groups it runs as, its
environment and the program execve runs.

User= and Group= are looked up in the image's own /etc/passwd and /etc/group, and the
program in the image's PATH, so those run in the container's child after the pivot;
parse_env_file runs on the host, when the launcher plans the start.
"""

from __future__ import annotations

import os
import stat

from sdcontainer import linux, trampoline
from sdcontainer.errors import reason
from sdcontainer.step import launch_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from sdcontainer.plan import Plan

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what a shell answers for a command it cannot run
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


def execve(program: str, argv: list[str], env: dict[str, str], prog: str) -> None:
    """Run `program` through the sealed exec trampoline (sdcontainer.trampoline: never
    straight from this process, the host's python); a LaunchError (126) if that cannot
    start. If the program's own execve fails, the trampoline says why on stderr, as
    "PROG: exec PROGRAM: REASON", and exits with a shell's status: 127 not found, 126
    cannot execute."""
    try:
        fd = trampoline.sealed()
        os.execve(fd, trampoline.argv(program, argv, prog), env)
    except OSError as error:
        raise launch_error(
            f"exec {program}: cannot start the exec trampoline: {reason(error)}", EXIT_CANNOT_EXEC
        ) from None


def ensure_stdio() -> None:
    """0, 1 and 2 open (on /dev/null if they were closed, inheritable): a closed one would be
    reused by the first file or pipe we open, which could then reach the container or be
    mistaken for the caller's."""
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


def exit_status(wait_status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the killing signal."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def read_all(fd: int) -> bytes:
    """Everything until EOF from a pipe."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and #/; comments skipped; one level of quotes removed."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise launch_error(f"environment file {path}: {reason(error)}") from None
    except UnicodeDecodeError:
        raise launch_error(f"environment file {path}: not UTF-8 text") from None
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not (key.isascii() and key.isidentifier()):
            raise launch_error(f"{path}:{number}: not a KEY=VALUE line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if "\0" in value:
            raise launch_error(f"{path}:{number}: a value cannot hold a NUL byte")
        result[key] = value
    return result


class Identity:
    """Who the container's process runs as."""

    __slots__ = ("uid", "gid", "groups", "home", "name")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str, name: str | None) -> None:
        self.uid, self.gid, self.groups, self.home, self.name = uid, gid, groups, home, name


# /etc/passwd and /etc/group come from the image and are read by the container's init as
# root: more than this is not a user database (and would be read into memory whole)
_DB_LIMIT = 16 << 20


def _read_db(path: str) -> list[list[str]]:
    """The entries of a passwd(5) or group(5) file. Non-blocking, so a FIFO the image put
    there cannot stall the start; a device (a link to /dev/zero) or a file above _DB_LIMIT
    is refused rather than read until memory runs out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise launch_error(f"{path}: not a regular file")
        data = f.read(_DB_LIMIT + 1)
    if len(data) > _DB_LIMIT:
        raise launch_error(f"{path}: larger than {_DB_LIMIT >> 20} MiB; not a user database")
    lines = data.decode("utf-8", errors="replace").replace("\r", "\n").split("\n")
    return [line.split(":") for line in lines if line.strip() and not line.startswith("#")]


def resolve_identity(user: str | None, group: str | None, group_add: tuple[str, ...] = ()) -> Identity:
    """User=, Group= and GroupAdd= looked up in the container's own /etc/passwd and /etc/group
    (never the host's, never NSS): numbers are taken as they are."""
    passwd = [e for e in _read_db("/etc/passwd") if len(e) >= 7]
    groups_db = [e for e in _read_db("/etc/group") if len(e) >= 4]
    wanted = user or "0"
    if wanted.isdigit():
        entry = next((e for e in passwd if e[2] == wanted), None)
        uid = int(wanted)
    else:
        entry = next((e for e in passwd if e[0] == wanted), None)
        if entry is None:
            raise launch_error(f"user {wanted!r} not found in the container's /etc/passwd")
        uid = int(entry[2])
    name = entry[0] if entry else None
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry and entry[5] else "/"
    if group is not None:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((e for e in groups_db if e[0] == group), None)
            if match is None:
                raise launch_error(f"group {group!r} not found in the container's /etc/group")
            gid = int(match[2])
    supplementary = [gid]
    if name is not None:
        for e in groups_db:
            if name in e[3].split(",") and e[2].isdigit() and int(e[2]) not in supplementary:
                supplementary.append(int(e[2]))
    for added in group_add:
        if added.isdigit():
            number = int(added)
        else:
            match = next((e for e in groups_db if e[0] == added and e[2].isdigit()), None)
            if match is None:
                raise launch_error(f"GroupAdd={added}: group not found in the container's /etc/group")
            number = int(match[2])
        if number not in supplementary:
            supplementary.append(number)
    return Identity(uid, gid, supplementary, home, name)


# What systemd sets for the service itself (and the launcher's own settings): not passed on
# with EnvironmentHost=yes, only when Environment= names one. Most name host paths
# (RUNTIME_DIRECTORY, CREDENTIALS_DIRECTORY, PIDFILE) or the launcher's own pids, which mean
# nothing inside; REMOTE_ADDR and REMOTE_PORT (Accept=yes) are the client's, and
# Environment=REMOTE_ADDR passes them on purpose.
SERVICE_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "MAINPID", "SYSTEMD_EXEC_PID",
                     "MANAGERPID", "PIDFILE", "LOG_NAMESPACE", "REMOTE_ADDR", "REMOTE_PORT", "SERVICE_RESULT",
                     "EXIT_CODE", "EXIT_STATUS", "CREDENTIALS_DIRECTORY", "RUNTIME_DIRECTORY", "STATE_DIRECTORY",
                     "CACHE_DIRECTORY", "LOGS_DIRECTORY", "CONFIGURATION_DIRECTORY", "FDSTORE")  # fmt: skip
SERVICE_PREFIXES = ("LISTEN_", "WATCHDOG_", "SDCONTAINER_", "MONITOR_", "TRIGGER_", "MEMORY_PRESSURE_")
# Socket activation's variables: the launcher sets them for the container (LISTEN_PID is the
# container's own pid there), never copies the host's values.
LISTEN_PREFIX = "LISTEN_"


def host_environment(launcher_env: Mapping[str, str]) -> dict[str, str]:
    """EnvironmentHost=yes: the launcher's environment but for systemd's service variables."""
    return {
        key: value
        for key, value in launcher_env.items()
        if key not in SERVICE_VARIABLES and not key.startswith(SERVICE_PREFIXES)
    }


# HttpProxy=: podman's list, in both cases
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
)


def build_environment(plan: Plan, home: str, launcher_env: Mapping[str, str]) -> dict[str, str]:
    """A fresh environment: nothing of the launcher's leaks (NOTIFY_SOCKET, INVOCATION_ID,
    JOURNAL_STREAM, ...) except TERM, the proxy variables (HttpProxy=, as podman), what
    Environment= names on purpose and, with
    EnvironmentHost=yes, all the rest but systemd's service variables."""
    env = {"PATH": DEFAULT_PATH, "container": "sdcontainer", "HOSTNAME": plan.hostname, "HOME": home}
    for item in plan.image_env:  # the image's Env: over the defaults, under everything the unit says
        key, _, value = item.partition("=")
        env[key] = value
    if plan.spec.env_host:
        env.update(host_environment(launcher_env))  # over the defaults, as podman's --env-host
    if plan.spec.http_proxy:  # HttpProxy=, podman's default: under everything the unit says
        env.update((key, launcher_env[key]) for key in PROXY_VARIABLES if key in launcher_env)
    if "TERM" in launcher_env:
        env["TERM"] = launcher_env["TERM"]
    env.update(plan.file_env)
    for item in plan.spec.environment:
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        elif key in launcher_env and not key.startswith(LISTEN_PREFIX):
            env[key] = launcher_env[key]
    env.update(plan.secret_env)  # Secret=...,type=env: over Environment=, as podman's --secret
    if plan.notify_socket:
        # loaded already (the launcher imports it): this runs after pivot_root, where the
        # host's files are out of reach; `sdcontainer exec` never gets here and skips it
        from sdcontainer.plan import NOTIFY_SOCKET_INSIDE

        env["NOTIFY_SOCKET"] = NOTIFY_SOCKET_INSIDE
    if plan.watchdog_usec is not None:
        # WatchdogSec=: for sd_watchdog_enabled(3), the same process LISTEN_PID names
        env.update(WATCHDOG_USEC=plan.watchdog_usec, WATCHDOG_PID="2" if plan.spec.run_init else "1")
    if plan.listen_fds:
        # LISTEN_PID names the process meant to take the fds, as it sees its own pid: the
        # command, PID 1 of its namespace (systemd CONTAINER_INTERFACE.md), or with RunInit=yes
        # the init's first and only child, PID 2 (tini passes the environment on as it is).
        env.update(LISTEN_FDS=str(plan.listen_fds), LISTEN_PID="2" if plan.spec.run_init else "1")
        if plan.listen_fdnames is not None:
            env["LISTEN_FDNAMES"] = plan.listen_fdnames
    return env


# binfmt_script reads this much of a file for its #! line; the kernel lets a script's
# interpreter be a script itself, at most this deep (ELOOP beyond)
_BINPRM_BUF_SIZE = 256
_MAX_INTERPRETER_DEPTH = 5


def _interpreter(fd: int) -> tuple[bytes, bool] | None:
    """The interpreter the kernel would open to run this file: a #! line's, or an ELF
    program's PT_INTERP (its dynamic loader); True if that may be a script in its turn."""
    from struct import unpack_from  # loaded by linux already

    head = os.pread(fd, _BINPRM_BUF_SIZE, 0)
    if head.startswith(b"#!"):
        # as binfmt_script: blanks skipped, the name ends at a blank, NUL or newline
        line = head[2:].split(b"\n", 1)[0].replace(b"\t", b" ").lstrip(b" ")
        name = line.split(b" ", 1)[0].split(b"\0", 1)[0]
        return (name, True) if name else None
    if not head.startswith(b"\x7fELF") or len(head) < 64 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    endian = "<" if head[5] == 1 else ">"
    if head[4] == 2:  # ELFCLASS64
        (phoff,) = unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = unpack_from(endian + "HH", head, 0x36)
        entry, min_size = endian + "I4xQ16xQ", 40  # p_type, p_offset, p_filesz
    else:
        (phoff,) = unpack_from(endian + "I", head, 0x1C)
        phentsize, phnum = unpack_from(endian + "HH", head, 0x2A)
        entry, min_size = endian + "II8xI", 20
    if phentsize < min_size or not 0 < phentsize * phnum <= 65536:
        return None  # the kernel refuses such a file (ENOEXEC) before any interpreter
    table = os.pread(fd, phentsize * phnum, phoff)
    for i in range(len(table) // phentsize):
        kind, offset, size = unpack_from(entry, table, i * phentsize)
        if kind == 3:  # PT_INTERP
            return os.pread(fd, min(size, 4096), offset).split(b"\0", 1)[0], False
    return None


def _open_interpreter(program: str, path: str, flags: int) -> int:
    try:
        return linux.openat2(linux.AT_FDCWD, path, flags, linux.RESOLVE_NO_MAGICLINKS)
    except OSError as error:
        if error.errno == 40:  # ELOOP
            raise launch_error(
                f"exec {program}: its interpreter {path} is a symlink loop or /proc magic link; refusing it",
                EXIT_CANNOT_EXEC,
            ) from None
        raise


def check_interpreters(program: str) -> None:
    """Refuse a program whose #! interpreter or ELF dynamic loader is reached through a /proc
    magic link, at any depth. The first execve is made by the launcher's own process, so
    /proc/self/exe (or /proc/1/exe, or map_files) there is the host's python: run as the
    container's PID 1, it could open that host file through the link and later overwrite it
    (CVE-2019-5736). Only what the kernel would open is checked; an interpreter it cannot
    find, or a file that is no program, is left for execve to report. A program or script
    interpreter that cannot be read cannot be checked, and is refused."""
    try:
        fd = linux.openat2(linux.AT_FDCWD, program, os.O_RDONLY | os.O_NONBLOCK, linux.RESOLVE_NO_MAGICLINKS)
    except OSError as error:  # executable but not readable: nothing proves it safe
        raise launch_error(
            f"exec {program}: cannot read it to check its interpreter: {reason(error)}", EXIT_CANNOT_EXEC
        ) from None
    for _ in range(_MAX_INTERPRETER_DEPTH):
        try:
            found = _interpreter(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        finally:
            os.close(fd)
        if found is None:
            return
        name, may_be_script = found
        path = os.fsdecode(name)
        try:
            fd = _open_interpreter(program, path, os.O_RDONLY | os.O_NONBLOCK if may_be_script else os.O_PATH)
        except OSError as error:
            if error.errno in (2, 20):  # ENOENT, ENOTDIR: execve says so
                return
            raise launch_error(
                f"exec {program}: cannot read its interpreter {path} to check it: {reason(error)}", EXIT_CANNOT_EXEC
            ) from None
        if not may_be_script:  # an ELF loader is loaded as it is, whatever it names
            os.close(fd)
            return
    os.close(fd)


def find_program(name: str, path: str) -> str:
    """execvp's search, inside the container and without following /proc magic links (an
    entrypoint of /proc/self/exe would otherwise run the host's python, CVE-2019-5736)."""
    candidates = [name] if "/" in name else [f"{d or '.'}/{name}" for d in path.split(":")]
    denied: OSError | None = None
    for candidate in candidates:
        try:
            fd = linux.openat2(linux.AT_FDCWD, candidate, os.O_PATH, linux.RESOLVE_NO_MAGICLINKS)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            if error.errno == 40:  # ELOOP
                raise launch_error(
                    f"exec {candidate}: refusing a symlink loop or /proc magic link", EXIT_CANNOT_EXEC
                ) from None
            denied = error
            continue
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        if stat.S_ISREG(mode) and os.access(candidate, os.X_OK):
            check_interpreters(candidate)
            return candidate
        denied = PermissionError(13, "Permission denied")
    if denied is not None:
        raise launch_error(f"exec {name}: {reason(denied)}", EXIT_CANNOT_EXEC)
    where = "" if "/" in name else f" (not found in PATH={path})"
    raise launch_error(f"exec {name}: No such file or directory{where}", EXIT_NOT_FOUND)
