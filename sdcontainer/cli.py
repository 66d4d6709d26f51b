"""The `sdcontainer` command. Heavy imports stay here, out of the generator and launcher.

Every invocation imports this module and click (~17 ms of click alone here), whatever the
command: what only some commands need is imported in them (json, pathlib, the key table for
`run`'s options, the image store, the exec path), so that `exec` and `run`, on the hot path,
pay for nothing else.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from sdcontainer import __version__, state
from sdcontainer.errors import ConfigError, NetworkError, RecordError, SdcontainerError, run_main


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdcontainer")
def cli() -> None:
    """Run containers as plain systemd services, with no daemon.

    Write a .container file in /etc/sdcontainer, run `systemctl daemon-reload`, then
    `systemctl start NAME`: the container's init is the service's main process. `ps`,
    `logs`, `stop` and the other verbs work as podman's, as thin layers over systemctl and
    journalctl. See sdcontainer.container(5) for the file format and sdcontainer(1) for
    these commands.
    """


def _sources_for(files: tuple[str, ...]) -> list[tuple[Any, Any, set[str], dict[str, list[str]]]]:
    from sdcontainer.sources import KINDS, Known, Source, find_sources, kind_of

    result: list[tuple[Any, Any, set[str], dict[str, list[str]]]] = []
    for file in files:
        path = os.path.abspath(file)
        if kind_of(os.path.basename(path)) is None:
            suffixes = ", ".join(kind.suffix for kind in KINDS)
            raise ConfigError(f"not a unit file: its name must end in one of {suffixes}", path)
        if not os.path.isfile(path):
            raise ConfigError("no such file", path)
        siblings, index = find_sources([os.path.dirname(path)])
        result.append((Source(os.path.basename(path), path), siblings, Known(siblings, index), index))
    return result


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Check .container files (and .network, .volume, ...); print errors as FILE:LINE: MESSAGE.

    Every error of a file is reported (an unknown key with the key it may be a misspelling
    of), and for a good file what would keep it from starting on this host (a missing
    Rootfs= directory, an image not in the store, a secret not stored) as a warning. Drop-ins beside each file
    (NAME.container.d/, container.d/) are applied, as the generator would. The exit status
    is non-zero if any file has an error; warnings do not change it.
    """
    from sdcontainer.generator import generate, host_warnings, refusal_errors
    from sdcontainer.text import printable

    failed = 0
    for source, _, known, index in _sources_for(files):
        try:
            generate(source, known, index)
        except ConfigError as error:
            for problem in refusal_errors(source, known, index, error):
                click.echo(printable(str(problem)), err=True)
            failed += 1
            continue
        for warning in host_warnings(source, index) if source.kind.section == "Container" else ():
            click.echo(printable(warning), err=True)
        click.echo(f"{source.path}: ok")
    if failed:
        sys.exit(ConfigError.exit_status)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
def unit(file: str) -> None:
    """Print the .service unit the generator writes for FILE (and the units beside it)."""
    from sdcontainer.generator import generate

    ((source, _, known, index),) = _sources_for((file,))
    generated = generate(source, known, index)
    click.echo(generated.text, nl=False)
    for name, text in generated.others:
        click.echo(f"# --- {name} ---")
        click.echo(text, nl=False)
    for link, target in generated.links:
        click.echo(f"# enabled by: {link} -> {target}")


@cli.command()
def keys() -> None:
    """List the [Container] keys this version understands."""
    from sdcontainer.keys import KEYS

    width = max(len(k.name) for k in KEYS) + 1
    for key in KEYS:
        kind = "list" if key.repeated else "single"
        click.echo(f"{key.name + '=':<{width}} {key.metavar:<28} {kind}")


NOT_ROOT = "containers run as root, and rootless mode does not exist yet"


def _need_root(command: str, error: type[SdcontainerError] = SdcontainerError) -> None:
    """The records, the containers' /proc entries and the store are root's alone."""
    if os.geteuid() != 0:
        raise error(f"{command} needs root: {NOT_ROOT}")


def _running() -> list[state.ContainerRecord]:
    """The records of running containers; an unreadable one is reported and left out."""
    unreadable: list[RecordError] = []
    containers = []
    for record in state.records(unreadable):
        if not os.path.exists(f"/proc/{record.pid}"):
            continue  # stale: stopping right now (systemd removes the unit's directory next)
        containers.append(record)
    for error in unreadable:
        click.echo(f"sdcontainer: {error}", err=True)
    return containers


# --- the lifecycle verbs (sdcontainer.lifecycle): thin layers over systemd --------------------


def _ps_options(function: Any) -> Any:
    function = click.option("-a", "--all", "every", is_flag=True, help="Also the containers that do not run.")(function)
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)(
        function
    )


