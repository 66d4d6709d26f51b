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
from sdcontainer.unitfile import Entry, EnvWord, UnitFile, escape_specifiers, split_words, unquote
from sdcontainer.values import (
    DEFAULT_NETWORK,
    ULIMIT_SETTINGS,
    ParseContext,
    has_variable,
    is_bridge,
    is_service_unit_name,
    joins_container,
    mount_text,
    parse_abs_path,
    parse_add_host,
    parse_auto_update,
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
    parse_log_driver,
    parse_log_opt,
    parse_memory,
    parse_mount,
    parse_name,
    parse_network,
    parse_network_alias,
    parse_notify,
    parse_pids_limit,
    parse_pod,
    parse_positive_duration,
    parse_proxy_target,
    parse_publish_port,
    parse_pull,
    parse_retries,
    parse_retry_delay,
    parse_seconds,
    parse_secret,
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
    # podman's one-letter form of `option` for `sdcontainer run` (-e, -v, -p, -w, -u)
    short: str | None = None

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
    if value.endswith(".build"):
        raise ValueError(f"{value}: .build units are not supported yet; name the image itself")
    if value.endswith(".image") and not ctx.expanded:
        # NAME.image: the image of that .image file, which the generator resolves (sdcontainer.imagefile)
        if "/" in value or value.startswith(".") or "@" in value:
            raise ValueError(f"{value}: a .image file is named by its file name (NAME.image), not a template or path")
        return value
    if not ctx.expanded and has_variable(value):
        return value  # repo:${TAG}: the launcher checks what systemd made of it
    from sdcontainer.reference import parse_reference

    parse_reference(value)
    return value


# --- issue 13: Secret=, LogDriver=/LogOpt=, SecurityLabel*= ----------------------------------

SELINUX_ENFORCE = "/sys/fs/selinux/enforce"  # exists where SELinux is enabled


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
        "unqualified-search-registries of registries.conf (docker.io when none is set). _NAME_*.image* "
        "runs the image of that .image file, after its _NAME_-image.service pulled it.",
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
        short="-e",
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
        short="-w",
        doc="The directory the command starts in, inside the container. Default: /.",
    ),
    Key(
        "User",
        Kind.SINGLE,
        "user",
        parse_string,
        option="--user",
        metavar="USER",
        short="-u",
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
        doc="The container's name, shown by *sdcontainer ps*. Default: the unit name without its suffix (%N).",
    ),
    Key(
        "Volume",
        Kind.LIST,
        "volumes",
        parse_volume,
        option="--volume",
        metavar="[SOURCE:]TARGET[:OPTIONS]",
        short="-v",
        doc="Mounts _SOURCE_ at _TARGET_. _SOURCE_ is a host path (bind-mounted; a relative one, "
        "./dir, is taken from the directory of the unit file), a volume name (the volume is "
        "created at the first start that uses it, see *sdcontainer-volume*(1)), _NAME_*.volume* "
        "(the volume of that file: the service requires and is ordered after _NAME_-volume.service), "
        "or left out: an anonymous volume, in memory and gone with the container. "
        "*${VAR}* in _SOURCE_ is expanded by systemd from the unit's *Environment=*, as with "
        "Quadlet. A new volume is seeded with what the image has at _TARGET_. _OPTIONS_, "
        "comma-separated: ro, rw (the default), nosuid, nodev, noexec (volumes are nosuid and "
        "nodev unless suid or dev is given), suid, dev, exec, rbind (the default), bind (not "
        "recursive), U (the source is chowned to the container's user and group at each start, "
        "never following a symlink in it), nocopy (no seeding), copy; z and Z are accepted and "
        "ignored (no SELinux relabelling, as podman without SELinux). Mount propagation options "
        "are refused: a container's mounts are private.",
    ),
    Key(
        "Mount",
        Kind.LIST,
        "mounts",
        parse_mount,
        option="--mount",
        metavar="type=TYPE,...",
        doc="A mount in podman's *--mount* syntax, comma-separated fields: *type=*bind, volume "
        "(the default) or tmpfs; *source=* (or *src=*): a host path for bind, a volume name "
        "or _NAME_*.volume* for volume (none: an anonymous volume); *destination=* (or *dst=*, "
        "*target=*); *ro*, *readonly*, *rw* (each may take =true or =false); *U* or *chown*; "
        "*nocopy* (or *volume-nocopy*); *bind-nonrecursive*; *tmpfs-size=*, *tmpfs-mode=*; "
        "*relabel=* is accepted and ignored. Each means what the same option of *Volume=* or "
        "*Tmpfs=* means. *bind-propagation=* other than private and rprivate is refused, as "
        "are the types image, devpts, glob and artifact.",
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
        "container: several *Network=* lines are refused. Options (_NAME_:ip=...) are not "
        "supported yet. "
        "*container:*_NAME_: the network namespace of the running "
        "container _NAME_ (its *ContainerName=*, or its unit), shared: its addresses, its "
        "published ports, its loopback; the start fails when it is not running. "
        "_NAME_*.container*: the same for the container of that file, whose service this one "
        "then requires and starts after (as with Quadlet).",
    ),
    Key(
        "Pod",
        Kind.SINGLE,
        "pod",
        parse_pod,
        option="--pod",
        metavar="NAME.pod",
        doc="Runs the container in the pod of the file _NAME_*.pod* (see *sdcontainer.pod*(5)): it "
        "joins the pod's network, IPC and UTS namespaces (its host name is the pod's; the pod's "
        "containers reach each other on 127.0.0.1), its unit is bound to _NAME_*-pod.service* "
        "(started with it, stopped with it) and that service starts it. *Network=*, *IP=*, "
        "*PublishPort=* and *HostName=* belong to the pod and are refused here.",
    ),
    Key(
        "StartWithPod",
        Kind.SINGLE,
        "start_with_pod",
        parse_bool,
        metavar="BOOL",
        doc="With *Pod=*: whether starting the pod's service starts this container (it is in the "
        "service's .wants/ directory). Default: yes.",
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
        metavar="[[IP:][HOSTPORT]:]CONTAINERPORT[/PROTO]",
        short="-p",
        doc="Forwards the host's port _HOSTPORT_ (on every address of the host, or only on "
        "_IP_) to _CONTAINERPORT_ of a container on a bridge network, for tcp (the default) "
        "or udp; ranges such as 8080-8082:80-82 map port by port. Reachable from other hosts, "
        "from the host itself (127.0.0.1 too) and from containers. The start fails, naming "
        "both units, when another running container publishes the same host port. Without "
        "_HOSTPORT_ (*PublishPort=80*, *PublishPort=127.0.0.1::80*), a free host port is "
        "chosen at each start (one that no other container publishes and nothing on the host "
        "listens on); the launcher logs it, and *sdcontainer list --format json* shows it "
        "(*ports*). Not with *Network=container:*.",
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
        doc="Labels recorded with the running container (see *sdcontainer inspect*).",
    ),
    Key(
        "AutoUpdate",
        Kind.SINGLE,
        "auto_update",
        parse_auto_update,
        option="--auto-update",
        metavar="POLICY",
        doc="Lets *sdcontainer auto-update* update the container's image: *registry* (the image "
        "named by *Image=*, which must name its registry, is compared with the registry's by "
        "digest and pulled when it changed) or *local* (compared with the image the store has "
        "under that name now). The container is then restarted, and rolled back to the image it "
        "ran before if the restart fails. Recorded with the running container as the label "
        "io.containers.autoupdate, as podman does (that label, given with *Label=*, works too). "
        "See *sdcontainer*(1).",
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
        doc="Capabilities added to the default set (CAP_ prefix optional, any case); a non-root "
        "User= gets exactly these, ambient included, as in podman.",
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
    # --- Secret=, logging, SELinux labels (issue 13) ---
    Key(
        "Secret",
        Kind.LIST,
        "secrets",
        parse_secret,
        option="--secret",
        metavar="NAME[,OPTIONS]",
        doc="Gives the container the secret _NAME_, stored with *sdcontainer secret create* (see "
        "sdcontainer(1)): with *type=mount* (the default) as the file /run/secrets/_NAME_ "
        "(*target=* another path; a relative one is under /run/secrets), read-only, owned by "
        "*uid=* and *gid=* (default 0) with mode *mode=* (octal, default 444); with *type=env* as "
        "the environment variable _NAME_ (or *target=*) of the container only. systemd hands it "
        "to the unit as a credential (*LoadCredential=*), so the value is never in the unit, "
        "*systemctl show*, or the launcher's command line or environment. A start fails naming a "
        "secret that does not exist. _NAME_ may also be given as *source=*_NAME_.",
    ),
    Key(
        "LogDriver",
        Kind.SINGLE,
        "log_driver",
        parse_log_driver,
        option="--log-driver",
        metavar="DRIVER",
        doc="Where the container's output goes. *journald* and *passthrough* (the default and "
        "only way here): the unit's standard output and error, so the journal (*journalctl -u* "
        "_UNIT_). *none*: the container's standard output and error are /dev/null (the "
        "launcher's own errors still reach the journal). *k8s-file* and *json-file* (log files "
        "for *podman logs*) are refused.",
    ),
    Key(
        "LogOpt",
        Kind.LIST,
        "log_opts",
        parse_log_opt,
        metavar="tag=NAME",
        doc="*tag=*_NAME_: the journal's identifier of the container's lines (systemd's "
        "*SyslogIdentifier=*, *journalctl -t* _NAME_; default: the unit name without its "
        "suffix). podman's templates ({{...}}) and the options of file log drivers (*path=*, "
        "*max-size=*) are refused.",
    ),
    Key(
        "SecurityLabelDisable",
        Kind.SINGLE,
        "security_label_disable",
        parse_bool,
        metavar="BOOL",
        doc="Accepted and ignored where SELinux is off, as podman ignores it there: sdcontainer "
        "applies no SELinux labels. Refused on a host with SELinux enabled.",
    ),
    Key(
        "SecurityLabelType",
        Kind.SINGLE,
        "security_label_type",
        parse_string,
        metavar="TYPE",
        doc="As *SecurityLabelDisable=*: ignored where SELinux is off, refused where it is on.",
    ),
    Key(
        "SecurityLabelFileType",
        Kind.SINGLE,
        "security_label_file_type",
        parse_string,
        metavar="TYPE",
        doc="As *SecurityLabelDisable=*: ignored where SELinux is off, refused where it is on.",
    ),
    Key(
        "SecurityLabelLevel",
        Kind.SINGLE,
        "security_label_level",
        parse_string,
        metavar="LEVEL",
        doc="As *SecurityLabelDisable=*: ignored where SELinux is off, refused where it is on.",
    ),
    Key(
        "SecurityLabelNested",
        Kind.SINGLE,
        "security_label_nested",
        parse_bool,
        metavar="BOOL",
        doc="As *SecurityLabelDisable=*: ignored where SELinux is off, refused where it is on.",
    ),
    Key(
        "PodmanArgs",
        Kind.WORDS,
        "podman_args",
        parse_string,
        metavar="FLAGS",
        doc="Flags of *podman run*, split the systemd way, each read as the key it stands for, as "
        "if that key had been written after all the file's other lines (see PODMAN FLAGS): "
        "*--memory 1g* is *Memory=1g*, *--cap-add NET_ADMIN* is *AddCapability=NET_ADMIN*, "
        "*--security-opt no-new-privileges* is *NoNewPrivileges=yes*. A flag without such a key "
        "is refused, naming it (and the supported flag it may be a misspelling of).",
    ),
    Key(
        "HealthStartupCmd",
        Kind.SINGLE,
        "health_startup_cmd",
        parse_health_cmd,
        metavar="COMMAND|JSON",
        doc="A startup check, written as *HealthCmd=*, run every *HealthStartupInterval=* from the "
        "start of the container until it passes (*HealthStartupSuccess=* times); only then does the "
        "*HealthCmd=* check begin, which it requires. See HEALTH CHECKS.",
    ),
    Key(
        "HealthStartupInterval",
        Kind.SINGLE,
        "health_startup_interval",
        parse_positive_duration,
        metavar="DURATION",
        doc="Time from the end of one startup check to the start of the next, and from the start of "
        "the container to the first. Default: 30s.",
    ),
    Key(
        "HealthStartupRetries",
        Kind.SINGLE,
        "health_startup_retries",
        parse_count,
        metavar="N",
        doc="Consecutive failed startup checks after which the service is restarted (*systemctl "
        "restart*). Default: 0, never.",
    ),
    Key(
        "HealthStartupSuccess",
        Kind.SINGLE,
        "health_startup_success",
        parse_count,
        metavar="N",
        doc="Consecutive passing startup checks after which the regular check begins. Default: 0, which means 1.",
    ),
    Key(
        "HealthStartupTimeout",
        Kind.SINGLE,
        "health_startup_timeout",
        parse_positive_duration,
        metavar="DURATION",
        doc="A startup check still running after this long is killed and counts as failed. Default: 30s.",
    ),
    Key(
        "HttpProxy",
        Kind.SINGLE,
        "http_proxy",
        parse_bool,
        option="--http-proxy",
        metavar="BOOL",
        doc="Passes the proxy variables of the unit's environment (http_proxy, https_proxy, "
        "ftp_proxy, no_proxy, in either case; set with *Environment=* in *[Service]*) to the "
        "container, under its own *Environment=*, as podman does. Default: yes.",
    ),
    # --- end of issue 13's Secret=/logging/SELinux keys ---
)

