"""The one table of `[Container]` keys.

Each `Key` says how a value is read from a `.container` file, where it lands in the
`ContainerSpec`, which launcher/CLI option carries it, and what the man page says about it.
The parser, the generated unit, the launcher's command line and the man-page cross-check
all read this table; a key is declared here and nowhere else.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.record import record
from sdcontainer.spec import BindMount, ContainerSpec, TmpfsMount
from sdcontainer.text import ALNUM, DIGITS, LOWER, SIGNAL_NAMES, SIGNALS, UPPER, check_glob, ip_address, only, word
from sdcontainer.unitfile import Entry, UnitFile, escape_specifiers, parse_boolean, split_words, unquote

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import; the generator and launcher skip it
    from collections.abc import Callable
    from typing import Any


@record
class ParseContext:
    """`unit_dir` resolves relative paths in a file; `expanded` is true in the launcher,
    after systemd has expanded specifiers, where paths must be absolute for real."""

    unit_dir: str = "/"
    expanded: bool = False


@record
class Key:
    name: str
    kind: str  # "single" (last wins), "list" (one item per line), "words" (split), "exec"
    field: str
    parse: Callable[[str, ParseContext], Any]
    doc: str
    option: str | None = None  # launcher and `sdcontainer run` option; None: unit-level only
    metavar: str = "VALUE"
    service_setting: str | None = None  # the [Service] setting the value becomes, if any
    # Each line (or word) holds several values joined by this, as podman's comma-separated
    # flags (--dns 1.1.1.1,8.8.8.8) and colon-separated masks do; each is parsed alone.
    separator: str | None = None

    @property
    def repeated(self) -> bool:
        return self.kind in ("list", "words")


# --- value parsers ------------------------------------------------------------------------


def _path(value: str, ctx: ParseContext, *, relative_ok: bool = False) -> str:
    if not value:
        raise ValueError("a path is required")
    if value.startswith("%") and not ctx.expanded:
        return value  # a specifier such as %h or %S; systemd makes it absolute
    if not value.startswith("/"):
        if relative_ok and not ctx.expanded:
            return os.path.normpath(os.path.join(ctx.unit_dir, value))
        raise ValueError(f"{value!r} is not an absolute path")
    return os.path.normpath(value) if value != "/" else value


def parse_abs_path(value: str, ctx: ParseContext) -> str:
    return _path(value, ctx)


def parse_host_path(value: str, ctx: ParseContext) -> str:
    """A path on the host: relative paths are taken from the unit file's directory."""
    return _path(value, ctx, relative_ok=True)


def parse_string(value: str, ctx: ParseContext) -> str:
    if not value:
        raise ValueError("a value is required")
    return value


def parse_bool(value: str, ctx: ParseContext) -> bool:
    return parse_boolean(value)


def parse_env_assignment(value: str, ctx: ParseContext) -> str:
    name = value.partition("=")[0]
    if not word(name, UPPER + LOWER + "_", ALNUM + "_"):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    return value


def parse_label(value: str, ctx: ParseContext) -> str:
    if "=" not in value or value.startswith("="):
        raise ValueError(f"{value!r} is not KEY=VALUE")
    return value


_MOUNT_FLAGS = {"nosuid", "nodev", "noexec", "suid", "dev", "exec", "rbind", "bind"}


def parse_volume(value: str, ctx: ParseContext) -> BindMount:
    parts = value.split(":")
    if len(parts) == 1:
        raise ValueError(
            f"{value!r} has no source; anonymous and named volumes are not supported yet, "
            "use HOST-PATH:CONTAINER-PATH[:OPTIONS] or Tmpfs="
        )
    if len(parts) > 3:
        raise ValueError(f"{value!r} is not SOURCE:TARGET[:OPTIONS]")
    source, target = parts[0], parts[1]
    if not (source.startswith(("/", "./", "../", "%")) or source in (".", "..")):
        raise ValueError(f"named volume {source!r} is not supported yet; give a host path")
    readonly = False
    options: list[str] = []
    for opt in parts[2].split(",") if len(parts) == 3 and parts[2] else []:
        if opt == "ro":
            readonly = True
        elif opt == "rw":
            readonly = False
        elif opt in ("z", "Z"):
            continue  # SELinux relabelling: no SELinux policy is applied by sdcontainer
        elif opt in _MOUNT_FLAGS:
            options.append(opt)
        else:
            raise ValueError(f"unknown volume option {opt!r} (known: ro, rw, {', '.join(sorted(_MOUNT_FLAGS))})")
    source = parse_host_path(source, ctx)
    if ":" in source:  # only through the file's directory: a colon in the value splits it
        raise ValueError(f"the source {source!r} has a ':' in it (the launcher's --volume is SOURCE:TARGET[:OPTIONS])")
    return BindMount(source, parse_abs_path(target, ctx), readonly, tuple(options))


def parse_tmpfs(value: str, ctx: ParseContext) -> TmpfsMount:
    target, _, opts = value.partition(":")
    options = tuple(o for o in opts.split(",") if o)
    for opt in options:
        name, eq, setting = opt.partition("=")
        if not word(name, LOWER + "_", LOWER + "_") or (eq and not word(setting, ALNUM + "%._-", ALNUM + "%._-")):
            raise ValueError(f"invalid tmpfs option {opt!r}")
    return TmpfsMount(parse_abs_path(target, ctx), options)


def parse_network(value: str, ctx: ParseContext) -> str:
    if value in ("none", "host"):
        return value
    raise ValueError(
        f"Network={value} is not supported yet; this version supports Network=none "
        "(the default: a private network namespace with only loopback) and Network=host"
    )


_HOST_NAME = ALNUM + "-._"


def parse_add_host(value: str, ctx: ParseContext) -> str:
    """podman's --add-host: NAME[;NAME...]:IP, an extra line in /etc/hosts. The first ':'
    ends the names, so an IPv6 address needs no brackets."""
    names, colon, address = value.partition(":")
    if not colon or not names:
        raise ValueError(f"{value!r} is not NAME:IP")
    for name in names.split(";"):
        if not name:
            raise ValueError(f"{value!r} has an empty host name")
        if not word(name, _HOST_NAME, _HOST_NAME) and not ("%" in name and not ctx.expanded):
            raise ValueError(f"{name!r} is not a host name (letters, digits, '-', '.' and '_')")
    if address == "host-gateway":
        raise ValueError("host-gateway is not supported yet: there is no network to reach the host by")
    if not ip_address(address):
        raise ValueError(f"{address!r} is not an IPv4 or IPv6 address")
    return value


