"""The service policy: how a container's unit runs the launcher, said once, as data.

A container gets the same unit whether a `.container` file asked for it or `sdcontainer
run` did: Type=notify (the launcher hands MAINPID= over and leaves), KillMode=mixed, the
device cgroup, its record in RuntimeDirectory=, the limits of the [Container] keys, and so
on. `service_policy` returns these settings as (name, value) pairs spelled as a unit file
spells them. The generator writes them into the .service (generator.render); `sdcontainer
run` converts the same pairs into the D-Bus properties of a transient unit
(transient.dbus_properties), where a setting without a conversion is an error, not an
omission. tests/test_service.py renders every golden file both ways and compares them.

What only one side has is said where it is made:
* only the generated file: its comments and [X-Container], SourcePath=, the file's own
  [Unit], [Service] and [Install] lines, the [Unit] lines of its sockets and health check
  (`sdcontainer run` has neither), and `ServicePolicy.unit_file_only` below;
* only the transient unit: Description= (a file's comes from its own [Unit]) and what an
  attached run needs (transient.TRANSIENT_ONLY).

Standard library and the parsing modules only: the generator imports it at every boot.
"""

from __future__ import annotations

import os
import sys

from sdcontainer.keys import service_settings as key_settings
from sdcontainer.keys import spec_to_argv
from sdcontainer.record import record
from sdcontainer.state import runtime_directory
from sdcontainer.unitfile import quote_exec_word, quote_list_word
from sdcontainer.values import has_variable, is_bridge, joined_unit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.spec import ContainerSpec

#: (name, value): one line NAME=VALUE of a unit file
Setting = tuple[str, str]

DEFAULT_STOP_TIMEOUT = 10
# The device cgroup allows only the nodes the launcher puts into the container's /dev: even a
# container given CAP_MKNOD cannot open a node for a host disk or /dev/mem.
DEVICE_ALLOW = (
    ("/dev/null", "rwm"),
    ("/dev/zero", "rwm"),
    ("/dev/full", "rwm"),
    ("/dev/random", "rwm"),
    ("/dev/urandom", "rwm"),
    ("/dev/tty", "rwm"),
    ("/dev/console", "rw"),
    ("/dev/ptmx", "rw"),
    ("char-pts", "rw"),
)
# units/sdcontainer.slice: one place to limit all containers together
SLICE = "sdcontainer.slice"


def launcher_command() -> list[str]:
    """How units run the launcher: the installed script beside the generator's own
    interpreter (the venv's python, never a version-manager shim), else that interpreter
    with -m. -I: nothing from the environment (PYTHON*, user site) reaches it."""
    override = os.environ.get("SDCONTAINER_LAUNCHER")
    if override:
        return override.split()
    script = os.path.join(os.path.dirname(sys.executable), "sdcontainer-launcher")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-I", "-m", "sdcontainer.launcher"]


def stop_exit_status(spec: ContainerSpec) -> int:
    """An init such as tini, or a shell, reports death by a signal as exit status 128+N.
    systemd counts a main process killed by its stop signal as a clean stop; the same stop
    seen through such an init must count too."""
    from sdcontainer.text import SIGNALS

    return 128 + SIGNALS[spec.stop_signal or "SIGTERM"]


def exec_line(argv: list[str], values: list[str] | None = None) -> str:
    """An Exec*= value that systemd splits back into `argv` followed by `values` (`%` left for
    systemd to expand in a unit file). In `argv`, `$` is doubled so that it stays literal;
    `values` are a unit file's values, whose `$` stays for systemd to expand (Quadlet's meaning:
    `${VAR}` anywhere and `$VAR` as a whole word, from [Service] Environment=; `$$` is a `$`)."""
    words = [quote_exec_word(w) for w in argv] + [quote_exec_word(w, variables=True) for w in values or ()]
    return " ".join(words)


@record
class ServicePolicy:
    """The settings, in the order the generated unit has them."""

    unit: tuple[Setting, ...]  # [Unit], both renderings (none yet)
    # [Unit], the generated file only: `sdcontainer run` has never sent them (it starts a
    # container now, by hand: its paths and network are what they are at that moment)
    unit_file_only: tuple[Setting, ...]
    # [Service], before a file's own [Service] lines, so that a file's scalar (TimeoutStopSec=) wins
    service: tuple[Setting, ...]
    # [Service], after a file's own lines: a list setting they add to and cannot reset
    service_last: tuple[Setting, ...]

    def both(self) -> list[Setting]:
        """The settings of both renderings: what a transient unit gets."""
        return [*self.unit, *self.service, *self.service_last]


