"""The value grammars of `.container` keys: one small parser per grammar.

Each `parse_X(value, ctx)` reads one value (a line, a word, or one item of a comma- or
colon-separated list) and returns what goes into the `ContainerSpec`, or raises ValueError
with a message naming the problem; the key table (`sdcontainer.keys`) says which key uses
which parser and adds the key's name and the file's line to the message. The few helpers
without a context (`size_in_bytes`, `duration_ms`, ...) are the same grammars for callers
outside the table.

Pure functions over strings, for the generator at every boot and the launcher at every
start: the standard library's `os.path` and `json` (only for a JSON value), and the
package's records, string checks and unit-file booleans, nothing else.
"""

from __future__ import annotations

import os

from sdcontainer.inet import canonical
from sdcontainer.record import record
from sdcontainer.spec import BindMount, TmpfsMount
from sdcontainer.text import (
    ALNUM,
    DIGITS,
    LOWER,
    OCTAL,
    SIGNAL_NAMES,
    SIGNALS,
    UPPER,
    check_glob,
    ip_address,
    only,
    word,
)
from sdcontainer.text import is_service_unit_name as is_service_unit_name  # its home is text (state needs it)
from sdcontainer.unitfile import parse_boolean


@record
class ParseContext:
    """`unit_dir` resolves relative paths in a file; `expanded` is true in the launcher,
    after systemd has expanded specifiers, where paths must be absolute for real."""

    unit_dir: str = "/"
    expanded: bool = False


# --- systemd's variables -----------------------------------------------------------------


def has_variable(value: str) -> bool:
    """Whether systemd expands something in `value`, a word of an Exec*= line, at start:
    `${NAME}` anywhere, or the whole word `$NAME`; `$$` is a literal `$`. A unit file's
    values reach the launcher's command line this way, as they reach podman's in Quadlet, so
    such a value is checked by the launcher, once it is known."""
    if value.startswith("$") and value[1:2] not in ("{", "$"):
        return True  # the word $NAME (split at whitespace by systemd; gone if NAME is unset)
    i = value.find("$")
    while i != -1:
        if value.startswith("$$", i):
            i = value.find("$", i + 2)
            continue
        if value.startswith("${", i) and "}" in value[i + 2 :]:
            return True
        i = value.find("$", i + 1)
    return False


def _deferred(value: str, ctx: ParseContext) -> bool:
    """In the generator, a value systemd completes at start (a variable in it): the launcher
    checks it then, with the value it gets."""
    return not ctx.expanded and has_variable(value)


# --- paths, strings, booleans ------------------------------------------------------------


def _path(value: str, ctx: ParseContext, *, relative_ok: bool = False) -> str:
    if not value:
        raise ValueError("a path is required")
    if (value.startswith("%") and not ctx.expanded) or _deferred(value, ctx):
        return value  # a specifier such as %h or %S, or ${DIR}: systemd makes it absolute
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


# --- names -------------------------------------------------------------------------------


def parse_hostname(value: str, ctx: ParseContext) -> str:
    if (not ctx.expanded and "%" in value) or _deferred(value, ctx):
        return value
    if not word(value, ALNUM, ALNUM + ".-", 63):
        raise ValueError(f"{value!r} is not a valid host name (letters, digits, '-' and '.', at most 63)")
    return value


def parse_pod(value: str, ctx: ParseContext) -> str:
    """Pod=: a .pod file's name (NAME.pod), the pod whose namespaces the container joins."""
    stem = value[: -len(".pod")] if value.endswith(".pod") else ""
    if not stem or not word(stem, ALNUM, ALNUM + "_.-", 200):
        raise ValueError(f"{value!r} is not the name of a .pod file (NAME.pod; an existing podman pod cannot be named)")
    return value


def parse_name(value: str, ctx: ParseContext) -> str:
    if not word(value, ALNUM + "%", ALNUM + "%@_.:-"):
        raise ValueError(f"{value!r} is not a valid container name (letters, digits and @_.:-)")
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