def _ps(every: bool, fmt: str) -> None:
    from sdcontainer.lifecycle import ps as list_units
    from sdcontainer.lifecycle import table

    units = list_units(every=every)
    now = time.time()
    if fmt == "json":
        import json

        click.echo(json.dumps([unit.to_dict(now) for unit in units], indent=2))
        return
    for line in table(units, now):
        click.echo(line)


@cli.command()
@_ps_options
def ps(every: bool, fmt: str) -> None:
    """List the containers: every service whose main process is sdcontainer's launcher.

    The columns: NAME (ContainerName=), UNIT, IMAGE (or the Rootfs= directory), STATUS
    (Up 5m, Exited (3) 2m ago, Failed ...), PORTS (PublishPort=) and COMMAND. What a
    container is comes from its unit's ExecStart=, whether it runs from systemd (over
    D-Bus); `systemctl list-units 'sdcontainer-run-*'` and `systemctl status UNIT` say more.
    """
    _ps(every, fmt)


@cli.command(name="list")
@_ps_options
def list_(every: bool, fmt: str) -> None:
    """The same as ps (its name in earlier versions)."""
    _ps(every, fmt)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Go on printing new lines as they come (journalctl --follow).")
@click.option("-n", "--tail", "lines", type=click.IntRange(0), metavar="N", help="Only the last N lines.")
@click.option("--since", metavar="TIME", help="Lines since TIME: 2026-12-04 10:00, -1h, today (journalctl's).")
@click.option("-t", "--timestamps", is_flag=True, help="With the time and the process of each line.")
@click.argument("name")
def logs(name: str, follow: bool, lines: int | None, since: str | None, timestamps: bool) -> None:
    """Print what the container NAME wrote: exec's `journalctl _SYSTEMD_UNIT=UNIT -o cat`
    (with the options above), the lines of the unit's own processes.

    `journalctl -u UNIT` is the fuller answer: systemd's lines about the unit too (started,
    failed, why), and all of journalctl's filters (-b, --grep, -p, -o verbose). The lines of
    a `sdcontainer run` that has ended stay in the journal and are shown too.
    """
    from sdcontainer.lifecycle import journalctl_argv, logs_unit

    argv = journalctl_argv(logs_unit(name), follow=follow, lines=lines, since=since, timestamps=timestamps)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        raise SdcontainerError(f"cannot run journalctl: {error.strerror}") from None


def _job(method: str, names: tuple[str, ...]) -> None:
    from sdcontainer.lifecycle import lifecycle_job

    for name in names:
        click.echo(lifecycle_job(method, name))


@cli.command()
@click.argument("names", nargs=-1, required=True)
def start(names: tuple[str, ...]) -> None:
    """Start each container NAME (web, or web.service) and wait until it has started:
    `systemctl start UNIT`, over D-Bus. Prints the unit.

    A `sdcontainer run` container is gone once it stopped: start works on the units of
    .container files (and on a failed run, which stays until rm).
    """
    _job("StartUnit", names)


@cli.command()
@click.argument("names", nargs=-1, required=True)
def stop(names: tuple[str, ...]) -> None:
    """Stop each container NAME and wait until it has stopped: `systemctl stop UNIT`, over
    D-Bus (the unit's StopSignal=, then SIGKILL after StopTimeout=). Prints the unit."""
    _job("StopUnit", names)


@cli.command()
@click.argument("names", nargs=-1, required=True)
def restart(names: tuple[str, ...]) -> None:
    """Restart each container NAME (a new container from the same unit) and wait until it
    has started: `systemctl restart UNIT`, over D-Bus. Prints the unit."""
    _job("RestartUnit", names)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Stop a running container first.")
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove each stopped container NAME of `sdcontainer run`: what systemd keeps of a
    failed one (`systemctl reset-failed UNIT`). A running one is refused unless --force;
    a .container file's unit is refused (remove the file, then systemctl daemon-reload)."""
    from sdcontainer.lifecycle import remove

    for name in names:
        click.echo(remove(name, force=force))


@cli.command()
@click.argument("name")
def inspect(name: str) -> None:
    """Print what is known of the container NAME as JSON: ps's fields, the launcher's
    record while it runs ("record"), the spec its ExecStart= carries ("spec") and the
    unit's state ("systemd"). `systemctl show UNIT` has every property of the unit."""
    import json

    from sdcontainer.lifecycle import inspect as inspect_unit

    click.echo(json.dumps(inspect_unit(name), indent=2))