def parse_dns_server(value: str, ctx: ParseContext) -> str:
    if value == "none" or ip_address(value):
        return value
    raise ValueError(f"{value!r} is not an IP address (or none)")


def parse_dns_search(value: str, ctx: ParseContext) -> str:
    """A search domain, or '.' for none at all."""
    labels = value[:-1].split(".") if value.endswith(".") and value != "." else value.split(".")
    if value != "." and (
        len(value) > 253 or not all(word(label, ALNUM, ALNUM + "-", 63) and label[-1] != "-" for label in labels)
    ):
        raise ValueError(f"{value!r} is not a domain name (or . for no search domains)")
    return value


def parse_dns_option(value: str, ctx: ParseContext) -> str:
    """A resolv.conf option, such as ndots:2, edns0 or timeout:1 (resolv.conf(5))."""
    if not word(value, ALNUM, ALNUM + ":._-"):
        raise ValueError(f"{value!r} is not a resolver option (such as ndots:2 or edns0)")
    return value


def parse_signal(value: str, ctx: ParseContext) -> str:
    name = value.upper()
    if word(name, DIGITS, DIGITS):
        if int(name) not in SIGNAL_NAMES:
            raise ValueError(f"{value!r} is not a signal number")
        return SIGNAL_NAMES[int(name)]
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in SIGNALS:
        raise ValueError(f"{value!r} is not a signal name")
    return name


def parse_proxy_target(value: str, ctx: ParseContext) -> str:
    """SocketProxy=: a TCP port, or ADDRESS:PORT, the container listens on."""
    address, colon, port = value.rpartition(":")
    if not word(port, DIGITS, DIGITS, 5) or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not a TCP port (1-65535) or ADDRESS:PORT")
    if colon and not ip_address(address.strip("[]")):
        raise ValueError(f"{address!r} is not an IP address")
    return value


_TIMESPAN_UNITS = frozenset([
    "us", "usec", "ms", "msec", "s", "sec", "second", "seconds", "m", "min", "minute", "minutes", "h", "hr",
    "hour", "hours", "d", "day", "days", "w", "week", "weeks"
])  # fmt: skip


def parse_timespan(value: str, ctx: ParseContext) -> str:
    """A systemd time span (systemd.time(7)): 30s, 5min, 1h 30min, a bare number of seconds,
    or infinity."""
    if value == "infinity":
        return value
    rest = value.replace(" ", "")
    if not rest:
        raise ValueError("a time span is required")
    while rest:
        number = rest[: len(rest) - len(rest.lstrip(DIGITS + "."))]
        rest = rest[len(number) :]
        unit = rest[: len(rest) - len(rest.lstrip(LOWER))]
        rest = rest[len(unit) :]
        if not number or number.count(".") > 1 or (unit and unit not in _TIMESPAN_UNITS):
            raise ValueError(f"{value!r} is not a time span (such as 30s, 5min, 1h 30min or infinity)")
    return value


def parse_seconds(value: str, ctx: ParseContext) -> int:
    if not word(value, DIGITS, DIGITS):
        raise ValueError(f"{value!r} is not a whole number of seconds")
    return int(value)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def size_in_bytes(value: str) -> int:
    """podman's size syntax (go-units RAMInBytes): a number, perhaps with a fraction, then
    perhaps a space, one of k m g t p (powers of 1024, any case), i, and b: 512m, 1.5g, 64MiB,
    4096."""
    number = value[: len(value) - len(value.lstrip(DIGITS + "."))]
    suffix = value[len(number) :].lower()
    suffix = suffix[1:] if suffix.startswith(" ") else suffix
    unit = suffix[:1] if suffix[:1] in "kmgtp" else ""
    rest = suffix[len(unit) :]
    rest = rest[1:] if rest.startswith("i") else rest
    whole, dot, fraction = number.partition(".")
    if not word(whole, DIGITS, DIGITS) or not only(fraction, DIGITS) or (dot and not fraction) or rest not in ("", "b"):
        raise ValueError(f"{value!r} is not a size (a number of bytes, or with k, m, g, t or p: 512m, 1.5g)")
    scale = _SIZE_UNITS[unit]
    return int(whole) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)


def format_size(size: int) -> str:
    """Bytes with the largest binary suffix that divides them, as systemd and tmpfs read
    sizes: 512M, 5G, 1536K, 1000."""
    for suffix, scale in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def parse_memory(value: str, ctx: ParseContext) -> str:
    """Memory=: systemd's MemoryMax=; 0 means no limit, as in podman."""
    size = size_in_bytes(value)
    return format_size(size) if size else "infinity"


# podman's default pids limit (containers.conf pids_limit), in place of systemd's
# DefaultTasksMax= (15% of the kernel's pid maximum: 28910 on a small machine)
DEFAULT_PIDS_LIMIT = "2048"


def parse_pids_limit(value: str, ctx: ParseContext) -> str:
    """PidsLimit=: systemd's TasksMax=; -1 and 0 mean no limit, as in podman."""
    if value in ("-1", "0"):
        return "infinity"
    if not word(value, DIGITS, DIGITS):
        raise ValueError(f"{value!r} is not a number of processes (or -1 for no limit)")
    return str(int(value))


# podman's --ulimit names (go-units) and the systemd settings that set the same rlimits
ULIMIT_SETTINGS = {
    "core": "LimitCORE", "cpu": "LimitCPU", "data": "LimitDATA", "fsize": "LimitFSIZE",
    "locks": "LimitLOCKS", "memlock": "LimitMEMLOCK", "msgqueue": "LimitMSGQUEUE",
    "nice": "LimitNICE", "nofile": "LimitNOFILE", "nproc": "LimitNPROC", "rss": "LimitRSS",
    "rtprio": "LimitRTPRIO", "rttime": "LimitRTTIME", "sigpending": "LimitSIGPENDING",
    "stack": "LimitSTACK",
}  # fmt: skip


def _rlimit(text: str, name: str) -> int | None:
    """One limit as a number, None for unlimited (-1)."""
    if text == "-1":
        return None
    if not word(text, DIGITS, DIGITS):
        raise ValueError(f"{name} limit {text!r} is not a number (or -1 for unlimited)")
    number = int(text)
    if name == "nice" and number > 40:
        raise ValueError(f"nice limit {number} is out of range (0 to 40: 20 minus the lowest nice value)")
    return number


