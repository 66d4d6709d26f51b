"""The `sdcontainer` command. Heavy imports stay here, out of the generator and launcher."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from sdcontainer import __version__, state
from sdcontainer.errors import ConfigError, SdcontainerError

STATE_DIR = Path(state.STATE_DIR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdcontainer")
def cli() -> None:
    """Run containers as plain systemd services, with no daemon.

    Write a .container file in /etc/sdcontainer, run `systemctl daemon-reload`, then
    `systemctl start NAME`: the container's init is the service's main process. See
    sdcontainer.container(5) for the file format and sdcontainer(1) for these commands.
    """


def _sources_for(files: tuple[str, ...]) -> list[tuple[Any, Any, set[str], dict[str, list[str]]]]:
    from sdcontainer.generator import SUFFIX, Source, find_sources

    result = []
    for file in files:
        path = os.path.abspath(file)
        if not path.endswith(SUFFIX):
            raise ConfigError(f"not a {SUFFIX} file", path)
        if not os.path.isfile(path):
            raise ConfigError("no such file", path)
        siblings, index = find_sources([os.path.dirname(path)])
        result.append((Source(os.path.basename(path), path), siblings, {s.name for s in siblings}, index))
    return result


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Check .container files; print each error as FILE:LINE: MESSAGE.

    Drop-ins beside each file (NAME.container.d/, container.d/) are applied, as the
    generator would. The exit status is non-zero if any file has an error.
    """
    from sdcontainer.generator import generate

    failed = 0
    for source, _, known, index in _sources_for(files):
        try:
            generate(source, known, index)
            click.echo(f"{source.path}: ok")
        except ConfigError as error:
            click.echo(str(error), err=True)
            failed += 1
    if failed:
        sys.exit(ConfigError.exit_status)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
def unit(file: str) -> None:
    """Print the .service unit the generator writes for FILE."""
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


def _running() -> list[dict[str, Any]]:
    containers = []
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being replaced or removed right now
        pid = record.get("pid")
        if not isinstance(pid, int) or not os.path.exists(f"/proc/{pid}"):
            continue  # stale: the unit died without its ExecStopPost= (it runs at the next start)
        containers.append(record)
    return containers


def _uptime(started: object, now: float) -> str:
    """`started` is the launcher's UTC timestamp, 2026-11-27T17:31:31Z."""
    import calendar

    try:
        seconds = int(now - calendar.timegm(time.strptime(str(started), "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


@cli.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_(fmt: str) -> None:
    """List running containers (from the launcher's records in /run/sdcontainer)."""
    containers = _running()
    if fmt == "json":
        click.echo(json.dumps(containers, indent=2))
        return
    click.echo(f"{'NAME':<24} {'UNIT':<32} {'PID':>8} {'UP':>8}  COMMAND")
    now = time.time()
    for record in containers:
        up = _uptime(record.get("started"), now)
        command = " ".join(record.get("command") or [])
        click.echo(
            f"{record.get('name', ''):<24} {record.get('unit', ''):<32} {record.get('pid', ''):>8} {up:>8}  {command}"
        )


def _plain(doc: str) -> str:
    """The man-page markup of a key's doc (*bold*, _underline_) as plain text for --help."""
    import re

    return re.sub(r"(?<![\w])[*_]([^*_]+)[*_](?![\w])", r"\1", doc)


def _container_options(command: Any) -> Any:
    """One option per launcher option in the key table, so `run` takes what a file can say."""
    from sdcontainer.keys import KEYS, parse_bool

    for key in reversed(KEYS):
        if key.option is None or key.field in ("rootfs", "image"):
            continue
        help_text = f"{_plain(key.doc)} ({key.name}= in a .container file)"
        if key.parse is parse_bool:
            flag = key.option[2:]
            option = click.option(f"--{flag}/--no-{flag}", key.field, default=None, help=help_text)
        else:
            option = click.option(key.option, key.field, multiple=key.repeated, metavar=key.metavar, help=help_text)
        command = option(command)
    return command


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--unit", "unit_name", metavar="NAME", help="Name of the transient service (default: sdcontainer-run-RANDOM)."
)
@click.option("-d", "--detach", is_flag=True, help="Return once the container runs, instead of attaching to it.")
@click.option("--stop-signal", metavar="SIGNAL", help="Signal that stops the container (StopSignal=).")
@click.option("--stop-timeout", type=int, metavar="SECONDS", help="Seconds before SIGKILL on stop (StopTimeout=).")
@click.option("--memory", metavar="SIZE", help="Memory limit of the service: 512m, 1g (Memory=, MemoryMax=).")
@click.option("--pids-limit", metavar="N", help="Most processes of the service; -1: none (PidsLimit=, TasksMax=).")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]", help="A resource limit (Ulimit=).")
@_container_options
@click.argument("rootfs", type=click.Path(file_okay=False))
@click.argument("command", nargs=-1, required=True)
def run(
    rootfs: str,
    command: tuple[str, ...],
    unit_name: str | None,
    detach: bool,
    stop_signal: str | None,
    stop_timeout: int | None,
    memory: str | None,
    pids_limit: str | None,
    ulimits: tuple[str, ...],
    **options: Any,
) -> None:
    """Run COMMAND in a container made from the directory ROOTFS, as a transient service.

    Like systemd-run: the container is a unit with a cgroup, a journal and
    `systemctl status`. Attached (the default), it uses this terminal's stdin, stdout and
    stderr and the exit status is the container's. Images are not supported yet: ROOTFS
    is an unpacked root file system.
    """
    from sdcontainer.keys import (
        KEYS,
        ParseContext,
        parse_memory,
        parse_pids_limit,
        parse_seconds,
        parse_signal,
        parse_ulimit,
        spec_from_argv,
    )
    from sdcontainer.record import replace
    from sdcontainer.transient import run_transient
    from sdcontainer.transient import unit_name as make_unit_name

    argv = ["--rootfs", os.path.abspath(rootfs)]
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
    sys.exit(run_transient(spec, make_unit_name(unit_name), detach=detach))


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
    from sdcontainer.enter import Request, find, run
    from sdcontainer.keys import parse_env_assignment

    for item in env:
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


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except SdcontainerError as error:
        click.echo(f"sdcontainer: {error}", err=True)
        if os.environ.get("SDCONTAINER_DEBUG"):
            raise
        sys.exit(error.exit_status)


if __name__ == "__main__":
    main()
