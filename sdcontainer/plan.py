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