KEYS_BY_NAME = {key.name: key for key in KEYS}

# --- podman run's flags: the one table of which flag is which key (issue 13) ----------------

# podman run's flags and the [Container] key each one is (Quadlet's own mapping, read
# backwards). PodmanArgs= reads its words with it, and `sdcontainer run` can take the same
# short flags from it (podman_flags). A key not in KEYS yet (Mount, AddDevice, ...) makes
# its flag a refusal saying so.
PODMAN_FLAGS: dict[str, str] = {
    "--add-host": "AddHost",
    "--annotation": "Annotation",
    "--cap-add": "AddCapability",
    "--cap-drop": "DropCapability",
    "--cgroups": "CgroupsMode",
    "--device": "AddDevice",
    "--dns": "DNS",
    "--dns-option": "DNSOption",
    "--dns-search": "DNSSearch",
    "--entrypoint": "Entrypoint",
    "--env": "Environment",
    "-e": "Environment",
    "--env-file": "EnvironmentFile",
    "--env-host": "EnvironmentHost",
    "--expose": "ExposeHostPort",
    "--gidmap": "GIDMap",
    "--group-add": "GroupAdd",
    "--health-cmd": "HealthCmd",
    "--health-interval": "HealthInterval",
    "--health-on-failure": "HealthOnFailure",
    "--health-retries": "HealthRetries",
    "--health-start-period": "HealthStartPeriod",
    "--health-startup-cmd": "HealthStartupCmd",
    "--health-startup-interval": "HealthStartupInterval",
    "--health-startup-retries": "HealthStartupRetries",
    "--health-startup-success": "HealthStartupSuccess",
    "--health-startup-timeout": "HealthStartupTimeout",
    "--health-timeout": "HealthTimeout",
    "--hostname": "HostName",
    "-h": "HostName",
    "--http-proxy": "HttpProxy",
    "--init": "RunInit",
    "--ip": "IP",
    "--ip6": "IP6",
    "--label": "Label",
    "-l": "Label",
    "--log-driver": "LogDriver",
    "--log-opt": "LogOpt",
    "--memory": "Memory",
    "-m": "Memory",
    "--mount": "Mount",
    "--name": "ContainerName",
    "--network": "Network",
    "--net": "Network",
    "--network-alias": "NetworkAlias",
    "--pids-limit": "PidsLimit",
    "--pod": "Pod",
    "--publish": "PublishPort",
    "-p": "PublishPort",
    "--pull": "Pull",
    "--read-only": "ReadOnly",
    "--read-only-tmpfs": "ReadOnlyTmpfs",
    "--retry": "Retry",
    "--retry-delay": "RetryDelay",
    "--secret": "Secret",
    "--shm-size": "ShmSize",
    "--stop-signal": "StopSignal",
    "--stop-timeout": "StopTimeout",
    "--subgidname": "SubGIDMap",
    "--subuidname": "SubUIDMap",
    "--sysctl": "Sysctl",
    "--tmpfs": "Tmpfs",
    "--tz": "Timezone",
    "--uidmap": "UIDMap",
    "--ulimit": "Ulimit",
    "--user": "User",
    "-u": "User",
    "--userns": "UserNS",
    "--volume": "Volume",
    "-v": "Volume",
    "--workdir": "WorkingDir",
    "-w": "WorkingDir",
}
# flags with no key, where something else does what they ask
_FLAG_HINTS = {
    "--restart": "set Restart= in [Service]: systemd restarts the unit",
    "--privileged": "add what the container needs with --cap-add (AddCapability=)",
    "--detach-keys": "there is nothing to detach from",
}
_BOOL_FLAGS = ("--env-host", "--init", "--read-only", "--read-only-tmpfs")
# what Quadlet itself passes to every podman run: nothing to add here
PODMAN_NO_OP_FLAGS = ("--rm", "--replace", "-d", "--detach")
# --security-opt's values, each the key (and value) it is
_SECURITY_OPTS = {
    "no-new-privileges": "NoNewPrivileges",
    "label": None,  # label=disable, label=type:T, ...: SecurityLabel*=
    "mask": "Mask",
    "unmask": "Unmask",
    "seccomp": "SeccompProfile",
    "apparmor": "AppArmor",
}
_LABEL_OPTS = {"disable": "SecurityLabelDisable", "nested": "SecurityLabelNested", "type": "SecurityLabelType",
               "filetype": "SecurityLabelFileType", "level": "SecurityLabelLevel"}  # fmt: skip