@cli.command()
@click.argument("name")
def top(name: str) -> None:
    """List the processes of the running container NAME: every process in its unit's
    cgroup, with its pid on the host and in the container (CPID), its uid on the host and
    its CPU time. `systemctl status UNIT` shows the same tree."""
    from sdcontainer.lifecycle import top as processes

    rows = processes(name)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([*(cell.rjust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))


def _plain(doc: str) -> str:
    """The man-page markup of a key's doc (*bold*, _underline_) as plain text for --help."""
    import re

    return re.sub(r"(?<![\w])[*_]([^*_]+)[*_](?![\w])", r"\1", doc)


def _key_options() -> list[click.Option]:
    """One option per launcher option in the key table, in its order, so `run` takes what a
    file can say."""
    from sdcontainer.keys import KEYS
    from sdcontainer.values import parse_bool

    options = []
    for key in KEYS:
        if key.option is None or key.field in ("rootfs", "image"):
            continue
        help_text = f"{_plain(key.doc)} ({key.name}= in a .container file)"
        if key.parse is parse_bool:
            flag = key.option[2:]
            options.append(click.Option([f"--{flag}/--no-{flag}", key.field], default=None, help=help_text))
        else:
            names = [key.short] if key.short else []
            options.append(
                click.Option(
                    [*names, key.option, key.field], multiple=key.repeated, metavar=key.metavar, help=help_text
                )
            )
    return options


#: podman run's options that have no key here, and what to do instead
PODMAN_ONLY = {
    "--privileged": "there is no privileged mode; add capabilities with --cap-add, or --unmask paths",
    "--restart": "a transient container is not restarted; write a .container file with Restart= in [Service]",
    "--userns": "user namespaces are not supported yet",
    "--device": "devices are not supported yet (AddDevice=)",
    "--security-opt": "use --no-new-privileges, --cap-drop, --mask; seccomp and SELinux profiles are fixed",
    "--cpus": "set CPUQuota= with systemctl set-property UNIT, or in a .container file's [Service]",
    "--log-driver": "the container's output goes to the journal (sdcontainer logs NAME)",
}


def _unknown_option(option: str, known: list[str]) -> str:
    """The error for an option `run` does not know: podman's own with what to do instead,
    else the nearest option (or key: --working-dir is WorkingDir=, --workdir)."""
    from sdcontainer.keys import KEYS, QUADLET_ONLY_KEYS
    from sdcontainer.text import nearest

    message = f"no such option: {option}"
    flag = option.partition("=")[0]
    if flag in PODMAN_ONLY:
        return f"{message} (podman's; {PODMAN_ONLY[flag]})"
    found = nearest(flag, known)
    if found is not None:
        return f"{message}; did you mean {found}?"
    bare = flag.lstrip("-").replace("-", "").lower()
    by_name = {key.name.lower(): key for key in KEYS if key.option}
    key = by_name.get(bare) or by_name.get(nearest(bare, list(by_name)) or "")
    if key is not None:
        return f"{message}; did you mean {key.option} ({key.name}= in a .container file)?"
    quadlet = {name.lower(): name for name in QUADLET_ONLY_KEYS}
    if bare in quadlet:
        return f"{message}: {quadlet[bare]}= is not supported yet"
    return f"{message} (sdcontainer run --help lists them)"


def _freeze_garbage_collection() -> None:
    """For `run` and `exec`, whose process lives as long as the container's command: what
    the imports made (click's modules, classes and functions) is never garbage, yet the
    collector would walk it again, in exec's forked children too (copying the pages it
    touches), and at exit take it apart object by object: 5-10 ms of exit alone, measured
    here. gc.freeze() leaves it out of every collection, so it simply ends with the
    process; what these commands make themselves is collected as usual."""
    import gc

    gc.freeze()


class _RunCommand(click.Command):
    """`run`, whose options from the key table (_key_options) come before its arguments but
    are made only when its parameters are first read (parsing `run`, its help, a test): the
    table and the value grammars it imports are not loaded for the other commands."""

    _key_options_pending = True

    @property
    def params(self) -> list[click.Parameter]:
        if self._key_options_pending:
            self._key_options_pending = False
            at = next(i for i, param in enumerate(self._params) if isinstance(param, click.Argument))
            self._params[at:at] = _key_options()
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            known = [o for param in self.params if isinstance(param, click.Option) for o in param.opts]
            raise click.UsageError(_unknown_option(error.option_name, known), ctx) from None


@cli.command(cls=_RunCommand, context_settings={"allow_interspersed_args": False})
@click.option(
    "--unit", "unit_name", metavar="NAME", help="Name of the transient service (default: sdcontainer-run-RANDOM)."
)
@click.option("-d", "--detach", is_flag=True, help="Return once the container runs, instead of attaching to it.")
@click.option("-i", "--interactive", is_flag=True, help="Give the container this stdin (else /dev/null).")
@click.option(
    "-t", "--tty", is_flag=True, help="Accepted for podman's -it: the container uses this terminal itself, if any."
)
@click.option(
    "--rm",
    "remove",
    is_flag=True,
    help="Detached: remove the unit even if it fails (attached, it is always removed when it ends).",
)
@click.option("--stop-signal", metavar="SIGNAL", help="Signal that stops the container (StopSignal=).")
@click.option("--stop-timeout", type=int, metavar="SECONDS", help="Seconds before SIGKILL on stop (StopTimeout=).")
@click.option("--memory", metavar="SIZE", help="Memory limit of the service: 512m, 1g (Memory=, MemoryMax=).")
@click.option("--pids-limit", metavar="N", help="Most processes (default 2048; -1: none) (PidsLimit=, TasksMax=).")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]", help="A resource limit (Ulimit=).")
@click.argument("rootfs", metavar="ROOTFS|IMAGE")
@click.argument("command", nargs=-1)
def run(
    rootfs: str,
    command: tuple[str, ...],
    unit_name: str | None,
    detach: bool,
    interactive: bool,
    tty: bool,
    remove: bool,
    stop_signal: str | None,
    stop_timeout: int | None,
    memory: str | None,
    pids_limit: str | None,
    ulimits: tuple[str, ...],
    **options: Any,
) -> None:
    """Run COMMAND in a container made from the directory ROOTFS or from IMAGE (pulled
    when missing, per --pull), as a transient service.

    Like systemd-run: the container is a unit with a cgroup, a journal and
    `systemctl status` (sdcontainer ps, logs, stop). Attached (the default), it writes to
    this terminal's stdout and stderr, reads its stdin with -i, and the exit status is the
    container's; its unit goes when it ends, as with podman's --rm. An argument that is a
    directory is a ROOTFS, anything else an IMAGE reference; without COMMAND an image's own
    runs. The network is the default bridge network, as for podman run and a .container
    file without Network=; --name names the unit too (--unit overrides).
    """
    _freeze_garbage_collection()
    from sdcontainer.keys import KEYS, spec_from_argv
    from sdcontainer.record import replace
    from sdcontainer.transient import run_transient
    from sdcontainer.transient import unit_name as make_unit_name
    from sdcontainer.values import (
        DEFAULT_NETWORK,
        ParseContext,
        is_service_unit_name,
        parse_memory,
        parse_pids_limit,
        parse_seconds,
        parse_signal,
        parse_ulimit,
    )

    # an image reference never starts with / or .: such an argument is a directory, even a
    # missing one (the launcher then says so), never a name to pull
    if os.path.isdir(rootfs) or rootfs.startswith(("/", ".")):
        if not command:
            raise click.UsageError("a ROOTFS needs a COMMAND")
        argv = ["--rootfs", os.path.abspath(rootfs)]
    else:
        argv = ["--image", rootfs]
    # podman's -e KEY: this process's value (a unit's environment is the service manager's)
    options["environment"] = tuple(
        f"{item}={os.environ[item]}" if "=" not in item and item in os.environ else item
        for item in options.get("environment") or ()
    )
    user = options.get("user")
    if user and ":" in user and not options.get("group"):  # podman's -u USER:GROUP
        options["user"], options["group"] = user.split(":", 1)
    if options.get("network") is None:
        options["network"] = DEFAULT_NETWORK  # podman run's default, and a file's
    if unit_name is None and options.get("name"):
        if not is_service_unit_name(f"{options['name']}.service"):
            raise click.UsageError(f"--name {options['name']!r} cannot name a unit: give --unit too")
        unit_name = options["name"]
    for key in KEYS:
        value = options.get(key.field)
        if key.option is None or value is None or value == ():
            continue
        for item in value if key.repeated else (value,):
            argv += [key.option, ("yes" if item else "no") if isinstance(item, bool) else str(item)]
    spec = spec_from_argv([*argv, "--", *command])
    if spec.notify == "healthy":
        raise click.UsageError("--notify healthy needs a health check (HealthCmd=), which only a .container file has")
    try:
        if stop_signal:
            spec = replace(spec, stop_signal=parse_signal(stop_signal, ParseContext()))
        if stop_timeout is not None:
            spec = replace(spec, stop_timeout=parse_seconds(str(stop_timeout), ParseContext()))
        if memory is not None:
            spec = replace(spec, memory=parse_memory(memory, ParseContext()))
        if pids_limit is not None:
            spec = replace(spec, pids_limit=parse_pids_limit(pids_limit, ParseContext()))
        items = [item for value in ulimits for item in value.split(",")]
        spec = replace(spec, ulimits=tuple(parse_ulimit(item, ParseContext()) for item in items))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    sys.exit(run_transient(spec, make_unit_name(unit_name), detach=detach, stdin=interactive, remove=remove))