def parse_ulimit(value: str, ctx: ParseContext) -> str:
    """podman's NAME=SOFT[:HARD] (-1: unlimited; a single number sets both), or host;
    normalized for systemd's Limit*=: nofile=1024:infinity."""
    if value == "host":
        return value
    name, eq, limits = value.partition("=")
    name = name.lower()
    name = name[len("rlimit_") :] if name.startswith("rlimit_") else name
    if not eq:
        raise ValueError(f"{value!r} is not NAME=SOFT[:HARD]")
    if name not in ULIMIT_SETTINGS:
        raise ValueError(f"unknown limit {name!r} (known: {', '.join(ULIMIT_SETTINGS)})")
    soft_text, colon, hard_text = limits.partition(":")
    soft = _rlimit(soft_text, name)
    hard = _rlimit(hard_text, name) if colon else soft
    if hard is not None and (soft is None or soft > hard):
        raise ValueError(f"{name}: the soft limit {soft_text} is above the hard limit {hard_text}")

    def show(limit: int | None) -> str:
        return "infinity" if limit is None else str(limit)

    return f"{name}={show(soft)}" + (f":{show(hard)}" if colon else "")


def parse_shm_size(value: str, ctx: ParseContext) -> str:
    """ShmSize=: the size= of the /dev/shm tmpfs (0: no limit, as tmpfs reads it)."""
    return format_size(size_in_bytes(value))