_SDNOTIFY = {"container": "yes", "conmon": "no", "healthy": "healthy"}


def podman_flags(key_name: str) -> list[str]:
    """podman run's flags for a key, long ones first (for `sdcontainer run`'s short options)."""
    return sorted((flag for flag, name in PODMAN_FLAGS.items() if name == key_name), key=lambda f: (len(f) < 3, f))


def _supported_flags() -> list[str]:
    return [flag for flag, name in PODMAN_FLAGS.items() if name in KEYS_BY_NAME and flag.startswith("--")]


def _podman_entry(entry: Entry, key_name: str, value: str, flag: str) -> Entry:
    """A line KEY=VALUE standing for `flag` of the PodmanArgs= line `entry` (its file and
    line), quoted so that the key's reading gives back `value` as one item."""
    key = KEYS_BY_NAME.get(key_name)
    if key is None:
        why = (
            "is a Quadlet key that sdcontainer does not support yet"
            if key_name in QUADLET_ONLY_KEYS
            else "is not supported"
        )
        raise entry.error(f"PodmanArgs= {flag}: its key {key_name}= {why}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"') if key.kind is Kind.WORDS else value
    return Entry(entry.section, key_name, f'"{escaped}"', entry.path, entry.line)


def _bool_flag(entry: Entry, flag: str, value: str | None) -> str:
    if value is None:
        return "true"
    try:
        parse_bool(value, ParseContext())
    except ValueError:
        raise entry.error(f"PodmanArgs= {flag}={value}: not a boolean") from None
    return value


def podman_args_entries(entry: Entry) -> list[Entry]:
    """The lines a PodmanArgs= line stands for, in its order; ConfigError names the first flag
    that stands for no supported key."""
    words = split_words(entry.value, entry)
    out: list[Entry] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        flag, eq, inline = word.partition("=")
        if not flag.startswith("-") or flag in ("-", "--"):
            raise entry.error(f"PodmanArgs= {word!r} is not a flag (the command and its arguments go in Exec=)")
        if flag in PODMAN_NO_OP_FLAGS and not eq:
            continue
        if flag == "--image-volume":  # the image's VOLUMEs are never made into volumes here
            value = inline if eq else (words[i] if i < len(words) else "")
            i += 0 if eq else 1
            if value != "ignore":
                raise entry.error(
                    f"PodmanArgs= --image-volume {value}: not supported; the image's volumes are always "
                    "ignored here (--image-volume=ignore)"
                )
            continue
        key_name = PODMAN_FLAGS.get(flag)
        if flag != "--security-opt" and flag != "--sdnotify" and key_name is None:
            if flag in _FLAG_HINTS:
                raise entry.error(f"PodmanArgs= {flag} is not supported; {_FLAG_HINTS[flag]}")
            found = nearest(flag, _supported_flags())
            raise entry.error(f"PodmanArgs= {flag} is not supported" + (f"; did you mean {found}?" if found else ""))
        if flag in _BOOL_FLAGS:  # podman's boolean flags take no separate word: --init, --init=false
            out.append(_podman_entry(entry, key_name or "", _bool_flag(entry, flag, inline if eq else None), flag))
            continue
        if eq:
            value = inline
        elif i < len(words):
            value = words[i]
            i += 1
        else:
            raise entry.error(f"PodmanArgs= {flag} needs a value")
        if flag == "--security-opt":
            out += _security_opt(entry, value)
        elif flag == "--sdnotify":
            if value not in _SDNOTIFY:
                raise entry.error(f"PodmanArgs= --sdnotify={value} is not supported (container, conmon or healthy)")
            out.append(_podman_entry(entry, "Notify", _SDNOTIFY[value], flag))
        elif key_name == "User" and ":" in value:  # --user UID:GID is User= and Group=
            user, _, group = value.partition(":")
            out += [_podman_entry(entry, "User", user, flag), _podman_entry(entry, "Group", group, flag)]
        else:
            out.append(_podman_entry(entry, key_name or "", value, flag))
    return out


def _security_opt(entry: Entry, value: str) -> list[Entry]:
    name, eq, rest = value.partition("=")
    flag = f"--security-opt {value}"
    if name not in _SECURITY_OPTS:
        found = nearest(name, list(_SECURITY_OPTS))
        raise entry.error(f"PodmanArgs= {flag} is not supported" + (f"; did you mean {found}?" if found else ""))
    if name == "no-new-privileges":
        return [_podman_entry(entry, "NoNewPrivileges", rest if eq else "true", flag)]
    if name == "label":
        kind, colon, text = rest.partition(":")
        if kind not in _LABEL_OPTS:
            raise entry.error(f"PodmanArgs= {flag} is not supported")
        return [_podman_entry(entry, _LABEL_OPTS[kind], text if colon else "true", flag)]
    return [_podman_entry(entry, _SECURITY_OPTS[name] or "", rest, flag)]


def expand_podman_args(entries: list[Entry], errors: list[ConfigError] | None) -> list[Entry]:
    """The section's lines with each PodmanArgs= line replaced by the lines it stands for, put
    after all the others (Quadlet passes PodmanArgs= last to podman run, where a later flag
    wins)."""
    kept: list[Entry] = []
    added: list[Entry] = []
    for entry in entries:
        if entry.key != "PodmanArgs":
            kept.append(entry)
            continue
        if entry.value == "":
            added = []  # PodmanArgs= resets, as every list key
            continue
        try:
            added += podman_args_entries(entry)
        except ConfigError as error:
            if errors is None:
                raise
            errors.append(error)
    return kept + added


KEYS_BY_OPTION = {key.option: key for key in KEYS if key.option}

# Keys Quadlet accepts in [Container] that sdcontainer does not implement yet: a file using
# one gets an error saying exactly that, instead of "unknown key".
QUADLET_ONLY_KEYS = frozenset(
    [
        "AddDevice",
        "AppArmor",
        "CgroupsMode",
        "ContainersConfModule",
        "ExposeHostPort",
        "GIDMap",
        "GlobalArgs",
        "HealthLogDestination",
        "HealthMaxLogCount",
        "HealthMaxLogSize",
        "RemapGid",
        "RemapUid",
        "RemapUidSize",
        "RemapUsers",
        "SeccompProfile",
        "ServiceName",
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


# systemd 252's unit specifiers (systemd.unit(5)): any other %X in a value that reaches the
# generated unit makes systemd log "Failed to resolve specifiers" and drop the setting or the
# unit, long after `check` said the file was fine. A % at the end of a value stays literal.
SPECIFIERS = frozenset("aAbBCdEfgGhHiIjJlLmMnNopPqsStTuUvVwWyY%")


def _check_specifiers(entry: Entry) -> None:
    value, at = entry.value, 0
    while (at := entry.value.find("%", at)) != -1 and at + 1 < len(value):
        if value[at + 1] not in SPECIFIERS:
            raise entry.error(
                f"{entry.key}={value}: %{value[at + 1]} is not a systemd specifier (write %% for a literal %)"
            )
        at += 2


def _check_key(entry: Entry) -> Key:
    return check_key(entry, KEYS_BY_NAME, QUADLET_ONLY_KEYS, "Container")


def check_key(entry: Entry, table: dict[str, Key], quadlet_only: frozenset[str], section: str) -> Key:
    """The key of `entry` in `table` (a section's key table), or ConfigError: a Quadlet key
    not supported yet, or an unknown one (with a did-you-mean)."""
    key = table.get(entry.key)
    if key is not None:
        _check_specifiers(entry)
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
    for entry in expand_podman_args(unit.section(section), errors):
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
        # in a pod, the pod's (the container joins its network namespace)
        values["network"] = "none" if "socket_proxy" in values or "pod" in values else DEFAULT_NETWORK
    return values, grouped


def _spec_error(error: SpecError, grouped: dict[str, list[Entry]], unit: UnitFile, section: str) -> ConfigError:
    # point at the last assignment of the key the check is about, if the file has one
    assignments = grouped.get(error.field or "")
    if assignments:
        return assignments[-1].error(str(error))
    return ConfigError(f"[{section}]: {error}", unit.path)


# the keys that mount something at a destination in the container (Mount= once it is a key)
_MOUNT_FIELDS = ("volumes", "tmpfs", "mounts")


def _duplicate_destinations(unit: UnitFile, section: str) -> list[ConfigError]:
    """Two mounts on one destination, as podman refuses them ("duplicate mount destination"):
    one error for each later line, naming the earlier one (a drop-in's line counts as later)."""
    ctx = ParseContext(unit_dir=escape_specifiers(os.path.dirname(os.path.abspath(unit.path))))
    seen: dict[str, Entry] = {}
    found: list[ConfigError] = []
    for entry in unit.section(section):
        key = KEYS_BY_NAME.get(entry.key)
        if key is None or key.field not in _MOUNT_FIELDS:
            continue
        if entry.value == "":  # Key= resets the list: its earlier mounts are gone
            seen = {target: earlier for target, earlier in seen.items() if earlier.key != entry.key}
            continue
        try:
            values = split_words(entry.value, entry) if key.kind is Kind.WORDS else [unquote(entry.value)]
        except ConfigError:
            continue  # reported as a bad value
        for value in values:
            try:
                target = getattr(key.parse(value, ctx), "target", None)
            except ValueError:
                continue  # reported as a bad value
            if not isinstance(target, str):
                continue
            target = os.path.normpath(target)
            earlier = seen.get(target)
            if earlier is None:
                seen[target] = entry
                continue
            found.append(
                entry.error(
                    f"{entry.key}={entry.value}: {target} is already the destination of "
                    f"{earlier.key}={earlier.value} at {earlier.path}:{earlier.line}; "
                    "two mounts on one destination are refused, as podman does"
                )
            )
    return found


def spec_from_unit(unit: UnitFile, section: str = "Container") -> ContainerSpec:
    """Validate the [Container] section of a parsed unit file into a spec."""
    values, grouped = _section_values(unit, section, None)
    for duplicate in _duplicate_destinations(unit, section):
        raise duplicate
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
    errors.extend(_duplicate_destinations(unit, section))
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
    if spec.auto_update and not spec.image:
        yield SpecError("AutoUpdate= needs Image=: a Rootfs= tree has nothing to update from", "auto_update")
    elif spec.auto_update == "registry" and not _names_registry(spec.image or ""):
        yield SpecError(
            f"AutoUpdate=registry needs an Image= that names its registry (as podman wants): {spec.image}",
            "auto_update",
        )
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
    if spec.pod:
        # as Quadlet and podman: the pod has the network namespace and the host name
        for field, key in (
            ("network", "Network"),
            ("ip", "IP"),
            ("publish_ports", "PublishPort"),
            ("hostname", "HostName"),
        ):
            if getattr(spec, field) not in (None, (), "none"):
                yield SpecError(f"{key}= cannot be set in a pod (Pod={spec.pod}): set it in the .pod file", field)
        if spec.socket_proxy:
            yield SpecError("SocketProxy= cannot be combined with Pod=", "socket_proxy")
    else:
        yield from _joined_problems(spec)
    if not spec.pod and not is_bridge(spec.network) and not joins_container(spec.network):
        for field, key in (
            ("publish_ports", "PublishPort"),
            ("ip", "IP"),
            ("ip6", "IP6"),
            ("network_aliases", "NetworkAlias"),
        ):
            if getattr(spec, field):
                yield SpecError(f"{key}= needs a bridge network, not Network={spec.network}", field)
    for port in spec.publish_ports:
        if port.startswith("[") and spec.network == DEFAULT_NETWORK:
            yield SpecError(
                f"PublishPort={port}: IPv6 is not supported yet on the default network (it has no IPv6 "
                "subnet); put the container on a network with one (IPv6=yes in a .network file)",
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


def _joined_problems(spec: ContainerSpec) -> Iterator[SpecError]:
    """Network=container:NAME: the network is the other container's, and so are its ports,
    its address and its net.* sysctls (podman refuses these too)."""
    if not joins_container(spec.network):
        return
    other = spec.network.partition(":")[2] if spec.network.startswith("container:") else spec.network
    for field, key, what in (("publish_ports", "PublishPort", "publish the port"), ("ip", "IP", "set the address")):
        if getattr(spec, field):
            yield SpecError(
                f"{key}= cannot be used with Network={spec.network}: the container shares the network "
                f"namespace of {other}; {what} there",
                field,
            )
    if any(s.startswith("net.") for s in spec.sysctls):
        yield SpecError(
            f"Sysctl=net.* cannot be set with Network={spec.network}: they would change {other}'s network",
            "sysctls",
        )


def _names_registry(image: str) -> bool:
    """A fully qualified reference (REGISTRY/NAME...), or a .image file (its Image= is checked there)."""
    first, slash, _ = image.partition("/")
    return image.endswith(".image") or bool(slash and ("." in first or ":" in first or first == "localhost"))


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
    yield from _selinux_problems(spec)
    yield from _startup_problems(spec)


_STARTUP_FIELDS = (
    ("health_startup_interval", "HealthStartupInterval"),
    ("health_startup_retries", "HealthStartupRetries"),
    ("health_startup_success", "HealthStartupSuccess"),
    ("health_startup_timeout", "HealthStartupTimeout"),
)


def _startup_problems(spec: ContainerSpec) -> Iterator[SpecError]:
    """podman refuses a startup check without a regular one: it is what the startup gates."""
    if spec.health_startup_cmd and not spec.health_cmd:
        yield SpecError(
            "HealthStartupCmd= needs HealthCmd=: the startup check gates the regular one", "health_startup_cmd"
        )
    for field, key in _STARTUP_FIELDS:
        if getattr(spec, field) is not None and not spec.health_startup_cmd:
            yield SpecError(f"{key}= needs HealthStartupCmd=", field)


_SECURITY_LABEL_FIELDS = (
    ("security_label_disable", "SecurityLabelDisable"),
    ("security_label_type", "SecurityLabelType"),
    ("security_label_file_type", "SecurityLabelFileType"),
    ("security_label_level", "SecurityLabelLevel"),
    ("security_label_nested", "SecurityLabelNested"),
)


def _selinux_problems(spec: ContainerSpec) -> Iterator[SpecError]:
    """SecurityLabel*= are the no-ops podman makes of them where SELinux is off; where it is
    on, a label asked for would silently not be applied: refused."""
    for field, key in _SECURITY_LABEL_FIELDS:
        if getattr(spec, field) is not None and os.path.exists(SELINUX_ENFORCE):
            yield SpecError(
                f"{key}=: SELinux is enabled on this host, and sdcontainer applies no SELinux labels", field
            )


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
    settings += _secret_and_log_settings(spec)
    return settings


def _secret_and_log_settings(spec: ContainerSpec) -> list[tuple[str, str]]:
    """Secret=: each secret's file loaded as a credential of the unit, with an empty one in its
    place when the file is missing (SetCredential= is LoadCredential='s fallback: see
    sdcontainer.secrets), which the launcher reports naming the secret; LogOpt=tag=: the journal's identifier."""
    settings = []
    if spec.secrets:
        from sdcontainer.secrets import MISSING_SETTING, SYSTEM_SECRETS_DIR, credential_id, secret_path
        from sdcontainer.values import secret_ref

        for name in dict.fromkeys(secret_ref(item).name for item in spec.secrets):
            settings.append(("LoadCredential", f"{credential_id(name)}:{secret_path(name, SYSTEM_SECRETS_DIR)}"))
            settings.append(("SetCredential", f"{credential_id(name)}:{MISSING_SETTING}"))
    for option in spec.log_opts:
        settings.append(("SyslogIdentifier", option.partition("=")[2]))
    return settings


# --- spec <-> launcher command line -------------------------------------------------------


def _format(key: Key, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.field in ("volumes", "mounts"):
        # systemd expands ${VAR} in a volume's source from the unit's environment, as Quadlet's -v
        text = mount_text(value) if key.field == "mounts" else str(value)
        return EnvWord(text) if "$" in getattr(value, "source", "") else text
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