# --- images ---------------------------------------------------------------------------------


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{size} B"


def _ids_in_use() -> dict[str, str]:
    """image id -> a unit of a running container that uses it."""
    return {r.image_id: r.unit for r in _running() if r.image_id}


@cli.command()
@click.argument("reference")
@click.option(
    "--tls-verify/--no-tls-verify",
    default=None,
    help="Require HTTPS and a valid certificate (default: registries.conf).",
)
@click.option(
    "--retry",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Attempts after a failed one (a registry that cannot be reached at all: none, unless given).",
)
@click.option("--retry-delay", metavar="DURATION", help="Wait between attempts (default: 2s, doubling).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line (none either when stderr is not a terminal).")
def pull(reference: str, tls_verify: bool | None, retry: int, retry_delay: str | None, quiet: bool) -> None:
    """Pull REFERENCE from its registry into the store (with skopeo).

    Layers the store already has are not unpacked again, and nothing is copied when the
    registry's manifest is the one stored. Prints the image id.
    """
    from sdcontainer.images import pull as pull_image
    from sdcontainer.values import ParseContext, duration_seconds, parse_retry_delay

    try:
        delay = duration_seconds(parse_retry_delay(retry_delay, ParseContext())) if retry_delay else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--retry-delay") from None
    record = pull_image(
        reference,
        policy="always",
        retry=retry,
        retry_delay=delay,
        tls_verify=tls_verify,
        quiet=quiet or not sys.stderr.isatty(),
        # typed by hand, a pull with no network says so at once; --retry N waits for one
        retry_unreachable=click.get_current_context().get_parameter_source("retry")
        == click.core.ParameterSource.COMMANDLINE,
    )
    click.echo(record["id"])