def parse_unmask(value: str, ctx: ParseContext) -> str:
    """An absolute path or glob pattern (Go's filepath.Match), or ALL."""
    if value.lower() == "all":
        return "ALL"
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path, a pattern such as /proc/* or ALL")
    try:
        check_glob(value)
    except ValueError as error:
        raise ValueError(f"{value!r}: {error}") from None
    return value


# podman's namespaced sysctls (pkg/util ValidateSysctls): the IPC namespace's, and net.*
SYSCTL_NAMES = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip
SYSCTL_PREFIXES = ("fs.mqueue.", "net.")


def parse_sysctl(value: str, ctx: ParseContext) -> str:
    name, eq, setting = value.partition("=")
    if not eq or not name or not setting:
        raise ValueError(f"{value!r} is not NAME=VALUE")
    if name.strip() != name or setting.strip() != setting or "\n" in setting:
        raise ValueError(f"{value!r} has spaces around the name or the value")
    if not word(name, LOWER, ALNUM + "._-"):
        raise ValueError(f"{name!r} is not a sysctl name (such as net.ipv4.ip_forward)")
    if name not in SYSCTL_NAMES and not name.startswith(SYSCTL_PREFIXES):
        raise ValueError(
            f"sysctl {name} is not allowed: only the container's own namespaces may be tuned "
            f"({', '.join(SYSCTL_NAMES)}, fs.mqueue.* and net.*)"
        )
    return value


def parse_group_add(value: str, ctx: ParseContext) -> str:
    """A supplementary group: a name from the container's /etc/group, or a number."""
    if value == "keep-groups":
        raise ValueError(
            "keep-groups is not supported yet (it keeps rootless podman's own groups); "
            "name the groups, or give their numbers"
        )
    if not value or any(c in value for c in ": \t\n"):
        raise ValueError(f"{value!r} is not a group name or number")
    return value


def parse_timezone(value: str, ctx: ParseContext) -> str:
    """local, or a zone name such as Europe/Berlin or Etc/GMT+5 (a path below
    /usr/share/zoneinfo, which cannot leave it)."""
    if value == "local":
        return value
    parts = value.split("/")
    if not word(value, ALNUM, ALNUM + "/_+-.") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{value!r} is not a time zone name (such as Europe/Berlin, UTC or local)")
    return value


def parse_entrypoint(value: str, ctx: ParseContext) -> tuple[str, ...]:
    """Like podman's --entrypoint: a JSON array, or one program path; empty clears it."""
    if value.startswith("["):
        import json

        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"invalid JSON array: {error.msg}") from None
        if not isinstance(parsed, list) or not all(isinstance(w, str) for w in parsed):
            raise ValueError("the JSON form must be an array of strings")
        return tuple(parsed)
    return (value,) if value else ()


def parse_hostname(value: str, ctx: ParseContext) -> str:
    if not ctx.expanded and "%" in value:
        return value
    if not word(value, ALNUM, ALNUM + ".-", 63):
        raise ValueError(f"{value!r} is not a valid host name (letters, digits, '-' and '.', at most 63)")
    return value


def parse_name(value: str, ctx: ParseContext) -> str:
    if not word(value, ALNUM + "%", ALNUM + "%@_.:-"):
        raise ValueError(f"{value!r} is not a valid container name (letters, digits and @_.:-)")
    return value


def parse_image(value: str, ctx: ParseContext) -> str:
    """An image reference: [REGISTRY/]NAME[:TAG][@sha256:DIGEST] (sdcontainer.reference)."""
    if value.endswith((".image", ".build")):
        raise ValueError(f"{value}: .image and .build units are not supported yet; name the image itself")
    from sdcontainer.reference import parse_reference

    parse_reference(value)
    return value


PULL_POLICIES = ("never", "missing", "always", "newer")


def parse_pull(value: str, ctx: ParseContext) -> str:
    if value not in PULL_POLICIES:
        raise ValueError(f"{value!r} is not one of {', '.join(PULL_POLICIES)}")
    return value


def parse_count(value: str, ctx: ParseContext) -> int:
    if not word(value, DIGITS, DIGITS, 6):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def parse_retry_delay(value: str, ctx: ParseContext) -> str:
    """RetryDelay=: a duration as duration_ms() reads it, kept as "<N>ms" so that it reads the
    same after the trip through the launcher's command line."""
    return f"{duration_ms(value)}ms"


def duration_seconds(value: str) -> float:
    """A value parse_duration made, in seconds."""
    return int(value.removesuffix("ms")) / 1000


def parse_capability(value: str, ctx: ParseContext) -> str:
    name = value.upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name != "CAP_ALL" and not (name.startswith("CAP_") and word(name[4:], UPPER + "_", UPPER + "_")):
        raise ValueError(f"{value!r} is not a capability name")
    return name


def parse_notify(value: str, ctx: ParseContext) -> str:
    """Notify=: a boolean (yes: the container sends READY=1 itself), or healthy."""
    if value.lower() == "healthy":
        return "healthy"
    try:
        return "yes" if parse_boolean(value) else "no"
    except ValueError:
        raise ValueError(f"{value!r} is not a boolean or healthy") from None


def parse_health_cmd(value: str, ctx: ParseContext) -> tuple[str, ...]:
    """podman's --health-cmd: a JSON array (["CMD", prog, args...], ["CMD-SHELL", "line"], or
    the argv itself), or a line for /bin/sh -c; none turns the check off."""
    if value.lower() == "none":
        return ()
    if not value.startswith("["):
        return ("/bin/sh", "-c", value)
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON array: {error.msg}") from None
    if not isinstance(parsed, list) or not parsed or not all(isinstance(w, str) for w in parsed):
        raise ValueError("the JSON form must be a non-empty array of strings")
    kind, rest = parsed[0], parsed[1:]
    if kind == "NONE":
        return ()
    if kind == "CMD-SHELL":
        if not rest:
            raise ValueError('["CMD-SHELL"] needs a command line after it')
        return ("/bin/sh", "-c", " ".join(rest))
    if kind == "CMD":
        if not rest:
            raise ValueError('["CMD"] needs a program after it')
        return tuple(rest)
    return tuple(parsed)


_DURATION_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration_ms(value: str) -> int:
    """A Go duration (podman's syntax: 30s, 1m30s, 500ms, 1h) or a number of seconds, in
    whole milliseconds (rounded up)."""
    if word(value, DIGITS, DIGITS):
        return int(value) * 1000
    total = 0.0
    rest = value
    if not rest:
        raise ValueError("a duration is required")
    while rest:
        number = rest[: len(rest) - len(rest.lstrip(DIGITS + "."))]
        rest = rest[len(number) :]
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if rest.startswith(u)), None)
        whole, dot, fraction = number.partition(".")
        if unit is None or not (whole or fraction) or not only(whole + fraction, DIGITS) or (dot and not fraction):
            raise ValueError(f"{value!r} is not a duration (such as 30s, 1m30s or 500ms)")
        rest = rest[len(unit) :]
        total += float(number) * _DURATION_UNITS[unit]
    return -int(-total // 1)


def parse_duration(value: str, ctx: ParseContext) -> int:
    return duration_ms(value)


def parse_positive_duration(value: str, ctx: ParseContext) -> int:
    ms = duration_ms(value)
    if ms <= 0:
        raise ValueError(f"{value!r}: must be longer than 0")
    return ms


def parse_health_interval(value: str, ctx: ParseContext) -> int:
    """A duration, or disable: no timer, the check runs only when its service is started."""
    if value.lower() == "disable":
        return 0
    return parse_positive_duration(value, ctx)


def parse_retries(value: str, ctx: ParseContext) -> int:
    if not word(value, DIGITS, DIGITS) or int(value) < 1:
        raise ValueError(f"{value!r} is not a number of at least 1")
    return int(value)


HEALTH_ACTIONS = ("none", "kill", "restart", "stop")


def parse_health_on_failure(value: str, ctx: ParseContext) -> str:
    if value not in HEALTH_ACTIONS:
        raise ValueError(f"{value!r} is not one of {', '.join(HEALTH_ACTIONS)}")
    return value


# --- the table ----------------------------------------------------------------------------

KEYS: tuple[Key, ...] = (
    Key(
        "Rootfs",
        "single",
        "rootfs",
        parse_host_path,
        option="--rootfs",
        metavar="PATH",
        doc="A directory tree to run as the container's root file system. It is never written "
        "to: the container sees an overlay whose upper layer lives in memory and vanishes "
        "with the container. Exactly one of *Rootfs=* and *Image=* is required.",
    ),
    Key(
        "Image",
        "single",
        "image",
        parse_image,
        option="--image",
        metavar="IMAGE",
        doc="The OCI image to run: _[REGISTRY/]NAME[:TAG][@sha256:DIGEST]_. It is pulled when the "
        "unit starts if the store lacks it (see *Pull=* and IMAGES); the container's root file "
        "system is an overlay of its layers with an upper layer in memory. Its config supplies "
        "the defaults of *Entrypoint=*, *Exec=* (its Cmd), *Environment=*, *WorkingDir=* and "
        "*User=*. A short name (no registry) is looked up as localhost/NAME, then in the "
        "unqualified-search-registries of registries.conf (docker.io when none is set).",
    ),
    Key(
        "Pull",
        "single",
        "pull",
        parse_pull,
        option="--pull",
        metavar="POLICY",
        doc="When the image is pulled as the unit starts: *missing* (the default) only if the "
        "store lacks it; *always* asks the registry each start and copies the image when its "
        "digest changed; *newer* likewise, but starts with the stored image when the registry "
        "cannot be reached; *never* fails the start if the image is not in the store.",
    ),
    Key(
        "Retry",
        "single",
        "retry",
        parse_count,
        option="--retry",
        metavar="N",
        doc="How many times a failed pull is tried again (network errors; a missing image or "
        "refused credentials fail at once). Default: 3.",
    ),
    Key(
        "RetryDelay",
        "single",
        "retry_delay",
        parse_retry_delay,
        option="--retry-delay",
        metavar="DURATION",
        doc="The wait between pull attempts (500ms, 10s, 1m). Default: 2s, doubled after each failure.",
    ),
    Key(
        "Exec",
        "exec",
        "exec",
        parse_string,
        metavar="COMMAND",
        doc="The command and its arguments, split and unescaped the way systemd splits "
        "*ExecStart=*. Appended to *Entrypoint=*. Only the last assignment counts.",
    ),
    Key(
        "Entrypoint",
        "single",
        "entrypoint",
        parse_entrypoint,
        option="--entrypoint",
        metavar="PROGRAM|JSON",
        doc="The program run in front of *Exec=*: one path, or a JSON array of strings. An empty value clears it.",
    ),
    Key(
        "Environment",
        "words",
        "environment",
        parse_env_assignment,
        option="--env",
        metavar="KEY=VALUE",
        doc="Environment variables for the container, space-separated, quoted the systemd "
        "way. A bare _KEY_ passes that variable's value from the unit's environment "
        "(*Environment=* in *[Service]*). Later assignments override earlier ones and "
        "*EnvironmentFile=*.",
    ),
    Key(
        "EnvironmentFile",
        "list",
        "environment_files",
        parse_host_path,
        option="--env-file",
        metavar="PATH",
        doc="A file of _KEY=VALUE_ lines (empty lines and lines starting with # are "
        "skipped) read on the host when the container starts. A relative path is taken "
        "from the directory of the unit file.",
    ),
    Key(
        "EnvironmentHost",
        "single",
        "env_host",
        parse_bool,
        option="--env-host",
        metavar="BOOL",
        doc="Passes the launcher's whole environment (the unit's) to the container, but for "
        "the variables systemd sets for the service itself. Default: no.",
    ),
    Key(
        "WorkingDir",
        "single",
        "working_dir",
        parse_abs_path,
        option="--workdir",
        metavar="PATH",
        doc="The directory the command starts in, inside the container. Default: /.",
    ),
    Key(
        "User",
        "single",
        "user",
        parse_string,
        option="--user",
        metavar="USER",
        doc="The user the command runs as: a name looked up in the container's own "
        "/etc/passwd, or a number. Default: root (uid 0).",
    ),
    Key(
        "Group",
        "single",
        "group",
        parse_string,
        option="--group",
        metavar="GROUP",
        doc="The group: a name from the container's /etc/group, or a number. Requires "
        "*User=*. Default: the user's group from /etc/passwd.",
    ),
    Key(
        "GroupAdd",
        "list",
        "group_add",
        parse_group_add,
        option="--group-add",
        metavar="GROUP",
        separator=",",
        doc="A supplementary group for the command, besides those /etc/group gives its user: "
        "a name from the container's /etc/group, or a number.",
    ),
    Key(
        "Timezone",
        "single",
        "timezone",
        parse_timezone,
        option="--tz",
        metavar="ZONE",
        doc="The container's time zone: its /etc/localtime becomes the host's "
        "/usr/share/zoneinfo/_ZONE_ (read-only), or with *local* the host's /etc/localtime.",
    ),
    Key(
        "HostName",
        "single",
        "hostname",
        parse_hostname,
        option="--hostname",
        metavar="NAME",
        doc="The host name inside the container (its own UTS namespace). Default: the "
        "container name, with characters a host name cannot hold replaced by '-'.",
    ),
    Key(
        "ContainerName",
        "single",
        "name",
        parse_name,
        option="--name",
        metavar="NAME",
        doc="The container's name, shown by *sdcontainer list*. Default: the unit name without its suffix (%N).",
    ),
    Key(
        "Volume",
        "list",
        "volumes",
        parse_volume,
        option="--volume",
        metavar="SOURCE:TARGET[:OPTIONS]",
        doc="Bind-mounts the host path _SOURCE_ at _TARGET_. _OPTIONS_ is a comma-separated "
        "list of ro, rw (the default), nosuid, nodev, noexec; z and Z are accepted and "
        "ignored (no SELinux relabelling). A relative _SOURCE_ (./dir) is taken from the "
        "directory of the unit file. Named volumes are not supported yet.",
    ),
    Key(
        "Tmpfs",
        "list",
        "tmpfs",
        parse_tmpfs,
        option="--tmpfs",
        metavar="PATH[:OPTIONS]",
        doc="Mounts a fresh tmpfs at _PATH_, nosuid, nodev and noexec unless _OPTIONS_ "
        "(tmpfs mount options such as size=64m,mode=1777, or exec) say otherwise.",
    ),
    Key(
        "ShmSize",
        "single",
        "shm_size",
        parse_shm_size,
        option="--shm-size",
        metavar="SIZE",
        doc="The size of the tmpfs on /dev/shm: bytes, or a number with k, m or g (powers of "
        "1024); 0 means no limit. Default: 64m.",
    ),
    Key(
        "ReadOnly",
        "single",
        "read_only",
        parse_bool,
        option="--read-only",
        metavar="BOOL",
        doc="Makes the container's root file system read-only. Default: no.",
    ),
    Key(
        "ReadOnlyTmpfs",
        "single",
        "read_only_tmpfs",
        parse_bool,
        option="--read-only-tmpfs",
        metavar="BOOL",
        doc="With *ReadOnly=yes*, mounts tmpfs on /tmp, /var/tmp and /run so programs still "
        "have somewhere to write. Default: yes.",
    ),
    Key(
        "Network",
        "single",
        "network",
        parse_network,
        option="--network",
        metavar="MODE",
        doc="*none* (the default): a network namespace of its own with only loopback. "
        "*host*: the host's network namespace. Other modes are refused for now.",
    ),
    Key(
        "SocketProxy",
        "single",
        "socket_proxy",
        parse_proxy_target,
        metavar="[ADDRESS:]PORT",
        doc="Scale to zero for a program that does not take sockets from systemd: the "
        "*[Socket]* section's socket activates a proxy (systemd-socket-proxyd) that starts the "
        "container, waits until it listens on _PORT_ (TCP, on 127.0.0.1 unless _ADDRESS_ is "
        "given) and forwards each connection to it; when the proxy has had no connection for "
        "*SocketProxyExitIdleTime=*, it exits and the container stops. With *Network=none* the "
        "container and the proxy share a private network namespace, so the port is reachable "
        "through the socket only. See SOCKET ACTIVATION.",
    ),
    Key(
        "SocketProxyExitIdleTime",
        "single",
        "socket_proxy_exit_idle_time",
        parse_timespan,
        metavar="TIMESPAN",
        doc="How long the proxy of *SocketProxy=* waits without a connection before it exits "
        "and so stops the container (systemd-socket-proxyd's *--exit-idle-time=*, a time span "
        "such as 30s or 5min; infinity never stops it). Default: 30s.",
    ),
    Key(
        "AddHost",
        "list",
        "add_hosts",
        parse_add_host,
        option="--add-host",
        metavar="NAME:IP",
        separator=",",
        doc="A line for the container's /etc/hosts: _NAME_ (several joined by ;) at the IPv4 or IPv6 address _IP_.",
    ),
    Key(
        "DNS",
        "list",
        "dns_servers",
        parse_dns_server,
        option="--dns",
        metavar="IP",
        separator=",",
        doc="A name server for the container's /etc/resolv.conf, in place of the host's; *none*: "
        "no generated /etc/resolv.conf, the image's own is used.",
    ),
    Key(
        "DNSSearch",
        "list",
        "dns_search",
        parse_dns_search,
        option="--dns-search",
        metavar="DOMAIN",
        separator=",",
        doc="A search domain for the container's /etc/resolv.conf, in place of the host's; . for none.",
    ),
    Key(
        "DNSOption",
        "list",
        "dns_options",
        parse_dns_option,
        option="--dns-option",
        metavar="OPTION",
        separator=",",
        doc="A resolver option (resolv.conf(5)) for the container's /etc/resolv.conf, in place of the host's.",
    ),
    Key(
        "Label",
        "words",
        "labels",
        parse_label,
        option="--label",
        metavar="KEY=VALUE",
        doc="Labels recorded with the running container (see *sdcontainer list*).",
    ),
    Key(
        "Annotation",
        "words",
        "annotations",
        parse_label,
        option="--annotation",
        metavar="KEY=VALUE",
        doc="Annotations recorded with the running container, like *Label=*.",
    ),
    Key(
        "StopSignal",
        "single",
        "stop_signal",
        parse_signal,
        metavar="SIGNAL",
        service_setting="KillSignal",
        doc="The signal *systemctl stop* sends to the container's init (systemd's "
        "*KillSignal=*). Default: SIGTERM. A PID 1 ignores signals it has no handler for; "
        "see STOPPING.",
    ),
    Key(
        "StopTimeout",
        "single",
        "stop_timeout",
        parse_seconds,
        metavar="SECONDS",
        service_setting="TimeoutStopSec",
        doc="Seconds to wait after the stop signal before everything in the container is "
        "killed with SIGKILL (systemd's *TimeoutStopSec=*). Default: 10.",
    ),
    Key(
        "ReloadSignal",
        "single",
        "reload_signal",
        parse_signal,
        metavar="SIGNAL",
        doc="*systemctl reload* sends this signal to the container's init (its PID 1): the "
        "service gets *ExecReload=/bin/kill -s* _SIGNAL_ *$MAINPID*, run without a shell. "
        "Only a program that handles the signal notices it: the kernel drops a signal a PID 1 "
        "has no handler for (with *RunInit=yes*, tini passes it on to the command).",
    ),
    Key(
        "ReloadCmd",
        "exec",
        "reload_cmd",
        parse_string,
        metavar="COMMAND",
        doc="*systemctl reload* runs this command inside the running container, as *sdcontainer "
        "exec* runs it (same namespaces, cgroup, user and confinement); its output goes to the "
        "journal and a non-zero exit status fails the reload. Split and unescaped as *Exec=*, "
        "no shell. Cannot be combined with *ReloadSignal=*.",
    ),
    Key(
        "RunInit",
        "single",
        "run_init",
        parse_bool,
        option="--init",
        metavar="BOOL",
        doc="Runs a minimal init (tini) as the container's PID 1, in front of the command: it "
        "forwards signals and reaps zombies. Default: no.",
    ),
    Key(
        "NoNewPrivileges",
        "single",
        "no_new_privileges",
        parse_bool,
        option="--no-new-privileges",
        metavar="BOOL",
        doc="Sets no_new_privs, so setuid and file capabilities cannot raise privileges. "
        "Default: yes (podman's default is no).",
    ),
    Key(
        "AddCapability",
        "words",
        "add_capabilities",
        parse_capability,
        option="--cap-add",
        metavar="CAPABILITY",
        doc="Capabilities added to the default set (CAP_ prefix optional, any case).",
    ),
    Key(
        "DropCapability",
        "words",
        "drop_capabilities",
        parse_capability,
        option="--cap-drop",
        metavar="CAPABILITY",
        doc="Capabilities removed from the default set; *all* removes every one.",
    ),
    Key(
        "Mask",
        "words",
        "masks",
        parse_abs_path,
        option="--mask",
        metavar="PATH[:PATH...]",
        separator=":",
        doc="Paths in the container made unreadable, as podman masks /proc/kcore: a directory "
        "gets an empty read-only tmpfs, anything else /dev/null.",
    ),
    Key(
        "Unmask",
        "words",
        "unmasks",
        parse_unmask,
        option="--unmask",
        metavar="PATTERN[:PATTERN...]|ALL",
        separator=":",
        doc="Paths (or patterns such as /proc/*) taken out of the default masked and read-only "
        "paths; *ALL* takes out every one.",
    ),
    Key(
        "Sysctl",
        "words",
        "sysctls",
        parse_sysctl,
        option="--sysctl",
        metavar="NAME=VALUE",
        separator=",",
        doc="Kernel parameters of the container's own namespaces, set before it starts: "
        "kernel.msgmax, msgmnb, msgmni, sem, shmall, shmmax, shmmni and shm_rmid_forced, "
        "fs.mqueue.* and net.* (not with *Network=host*).",
    ),
    Key(
        "Memory",
        "single",
        "memory",
        parse_memory,
        metavar="SIZE",
        service_setting="MemoryMax",
        doc="The memory limit of the service, and so of everything in the container "
        "(systemd's *MemoryMax=*): bytes, or a number with k, m, g or t (powers of 1024). "
        "0 means no limit.",
    ),
    Key(
        "PidsLimit",
        "single",
        "pids_limit",
        parse_pids_limit,
        metavar="N",
        service_setting="TasksMax",
        doc="The most processes and threads the service may have (systemd's *TasksMax=*); -1 or 0 means no "
        "limit. Default: 2048, as in podman.",
    ),
    Key(
        "Ulimit",
        "list",
        "ulimits",
        parse_ulimit,
        metavar="NAME=SOFT[:HARD]",
        separator=",",
        doc="A resource limit of the container's processes, as the systemd setting of the same "
        "name (*LimitNOFILE=* for nofile): _NAME_ is one of core, cpu, data, fsize, locks, "
        "memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack; -1 "
        "means unlimited.",
    ),
    Key(
        "Notify",
        "single",
        "notify",
        parse_notify,
        option="--notify",
        metavar="BOOL|healthy",
        doc="When the service counts as started. *no* (the default): as soon as the command has "
        "been executed. *yes*: when the container itself sends READY=1 with sd_notify(3) to "
        "/run/notify/notify.sock (NOTIFY_SOCKET), a socket of the launcher's, which passes READY=1, "
        "STATUS= and the watchdog's lines on to systemd, never MAINPID= or fds, until READY=1 "
        "(with WatchdogSec=, while the container runs). *healthy*: after the first passing "
        "health check (needs *HealthCmd=*).",
    ),
    Key(
        "HealthCmd",
        "single",
        "health_cmd",
        parse_health_cmd,
        metavar="COMMAND|JSON",
        doc="A command run inside the running container, as *sdcontainer exec* runs it, to tell "
        "whether it is healthy (exit status 0). A line is run by /bin/sh -c; a JSON array is "
        'the argv itself, or ["CMD", ...] (the argv) or ["CMD-SHELL", "line"]. *none* turns the '
        "check off. See HEALTH CHECKS.",
    ),
    Key(
        "HealthInterval",
        "single",
        "health_interval",
        parse_health_interval,
        metavar="DURATION|disable",
        doc="Time from the end of one check to the start of the next, and from the start of the "
        "container to the first (30s, 1m30s, 500ms; a bare number is seconds). *disable*: no "
        "timer, the check runs when its service is started by hand. Default: 30s.",
    ),
    Key(
        "HealthRetries",
        "single",
        "health_retries",
        parse_retries,
        metavar="N",
        doc="Consecutive failed checks after which the container is unhealthy and "
        "*HealthOnFailure=* applies. Default: 3.",
    ),
    Key(
        "HealthTimeout",
        "single",
        "health_timeout",
        parse_positive_duration,
        metavar="DURATION",
        doc="A check still running after this long is killed and counts as failed. Default: 30s.",
    ),
    Key(
        "HealthStartPeriod",
        "single",
        "health_start_period",
        parse_duration,
        metavar="DURATION",
        doc="Failed checks in this time after the container started do not count, until one "
        "check has passed. Default: 0s.",
    ),
    Key(
        "HealthOnFailure",
        "single",
        "health_on_failure",
        parse_health_on_failure,
        metavar="ACTION",
        doc="What happens to an unhealthy container: *none* (the default: it is reported in the "
        "journal of the check's service), *kill* (SIGKILL to its init: the unit fails, and "
        "*Restart=* applies), *restart* (systemctl restart) or *stop* (systemctl stop).",
    ),
)

KEYS_BY_NAME = {key.name: key for key in KEYS}
KEYS_BY_OPTION = {key.option: key for key in KEYS if key.option}

# Keys Quadlet accepts in [Container] that sdcontainer does not implement yet: a file using
# one gets an error saying exactly that, instead of "unknown key".
QUADLET_ONLY_KEYS = frozenset(
    [
        "AddDevice",
        "AppArmor",
        "AutoUpdate",
        "CgroupsMode",
        "ContainersConfModule",
        "ExposeHostPort",
        "GIDMap",
        "GlobalArgs",
        "HealthLogDestination",
        "HealthMaxLogCount",
        "HealthMaxLogSize",
        "HealthStartupCmd",
        "HealthStartupInterval",
        "HealthStartupRetries",
        "HealthStartupSuccess",
        "HealthStartupTimeout",
        "HttpProxy",
        "IP",
        "IP6",
        "LogDriver",
        "LogOpt",
        "Mount",
        "NetworkAlias",
        "Pod",
        "PodmanArgs",
        "PublishPort",
        "RemapGid",
        "RemapUid",
        "RemapUidSize",
        "RemapUsers",
        "SeccompProfile",
        "Secret",
        "SecurityLabelDisable",
        "SecurityLabelFileType",
        "SecurityLabelLevel",
        "SecurityLabelNested",
        "SecurityLabelType",
        "ServiceName",
        "StartWithPod",
        "SubGIDMap",
        "SubUIDMap",
        "UIDMap",
        "UserNS",
        "VolatileTmp",
    ]
)

_HINTS = {
    "ServiceName": "name the file after the service instead",
}


def _check_key(entry: Entry) -> Key:
    key = KEYS_BY_NAME.get(entry.key)
    if key is not None:
        return key
    if entry.key in QUADLET_ONLY_KEYS:
        hint = _HINTS.get(entry.key)
        raise entry.error(
            f"key {entry.key}= in [Container] is a Quadlet key that sdcontainer does not support yet"
            + (f"; {hint}" if hint else "")
        )
    raise entry.error(f"unknown key {entry.key}= in [Container]")


def _parse_one(key: Key, entry: Entry, value: str, ctx: ParseContext) -> Any:
    try:
        return key.parse(value, ctx)
    except ValueError as error:
        raise entry.error(f"invalid {key.name}=: {error}") from None


def _values_for(key: Key, entries: list[Entry], ctx: ParseContext) -> Any:
    """Fold the assignments of one key into its spec value, following its kind."""
    if key.kind in ("single", "exec"):
        entry = entries[-1]
        if key.kind == "exec":
            words = split_words(entry.value, entry)
            return tuple(words) if words else None
        value = unquote(entry.value)
        if value == "" and key.field not in ("entrypoint",):
            return None
        return _parse_one(key, entry, value, ctx)
    items: list[Any] = []
    for entry in entries:
        if entry.value == "":
            items = []  # Key= resets the list, as in systemd
            continue
        values = split_words(entry.value, entry) if key.kind == "words" else [unquote(entry.value)]
        for value in values:
            for item in value.split(key.separator) if key.separator else (value,):
                items.append(_parse_one(key, entry, item, ctx))
    return tuple(items)


def spec_from_unit(unit: UnitFile, section: str = "Container") -> ContainerSpec:
    """Validate the [Container] section of a parsed unit file into a spec."""
    # the file's directory is a literal part of the paths resolved against it, which reach
    # systemd (ExecStart=, RequiresMountsFor=) where a % in it would be a specifier
    ctx = ParseContext(unit_dir=escape_specifiers(os.path.dirname(os.path.abspath(unit.path))))
    grouped: dict[str, list[Entry]] = {}
    for entry in unit.section(section):
        grouped.setdefault(_check_key(entry).field, []).append(entry)
    values: dict[str, Any] = {}
    for field, entries in grouped.items():
        value = _values_for(KEYS_BY_NAME[entries[0].key], entries, ctx)
        if value is not None:
            values[field] = value
    spec = ContainerSpec(**values)
    try:
        validate(spec)
        validate_unit(spec)
    except SpecError as error:
        # point at the last assignment of the key the check is about, if the file has one
        assignments = grouped.get(error.field or "")
        if assignments:
            raise assignments[-1].error(str(error)) from None
        raise ConfigError(f"[{section}]: {error}", unit.path) from None
    return spec


class SpecError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def validate(spec: ContainerSpec) -> None:
    """Checks that involve more than one key."""
    if spec.image and spec.rootfs:
        raise SpecError("Image= and Rootfs= exclude each other; set exactly one", "rootfs")
    if not spec.rootfs and not spec.image:
        raise SpecError("one of Rootfs= or Image= is required")
    if not spec.command and not spec.image:  # an image's config may supply the command
        raise SpecError("no command: set Exec= (and/or Entrypoint=)")
    if spec.group and not spec.user:
        raise SpecError("Group= requires User=", "group")
    for item in spec.sysctls:
        if spec.network == "host" and item.startswith("net."):
            raise SpecError(
                f"Sysctl={item}: net.* sysctls cannot be set with Network=host (they would change the host's)",
                "sysctls",
            )
    if "none" in spec.dns_servers and len(spec.dns_servers) > 1:
        raise SpecError("DNS=none cannot be combined with name servers", "dns_servers")
    if spec.dns_servers == ("none",) and (spec.dns_search or spec.dns_options):
        raise SpecError(
            "DNS=none leaves the image's resolv.conf alone: DNSSearch= and DNSOption= cannot go in it",
            "dns_options" if spec.dns_options else "dns_search",
        )
    if spec.socket_proxy_exit_idle_time and not spec.socket_proxy:
        raise SpecError("SocketProxyExitIdleTime= needs SocketProxy=", "socket_proxy_exit_idle_time")
    if spec.socket_proxy and spec.network == "none" and any(s.startswith("net.") for s in spec.sysctls):
        raise SpecError(
            "Sysctl=net.* cannot be combined with SocketProxy=: the container shares the proxy's network namespace",
            "sysctls",
        )
    if "." in spec.dns_search and len(spec.dns_search) > 1:
        raise SpecError("DNSSearch=. (no search domains) cannot be combined with domains", "dns_search")


def validate_unit(spec: ContainerSpec) -> None:
    """Checks that only make sense for a .container file: the launcher never sees the health
    keys (they become the units beside the service)."""
    if spec.notify == "healthy" and not spec.health_cmd:
        raise SpecError("Notify=healthy needs a health check: set HealthCmd=", "notify")
    if spec.reload_cmd and spec.reload_signal:
        # Quadlet refuses the pair too: a reload does one thing
        raise SpecError("ReloadCmd= and ReloadSignal= exclude each other; set one of them", "reload_cmd")


# --- spec -> [Service] settings -------------------------------------------------------------


_SERVICE_KEYS = [(key.service_setting, key.field) for key in KEYS if key.service_setting]
# Settings written even when the file does not set the key: sdcontainer's default differs
# from systemd's.
_SERVICE_DEFAULTS = {"pids_limit": DEFAULT_PIDS_LIMIT}


def service_settings(spec: ContainerSpec) -> list[tuple[str, str]]:
    """The [Service] settings the [Container] keys become, in table order. The generator
    writes them before the file's own [Service] lines, which therefore win (a TasksMax= there
    over PidsLimit= and its default alike); `sdcontainer run` has no such lines."""
    settings = []
    for setting, field in _SERVICE_KEYS:
        value = getattr(spec, field)
        if value is None:
            value = _SERVICE_DEFAULTS.get(field)
        if value is not None:
            settings.append((setting, str(value)))
    if spec.ulimits and "host" not in spec.ulimits:  # podman: host drops every --ulimit, the host's limits apply
        limits: dict[str, str] = {}
        for item in spec.ulimits:
            name, _, value = item.partition("=")
            limits[ULIMIT_SETTINGS[name]] = value  # the last one of a name wins
        settings += limits.items()
    if spec.reload_signal:
        settings.append(("ExecReload", f"/bin/kill -s {spec.reload_signal} $MAINPID"))
    return settings


# --- spec <-> launcher command line -------------------------------------------------------


def _format(key: Key, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.field == "entrypoint":
        import json

        return json.dumps(list(value))
    return str(value)


# (key, option, field, default) of the keys with a launcher option but --name, always given
_DEFAULTS = ContainerSpec()
_ARGV_KEYS = [
    (key, key.option, key.field, getattr(_DEFAULTS, key.field))
    for key in KEYS
    if key.option is not None and key.field != "name"
]


def spec_to_argv(spec: ContainerSpec) -> list[str]:
    """Options for the launcher, in table order, then `--` and the command. Defaults are
    left out to keep `systemctl cat` readable."""
    # unit and name always: their defaults are specifiers (%n, %N) for systemd to expand
    argv = ["--unit", spec.unit, "--name", spec.name]
    for key, option, field, default in _ARGV_KEYS:
        value = getattr(spec, field)
        if value == default:
            continue
        if key.repeated:
            for item in value:
                argv += [option, _format(key, item)]
        else:
            argv += [option, _format(key, value)]
    if spec.exec:
        argv += ["--", *spec.exec]
    return argv


def _valid_unit_name(name: str) -> bool:
    """A service name as systemd spells them (it also names the launcher's state record)."""
    stem = name[: -len(".service")] if name.endswith(".service") else ""
    return word(stem, ALNUM + ":_\\-@", ALNUM + ":_.\\-@", 247)


def spec_from_argv(argv: list[str]) -> ContainerSpec:
    """The inverse of spec_to_argv, run in the launcher after systemd expanded specifiers."""
    ctx = ParseContext(expanded=True)
    values: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            values["exec"] = tuple(argv[i + 1 :])
            break
        option, eq, inline = arg.partition("=")
        if option == "--unit":
            key = None
        else:
            key = KEYS_BY_OPTION.get(option)
            if key is None:
                raise UsageError(f"unknown launcher option {arg!r}")
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise UsageError(f"option {option} needs a value")
            value = argv[i + 1]
            i += 2
        if key is None:
            # "%n" unexpanded: run by hand, outside systemd, where no record is written
            if value != "%n" and not _valid_unit_name(value):
                raise UsageError(f"--unit {value!r} is not a service unit name")
            values["unit"] = value
            continue
        try:
            if key.repeated:
                for item in value.split(key.separator) if key.separator else (value,):
                    lists.setdefault(key.field, []).append(key.parse(item, ctx))
            else:
                values[key.field] = key.parse(value, ctx)
        except ValueError as error:
            raise UsageError(f"{option} {value!r}: {error}") from None
    for name, items in lists.items():
        values[name] = tuple(items)
    spec = ContainerSpec(**values)
    try:
        validate(spec)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return spec