def parse_capability(value: str, ctx: ParseContext) -> str:
    name = value.upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name != "CAP_ALL" and not (name.startswith("CAP_") and word(name[4:], UPPER + "_", UPPER + "_")):
        raise ValueError(f"{value!r} is not a capability name")
    return name


# --- mounts and masks --------------------------------------------------------------------


_MOUNT_FLAGS = {"nosuid", "nodev", "noexec", "suid", "dev", "exec", "rbind", "bind"}
# what only a volume takes: U (chown to the container's user), copy and nocopy (copy-up)
_VOLUME_FLAGS = {"U", "copy", "nocopy"}
_PROPAGATION = {"shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"}
VOLUME_NAME_MAX = 200  # below NAME_MAX (255), with room for a temporary name beside it


def is_volume_name(name: str) -> bool:
    """podman's grammar of volume names; a volume name is a directory name in the store."""
    return word(name, ALNUM, ALNUM + "_.-", VOLUME_NAME_MAX)


def _volume_source(source: str, ctx: ParseContext) -> str:
    """A named volume (`data`, `data.volume`, `systemd-%p`) or, with `$`, a value systemd
    expands from the unit's environment (`${DATA}`) before the launcher reads it."""
    if not ctx.expanded and (has_variable(source) or "%" in source or source.endswith(".volume")):
        if "\n" in source:
            raise ValueError(f"{source!r} is not a volume name")
        return source
    if not is_volume_name(source):
        raise ValueError(
            f"{source!r} is neither an absolute path nor a volume name (a letter or digit, then "
            f"letters, digits and _.-, at most {VOLUME_NAME_MAX})"
        )
    return source


def _volume_options(value: str, text: str, named: bool) -> tuple[bool, list[str]]:
    readonly = False
    options: list[str] = []
    for opt in text.split(",") if text else []:
        if opt == "ro":
            readonly = True
        elif opt == "rw":
            readonly = False
        elif opt in ("z", "Z"):
            continue  # SELinux relabelling: no SELinux policy is applied by sdcontainer
        elif opt in _MOUNT_FLAGS or opt == "U":
            options.append(opt)
        elif opt in _VOLUME_FLAGS:
            if not named:
                raise ValueError(f"{value!r}: {opt} is for a volume, not a host path")
            options.append(opt)
        elif opt == "idmap" or opt.startswith("idmap="):
            raise ValueError(f"{value!r}: idmap is not supported: a container has no user namespace yet")
        elif opt in _PROPAGATION:
            raise ValueError(f"{value!r}: mount propagation ({opt}) is not supported: a container's mounts are private")
        else:
            known = ", ".join(["ro", "rw", "z", "Z", "U", "copy", "nocopy", *sorted(_MOUNT_FLAGS)])
            raise ValueError(f"unknown volume option {opt!r} (known: {known})")
    return readonly, options


def parse_volume(value: str, ctx: ParseContext) -> BindMount:
    """SOURCE:TARGET[:OPTIONS] as podman's -v: SOURCE a host path (absolute, or ./ from the
    file's directory), a volume name, NAME.volume (the generator resolves it), or nothing
    (`/path` alone: an anonymous volume, source "")."""
    parts = value.split(":")
    if len(parts) > 3:
        raise ValueError(f"{value!r} is not [SOURCE:]TARGET[:OPTIONS]")
    if len(parts) == 1:
        parts = ["", parts[0]]
    source, target = parts[0], parts[1]
    host = source.startswith(("/", "./", "../")) or source in (".", "..") or (source.startswith("%") and "/" in source)
    if source and not host:
        source = _volume_source(source, ctx)
    readonly, options = _volume_options(value, parts[2] if len(parts) == 3 else "", not host)
    if host:
        source = parse_host_path(source, ctx)
        if ":" in source:  # only through the file's directory: a colon in the value splits it
            raise ValueError(
                f"the source {source!r} has a ':' in it (the launcher's --volume is SOURCE:TARGET[:OPTIONS])"
            )
    return BindMount(source, parse_abs_path(target, ctx), readonly, tuple(options))