@cli.command(name="images")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def images_(fmt: str) -> None:
    """List the images in the store."""
    from sdcontainer.reference import repository_and_tag
    from sdcontainer.store import Store

    store = Store()
    store.ensure()
    records = store.images()
    if fmt == "json":
        import json

        click.echo(json.dumps(records, indent=2))
        return
    click.echo(f"{'REPOSITORY':<48} {'TAG':<16} {'IMAGE ID':<12}  {'CREATED':<20} {'SIZE':>9}")
    for record in records:
        for name in record.get("names") or ["<none>:<none>"]:
            repository, tag = repository_and_tag(name)
            created = str(record.get("created", ""))[:19].replace("T", " ")
            click.echo(
                f"{repository:<48} {tag or '<none>':<16} {record['id'][:12]:<12}  {created:<20} "
                f"{_human_size(int(record.get('size') or 0)):>9}"
            )


@cli.group()
def image() -> None:
    """Images in the store: inspect, import, prune."""


def _find(reference: str) -> dict[str, Any]:
    from sdcontainer.errors import ImageError
    from sdcontainer.store import find_image

    record = find_image(reference)
    if record is None:
        raise ImageError(f"no image {reference} in the store")
    return record


@image.command(name="inspect")
@click.argument("reference")
def image_inspect(reference: str) -> None:
    """Print what the store knows of REFERENCE (a name or an id), with its full config."""
    import contextlib
    import json
    from pathlib import Path

    from sdcontainer.store import storage_dir

    record = _find(reference)
    config_path = Path(storage_dir()) / "blobs" / "sha256" / record["id"]
    with contextlib.suppress(OSError, ValueError):
        record = {**record, "image_config": json.loads(config_path.read_bytes())}
    click.echo(json.dumps(record, indent=2))


@image.command(name="import")
@click.argument("path", type=click.Path(exists=True))
@click.argument("name", required=False)
def image_import(path: str, name: str | None) -> None:
    """Import PATH as an image named NAME (localhost/NAME unless it names a registry).

    PATH is an OCI image layout (a directory, or a tar of one), a `docker save` archive, or
    a root file system as a tar (gzip or not), which becomes a one-layer image with no
    command. Prints the image id.
    """
    from sdcontainer.images import import_path

    record = import_path(path, name)
    click.echo(record["id"])


@image.command(name="prune")
def image_prune() -> None:
    """Remove images without a name (unless a running container uses them), then every
    layer and blob no image needs."""
    from sdcontainer.store import Store

    with Store() as store:
        images, layers = store.prune(set(_ids_in_use()))
    for image_id in images:
        click.echo(f"removed image {image_id[:12]}")
    click.echo(f"removed {len(layers)} layers")


