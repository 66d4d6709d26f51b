"""Secrets: values stored root-only on the host and handed to containers (Secret=).

`sdcontainer secret create NAME FILE` writes the value into SECRETS_DIR (a 0700 directory
of root's, one 0600 file per secret, written atomically). A unit that names the secret
gets `LoadCredential=sdcontainer-secret-NAME:PATH`: systemd copies the file into the unit's
own credentials directory (a ramfs only the unit's user can read) as the unit starts, so
the value is never in the unit file, in `systemctl show`, on the launcher's command line or
in its environment. The launcher reads it from $CREDENTIALS_DIRECTORY and puts it in the
container (a file on /run/secrets/NAME, or a variable of the container's environment).

The files are stored in plain text, as podman's default file driver stores them, not
encrypted with systemd-creds: encryption with the host key only protects against someone
who can read the disk but not /var/lib/systemd/credential.secret beside it, and a TPM is
not on every host; root can read either way. A missing secret must fail the start naming
it, where systemd would fail it with "Failed to set up credentials: Protocol error":
`SetCredential=ID:\\x00` is the value systemd falls back to when LoadCredential='s file is
missing (an empty one is not valid before systemd 253), a single NUL byte that cannot be
created as a secret, so it means "missing" to the launcher.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.values import secret_name_problem

SYSTEM_SECRETS_DIR = "/var/lib/sdcontainer/secrets"
CREDENTIAL_PREFIX = "sdcontainer-secret-"
SIZE_MAX = 512_000  # podman's limit; systemd's for a credential is 1 MiB
MISSING = b"\0"  # SetCredential='s fallback: what the unit gets in place of a missing secret
MISSING_SETTING = "\\x00"  # MISSING as SetCredential= spells it (C escapes are decoded)


def secrets_dir() -> str:
    """SECRETS_DIR, or $SDCONTAINER_SECRETS (tests; the generator never sees it, so a unit
    always loads from the system directory)."""
    return os.environ.get("SDCONTAINER_SECRETS") or SYSTEM_SECRETS_DIR


def credential_id(name: str) -> str:
    return CREDENTIAL_PREFIX + name


def secret_path(name: str, directory: str | None = None) -> str:
    return os.path.join(directory or secrets_dir(), name)


def check_name(name: str) -> None:
    problem = secret_name_problem(name)
    if problem:
        raise UsageError(problem)


def _open_dir(create: bool) -> int:
    """An fd of the store directory, made (0700) if `create`; refused if anyone but its
    owner could read it or if it is not root's own (when we are root)."""
    directory = secrets_dir()
    if create:
        os.makedirs(os.path.dirname(directory), 0o755, exist_ok=True)
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o700)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_mode & 0o077 or st.st_uid != os.geteuid():
        os.close(fd)
        raise ConfigError(
            f"secrets directory is not private (mode {st.st_mode & 0o7777:o}, owner {st.st_uid}); refusing to use it",
            directory,
        )
    return fd


def create(name: str, data: bytes, *, replace: bool = False) -> None:
    """Store `data` as secret `name`: in a new file (0600) renamed into place, so a reader
    sees the old value or the new one, never part of one."""
    check_name(name)
    if not data:
        raise UsageError(f"secret {name}: the value is empty")
    if data == MISSING:
        raise UsageError(f"secret {name}: a lone NUL byte is reserved (it marks a missing secret)")
    if len(data) > SIZE_MAX:
        raise UsageError(f"secret {name}: the value is {len(data)} bytes, more than {SIZE_MAX}")
    fd = _open_dir(create=True)
    temporary = f".{name}.{os.getpid()}.new"
    try:
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            os.fchmod(out, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
            os.fsync(out)
        finally:
            os.close(out)
        if replace:
            os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
        else:
            try:
                os.link(temporary, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                raise UsageError(f"secret {name} exists already (use --replace to change its value)") from None
            os.unlink(temporary, dir_fd=fd)
        os.fsync(fd)
    except BaseException:
        if os.path.lexists(os.path.join(secrets_dir(), temporary)):
            os.unlink(temporary, dir_fd=fd)
        raise
    finally:
        os.close(fd)


def names() -> list[str]:
    try:
        fd = _open_dir(create=False)
    except FileNotFoundError:
        return []
    try:
        return sorted(n for n in os.listdir(fd) if not n.startswith(".") and secret_name_problem(n) is None)
    finally:
        os.close(fd)


def info(name: str) -> dict[str, object]:
    """What `secret inspect` shows: never the value."""
    check_name(name)
    import time

    try:
        fd = _open_dir(create=False)
    except FileNotFoundError:
        raise UsageError(f"no secret {name}") from None
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise UsageError(f"no secret {name}") from None
    finally:
        os.close(fd)
    return {
        "Name": name,
        "Size": st.st_size,
        "Updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
        "Path": secret_path(name),
        "Credential": credential_id(name),
    }


def remove(name: str) -> None:
    check_name(name)
    try:
        fd = _open_dir(create=False)
    except FileNotFoundError:
        raise UsageError(f"no secret {name}") from None
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        raise UsageError(f"no secret {name}") from None
    finally:
        os.close(fd)


def read_for_start(name: str) -> bytes:
    """The value a starting container gets: from the unit's credentials directory under
    systemd, else (the launcher run by hand, as root) from the store itself. Raises
    LookupError when the secret does not exist."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    path = os.path.join(credentials, credential_id(name)) if credentials else secret_path(name)
    try:
        with open(path, "rb") as f:
            data = f.read(SIZE_MAX + 1)
    except FileNotFoundError:
        raise LookupError(name) from None
    if data in (b"", MISSING):  # SetCredential='s fallback: LoadCredential= found no file
        raise LookupError(name)
    return data
