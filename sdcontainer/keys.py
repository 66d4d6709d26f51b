"""The one table of `[Container]` keys.

Each `Key` says how a value is read from a `.container` file, where it lands in the
`ContainerSpec`, which launcher/CLI option carries it, and what the man page says about it.
The parser, the generated unit, the launcher's command line, `sdcontainer run`'s options and
the man-page cross-check all read this table; a key is declared here and nowhere else. The
grammars of the values (one parser per grammar) are in `sdcontainer.values`.
"""

from __future__ import annotations

import os

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.record import record
from sdcontainer.spec import ContainerSpec
from sdcontainer.text import nearest
from sdcontainer.unitfile import Entry, UnitFile, escape_specifiers, split_words, unquote
from sdcontainer.values import (
    DEFAULT_NETWORK,
    ULIMIT_SETTINGS,
    ParseContext,
    is_bridge,
    is_service_unit_name,
    parse_abs_path,
    parse_add_host,
    parse_bool,
    parse_capability,
    parse_count,
    parse_dns_option,
    parse_dns_search,
    parse_dns_server,
    parse_duration,
    parse_entrypoint,
    parse_env_assignment,
    parse_group_add,
    parse_health_cmd,
    parse_health_interval,
    parse_health_on_failure,
    parse_host_path,
    parse_hostname,
    parse_ipv4,
    parse_ipv6,
    parse_label,
    parse_memory,
    parse_name,
    parse_network,
    parse_network_alias,
    parse_notify,
    parse_pids_limit,
    parse_positive_duration,
    parse_proxy_target,
    parse_publish_port,
    parse_pull,
    parse_retries,
    parse_retry_delay,
    parse_seconds,
    parse_shm_size,
    parse_signal,
    parse_string,
    parse_sysctl,
    parse_timespan,
    parse_timezone,
    parse_tmpfs,
    parse_ulimit,
    parse_unmask,
    parse_volume,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import; the generator and launcher skip it
    from collections.abc import Callable, Iterator
    from typing import Any, ClassVar


class Kind:
    """How the assignments of a key make its value: one of the four members below, each
    compared by identity (`key.kind is Kind.LIST`).

    An enumeration without `enum.Enum`: `import enum` (with the functools and collections
    it pulls in) costs about 4 ms here, as much as everything else the generator imports,
    and the generator imports this table at every boot and daemon-reload."""

    SINGLE: ClassVar[Kind]  # one value; the last assignment wins
    LIST: ClassVar[Kind]  # one item per assignment; an empty assignment resets the list
    WORDS: ClassVar[Kind]  # like LIST, with several items per line, split the systemd way
    EXEC: ClassVar[Kind]  # a command line, split as ExecStart= is; the last assignment wins

    __slots__ = ("name", "repeated")

    def __init__(self, name: str, repeated: bool) -> None:
        self.name = name
        self.repeated = repeated  # a tuple of items, one launcher option per item

    def __repr__(self) -> str:
        return f"Kind.{self.name}"


Kind.SINGLE = Kind("SINGLE", repeated=False)
Kind.LIST = Kind("LIST", repeated=True)
Kind.WORDS = Kind("WORDS", repeated=True)
Kind.EXEC = Kind("EXEC", repeated=False)


@record
class Key:
    name: str
    kind: Kind
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
        return self.kind.repeated


# podman's default pids limit (containers.conf pids_limit), in place of systemd's
# DefaultTasksMax= (15% of the kernel's pid maximum: 28910 on a small machine)
DEFAULT_PIDS_LIMIT = "2048"


def parse_image(value: str, ctx: ParseContext) -> str:
    """An image reference: [REGISTRY/]NAME[:TAG][@sha256:DIGEST]. The grammar is
    sdcontainer.reference's; this parser stays here so that sdcontainer.values imports
    nothing of the image code."""
    if value.endswith((".image", ".build")):
        raise ValueError(f"{value}: .image and .build units are not supported yet; name the image itself")
    from sdcontainer.reference import parse_reference

    parse_reference(value)
    return value


# --- the table ----------------------------------------------------------------------------

KEYS: tuple[Key, ...] = (
    Key(
        "Rootfs",
        Kind.SINGLE,
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
        Kind.SINGLE,
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
        Kind.SINGLE,
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
        Kind.SINGLE,
        "retry",
        parse_count,
        option="--retry",
        metavar="N",
        doc="How many times a failed pull is tried again (network errors; a missing image or "
        "refused credentials fail at once). Default: 3.",
    ),
    Key(
        "RetryDelay",
        Kind.SINGLE,
        "retry_delay",
        parse_retry_delay,
        option="--retry-delay",
        metavar="DURATION",
        doc="The wait between pull attempts (500ms, 10s, 1m). Default: 2s, doubled after each failure.",
    ),
    Key(
        "Exec",
        Kind.EXEC,
        "exec",
        parse_string,
        metavar="COMMAND",
        doc="The command and its arguments, split and unescaped the way systemd splits "
        "*ExecStart=*. Appended to *Entrypoint=*. Only the last assignment counts.",
    ),
    Key(
        "Entrypoint",
        Kind.SINGLE,
        "entrypoint",
        parse_entrypoint,
        option="--entrypoint",
        metavar="PROGRAM|JSON",
        doc="The program run in front of *Exec=*: one path, or a JSON array of strings. An empty value clears it.",
    ),
    Key(
        "Environment",
        Kind.WORDS,
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
        Kind.LIST,
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
        Kind.SINGLE,
        "env_host",
        parse_bool,
        option="--env-host",
        metavar="BOOL",
        doc="Passes the launcher's whole environment (the unit's) to the container, but for "
        "the variables systemd sets for the service itself. Default: no.",
    ),
    Key(
        "WorkingDir",
        Kind.SINGLE,
        "working_dir",
        parse_abs_path,
        option="--workdir",
        metavar="PATH",
        doc="The directory the command starts in, inside the container. Default: /.",
    ),
    Key(
        "User",
        Kind.SINGLE,
        "user",
        parse_string,
        option="--user",
        metavar="USER",
        doc="The user the command runs as: a name looked up in the container's own "
        "/etc/passwd, or a number. Default: root (uid 0).",
    ),
    Key(
        "Group",
        Kind.SINGLE,
        "group",
        parse_string,
        option="--group",
        metavar="GROUP",
        doc="The group: a name from the container's /etc/group, or a number. Requires "
        "*User=*. Default: the user's group from /etc/passwd.",
    ),
    Key(
        "GroupAdd",
        Kind.LIST,
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
        Kind.SINGLE,
        "timezone",
        parse_timezone,
        option="--tz",
        metavar="ZONE",
        doc="The container's time zone: its /etc/localtime becomes the host's "
        "/usr/share/zoneinfo/_ZONE_ (read-only), or with *local* the host's /etc/localtime.",
    ),
    Key(
        "HostName",
        Kind.SINGLE,
        "hostname",
        parse_hostname,
        option="--hostname",
        metavar="NAME",
        doc="The host name inside the container (its own UTS namespace). Default: the "
        "container name, with characters a host name cannot hold replaced by '-'.",
    ),
    Key(
        "ContainerName",
        Kind.SINGLE,
        "name",
        parse_name,
        option="--name",
        metavar="NAME",
        doc="The container's name, shown by *sdcontainer list*. Default: the unit name without its suffix (%N).",
    ),
    Key(
        "Volume",
        Kind.LIST,
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
        Kind.LIST,
        "tmpfs",
        parse_tmpfs,
        option="--tmpfs",
        metavar="PATH[:OPTIONS]",
        doc="Mounts a fresh tmpfs at _PATH_, nosuid, nodev and noexec unless _OPTIONS_ "
        "(tmpfs mount options such as size=64m,mode=1777, or exec) say otherwise.",
    ),
    Key(
        "ShmSize",
        Kind.SINGLE,
        "shm_size",
        parse_shm_size,
        option="--shm-size",
        metavar="SIZE",
        doc="The size of the tmpfs on /dev/shm: bytes, or a number with k, m or g (powers of "
        "1024); 0 means no limit. Default: 64m.",
    ),
    Key(
        "ReadOnly",
        Kind.SINGLE,
        "read_only",
        parse_bool,
        option="--read-only",
        metavar="BOOL",
        doc="Makes the container's root file system read-only. Default: no.",
    ),
    Key(
        "ReadOnlyTmpfs",
        Kind.SINGLE,
        "read_only_tmpfs",
        parse_bool,
        option="--read-only-tmpfs",
        metavar="BOOL",
        doc="With *ReadOnly=yes*, mounts tmpfs on /tmp, /var/tmp and /run so programs still "
        "have somewhere to write. Default: yes.",
    ),
    Key(
        "Network",
        Kind.SINGLE,
        "network",
        parse_network,
        option="--network",
        metavar="MODE",
        doc="*bridge* (the default; also *private*, or *sdcontainer*, its name): the default "
        "bridge network, as with Quadlet: a network namespace of its own with loopback and "
        "eth0, an address from 10.88.0.0/16 on the host's bridge sdcontainer0 (gateway "
        "10.88.0.1), outbound traffic masqueraded. _NAME_*.network*: the network of that "
        ".network file on the search path (see *sdcontainer.network*(5)); the unit requires "
        "and is ordered after its _NAME_-network.service, as with Quadlet. _NAME_: a network "
        "made by *sdcontainer network create* (or named by a .network file's *NetworkName=*). "
        "*none*: a network namespace of its own with only loopback. *host*: the host's network "
        "namespace. Without *Network=*, a file with *SocketProxy=* gets *none*. One network per "
        "container: several *Network=* lines are refused. Options (_NAME_:ip=...) and "
        "*container:* are not supported yet.",
    ),
    Key(
        "IP",
        Kind.SINGLE,
        "ip",
        parse_ipv4,
        option="--ip",
        metavar="ADDRESS",
        doc="A static IPv4 address for the container on its bridge network, in place of the "
        "next free one; it must be in one of the network's subnets. The start fails, naming "
        "the unit that holds it, when another running container has it.",
    ),
    Key(
        "IP6",
        Kind.SINGLE,
        "ip6",
        parse_ipv6,
        option="--ip6",
        metavar="ADDRESS",
        doc="A static IPv6 address for the container on its network, which needs an IPv6 "
        "subnet (*IPv6=yes* or *Subnet=* in its .network file); as *IP=* otherwise.",
    ),
    Key(
        "NetworkAlias",
        Kind.LIST,
        "network_aliases",
        parse_network_alias,
        option="--network-alias",
        metavar="NAME",
        doc="Another name by which the other containers of its network find the container (in "
        "their /etc/hosts, beside its container name and host name).",
    ),
    Key(
        "PublishPort",
        Kind.LIST,
        "publish_ports",
        parse_publish_port,
        option="--publish",
        metavar="[[IP:]HOSTPORT:]CONTAINERPORT[/PROTO]",
        doc="Forwards the host's port _HOSTPORT_ (on every address of the host, or only on "
        "_IP_) to _CONTAINERPORT_ of a container on a bridge network, for tcp (the default) "
        "or udp; ranges such as 8080-8082:80-82 map port by port. Reachable from other hosts, "
        "from the host itself (127.0.0.1 too) and from containers. The start fails, naming "
        "both units, when another running container publishes the same host port. A random "
        "host port (*PublishPort=80*) is not supported yet.",
    ),
    Key(
        "SocketProxy",
        Kind.SINGLE,
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
        Kind.SINGLE,
        "socket_proxy_exit_idle_time",
        parse_timespan,
        metavar="TIMESPAN",
        doc="How long the proxy of *SocketProxy=* waits without a connection before it exits "
        "and so stops the container (systemd-socket-proxyd's *--exit-idle-time=*, a time span "
        "such as 30s or 5min; infinity never stops it). Default: 30s.",
    ),
    Key(
        "AddHost",
        Kind.LIST,
        "add_hosts",
        parse_add_host,
        option="--add-host",
        metavar="NAME:IP",
        separator=",",
        doc="A line for the container's /etc/hosts: _NAME_ (several joined by ;) at the IPv4 or IPv6 address _IP_.",
    ),
    Key(
        "DNS",
        Kind.LIST,
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
        Kind.LIST,
        "dns_search",
        parse_dns_search,
        option="--dns-search",
        metavar="DOMAIN",
        separator=",",
        doc="A search domain for the container's /etc/resolv.conf, in place of the host's; . for none.",
    ),
    Key(
        "DNSOption",
        Kind.LIST,
        "dns_options",
        parse_dns_option,
        option="--dns-option",
        metavar="OPTION",
        separator=",",
        doc="A resolver option (resolv.conf(5)) for the container's /etc/resolv.conf, in place of the host's.",
    ),
    Key(
        "Label",
        Kind.WORDS,
        "labels",
        parse_label,
        option="--label",
        metavar="KEY=VALUE",
        doc="Labels recorded with the running container (see *sdcontainer list*).",
    ),
    Key(
        "Annotation",
        Kind.WORDS,
        "annotations",
        parse_label,
        option="--annotation",
        metavar="KEY=VALUE",
        doc="Annotations recorded with the running container, like *Label=*.",
    ),
    Key(
        "StopSignal",
        Kind.SINGLE,
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
        Kind.SINGLE,
        "stop_timeout",
        parse_seconds,
        metavar="SECONDS",
        service_setting="TimeoutStopSec",
        doc="Seconds to wait after the stop signal before everything in the container is "
        "killed with SIGKILL (systemd's *TimeoutStopSec=*). Default: 10.",
    ),
    Key(
        "ReloadSignal",
        Kind.SINGLE,
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
        Kind.EXEC,
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
        Kind.SINGLE,
        "run_init",
        parse_bool,
        option="--init",
        metavar="BOOL",
        doc="Runs a minimal init (tini) as the container's PID 1, in front of the command: it "
        "forwards signals and reaps zombies. Default: no.",
    ),
    Key(
        "NoNewPrivileges",
        Kind.SINGLE,
        "no_new_privileges",
        parse_bool,
        option="--no-new-privileges",
        metavar="BOOL",
        doc="Sets no_new_privs, so setuid and file capabilities cannot raise privileges. "
        "Default: yes (podman's default is no).",
    ),
    Key(
        "AddCapability",
        Kind.WORDS,
        "add_capabilities",
        parse_capability,
        option="--cap-add",
        metavar="CAPABILITY",
        doc="Capabilities added to the default set (CAP_ prefix optional, any case).",
    ),
    Key(
        "DropCapability",
        Kind.WORDS,
        "drop_capabilities",
        parse_capability,
        option="--cap-drop",
        metavar="CAPABILITY",
        doc="Capabilities removed from the default set; *all* removes every one.",
    ),
    Key(
        "Mask",
        Kind.WORDS,
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
        Kind.WORDS,
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
        Kind.WORDS,
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
        Kind.SINGLE,
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
        Kind.SINGLE,
        "pids_limit",
        parse_pids_limit,
        metavar="N",
        service_setting="TasksMax",
        doc="The most processes and threads the service may have (systemd's *TasksMax=*); -1 or 0 means no "
        "limit. Default: 2048, as in podman.",
    ),
    Key(
        "Ulimit",
        Kind.LIST,
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
        Kind.SINGLE,
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
        Kind.SINGLE,
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
        Kind.SINGLE,
        "health_interval",
        parse_health_interval,
        metavar="DURATION|disable",
        doc="Time from the end of one check to the start of the next, and from the start of the "
        "container to the first (30s, 1m30s, 500ms; a bare number is seconds). *disable*: no "
        "timer, the check runs when its service is started by hand. Default: 30s.",
    ),
    Key(
        "HealthRetries",
        Kind.SINGLE,
        "health_retries",
        parse_retries,
        metavar="N",
        doc="Consecutive failed checks after which the container is unhealthy and "
        "*HealthOnFailure=* applies. Default: 3.",
    ),
    Key(
        "HealthTimeout",
        Kind.SINGLE,
        "health_timeout",
        parse_positive_duration,
        metavar="DURATION",
        doc="A check still running after this long is killed and counts as failed. Default: 30s.",
    ),
    Key(
        "HealthStartPeriod",
        Kind.SINGLE,
        "health_start_period",
        parse_duration,
        metavar="DURATION",
        doc="Failed checks in this time after the container started do not count, until one "
        "check has passed. Default: 0s.",
    ),
    Key(
        "HealthOnFailure",
        Kind.SINGLE,
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
        "LogDriver",
        "LogOpt",
        "Mount",
        "Pod",
        "PodmanArgs",
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
    return check_key(entry, KEYS_BY_NAME, QUADLET_ONLY_KEYS, "Container")


def check_key(entry: Entry, table: dict[str, Key], quadlet_only: frozenset[str], section: str) -> Key:
    """The key of `entry` in `table` (a section's key table), or ConfigError: a Quadlet key
    not supported yet, or an unknown one (with a did-you-mean)."""
    key = table.get(entry.key)
    if key is not None:
        return key
    if entry.key in quadlet_only:
        hint = _HINTS.get(entry.key)
        raise entry.error(
            f"key {entry.key}= in [{section}] is a Quadlet key that sdcontainer does not support yet"
            + (f"; {hint}" if hint else "")
        )
    raise entry.error(f"unknown key {entry.key}= in [{section}]" + did_you_mean(entry.key, list(table)))


def table_values(
    unit: UnitFile,
    section: str,
    table: dict[str, Key],
    quadlet_only: frozenset[str],
    errors: list[ConfigError] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Entry]]]:
    """The fields of a section read through another section's key table (the [Network]
    table of sdcontainer.networks), and the lines of each field; errors as _section_values."""
    ctx = ParseContext(unit_dir=escape_specifiers(os.path.dirname(os.path.abspath(unit.path))))
    grouped: dict[str, list[Entry]] = {}
    for entry in unit.section(section):
        try:
            field = check_key(entry, table, quadlet_only, section).field
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        grouped.setdefault(field, []).append(entry)
    values: dict[str, Any] = {}
    for field, entries in grouped.items():
        try:
            value = _values_for(table[entries[0].key], entries, ctx, errors)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        if value is not None:
            values[field] = value
    return values, grouped


def did_you_mean(key: str, known: list[str]) -> str:
    """ "; did you mean KEY=?" for a key that looks like a misspelling of a known one, else ""."""
    found = nearest(key, known)
    return f"; did you mean {found}=?" if found else ""


# what _parse_one returns for a value it appended an error for
_BAD_VALUE = object()


def _parse_one(key: Key, entry: Entry, value: str, ctx: ParseContext, errors: list[ConfigError] | None) -> Any:
    try:
        return key.parse(value, ctx)
    except ValueError as error:
        if errors is None:
            raise entry.error(f"invalid {key.name}=: {error}") from None
        errors.append(entry.error(f"invalid {key.name}=: {error}"))
        return _BAD_VALUE


def _values_for(key: Key, entries: list[Entry], ctx: ParseContext, errors: list[ConfigError] | None = None) -> Any:
    """Fold the assignments of one key into its spec value, following its kind. A bad value
    raises ConfigError; with `errors`, each is appended to it and left out."""
    if key.kind is Kind.SINGLE or key.kind is Kind.EXEC:
        entry = entries[-1]
        if key.kind is Kind.EXEC:
            words = split_words(entry.value, entry)
            return tuple(words) if words else None
        value = unquote(entry.value)
        if value == "" and key.field not in ("entrypoint",):
            return None
        parsed = _parse_one(key, entry, value, ctx, errors)
        return None if parsed is _BAD_VALUE else parsed
    items: list[Any] = []
    for entry in entries:
        if entry.value == "":
            items = []  # Key= resets the list, as in systemd
            continue
        values = split_words(entry.value, entry) if key.kind is Kind.WORDS else [unquote(entry.value)]
        for value in values:
            for item in value.split(key.separator) if key.separator else (value,):
                parsed = _parse_one(key, entry, item, ctx, errors)
                if parsed is not _BAD_VALUE:
                    items.append(parsed)
    return tuple(items)


def _section_values(
    unit: UnitFile, section: str, errors: list[ConfigError] | None
) -> tuple[dict[str, Any], dict[str, list[Entry]]]:
    """The spec's fields from the section's lines, and the lines of each field. The first
    unknown key or bad value raises ConfigError; with `errors`, each is appended to it."""
    # the file's directory is a literal part of the paths resolved against it, which reach
    # systemd (ExecStart=, RequiresMountsFor=) where a % in it would be a specifier
    ctx = ParseContext(unit_dir=escape_specifiers(os.path.dirname(os.path.abspath(unit.path))))
    grouped: dict[str, list[Entry]] = {}
    for entry in unit.section(section):
        try:
            field = _check_key(entry).field
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        grouped.setdefault(field, []).append(entry)
    values: dict[str, Any] = {}
    for field, entries in grouped.items():
        if field == "network" and len({e.value for e in entries if e.value}) > 1:
            # a list in Quadlet (one interface each); one network per container here
            several = entries[-1].error(
                "several Network= lines (a container on several networks) are not supported yet; "
                "put the container on one network"
            )
            if errors is None:
                raise several
            errors.append(several)
            continue
        try:
            value = _values_for(KEYS_BY_NAME[entries[0].key], entries, ctx, errors)
        except ConfigError as error:  # an unterminated quote: the key's other lines are not read
            if errors is None:
                raise
            errors.append(error)
            continue
        if value is not None:
            values[field] = value
    if "network" not in values:
        # Quadlet's default: the default bridge network; with SocketProxy=, the private
        # namespace the proxy shares (its target is the container's 127.0.0.1)
        values["network"] = "none" if "socket_proxy" in values else DEFAULT_NETWORK
    return values, grouped


def _spec_error(error: SpecError, grouped: dict[str, list[Entry]], unit: UnitFile, section: str) -> ConfigError:
    # point at the last assignment of the key the check is about, if the file has one
    assignments = grouped.get(error.field or "")
    if assignments:
        return assignments[-1].error(str(error))
    return ConfigError(f"[{section}]: {error}", unit.path)


def spec_from_unit(unit: UnitFile, section: str = "Container") -> ContainerSpec:
    """Validate the [Container] section of a parsed unit file into a spec."""
    values, grouped = _section_values(unit, section, None)
    spec = ContainerSpec(**values)
    try:
        validate(spec)
        validate_unit(spec)
    except SpecError as error:
        raise _spec_error(error, grouped, unit, section) from None
    return spec


def section_errors(unit: UnitFile, errors: list[ConfigError], section: str = "Container", *, whole: bool) -> None:
    """Append every error of the section to `errors`: each unknown key, each bad value; and,
    if `whole` and there was none of those, each check between keys (which a bad or missing
    line would turn into noise)."""
    found = len(errors)
    values, grouped = _section_values(unit, section, errors)
    if not whole or len(errors) > found:
        return
    spec = ContainerSpec(**values)
    for problem in (*problems(spec), *unit_problems(spec)):
        errors.append(_spec_error(problem, grouped, unit, section))


class SpecError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def validate(spec: ContainerSpec) -> None:
    """Checks that involve more than one key: raises the first problem."""
    for problem in problems(spec):
        raise problem


def problems(spec: ContainerSpec) -> Iterator[SpecError]:
    """Each check that involves more than one key and fails, in order."""
    if spec.image and spec.rootfs:
        yield SpecError("Image= and Rootfs= exclude each other; set exactly one", "rootfs")
    if not spec.rootfs and not spec.image:
        yield SpecError("one of Rootfs= or Image= is required")
    if not spec.command and not spec.image:  # an image's config may supply the command
        yield SpecError("no command: set Exec= (and/or Entrypoint=)")
    if spec.group and not spec.user:
        yield SpecError("Group= requires User=", "group")
    for item in spec.sysctls:
        if spec.network == "host" and item.startswith("net."):
            yield SpecError(
                f"Sysctl={item}: net.* sysctls cannot be set with Network=host (they would change the host's)",
                "sysctls",
            )
    if "none" in spec.dns_servers and len(spec.dns_servers) > 1:
        yield SpecError("DNS=none cannot be combined with name servers", "dns_servers")
    if spec.dns_servers == ("none",) and (spec.dns_search or spec.dns_options):
        yield SpecError(
            "DNS=none leaves the image's resolv.conf alone: DNSSearch= and DNSOption= cannot go in it",
            "dns_options" if spec.dns_options else "dns_search",
        )
    if spec.socket_proxy_exit_idle_time and not spec.socket_proxy:
        yield SpecError("SocketProxyExitIdleTime= needs SocketProxy=", "socket_proxy_exit_idle_time")
    if spec.socket_proxy and spec.network == "none" and any(s.startswith("net.") for s in spec.sysctls):
        yield SpecError(
            "Sysctl=net.* cannot be combined with SocketProxy=: the container shares the proxy's network namespace",
            "sysctls",
        )
    if not is_bridge(spec.network):
        for field, key in (
            ("publish_ports", "PublishPort"),
            ("ip", "IP"),
            ("ip6", "IP6"),
            ("network_aliases", "NetworkAlias"),
        ):
            if getattr(spec, field):
                raise SpecError(f"{key}= needs a bridge network, not Network={spec.network}", field)
    for port in spec.publish_ports:
        if port.startswith("[") and spec.network == DEFAULT_NETWORK:
            raise SpecError(
                f"PublishPort={port}: the default network has no IPv6 subnet; put the container on a "
                "network with one (IPv6=yes in a .network file)",
                "publish_ports",
            )
    if spec.ip6 and spec.network == DEFAULT_NETWORK:
        yield SpecError(
            "IP6= on the default network is not supported: it has no IPv6 subnet; "
            "use a network with one (IPv6=yes in a .network file)",
            "ip6",
        )
    if "." in spec.dns_search and len(spec.dns_search) > 1:
        yield SpecError("DNSSearch=. (no search domains) cannot be combined with domains", "dns_search")


def validate_unit(spec: ContainerSpec) -> None:
    """Checks that only make sense for a .container file: the launcher never sees the health
    keys (they become the units beside the service). Raises the first problem."""
    for problem in unit_problems(spec):
        raise problem


def unit_problems(spec: ContainerSpec) -> Iterator[SpecError]:
    """Each check of validate_unit that fails, in order."""
    if spec.notify == "healthy" and not spec.health_cmd:
        yield SpecError("Notify=healthy needs a health check: set HealthCmd=", "notify")
    if spec.reload_cmd and spec.reload_signal:
        # Quadlet refuses the pair too: a reload does one thing
        yield SpecError("ReloadCmd= and ReloadSignal= exclude each other; set one of them", "reload_cmd")


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
            if value != "%n" and not is_service_unit_name(value):
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