@cli.group()
def volume() -> None:
    """Named volumes: ls, inspect, create, rm, prune. They outlive containers."""


@volume.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def volume_ls(fmt: str) -> None:
    """List the volumes, with the running units that use each."""
    from sdcontainer import volumes

    _need_root("volume ls")
    listed = volumes.listing()
    if fmt == "json":
        import json

        click.echo(json.dumps(listed, indent=2))
        return
    click.echo(f"{'NAME':<32} {'KIND':<8} USED BY")
    for entry in listed:
        kind = "mount" if entry["options"].get("device") else "dir"
        click.echo(f"{entry['name']:<32} {kind:<8} {' '.join(entry['used_by']) or '-'}")


@volume.command(name="inspect")
@click.argument("names", nargs=-1, required=True)
def volume_inspect(names: tuple[str, ...]) -> None:
    """Print what is known of each volume, as JSON: its mount point, options, labels, users."""
    import json

    from sdcontainer import volumes

    _need_root("volume inspect")
    click.echo(json.dumps([volumes.inspect(name) for name in names], indent=2))


@volume.command(name="create")
@click.argument("name")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label of the volume (repeatable).")
@click.option("--ignore", is_flag=True, help="An existing volume of that name is no error (it is kept as it is).")
def volume_create(name: str, labels: tuple[str, ...], ignore: bool) -> None:
    """Create the volume NAME, an empty directory in the store."""
    from sdcontainer import volumes
    from sdcontainer.errors import UsageError

    _need_root("volume create")
    if any("=" not in label or label.startswith("=") for label in labels):
        raise UsageError("--label takes KEY=VALUE")
    try:
        volumes.check_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    volumes.create(volumes.Volume(name=name, created=0, labels=labels), ignore=ignore)
    click.echo(name)


@volume.command(name="rm")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="A volume that does not exist is no error. Stops nothing: one in use is refused.",
)
def volume_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes and their content. A volume a running container uses is refused,
    naming the unit: stop it first."""
    from sdcontainer import volumes

    _need_root("volume rm")
    for name in names:
        if volumes.remove(name, force=force):
            click.echo(name)


@volume.command(name="prune")
def volume_prune() -> None:
    """Remove every volume no running container uses, with its content."""
    from sdcontainer import volumes

    _need_root("volume prune")
    for name in volumes.prune():
        click.echo(f"removed volume {name}")


@cli.group()
def network() -> None:
    """Networks: ls, inspect, create, rm (see sdcontainer.network(5))."""


@network.command(name="ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def network_ls(fmt: str) -> None:
    """List the networks: name, driver, subnets, bridge and the units on each."""
    import json

    from sdcontainer import networks

    rows = [(n, sorted(networks.containers(n))) for n in networks.listing()]
    if fmt == "json":
        click.echo(json.dumps([{**n.to_json(), "containers": units} for n, units in rows], indent=2))
        return
    table = [("NAME", "DRIVER", "SUBNETS", "BRIDGE", "CONTAINERS")]
    table += [(n.name, n.driver, ",".join(n.subnets), n.bridge, ",".join(units) or "-") for n, units in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[4])


@network.command(name="inspect")
@click.argument("names", nargs=-1, required=True)
def network_inspect(names: tuple[str, ...]) -> None:
    """Print NAME's definition and the units on it, as JSON (one list for all NAMES)."""
    import json

    from sdcontainer import networks

    click.echo(json.dumps([networks.inspect(name) for name in names], indent=2))


@network.command(name="create")
@click.option("-d", "--driver", default=None, help="bridge, the only driver.")
@click.option("--subnet", multiple=True, help="A subnet (CIDR); repeat for several.")
@click.option("--gateway", multiple=True, help="The gateway of the --subnet of the same position.")
@click.option("--ip-range", multiple=True, help="The assignable range (CIDR) of that subnet.")
@click.option("--internal", is_flag=True, help="No route out, no masquerade, no published ports.")
@click.option("--ipv6", is_flag=True, help="Add a unique local IPv6 /64 unless a --subnet is IPv6.")
@click.option("--dns", multiple=True, help="A name server for the containers' resolv.conf.")
@click.option("--disable-dns", is_flag=True, help="The containers do not find each other by name.")
@click.option("-l", "--label", multiple=True, help="KEY=VALUE metadata.")
@click.option("-o", "--opt", multiple=True, help="mtu=BYTES.")
@click.option("--interface-name", default=None, help="The bridge's name on the host.")
@click.option("--ignore", is_flag=True, help="Do nothing, without an error, if the network exists.")
@click.argument("name")
def network_create(name: str, ignore: bool, **options: Any) -> None:
    """Create network NAME (kept across reboots) and print its name. Containers join it with
    Network=NAME."""
    from sdcontainer import networks

    _need_root("network create")
    argv = ["--name", name]
    for option, value in options.items():
        flag = "--" + option.replace("_", "-")
        for item in value if isinstance(value, tuple) else (value,):
            if item is True:
                argv += [flag, "yes"]
            elif item not in (None, False):
                argv += [flag, str(item)]
    if os.path.exists(networks.definition_path(name)) or os.path.exists(f"{networks.PERSISTENT_DIR}/{name}.json"):
        if ignore:
            click.echo(name)
            return
        raise NetworkError(f"network {name} already exists")
    networks.create(networks.spec_from_argv(argv), persist=True)
    click.echo(name)


