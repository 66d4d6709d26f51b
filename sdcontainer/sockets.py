"""Socket activation from the `.container` file: its `[Socket]` section becomes a `.socket`
unit beside the service, and `SocketProxy=` puts systemd-socket-proxyd between that socket and
a container that does not take sockets from systemd.

Imported by the generator only for files with a `[Socket]` section, and by the launcher's
`wait-port` verb (the proxy's wait for the container's port); standard library only.

What a file gets:

* `[Socket]`, no proxy: NAME.socket with the section as written; systemd runs NAME.service
  (whose container gets the sockets as fds 3.. with LISTEN_FDS, LISTEN_PID=1 and
  LISTEN_FDNAMES). With `Accept=yes` the file must be a template `NAME@.container`: systemd
  starts one NAME@N-....service per connection, whose container gets the connection as fd 3.
  The file's `[Install]` goes to the socket, not the service: enabling a socket-activated
  container means listening at boot (WantedBy=sockets.target), not starting it.
* `SocketProxy=PORT` as well: NAME.socket activates NAME-proxy.service, which waits until the
  container listens on PORT and runs `systemd-socket-proxyd --exit-idle-time=...`; it needs
  (BindsTo=) NAME.service, which stops when nothing needs it (StopWhenUnneeded=yes): when the
  proxy has been idle that long it exits and the container stops with it. With Network=none
  both units run in one private network namespace made by systemd (PrivateNetwork=yes and
  JoinsNamespaceOf=), loopback only, so the container's port is reachable from the proxy and
  from nowhere else; with Network=host the proxy connects to the host's loopback.
"""

from __future__ import annotations

import os

from sdcontainer.unitfile import escape_specifiers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.spec import ContainerSpec
    from sdcontainer.unitfile import Entry, UnitFile

