"""The validated description of one container: frozen records, nothing else.

A spec is built from a `.container` file by `sdcontainer.keys`, travels to the launcher as
command-line options (so systemd expands specifiers in it and `systemctl cat` shows it), and
comes back as the same spec there. `keys.spec_to_argv` / `keys.spec_from_argv` are that
round trip; both are driven by the key table.
"""

from __future__ import annotations

from sdcontainer.record import record


@record
class BindMount:
    """Volume=: a host path bound (source starts with /), a named volume, or an anonymous
    one (source "")."""

    source: str
    target: str
    readonly: bool = False
    options: tuple[str, ...] = ()  # nosuid, nodev, noexec, ...; U, copy, nocopy

    @property
    def named(self) -> bool:
        """A volume (named or anonymous), not a host path."""
        return not self.source.startswith("/")

    def __str__(self) -> str:
        opts = ["ro" if self.readonly else "rw", *self.options]
        return f"{self.source}:{self.target}:{','.join(opts)}"


@record
class TmpfsMount:
    target: str
    options: tuple[str, ...] = ()  # mount options: size=, mode=, ro, ...

    def __str__(self) -> str:
        return f"{self.target}:{','.join(self.options)}" if self.options else self.target


@record
class ContainerSpec:
    name: str = "%N"
    unit: str = "%n"
    rootfs: str | None = None
    image: str | None = None
    pull: str = "missing"  # never, missing, always, newer
    retry: int | None = None  # pull attempts after the first; None: 3
    retry_delay: str | None = None  # "2000ms"; None: 2 s doubling
    entrypoint: tuple[str, ...] | None = None
    exec: tuple[str, ...] | None = None
    environment: tuple[str, ...] = ()  # "KEY=VALUE", or "KEY" to pass the launcher's value
    environment_files: tuple[str, ...] = ()
    env_host: bool = False  # the launcher's environment, less systemd's service variables
    working_dir: str | None = None
    user: str | None = None
    group: str | None = None
    group_add: tuple[str, ...] = ()  # supplementary groups: names in the container's /etc/group, or numbers
    timezone: str | None = None  # "local" or a zone name
    hostname: str | None = None
    volumes: tuple[BindMount, ...] = ()  # source: a host path, a volume name, "" for an anonymous volume
    mounts: tuple[BindMount | TmpfsMount, ...] = ()  # Mount=, as the Volume= or Tmpfs= it means
    tmpfs: tuple[TmpfsMount, ...] = ()
    shm_size: str | None = None  # size= of the /dev/shm tmpfs: 64M
    read_only: bool = False
    read_only_tmpfs: bool = True
    network: str = "none"  # the launcher's default; a file without Network= gets values.DEFAULT_NETWORK
    pod: str | None = None  # Pod=NAME.pod: the pod's net, ipc and uts namespaces are joined, not made
    start_with_pod: bool = True  # StartWithPod=: the pod's service wants the container (generator only)
    ip: str | None = None  # IP=: a static IPv4 address on the bridge network
    ip6: str | None = None  # IP6=: a static IPv6 address on the bridge network
    network_aliases: tuple[str, ...] = ()  # NetworkAlias=: more names on its network's hosts files
    publish_ports: tuple[str, ...] = ()  # PublishPort=, as values.PortMapping writes them
    add_hosts: tuple[str, ...] = ()  # "name[;name]:ip"
    dns_servers: tuple[str, ...] = ()  # IP addresses, or ("none",)
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    auto_update: str | None = None  # AutoUpdate=: registry or local; recorded as the label io.containers.autoupdate
    annotations: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None
    reload_signal: str | None = None  # ExecReload= sends it to the container's init
    reload_cmd: tuple[str, ...] | None = None  # ExecReload= runs it in the container, as exec does
    socket_proxy: str | None = None  # "PORT" or "ADDRESS:PORT": systemd-socket-proxyd's target
    socket_proxy_exit_idle_time: str | None = None  # a systemd time span
    run_init: bool = False
    no_new_privileges: bool = True
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()  # paths to mask, besides security.MASKED_PATHS
    unmasks: tuple[str, ...] = ()  # patterns taken out of the default masked and read-only paths, or ALL
    sysctls: tuple[str, ...] = ()  # "name=value"
    memory: str | None = None  # MemoryMax= of the unit: 512M, infinity
    pids_limit: str | None = None  # TasksMax= of the unit
    ulimits: tuple[str, ...] = ()  # "nofile=1024:2048", "host"
    notify: str = "no"  # "no": ready once the entrypoint runs; "yes": the container says READY=1; "healthy"
    health_cmd: tuple[str, ...] | None = None  # argv run in the container; () disables the check
    health_interval: int | None = None  # milliseconds; 0: no timer
    health_retries: int | None = None
    health_timeout: int | None = None  # milliseconds
    health_start_period: int | None = None  # milliseconds
    health_on_failure: str | None = None  # none, kill, restart, stop
    # issue 13: Secret=, LogDriver=/LogOpt=, SecurityLabel*=
    secrets: tuple[str, ...] = ()  # Secret=, as values.SecretRef writes them; the values come as credentials
    log_driver: str | None = None  # journald, passthrough (what always happens), none
    log_opts: tuple[str, ...] = ()  # "tag=NAME": SyslogIdentifier=
    security_label_disable: bool | None = None  # SecurityLabel*=: accepted, no-ops without SELinux
    security_label_type: str | None = None
    security_label_file_type: str | None = None
    security_label_level: str | None = None
    security_label_nested: bool | None = None
    http_proxy: bool = True  # HttpProxy=: the unit's proxy variables reach the container
    health_startup_cmd: tuple[str, ...] | None = None  # HealthStartup*=: the check that gates HealthCmd=
    health_startup_interval: int | None = None  # milliseconds
    health_startup_retries: int | None = None  # failures before a restart; 0: never
    health_startup_success: int | None = None  # passes before the regular check; 0: 1
    health_startup_timeout: int | None = None  # milliseconds

    @property
    def command(self) -> tuple[str, ...]:
        """What runs: the entrypoint followed by Exec=, as in podman (with Image=, the
        launcher fills in what is unset from the image's config)."""
        return (self.entrypoint or ()) + (self.exec or ())
