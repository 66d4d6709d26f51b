"""The launch plan: everything a start decided on the host, before any namespace exists.

sdcontainer.launcher builds it (make_plan: the image's record and config, the checks that
can fail early, socket activation's fds, the files for /etc) and hands it to the steps that
carry it out in the container's child: sdcontainer.rootfs mounts from it, sdcontainer.process
builds the environment from it. A frozen record and a constant, nothing else: the modules
that read the plan sit above this one, the one that builds it above them.
"""

from __future__ import annotations

from sdcontainer.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from sdcontainer.spec import ContainerSpec

NOTIFY_SOCKET_INSIDE = "/run/notify/notify.sock"  # Notify=yes: where Plan.notify_socket is, as in podman


@record
class Attachment:
    """One mount of Volume=, Mount= or Tmpfs=, as the start resolved it on the host."""

    target: str
    # "bind": `source` is a host path or a named volume's _data; "anonymous": a directory
    # in the container's scratch tmpfs; "device": `source` mounted with `fstype` and
    # `data` (a mount-backed volume); "tmpfs": a fresh tmpfs with `data`
    kind: str
    source: str = ""
    readonly: bool = False
    options: tuple[str, ...] = ()  # nosuid, nodev, noexec, suid, dev, exec, bind, rbind, U
    volume: str | None = None  # the named volume, for its copy-up
    copy_up: bool = False  # seed it from the image's content at `target`
    fstype: str | None = None
    flags: int = 0  # mount flags of "device" and "tmpfs"
    data: str = ""


@record
class Plan:
    """What the child needs, computed (and checked) in the parent so that most mistakes are
    reported before any namespace or mount exists."""

    spec: ContainerSpec
    foreground: bool  # no $NOTIFY_SOCKET: the launcher waits for the container and exits with it
    rootfs: str | None  # Rootfs=: the directory bound under the overlay
    layers: tuple[str, ...] | None  # Image=: the layer directories, base first
    image_id: str | None
    image_env: tuple[str, ...]  # the image's Env: KEY=VALUE
    working_dir: str  # WorkingDir=, else the image's, else /
    user: str | None  # User= and Group=, else the image's User
    group: str | None
    command: tuple[str, ...]  # what execve runs: /dev/init -- first with RunInit=yes
    file_env: Mapping[str, str]  # EnvironmentFile=, read on the host
    name: str  # the container's name (ContainerName=, else the unit's)
    hostname: str
    last_cap: int  # the kernel's highest capability number
    caps: int  # the capabilities the container keeps, as a mask
    listen_fds: int  # socket activation: fds 3.. that go into the container
    listen_fdnames: str | None
    hosts: str  # /etc/hosts
    # a bridge network: the host's file bound read-only on /etc/hosts (sdcontainer.names keeps
    # it up to date as the network's other containers come and go); None: `hosts` is written
    hosts_file: str | None
    resolv_conf: str | None  # /etc/resolv.conf; None: the image's own
    localtime: str | None  # Timezone=: the host's zone file bound on /etc/localtime
    # Notify=yes under systemd: the launcher's relay socket (never the manager's own), bound
    # on NOTIFY_SOCKET_INSIDE; WATCHDOG_USEC= with WatchdogSec=
    notify_socket: str | None = None
    watchdog_usec: str | None = None
    # a bridge network: the container's leased addresses ('10.88.0.2/16'), for eth0 and /etc/hosts
    addresses: tuple[str, ...] = ()
    # Secret=: (SecretRef as written, value) of each type=mount secret, and the variables of
    # the type=env ones; read from the unit's credentials, they live only in this process's memory
    secret_files: tuple[tuple[str, bytes], ...] = ()
    secret_env: tuple[tuple[str, str], ...] = ()
    # Network=container:NAME: an fd of that container's network namespace, which the init
    # joins instead of unsharing one (-1: none), and that container's addresses (its record)
    netns_fd: int = -1
    joined_addresses: tuple[str, ...] = ()
    # Volume=, Mount= and Tmpfs=, parents before what is mounted below them
    mounts: tuple[Attachment, ...] = ()