# The [Socket] settings systemd 252 knows (`systemd --dump-configuration-items`): those of
# systemd.socket(5), then the exec, kill and resource-control ones a socket unit accepts for
# its own ExecStartPre= and friends. tests/test_socket_units.py compares it with systemd's list.
SOCKET_KEYS = frozenset([
    "ListenStream", "ListenDatagram", "ListenSequentialPacket", "ListenFIFO", "ListenNetlink", "ListenSpecial",
    "ListenMessageQueue", "ListenUSBFunction", "SocketProtocol", "BindIPv6Only", "Backlog", "BindToDevice",
    "ExecStartPre", "ExecStartPost", "ExecStopPre", "ExecStopPost", "TimeoutSec", "SocketUser", "SocketGroup",
    "SocketMode", "DirectoryMode", "Accept", "FlushPending", "Writable", "MaxConnections",
    "MaxConnectionsPerSource", "KeepAlive", "KeepAliveTimeSec", "KeepAliveIntervalSec", "KeepAliveProbes",
    "DeferAcceptSec", "NoDelay", "Priority", "ReceiveBuffer", "SendBuffer", "IPTOS", "IPTTL", "Mark", "PipeSize",
    "FreeBind", "Transparent", "Broadcast", "PassCredentials", "PassSecurity", "PassPacketInfo", "Timestamping",
    "TCPCongestion", "ReusePort", "MessageQueueMaxMessages", "MessageQueueMessageSize", "RemoveOnStop",
    "Symlinks", "FileDescriptorName", "Service", "TriggerLimitIntervalSec", "TriggerLimitBurst", "SmackLabel",
    "SmackLabelIPIn", "SmackLabelIPOut", "SELinuxContextFromNet", "WorkingDirectory", "RootDirectory",
    "RootImage", "RootImageOptions", "RootHash", "RootHashSignature", "RootVerity", "ExtensionDirectories",
    "ExtensionImages", "MountImages", "User", "Group", "SupplementaryGroups", "Nice", "OOMScoreAdjust",
    "CoredumpFilter", "IOSchedulingClass", "IOSchedulingPriority", "CPUSchedulingPolicy", "CPUSchedulingPriority",
    "CPUSchedulingResetOnFork", "CPUAffinity", "NUMAPolicy", "NUMAMask", "UMask", "Environment",
    "EnvironmentFile", "PassEnvironment", "UnsetEnvironment", "DynamicUser", "RemoveIPC", "StandardInput",
    "StandardOutput", "StandardError", "StandardInputText", "StandardInputData", "TTYPath", "TTYReset",
    "TTYVHangup", "TTYVTDisallocate", "TTYRows", "TTYColumns", "SyslogIdentifier", "SyslogFacility",
    "SyslogLevel", "SyslogLevelPrefix", "LogLevelMax", "LogRateLimitIntervalSec", "LogRateLimitBurst",
    "LogExtraFields", "SecureBits", "CapabilityBoundingSet", "AmbientCapabilities", "TimerSlackNSec",
    "NoNewPrivileges", "KeyringMode", "ProtectProc", "ProcSubset", "SystemCallFilter", "SystemCallArchitectures",
    "SystemCallErrorNumber", "SystemCallLog", "MemoryDenyWriteExecute", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "RestrictAddressFamilies", "LockPersonality", "RestrictFileSystems", "LimitCPU",
    "LimitFSIZE", "LimitDATA", "LimitSTACK", "LimitCORE", "LimitRSS", "LimitNOFILE", "LimitAS", "LimitNPROC",
    "LimitMEMLOCK", "LimitLOCKS", "LimitSIGPENDING", "LimitMSGQUEUE", "LimitNICE", "LimitRTPRIO", "LimitRTTIME",
    "ReadWriteDirectories", "ReadOnlyDirectories", "InaccessibleDirectories", "ReadWritePaths", "ReadOnlyPaths",
    "InaccessiblePaths", "ExecPaths", "NoExecPaths", "ExecSearchPath", "BindPaths", "BindReadOnlyPaths",
    "TemporaryFileSystem", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectClock", "ProtectControlGroups", "NetworkNamespacePath", "IPCNamespacePath",
    "LogNamespace", "PrivateNetwork", "PrivateUsers", "PrivateMounts", "PrivateIPC", "ProtectSystem",
    "ProtectHome", "MountFlags", "MountAPIVFS", "Personality", "RuntimeDirectoryPreserve", "RuntimeDirectoryMode",
    "RuntimeDirectory", "StateDirectoryMode", "StateDirectory", "CacheDirectoryMode", "CacheDirectory",
    "LogsDirectoryMode", "LogsDirectory", "ConfigurationDirectoryMode", "ConfigurationDirectory", "SetCredential",
    "SetCredentialEncrypted", "LoadCredential", "LoadCredentialEncrypted", "TimeoutCleanSec", "PAMName",
    "IgnoreSIGPIPE", "UtmpIdentifier", "UtmpMode", "SELinuxContext", "AppArmorProfile", "SmackProcessLabel",
    "ProtectHostname", "Slice", "AllowedCPUs", "StartupAllowedCPUs", "AllowedMemoryNodes",
    "StartupAllowedMemoryNodes", "CPUAccounting", "CPUWeight", "StartupCPUWeight", "CPUShares",
    "StartupCPUShares", "CPUQuota", "CPUQuotaPeriodSec", "MemoryAccounting", "MemoryMin", "DefaultMemoryMin",
    "DefaultMemoryLow", "MemoryLow", "MemoryHigh", "MemoryMax", "MemorySwapMax", "MemoryLimit", "DeviceAllow",
    "DevicePolicy", "IOAccounting", "IOWeight", "StartupIOWeight", "IODeviceWeight", "IOReadBandwidthMax",
    "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax", "IODeviceLatencyTargetSec", "BlockIOAccounting",
    "BlockIOWeight", "StartupBlockIOWeight", "BlockIODeviceWeight", "BlockIOReadBandwidth",
    "BlockIOWriteBandwidth", "TasksAccounting", "TasksMax", "Delegate", "DisableControllers", "IPAccounting",
    "IPAddressAllow", "IPAddressDeny", "IPIngressFilterPath", "IPEgressFilterPath", "ManagedOOMSwap",
    "ManagedOOMMemoryPressure", "ManagedOOMMemoryPressureLimit", "ManagedOOMPreference", "BPFProgram",
    "SocketBindAllow", "SocketBindDeny", "RestrictNetworkInterfaces", "SendSIGKILL", "SendSIGHUP", "KillMode",
    "KillSignal", "RestartKillSignal", "FinalKillSignal", "WatchdogSignal"
])  # fmt: skip
LISTEN_KEYS = ("ListenStream", "ListenDatagram", "ListenSequentialPacket", "ListenFIFO", "ListenNetlink",
               "ListenSpecial", "ListenMessageQueue", "ListenUSBFunction")  # fmt: skip
ACCEPT_KEYS = ("ListenStream", "ListenSequentialPacket")  # what systemd accepts connections on
# Keys the generator writes itself, with why a file may not.
REFUSED_KEYS = {
    "Service": "the socket activates the container's own service; for another service, write a separate .socket",
}
PROXYD_PATHS = ("/usr/lib/systemd/systemd-socket-proxyd", "/lib/systemd/systemd-socket-proxyd")
PROXY_SUFFIX = "-proxy"
DEFAULT_EXIT_IDLE_TIME = "30s"


def _boolean(entry: Entry) -> bool:
    from sdcontainer.unitfile import parse_boolean

    try:
        return parse_boolean(entry.value)
    except ValueError as error:
        raise entry.error(f"invalid {entry.key}=: {error}") from None


