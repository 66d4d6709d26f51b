"""`sdcontainer-launcher VERB ...`: the verbs systemd runs from generated units.

    start [OPTIONS] -- COMMAND...                 ExecStart= (sdcontainer.launcher)
    cleanup --unit UNIT                           ExecStopPost= of units from older versions (sdcontainer.state)
    release --unit UNIT                           ExecStopPost= of bridge-networked units (sdcontainer.release)
    network-create [--file F.network] OPTIONS     ExecStart= of NAME-network.service (sdcontainer.networks)
    network-remove NAME                           its ExecStopPost= with NetworkDeleteOnStop=yes
    wait-port [ADDRESS:]PORT [--timeout S] [-- PROGRAM...]   SocketProxy='s ExecStartPre= (sdcontainer.sockets)
    health --unit UNIT [OPTIONS] -- CHECK...      NAME-health.service (sdcontainer.health)
    exec --unit UNIT -- COMMAND...                ExecReload= of ReloadCmd= (sdcontainer.enter)
    pull [OPTIONS] -- IMAGE                       NAME-image.service of a .image file (sdcontainer.imagefile)
    pod-create --pod NAME --unit UNIT [OPTIONS]   NAME-pod.service of a .pod file (sdcontainer.pods)
    pod-remove --pod NAME --unit UNIT             its ExecStopPost= (sdcontainer.pods)
    volume-create --name NAME [OPTIONS]           NAME-volume.service of a .volume file (sdcontainer.volumes)

One table, VERBS, names each verb's module and function; the libexec script and
`python -m sdcontainer.launcher` both dispatch through main() here, which imports the module
of that verb and nothing else (so `health` never loads the launcher), and runs it under
sdcontainer.errors.run_main, the one place a failure becomes a line and an exit status.
`--help` (and no verb) prints sdcontainer.launcher's usage, so it imports the start path (the
benchmark's `launcher --help` case counts on that).

The verbs parse their words with parse() below, not with click: this is the path of every
container start and every health check, and systemd, not a person, writes these command
lines (a person's command, `sdcontainer`, is click's). Measured on this machine (Python
3.11.2, 2 shared CPUs), `python -X importtime -c 'import click'`: click costs 18 ms
cumulative to import (median of 11 runs; 17-28 ms as the load varied), while all the imports
of `sdcontainer-launcher health ...` together cost 8.0 ms and of `start ...` 10.6 ms (`python3
-IS -X importtime <script> health|start ...`, sum of the self times, median of 80 runs):
click would more than double the imports of a health check. This module itself costs
0.24 ms to import; the totals before and after it came were 8.03 -> 8.05 ms (health) and
10.56 -> 10.60 ms (start), within the noise.
"""

from __future__ import annotations

import sys

from sdcontainer.errors import LaunchError, UsageError, run_main

PROG = "sdcontainer-launcher"

# verb -> (module, function, the prefix of its messages). The function takes the words after
# the verb and returns the exit status. In the order the usage lists them.
VERBS: dict[str, tuple[str, str, str]] = {
    "start": ("sdcontainer.launcher", "start_command", PROG),
    "cleanup": ("sdcontainer.state", "cleanup", PROG),
    "release": ("sdcontainer.release", "release_command", PROG),
    "network-create": ("sdcontainer.networks", "create_command", PROG),
    "network-remove": ("sdcontainer.networks", "remove_command", PROG),
    "wait-port": ("sdcontainer.sockets", "wait_port", PROG),
    "health": ("sdcontainer.health", "check_command", "sdcontainer-health"),
    "exec": ("sdcontainer.enter", "exec_command", "sdcontainer-launcher exec"),
    "pull": ("sdcontainer.imagefile", "pull_command", "sdcontainer-launcher pull"),
    "pod-create": ("sdcontainer.pods", "create_command", "sdcontainer-launcher pod-create"),
    "pod-remove": ("sdcontainer.pods", "remove_command", "sdcontainer-launcher pod-remove"),
    "volume-create": ("sdcontainer.volumes", "create_command", "sdcontainer-launcher volume-create"),
}
HELP = ("sdcontainer.launcher", "help_command", PROG)  # its usage lists every verb's options
# Run every HealthInterval= (health) and at every stop of a bridge unit (release): the
# script's process ends with os._exit, without the interpreter's teardown (~5 ms each).
FAST_EXIT = frozenset(("health", "release"))


def main(argv: list[str] | None = None) -> int:
    """The launcher program: `argv` is what follows its name (sys.argv[1:] when None, the
    script's own command line)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[1:2] == ["--help"]:
        return _run(HELP, args)
    verb = VERBS.get(args[0])
    if verb is None:
        return run_main(PROG, _unknown, args)
    status = _run(verb, args[1:])
    if argv is None and args[0] in FAST_EXIT:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def run_verb(name: str, args: list[str]) -> int:
    """One verb with the words after it, as main() runs it."""
    return _run(VERBS[name], args)


def _run(verb: tuple[str, str, str], args: list[str]) -> int:
    module, function, prog = verb

    def call(words: list[str]) -> int:
        return int(getattr(__import__(module, fromlist=[function]), function)(words))

    return run_main(prog, call, args, LaunchError.exit_status)


def _unknown(args: list[str]) -> int:
    *names, last = VERBS
    raise UsageError(f"unknown command {args[0]!r}; expected {', '.join(names)} or {last}")


class Args:
    """A verb's command line as parse() found it."""

    __slots__ = ("options", "words", "command")

    def __init__(self, options: dict[str, str], words: list[str], command: list[str] | None) -> None:
        self.options = options  # --name -> its value (a flag's is ""), the last one given
        self.words = words  # the arguments that are not options, before `--`
        self.command = command  # the words after `--`; None without one


def parse(
    args: list[str], options: tuple[str, ...] = (), flags: tuple[str, ...] = (), words: int = 0, usage: str = ""
) -> Args:
    """The one argv parser of the verbs: `--name VALUE` or `--name=VALUE` for each of
    `options`, `--flag` for each of `flags`, up to `words` arguments that do not start with
    `-`, and everything after the first `--` as the command. A wrong command line is a
    UsageError saying what is wrong, or `usage` when the verb gives one (its whole usage
    line is its message for every mistake). What is required is the verb's to check."""
    values: dict[str, str] = {}
    found: list[str] = []
    i = 0
    try:
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                return Args(values, found, args[i:])
            if arg == "-" or not arg.startswith("-"):
                if len(found) >= words:
                    raise UsageError(f"unexpected argument {arg!r}")
                found.append(arg)
                continue
            name, eq, value = arg.partition("=")
            if name in flags and not eq:
                values[name] = ""
            elif name in options:
                if not eq:
                    if i >= len(args):
                        raise UsageError(f"option {arg} needs a value")
                    value = args[i]
                    i += 1
                values[name] = value
            else:
                raise UsageError(f"unknown option {arg!r}")
    except UsageError:
        if usage:
            raise UsageError(usage) from None
        raise
    return Args(values, found, None)