@network.command(name="rm")
@click.option("-f", "--force", is_flag=True, help="Stop the units on the network first.")
@click.argument("names", nargs=-1, required=True)
def network_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove networks: bridge, masquerade, leases and definition. A network in use is
    refused (the units on it are named) unless --force, which stops them first."""
    import subprocess

    from sdcontainer import networks

    _need_root("network rm")
    for name in names:
        if force:
            using = networks.users(networks.load(name), networks.unit_alive)
            if using:
                subprocess.run(["systemctl", "stop", "--", *using], check=False)
        networks.remove(name)
        click.echo(name)


@cli.command()
@click.argument("references", nargs=-1, required=True)
def rmi(references: tuple[str, ...]) -> None:
    """Remove images (by name: that name; by id: the image and all its names), then the
    layers no image needs. Refused while a running container uses the image."""
    from sdcontainer.errors import ImageError
    from sdcontainer.reference import candidates
    from sdcontainer.store import Store, image_id_for

    in_use = _ids_in_use()
    with Store() as store:
        for reference in references:
            record = _find(reference)
            image_id = record["id"]
            if image_id in in_use:
                raise ImageError(
                    f"image {reference} ({image_id[:12]}) is used by the running container {in_use[image_id]}"
                )
            names = [n for n in candidates(reference) if image_id_for(n, store.root) == image_id]
            if names:
                store.untag(names[0])
                click.echo(f"untagged {names[0]}")
            remaining = store.record(image_id)
            if remaining is not None and (not names or not remaining.get("names")):  # by id: all of it
                store.remove_image(image_id)
                click.echo(f"deleted {image_id}")
        store.prune(set(in_use), all_unnamed=False)


@cli.command(name="auto-update")
@click.option("--dry-run", is_flag=True, help="Only check: report the units with an update as pending.")
@click.option(
    "--rollback/--no-rollback",
    default=True,
    show_default=True,
    help="Go back to the previous image if a restart fails.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def auto_update(dry_run: bool, rollback: bool, fmt: str) -> None:
    """Update the images of running AutoUpdate= containers and restart their units.

    With AutoUpdate=registry the registry's digest of the image is compared with the running
    one's (nothing is pulled unless it changed); with AutoUpdate=local, the store's image of that
    name. A unit whose restart fails is rolled back to the image it ran before. The exit status is
    non-zero if any unit failed or was rolled back.
    """
    from sdcontainer.autoupdate import auto_update as run_auto_update

    _need_root("auto-update")
    reports = run_auto_update(dry_run=dry_run, rollback=rollback)
    if fmt == "json":
        import json

        click.echo(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        rows = [("UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED")]
        rows += [(r.unit, r.container, r.image, r.policy, r.updated) for r in reports]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[4])
        for report in reports:
            if report.message and report.updated in ("failed", "rolled back"):
                click.echo(f"sdcontainer: {report.unit}: {report.message}", err=True)
    if any(report.updated in ("failed", "rolled back") for report in reports):
        sys.exit(1)


@cli.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("-t", "--tty", is_flag=True, help="Run the command on a pseudo-terminal of the container's own.")
@click.option("-i", "--interactive", is_flag=True, help="Pass this process's stdin to the command.")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="Run as this user (default: the container's User=).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY[=VALUE]", help="Set (or pass on) a variable.")
@click.option("-w", "--workdir", metavar="DIR", help="Directory to run in (default: the container's WorkingDir=).")
@click.argument("name")
@click.argument("command", nargs=-1, required=True)
def exec_(
    name: str, command: tuple[str, ...], tty: bool, interactive: bool, user: str | None, env: tuple[str, ...],
    workdir: str | None,
) -> None:  # fmt: skip
    """Run COMMAND inside the running container NAME (a unit or a ContainerName=).

    The command joins the container's namespaces, root, cgroup and user, and gets no more
    privileges than the container's own processes (capabilities, no_new_privs, seccomp).
    Its exit status is exec's; 125 means exec itself failed.
    """
    _freeze_garbage_collection()
    from sdcontainer.enter import Request, find, run
    from sdcontainer.errors import ExecError

    _need_root("exec", ExecError)
    for item in env:
        from sdcontainer.values import parse_env_assignment  # the grammars: only with -e

        try:
            parse_env_assignment(item, None)  # type: ignore[arg-type]  # the context is not used
        except ValueError as error:
            raise click.UsageError(f"--env {item!r}: {error}") from None
    if workdir is not None and not workdir.startswith("/"):
        raise click.UsageError(f"--workdir {workdir!r} is not an absolute path")
    request = Request(list(command), user=user, env=env, workdir=workdir, tty=tty, interactive=interactive)
    status = run(find(name), request)
    if request.error is not None:
        click.echo(f"sdcontainer exec: {request.error}", err=True)
    sys.exit(status)


@cli.command(name="try", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def try_(args: tuple[str, ...]) -> None:
    """Try sdcontainer in a throwaway systemd: tools/shell of this checkout.

    Boots systemd as PID 1 of private namespaces, installs this checkout into it, puts the
    example root and the given .container FILEs in place and opens a shell there, or runs
    `-- COMMAND`; everything is thrown away on exit. Needs a checkout (an editable install,
    .venv/bin/sdcontainer): see tools/shell --help.
    """
    _try(list(args))  # reached only through click: _invoke passes `try` on before click sees `--`


def _try(args: list[str]) -> None:
    shell = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "shell")
    if not os.access(shell, os.X_OK):
        raise SdcontainerError(
            "try needs a checkout of sdcontainer (it installs that checkout into a throwaway systemd); "
            "run tools/shell, or .venv/bin/sdcontainer try, from one"
        )
    os.execv(shell, [shell, "--no-setup", *args])


@cli.group()
def secret() -> None:
    """Secrets for Secret= (create, ls, inspect, rm): stored root-only, given to units as
    systemd credentials."""


def _secrets_need_root(command: str) -> None:
    if not os.environ.get("SDCONTAINER_SECRETS"):  # tests use a store of their own
        _need_root(f"secret {command}")


@secret.command(name="create")
@click.option("--replace", is_flag=True, help="Change the value of a secret that exists.")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def secret_create(name: str, file: str, replace: bool) -> None:
    """Store the contents of FILE (- for standard input) as secret NAME. A container that
    names it in Secret= gets it at its next start."""
    from sdcontainer import secrets

    _secrets_need_root("create")
    secrets.check_name(name)  # before reading a value that would be thrown away
    if file == "-":
        data = sys.stdin.buffer.read(secrets.SIZE_MAX + 1)
    else:
        with open(file, "rb") as f:
            data = f.read(secrets.SIZE_MAX + 1)
    secrets.create(name, data, replace=replace)
    click.echo(name)


@secret.command(name="ls")
def secret_ls() -> None:
    """The names of the stored secrets."""
    from sdcontainer import secrets

    _secrets_need_root("ls")
    for name in secrets.names():
        click.echo(name)


@secret.command(name="inspect")
@click.argument("names", nargs=-1, required=True)
def secret_inspect(names: tuple[str, ...]) -> None:
    """What is known of each secret, as JSON: never its value."""
    import json

    from sdcontainer import secrets

    _secrets_need_root("inspect")
    click.echo(json.dumps([secrets.info(name) for name in names], indent=2))


@secret.command(name="rm")
@click.argument("names", nargs=-1, required=True)
def secret_rm(names: tuple[str, ...]) -> None:
    """Remove secrets. A running container keeps the copy it has; its next start fails."""
    from sdcontainer import secrets

    _secrets_need_root("rm")
    for name in names:
        secrets.remove(name)
        click.echo(name)


def _invoke(args: list[str]) -> int:
    """The command line through click, whose own mistakes (an unknown option, a missing
    argument) click reports itself, with the command's usage; ours become SdcontainerError."""
    if args[:1] == ["try"] and not {"-h", "--help"} & set(args[1 : (args + ["--"]).index("--")]):
        _try(args[1:])  # as typed: click would swallow the `--` before a command
    try:
        cli(args, standalone_mode=False)
    except click.exceptions.Abort:  # click's form of a ^C (it has echoed the newline)
        raise KeyboardInterrupt from None
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except PermissionError as error:
        if os.geteuid() == 0:
            raise
        # a command without a check of its own (images, rmi, pull: the store is root's)
        raise SdcontainerError(f"{error.strerror}: {error.filename}; {NOT_ROOT}") from error
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `sdcontainer` program (argv None: sys.argv[1:])."""
    return run_main("sdcontainer", _invoke, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