class SocketPlan:
    """What a file's [Socket] section (and SocketProxy=) make: the names of the units, the
    lines each gets. `stem` is the file name without `.container`: web, web@, web@blue."""

    def __init__(self, stem: str, path: str, unit: UnitFile, spec: ContainerSpec) -> None:
        entries = unit.section("Socket")
        self.entries = entries
        accept = False
        for entry in entries:
            if entry.key in REFUSED_KEYS:
                raise entry.error(f"{entry.key}= in [Socket] is not allowed here: {REFUSED_KEYS[entry.key]}")
            if entry.key not in SOCKET_KEYS:
                raise entry.error(f"unknown key {entry.key}= in [Socket] (see systemd.socket(5))")
            if entry.key == "Accept" and entry.value:
                accept = _boolean(entry)
        if not any(e.key in LISTEN_KEYS and e.value for e in entries):
            raise entry_or_file_error(unit, path, "[Socket] has no Listen...= setting (ListenStream=, ...)")
        self.accept = accept
        prefix, at, instance = stem.partition("@")
        self.proxy_port = spec.socket_proxy
        if accept:
            where = _accept_entry(entries)
            if not at or instance:
                raise where.error(
                    "Accept=yes starts one service per connection: the file must be a template, "
                    f"{prefix}@.container, not {stem}.container"
                )
            if self.proxy_port:
                raise where.error(
                    "Accept=yes cannot be combined with SocketProxy= (the proxy takes the listening socket)"
                )
            for entry in entries:
                if entry.key in LISTEN_KEYS and entry.key not in ACCEPT_KEYS and entry.value:
                    raise entry.error(
                        f"{entry.key}= cannot be used with Accept=yes: only connections (ListenStream=, "
                        "ListenSequentialPacket=) can be accepted"
                    )
            self.socket = f"{prefix}.socket"  # systemd runs NAME@<connection>.service from NAME.socket
        else:
            self.socket = f"{stem}.socket"
        self.service = f"{stem}.service"
        self.name = prefix if at and not instance else stem  # what the descriptions call it
        self.instance_specifier = "%i" if at and not instance else instance
        self.proxy = f"{prefix}{PROXY_SUFFIX}{at}{instance}.service" if self.proxy_port else None
        self.network = spec.network
        self.exit_idle_time = spec.socket_proxy_exit_idle_time or DEFAULT_EXIT_IDLE_TIME

    # --- the service's side ---

    def service_unit_lines(self) -> list[str]:
        """[Unit] lines of the container's service."""
        if self.accept:
            return []  # per-connection instances: systemd starts them from the socket
        socket = self._own(self.socket)
        if self.proxy:
            # started by the proxy, stopped when the proxy (idle) is gone
            return ["StopWhenUnneeded=yes"]
        # started by hand, it still gets its sockets
        return [f"Requires={socket}", f"After={socket}"]

    @property
    def private_network(self) -> bool:
        """The container's service gets a network namespace of its own (PrivateNetwork=), which
        the proxy joins (JoinsNamespaceOf=) and the container takes as its host's."""
        return bool(self.proxy) and self.network == "none"

    def _own(self, name: str) -> str:
        """A unit name of ours as the service refers to it: in a template, for its instance."""
        return name.replace("@.", f"@{self.instance_specifier}.") if self.instance_specifier == "%i" else name

    # --- the socket and the proxy ---

    def socket_text(self, program: str, path: str, description: str | None) -> str:
        what = self.proxy or self.service
        out = [
            f"# Automatically generated by {program} from {path}",
            "# Edit the .container file (or add a drop-in) and run systemctl daemon-reload.",
            "",
            "[Unit]",
            f"Description={description or self.name} (socket)",
            f"SourcePath={escape_specifiers(path)}",
            "",
            "[Socket]",
        ]
        out += [f"{e.key}={e.value}" for e in self.entries]
        if self.proxy:
            out.append(f"Service={self._own(what)}")
        return "\n".join(out) + "\n"

    def proxy_text(
        self, program: str, path: str, launcher: list[str], description: str | None, start_limits: list[str]
    ) -> str:
        """`start_limits`: the file's StartLimitIntervalSec=/StartLimitBurst= lines, which the
        proxy, started as often as the container, shares."""
        from sdcontainer.unitfile import quote_exec_word

        port = self.proxy_port or ""
        service = self._own(self.service)
        target = port if ":" in port else f"127.0.0.1:{port}"
        # one process: the wait, then exec of the proxy (the sandbox below is built once)
        proxyd = [proxyd_path(), f"--exit-idle-time={self.exit_idle_time}", target]
        command = [*launcher, "wait-port", target, "--", *proxyd]
        out = [
            f"# Automatically generated by {program} from {path}",
            "# Edit the .container file (or add a drop-in) and run systemctl daemon-reload.",
            "",
            "[Unit]",
            f"Description={description or self.name} (socket proxy)",
            f"SourcePath={escape_specifiers(path)}",
            f"BindsTo={service}",
            f"After={service}",
            f"Requires={self._own(self.socket)}",
            f"After={self._own(self.socket)}",
            *start_limits,
        ]
        if self.network == "none":
            out.append(f"JoinsNamespaceOf={service}")
        out += ["", "[Service]", "Type=simple"]  # systemd-socket-proxyd 252 sends no READY=1
        if self.network == "none":
            out.append("PrivateNetwork=yes")
        out += [
            # the proxy faces the network and needs no privilege: a user of its own, no
            # capabilities (~13 ms of the first connection's wait; PrivateDevices= would add ~28)
            "DynamicUser=yes",
            "CapabilityBoundingSet=",
            f"Slice={SLICE}",
            "ExecStart=" + " ".join(quote_exec_word(w) for w in command),
        ]
        return "\n".join(out) + "\n"