_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_TRUE = ("", "true", "1", "yes")


def _mount_fields(value: str) -> list[tuple[str, str]]:
    """podman's --mount: comma-separated KEY[=VALUE], a field in double quotes may hold commas."""
    fields = []
    for field in _split_csv(value):
        key, eq, setting = field.partition("=")
        fields.append((key.strip(), setting if eq else ""))
    return fields


def _split_csv(value: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise ValueError(f"{value!r}: an unterminated double quote")
    out.append("".join(current))
    return [field for field in out if field]


def _flag(key: str, setting: str) -> bool:
    if setting.lower() in _TRUE:
        return True
    if setting.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{key}={setting}: not true or false")


def parse_mount(value: str, ctx: ParseContext) -> BindMount | TmpfsMount:
    """podman's --mount type=bind|volume|tmpfs,source=...,destination=...[,options], made
    the mount Volume= or Tmpfs= would make."""
    fields = _mount_fields(value)
    kind = "volume"
    source = target = None
    readonly = False
    options: list[str] = []
    tmpfs: list[str] = []
    for key, setting in fields:
        if key == "type":
            if setting not in _MOUNT_TYPES:
                raise ValueError(
                    f"type={setting}: not supported (sdcontainer mounts {', '.join(_MOUNT_TYPES)}; "
                    "image, devpts, glob and artifact mounts are not supported yet)"
                )
            kind = setting
        elif key in ("source", "src"):
            source = setting
        elif key in ("destination", "dst", "target"):
            target = setting
        elif key in ("ro", "readonly"):
            readonly = _flag(key, setting)
        elif key == "rw":
            readonly = not _flag(key, setting)
        elif key in ("relabel", "z", "Z"):
            continue  # SELinux: nothing to relabel without it
        elif key in ("U", "chown"):
            if _flag(key, setting):
                options.append("U")
        elif key in ("nocopy", "volume-nocopy"):
            if _flag(key, setting):
                options.append("nocopy")
        elif key == "bind-nonrecursive":
            if _flag(key, setting):
                options.append("bind")
        elif key == "bind-propagation":
            if setting not in ("private", "rprivate"):
                raise ValueError(f"bind-propagation={setting}: not supported: a container's mounts are private")
        elif key in ("suid", "nosuid", "dev", "nodev", "exec", "noexec", "bind", "rbind", "copy") and not setting:
            options.append(key)
        elif key in ("tmpfs-size", "tmpfs-mode"):
            tmpfs.append(f"{key[6:]}={setting}")
        elif key == "notmpcopyup":
            continue  # a tmpfs starts empty here either way
        else:
            raise ValueError(f"unknown or unsupported --mount option {key!r}")
    if not target:
        raise ValueError(f"{value!r} has no destination (destination=, dst= or target=)")
    if kind == "tmpfs":
        if source:
            raise ValueError("type=tmpfs takes no source")
        return parse_tmpfs(":".join([target, ",".join([*tmpfs, *options, *(["ro"] if readonly else [])])]), ctx)
    if tmpfs:
        raise ValueError(f"tmpfs-{tmpfs[0].partition('=')[0]}: only for type=tmpfs")
    if kind == "bind" and not source:
        raise ValueError("type=bind needs a source")
    if kind == "bind" and not source.startswith(("/", "./", "../", "%")):  # type: ignore[union-attr]
        raise ValueError(f"type=bind: {source!r} is not a host path")
    if kind == "volume" and source and source.startswith(("/", ".")):
        raise ValueError(f"type=volume: {source!r} is a path, not a volume name (type=bind mounts a path)")
    text = ",".join(["ro" if readonly else "rw", *options])
    return parse_volume(f"{source or ''}:{target}:{text}", ctx)


def mount_text(mount: BindMount | TmpfsMount) -> str:
    """The --mount value that parse_mount reads back as `mount`."""

    def field(text: str) -> str:
        return f'"{text}"' if "," in text else text

    if isinstance(mount, TmpfsMount):
        names = {"size": "tmpfs-size", "mode": "tmpfs-mode"}
        options = [names.get(o.partition("=")[0], "") + o[o.index("=") :] if "=" in o else o for o in mount.options]
        return ",".join(["type=tmpfs", field(f"destination={mount.target}"), *options])
    kind = "bind" if mount.source.startswith("/") else "volume"
    fields = [f"type={kind}", field(f"destination={mount.target}")]
    if mount.source:
        fields.append(field(f"source={mount.source}"))
    if mount.readonly:
        fields.append("ro")
    fields += mount.options
    return ",".join(fields)


def parse_tmpfs(value: str, ctx: ParseContext) -> TmpfsMount:
    target, _, opts = value.partition(":")
    options = tuple(o for o in opts.split(",") if o)
    for opt in options:
        name, eq, setting = opt.partition("=")
        if not word(name, LOWER + "_", LOWER + "_") or (eq and not word(setting, ALNUM + "%._-", ALNUM + "%._-")):
            raise ValueError(f"invalid tmpfs option {opt!r}")
    return TmpfsMount(parse_abs_path(target, ctx), options)


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


# --- network -----------------------------------------------------------------------------


#: The network a .container file without Network= joins, as Quadlet's files join podman's
#: default network: a bridge, its subnet the same as podman's.
DEFAULT_NETWORK = "sdcontainer"
DEFAULT_BRIDGE = "sdcontainer0"
DEFAULT_SUBNET = "10.88.0.0/16"
#: Network= values that name the default bridge network (podman: bridge, and private for root)
_BRIDGE_NAMES = ("bridge", "private", DEFAULT_NETWORK)


def is_bridge(network: str) -> bool:
    """A Network= value (as parsed) that puts the container on a bridge network."""
    return network not in ("none", "host") and not joins_container(network)


def joins_container(network: str) -> bool:
    """Network=container:NAME or NAME.container: the container shares another one's network
    namespace (sdcontainer.network.join_target finds it)."""
    return network.startswith("container:") or network.endswith(".container")


def joined_unit(network: str) -> str | None:
    """The service of Network=NAME.container (Quadlet's: the generated unit requires it and
    starts after it); None for any other value, container:NAME included."""
    return network[: -len(".container")] + ".service" if network.endswith(".container") else None


def _parse_container_network(value: str) -> str:
    """container:NAME (a ContainerName=, or a unit: web or web.service) or NAME.container (the
    service of that file), kept as written: the launcher looks the container up at start."""
    name = value.partition(":")[2] if value.startswith("container:") else value[: -len(".container")]
    if not word(name, ALNUM + "%", ALNUM + "%@_.:-"):
        raise ValueError(f"Network={value}: {name!r} is not a container's name (letters, digits and @_.:-)")
    return value


def parse_network(value: str, ctx: ParseContext) -> str:
    """none, host, or the default bridge network (bridge, private or sdcontainer, all
    spelled sdcontainer in the spec)."""
    if value in ("none", "host"):
        return value
    mode, colon, options = value.partition(":")
    if mode in _BRIDGE_NAMES:
        if colon:
            raise ValueError(
                f"Network={value}: options of a network ({options}) are not supported yet; use IP= for a static address"
            )
        return DEFAULT_NETWORK
    if mode == "container" or value.endswith(".container"):
        return _parse_container_network(value)
    named = named_network(value)
    if named is not None:
        return named
    raise ValueError(
        f"Network={value} is not supported yet; this version supports Network=none (a private "
        f"network namespace with only loopback), Network=host, the default bridge network "
        f"(Network=bridge, or no Network= at all: {DEFAULT_SUBNET} on {DEFAULT_BRIDGE}), "
        f"a .network file (Network=NAME.network), a named network (Network=NAME) and "
        f"another container's network (Network=container:NAME or Network=NAME.container)"
    )


#: a network's name, as podman's: a letter or digit, then letters, digits and _.-
NETWORK_NAME_FIRST = ALNUM
NETWORK_NAME_REST = ALNUM + "_.-"


def is_network_name(name: str) -> bool:
    return word(name, NETWORK_NAME_FIRST, NETWORK_NAME_REST, 200) and name not in ("none", "host")


def named_network(value: str) -> str | None:
    """Network=NAME.network (a .network file on the search path: its network, systemd-NAME
    unless its NetworkName= says otherwise, resolved when the container starts) or
    Network=NAME (a network made by `sdcontainer network create` or a NetworkName=); None
    for a value of another form. Options after ':' are refused."""
    mode, colon, options = value.partition(":")
    if mode.endswith(".network") and "@" not in mode:
        stem = mode[: -len(".network")]
        if not is_network_name(stem):
            raise ValueError(f"Network={value}: {stem!r} is not a valid .network file name")
    elif not is_network_name(mode) or mode == "container" or mode in ("slirp4netns", "pasta", "ns"):
        return None
    if colon:
        raise ValueError(
            f"Network={value}: options of a network ({options}) are not supported yet; "
            "use IP= and IP6= for static addresses"
        )
    return mode


def parse_ipv6(value: str, ctx: ParseContext) -> str:
    """IP6=: a static IPv6 address on the container's network."""
    if ":" not in value or not ip_address(value):
        raise ValueError(f"{value!r} is not an IPv6 address")
    return canonical(value)


def parse_network_alias(value: str, ctx: ParseContext) -> str:
    """NetworkAlias=: another name the container's network peers find it by."""
    if not word(value, ALNUM, ALNUM + ".-_", 253):
        raise ValueError(f"{value!r} is not a host name (letters, digits, '-', '.' and '_')")
    return value


def parse_ipv4(value: str, ctx: ParseContext) -> str:
    """IP=: a static IPv4 address on the container's network."""
    if "." not in value or not ip_address(value):
        raise ValueError(f"{value!r} is not an IPv4 address")
    return canonical(value)


def parse_publish_port(value: str, ctx: ParseContext) -> str:
    """PublishPort=: [[IP:][HOSTPORT]:]CONTAINERPORT[/PROTO] (PortMapping.parse); without a
    host port, a free one chosen at start. Kept as PortMapping's own text."""
    if "$" in value or "%" in value:
        raise ValueError(f"{value!r}: variables and specifiers in PublishPort= are not supported yet")
    return str(PortMapping.parse(value))


PROTOCOLS = ("tcp", "udp")


@record
class PortMapping:
    """One PublishPort=: host port(s) to container port(s); `count` > 1 is a range, port by
    port (8080-8082:80-82 is 8080->80, 8081->81, 8082->82)."""

    host_port: int  # 0: a free one, chosen at start (sdcontainer.firewall.choose_ports)
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "": every address of the host
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Quadlet's PublishPort= / podman's -p: [[IP:][HOSTPORT]:]CONTAINERPORT[/PROTO], with
        ranges 'A-B' on either side (of equal length), IPv6 as [::1]. A missing host port
        (80, IP::80) is host_port 0: free ones, chosen at start, as podman does."""
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        if proto not in PROTOCOLS:
            raise ValueError(f"PublishPort={text}: protocol must be tcp or udp, not {proto!r}")
        host_ip = ""
        if spec.startswith("["):
            end = spec.find("]:")
            if end < 0:
                raise ValueError(f"PublishPort={text}: an IPv6 address is written [ADDRESS]:PORT")
            host_ip, spec = spec[1:end], spec[end + 2 :]
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        if len(parts) > 2 or (len(parts) == 2 and parts[0] == "" and not host_ip):
            raise ValueError(f"PublishPort={text}: expected [[IP:][HOSTPORT]:]CONTAINERPORT[/PROTO]")
        if host_ip:
            try:
                host_ip = canonical(host_ip)
            except ValueError:
                raise ValueError(f"PublishPort={text}: {host_ip!r} is not an IP address") from None
            if host_ip in ("0.0.0.0", "::"):
                host_ip = ""
        container, count = _port_range(parts[-1], text)
        if len(parts) == 2 and parts[0]:
            host, host_count = _port_range(parts[0], text)
            if host_count != count:
                raise ValueError(f"PublishPort={text}: the host and container ranges differ in length")
        else:
            host = 0
        return cls(host, container, proto, host_ip, count)

    def __str__(self) -> str:
        host = (
            ""
            if self.host_port == 0
            else f"{self.host_port}"
            if self.count == 1
            else f"{self.host_port}-{self.host_port + self.count - 1}"
        )
        cont = (
            f"{self.container_port}"
            if self.count == 1
            else f"{self.container_port}-{self.container_port + self.count - 1}"
        )
        ip = f"[{self.host_ip}]:" if ":" in self.host_ip else f"{self.host_ip}:" if self.host_ip else ""
        if not host and not ip:
            return f"{cont}/{self.proto}"
        return f"{ip}{host}:{cont}/{self.proto}"


def _port_range(text: str, whole: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        raise ValueError(f"PublishPort={whole}: {text!r} is not a port or a range of ports")
    lo, hi = int(first), int(last) if dash else int(first)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"PublishPort={whole}: ports are 1-65535, a range low-high")
    return lo, hi - lo + 1


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


def parse_proxy_target(value: str, ctx: ParseContext) -> str:
    """SocketProxy=: a TCP port, or ADDRESS:PORT, the container listens on."""
    address, colon, port = value.rpartition(":")
    if not word(port, DIGITS, DIGITS, 5) or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not a TCP port (1-65535) or ADDRESS:PORT")
    if colon and not ip_address(address.strip("[]")):
        raise ValueError(f"{address!r} is not an IP address")
    return value


# --- signals -----------------------------------------------------------------------------


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


# --- time --------------------------------------------------------------------------------


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


def duration_seconds(value: str) -> float:
    """A value parse_retry_delay made ("<N>ms"), in seconds."""
    return int(value.removesuffix("ms")) / 1000


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


def parse_retry_delay(value: str, ctx: ParseContext) -> str:
    """RetryDelay=: a duration as duration_ms() reads it, kept as "<N>ms" so that it reads the
    same after the trip through the launcher's command line."""
    return f"{duration_ms(value)}ms"


# --- sizes and limits --------------------------------------------------------------------


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


def parse_shm_size(value: str, ctx: ParseContext) -> str:
    """ShmSize=: the size= of the /dev/shm tmpfs (0: no limit, as tmpfs reads it)."""
    return format_size(size_in_bytes(value))


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


# --- commands ----------------------------------------------------------------------------


def _json_words(value: str, *, non_empty: bool = False) -> tuple[str, ...]:
    """A JSON array of strings, as podman takes an argv in one value."""
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON array: {error.msg}") from None
    if not isinstance(parsed, list) or (non_empty and not parsed) or not all(isinstance(w, str) for w in parsed):
        raise ValueError(f"the JSON form must be {'a non-empty' if non_empty else 'an'} array of strings")
    return tuple(parsed)


def parse_entrypoint(value: str, ctx: ParseContext) -> tuple[str, ...]:
    """Like podman's --entrypoint: a JSON array, or one program path; empty clears it."""
    if value.startswith("["):
        return _json_words(value)
    return (value,) if value else ()


def parse_health_cmd(value: str, ctx: ParseContext) -> tuple[str, ...]:
    """podman's --health-cmd: a JSON array (["CMD", prog, args...], ["CMD-SHELL", "line"], or
    the argv itself), or a line for /bin/sh -c; none turns the check off."""
    if value.lower() == "none":
        return ()
    if not value.startswith("["):
        # podman's text forms, docker's words first: "CMD prog args" is split on white space
        # (no shell, no quoting), "CMD-SHELL line" runs the rest by /bin/sh -c, "NONE ..." is off.
        first, _, line = value.partition(" ")
        kind = first.upper()
        if kind == "NONE":
            return ()
        if kind == "CMD":
            if not value.split()[1:]:
                raise ValueError("CMD needs a program after it")
            return tuple(value.split()[1:])
        if kind == "CMD-SHELL":
            if not line.strip():
                raise ValueError("CMD-SHELL needs a command line after it")
            return ("/bin/sh", "-c", line)
        return ("/bin/sh", "-c", value)
    parsed = _json_words(value, non_empty=True)
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


# --- choices and counts ------------------------------------------------------------------


PULL_POLICIES = ("never", "missing", "always", "newer")


def parse_pull(value: str, ctx: ParseContext) -> str:
    if value not in PULL_POLICIES:
        raise ValueError(f"{value!r} is not one of {', '.join(PULL_POLICIES)}")
    return value


AUTO_UPDATE_POLICIES = ("registry", "local")


def parse_auto_update(value: str, ctx: ParseContext) -> str:
    """AutoUpdate=: podman's policies of `auto-update` (podman's "image" is its old name of registry)."""
    if value == "image":
        return "registry"
    if value not in AUTO_UPDATE_POLICIES:
        raise ValueError(f"{value!r} is not one of {', '.join(AUTO_UPDATE_POLICIES)}")
    return value


def parse_count(value: str, ctx: ParseContext) -> int:
    if not word(value, DIGITS, DIGITS, 6):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def parse_retries(value: str, ctx: ParseContext) -> int:
    if not word(value, DIGITS, DIGITS) or int(value) < 1:
        raise ValueError(f"{value!r} is not a number of at least 1")
    return int(value)


def parse_notify(value: str, ctx: ParseContext) -> str:
    """Notify=: a boolean (yes: the container sends READY=1 itself), or healthy."""
    if value.lower() == "healthy":
        return "healthy"
    try:
        return "yes" if parse_boolean(value) else "no"
    except ValueError:
        raise ValueError(f"{value!r} is not a boolean or healthy") from None


HEALTH_ACTIONS = ("none", "kill", "restart", "stop")


def parse_health_on_failure(value: str, ctx: ParseContext) -> str:
    if value not in HEALTH_ACTIONS:
        raise ValueError(f"{value!r} is not one of {', '.join(HEALTH_ACTIONS)}")
    return value


# --- secrets (Secret=) ---------------------------------------------------------------------

# podman's secret names, which here are also file names in the store and part of a systemd
# credential's name: no '/', no leading '.', nothing systemd or a shell would read differently
SECRET_NAME_MAX = 253
SECRET_MOUNT_DIR = "/run/secrets"  # podman's: where type=mount puts NAME, or a relative target=


def secret_name_problem(name: str) -> str | None:
    """Why `name` cannot name a secret, or None."""
    if not word(name, ALNUM, ALNUM + "_.-", SECRET_NAME_MAX):
        return (
            f"{name!r} is not a valid secret name (a letter or digit, then letters, digits, "
            f"'_', '.' and '-', at most {SECRET_NAME_MAX})"
        )
    return None


@record
class SecretRef:
    """One Secret= value: podman's --secret NAME[,type=mount|env][,target=][,uid=][,gid=][,mode=]."""

    name: str
    type: str = "mount"
    target: str | None = None  # mount: a path (relative: under /run/secrets); env: the variable
    uid: int = 0
    gid: int = 0
    mode: int = 0o444  # podman's default for a mounted secret

    @property
    def destination(self) -> str:
        """mount: the path in the container; env: the variable's name."""
        if self.type == "env":
            return self.target or self.name
        target = self.target or self.name
        return target if target.startswith("/") else f"{SECRET_MOUNT_DIR}/{target}"

    def __str__(self) -> str:
        out = [self.name]
        if self.type != "mount":
            out.append(f"type={self.type}")
        if self.target is not None:
            out.append(f"target={self.target}")
        if self.type == "mount":
            out += [f"{k}={v}" for k, v in (("uid", self.uid), ("gid", self.gid)) if v]
            if self.mode != 0o444:
                out.append(f"mode={self.mode:o}")
        return ",".join(out)


def _secret_id(text: str, what: str) -> int:
    if not word(text, DIGITS, DIGITS, 10) or int(text) > 0xFFFFFFFE:
        raise ValueError(f"{what}={text!r} is not a number")
    return int(text)


def secret_ref(value: str) -> SecretRef:
    """A Secret= value read; ValueError names what is wrong in it."""
    parts = value.split(",")
    name = parts[0]
    options = parts[1:]
    if "=" in name:  # source=NAME,... : the name given as an option, anywhere
        options, name = parts, ""
    fields: dict[str, str] = {}
    for option in options:
        key, eq, text = option.partition("=")
        if not eq or key not in ("source", "type", "target", "uid", "gid", "mode"):
            raise ValueError(f"{option!r} is not one of source=, type=, target=, uid=, gid=, mode=")
        if key in fields:
            raise ValueError(f"{key}= is given twice")
        fields[key] = text
    if "source" in fields:
        if name:
            raise ValueError("the name is given twice (first, and as source=)")
        name = fields.pop("source")
    problem = secret_name_problem(name)
    if problem:
        raise ValueError(problem)
    kind = fields.pop("type", "mount")
    if kind not in ("mount", "env"):
        raise ValueError(f"type={kind!r} is not mount or env")
    target = fields.pop("target", None)
    if kind == "env":
        if fields:
            raise ValueError(f"{', '.join(k + '=' for k in fields)} only apply to type=mount")
        if target is not None and not word(target, UPPER + LOWER + "_", ALNUM + "_"):
            raise ValueError(f"target={target!r} is not an environment variable name")
        return SecretRef(name, "env", target)
    if target is not None:
        full = target if target.startswith("/") else f"{SECRET_MOUNT_DIR}/{target}"
        if not target or "\0" in target or any(p in (".", "..") for p in full.split("/")) or full.endswith("/"):
            raise ValueError(f"target={target!r} is not a file path")
    mode_text = fields.get("mode", "444")
    if not word(mode_text, OCTAL, OCTAL, 4) or int(mode_text, 8) > 0o777:
        raise ValueError(f"mode={mode_text!r} is not an octal file mode (at most 777)")
    uid = _secret_id(fields["uid"], "uid") if "uid" in fields else 0
    gid = _secret_id(fields["gid"], "gid") if "gid" in fields else 0
    return SecretRef(name, "mount", target, uid, gid, int(mode_text, 8))


def parse_secret(value: str, ctx: ParseContext) -> str:
    return str(secret_ref(value))


# --- logging (LogDriver=, LogOpt=) -----------------------------------------------------------

LOG_DRIVERS = ("journald", "passthrough", "none")


def parse_log_driver(value: str, ctx: ParseContext) -> str:
    if value in ("k8s-file", "json-file"):
        raise ValueError(
            f"{value} (log files for podman logs) is not supported: the container's output goes to "
            "the journal (journalctl -u UNIT); LogDriver=none drops it"
        )
    if value not in LOG_DRIVERS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_DRIVERS)}")
    return value


def parse_log_opt(value: str, ctx: ParseContext) -> str:
    name, eq, text = value.partition("=")
    if name != "tag" or not eq:
        why = "options of file log drivers" if name in ("path", "max-size", "size") else "not a journald option"
        raise ValueError(f"{name}= is not supported ({why}); only tag=NAME is")
    if "{{" in text or not text or not only(text, SYSLOG_IDENTIFIER_CHARACTERS):
        raise ValueError(f"tag={text!r}: only a plain name (letters, digits, _.-@:, specifiers), no podman template")
    return value


SYSLOG_IDENTIFIER_CHARACTERS = ALNUM + "_.-%@:"  # % for a specifier (tag=web-%i), systemd's to expand