def service_policy(
    spec: ContainerSpec,
    launcher: list[str],
    *,
    unit: str = "%n",
    private_network: bool = False,
    default_dependencies: bool = True,
) -> ServicePolicy:
    """The unit of the container `spec`.

    `launcher`: the launcher's argv as the unit runs it (in a unit file with `%` doubled,
    since systemd expands specifiers there). `unit`: how the unit names itself: `%n` in a
    unit file, which systemd expands (a template's instances get a record each), the name
    itself for a transient unit (D-Bus properties are not expanded). `private_network`: the
    unit has a network namespace of its own (PrivateNetwork=), shared with a socket proxy,
    which the container takes as its host's (SocketProxy= with Network=none).
    `default_dependencies`: the file's [Quadlet] DefaultDependencies=."""
    stem = "%N" if unit == "%n" else unit[: -len(".service")]
    unit_file_only: list[Setting] = []
    mounts = _requires_mounts_for(spec)
    if mounts:
        unit_file_only.append(("RequiresMountsFor", " ".join(mounts)))
    # a pull at start needs the network, and so does a container on the host's or a bridge network
    if default_dependencies and (spec.network != "none" or (spec.image and spec.pull != "never")):
        unit_file_only += [("Wants", "network-online.target"), ("After", "network-online.target")]
    unit_file_only += network_file_dependencies(spec)

    unit_file_only += _joined_container_dependencies(spec)

    timeout = spec.stop_timeout if spec.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
    service: list[Setting] = [
        ("Type", "notify"),
        ("NotifyAccess", "all"),
        ("KillMode", "mixed"),
        ("Delegate", "yes"),
        ("DevicePolicy", "closed"),
        *(("DeviceAllow", f"{device} {access}") for device, access in DEVICE_ALLOW),
        ("SyslogIdentifier", stem),
        ("Slice", SLICE),
        ("TimeoutStopSec", str(timeout)),
        ("SuccessExitStatus", str(stop_exit_status(spec))),
    ]
    service += [(name, value) for name, value in key_settings(spec) if name != "TimeoutStopSec"]
    # a unit file's values keep their `$` for systemd to expand, as Quadlet's do; a transient
    # unit's come from a command line, where the shell has expanded what it was going to
    file_values = unit == "%n"
    if spec.reload_cmd:
        # run inside the container as `sdcontainer exec` runs it; its words are quoted as
        # ExecStart= quotes Exec='s
        reload = [*launcher, "exec", "--unit", unit, "--"]
        service.append(("ExecReload", _exec_line(reload, list(spec.reload_cmd), file_values)))
    argv_spec = spec
    if private_network:
        from sdcontainer.record import replace

        service.append(("PrivateNetwork", "yes"))
        argv_spec = replace(spec, network="host")
    service.append(("ExecStart", _exec_line([*launcher, "start"], spec_to_argv(argv_spec), file_values)))
    if is_bridge(argv_spec.network):
        # after any end of the run (a stop, a crash, kill -9, a failed start): its address
        # lease and published ports go (sdcontainer.network); its veth died with the netns
        service.append(("ExecStopPost", exec_line([*launcher, "release", "--unit", unit])))
    # the container's record (sdcontainer.state), removed by systemd at every stop
    service_last = (("RuntimeDirectory", runtime_directory(unit)),)
    return ServicePolicy((), tuple(unit_file_only), tuple(service), service_last)


def _exec_line(argv: list[str], values: list[str], file_values: bool) -> str:
    return exec_line(argv, values) if file_values else exec_line(argv + values)


def _joined_container_dependencies(spec: ContainerSpec) -> list[Setting]:
    """Network=NAME.container, as Quadlet: the other container's service is required and
    started first (its network namespace must exist to be joined)."""
    other = joined_unit(spec.network)
    return [("Requires", other), ("After", other)] if other else []


def network_file_dependencies(spec: ContainerSpec) -> list[Setting]:
    """Network=NAME.network: the service that makes the network, required and started
    first, as Quadlet does."""
    if not spec.network.endswith(".network"):
        return []
    service = f"{spec.network[: -len('.network')]}-network.service"
    return [("Requires", service), ("After", service)]


def _requires_mounts_for(spec: ContainerSpec) -> list[str]:
    from sdcontainer.spec import BindMount
    from sdcontainer.store import SYSTEM_STORAGE

    binds = [m for m in (*spec.volumes, *spec.mounts) if isinstance(m, BindMount)]
    # named volumes live in the storage directory (sdcontainer.volumes)
    volume = any(m.named and m.source for m in binds)
    paths = [spec.rootfs or "", SYSTEM_STORAGE if spec.image or volume else ""] + [m.source for m in binds]
    if spec.secrets:  # LoadCredential= reads them before the launcher runs
        from sdcontainer.secrets import SYSTEM_SECRETS_DIR

        paths.append(SYSTEM_SECRETS_DIR)
    # a path with a variable in it is known at start only: systemd does not expand it here
    return [quote_list_word(p) for p in dict.fromkeys(paths) if p.startswith("/") and not has_variable(p)]