SLICE = "sdcontainer.slice"


def _accept_entry(entries: list[Entry]) -> Entry:
    return [e for e in entries if e.key == "Accept"][-1]


def entry_or_file_error(unit: UnitFile, path: str, message: str) -> Exception:
    from sdcontainer.errors import ConfigError

    header = next((h for h in unit.headers if h.section == "Socket"), None)
    return header.error(message) if header is not None else ConfigError(message, path)


def proxyd_path() -> str:
    for path in PROXYD_PATHS:
        if os.access(path, os.X_OK):
            return path
    return PROXYD_PATHS[0]


# --- the proxy's wait for the container's port ---------------------------------------------


def _listening(port: int, address: str) -> bool:
    """A TCP socket in LISTEN state on the port, in this network namespace (/proc/net/tcp*)."""
    wanted_port = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A" and fields[1].rpartition(":")[2] == wanted_port:
                        return True
        except FileNotFoundError:
            continue
    return False


def wait_port(args: list[str]) -> int:
    """`wait-port [ADDRESS:]PORT [--timeout SECONDS] [-- PROGRAM [ARG...]]`: return once
    something listens on PORT in this network namespace (so the proxy's first connection is
    not refused while the container's program is still starting), or with a PROGRAM exec it
    then, in this same process (so it keeps the pid, and LISTEN_PID still names it); exit 1
    after the timeout (default 90 s)."""
    import sys
    import time

    from sdcontainer.errors import UsageError
    from sdcontainer.verbs import parse

    usage = "usage: wait-port [ADDRESS:]PORT [--timeout SECONDS] [-- PROGRAM [ARG...]]"
    needs_port = f"wait-port needs [ADDRESS:]PORT; {usage}"
    if not args or args[0].startswith("-") and args[0] != "--":  # the port comes first
        raise UsageError(needs_port)
    got = parse(args, options=("--timeout",), words=1, usage=usage)
    program = got.command or []
    if got.command is not None and not (program and program[0].startswith("/")):
        raise UsageError(f"wait-port: the program after -- must be an absolute path; {usage}")
    if not got.words:
        raise UsageError(needs_port)
    address, _, port_text = got.words[0].rpartition(":")
    timeout = 90.0
    if "--timeout" in got.options:
        try:
            timeout = float(got.options["--timeout"])
        except ValueError:
            raise UsageError(f"wait-port: --timeout {got.options['--timeout']!r} is not a number; {usage}") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"wait-port: {got.words[0]!r} has no port number")
    port = int(port_text)
    deadline = time.monotonic() + timeout
    # Every 2 ms for the first second (reading /proc/net/tcp of a namespace with a few
    # sockets costs microseconds, and each ms here is a ms of the first connection's wait),
    # then every 20 ms.
    started = time.monotonic()
    while not _listening(port, address):
        if time.monotonic() > deadline:
            print(f"sdcontainer-launcher: nothing listens on port {port} after {timeout:g} s", flush=True)
            return 1
        time.sleep(0.002 if time.monotonic() - started < 1 else 0.02)
    if program:
        try:
            os.execv(program[0], program)
        except OSError as error:
            print(f"sdcontainer-launcher: exec {program[0]}: {error.strerror}", file=sys.stderr, flush=True)
            return 127 if error.errno == 2 else 126
    return 0


def main(argv: list[str] | None = None) -> int:
    """`sdcontainer-launcher wait-port ...` (`argv` starts with the verb, as in sys.argv[1:]),
    as sdcontainer.verbs runs it."""
    import sys

    from sdcontainer.verbs import run_verb

    return run_verb("wait-port", (sys.argv[1:] if argv is None else argv)[1:])
