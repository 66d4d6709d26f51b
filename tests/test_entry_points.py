"""Every entry point maps each error class to its exit status and one line on stderr
(sdcontainer.errors.run_main), and the launcher's verbs are one table (sdcontainer.verbs):
the libexec script and `python -m sdcontainer.launcher` answer alike.

The programs run as subprocesses on this checkout, with bad input; nothing here reaches a
service manager (the one D-Bus address given is a path that does not exist)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdcontainer import verbs
from sdcontainer.errors import (
    ConfigError,
    ExecError,
    ImageError,
    LaunchError,
    SdcontainerError,
    SystemdError,
    UsageError,
    run_main,
)
from tests.helpers import CHECKOUT

NONE = "sdcontainer-test-none.service"  # a unit no test runs: never a record in /run/sdcontainer
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SDCONTAINER_", "PYTHON", "NOTIFY_SOCKET"))}


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> str:
    """libexec/sdcontainer-launcher as `make install` writes it, on this checkout."""
    text = (CHECKOUT / "libexec" / "sdcontainer-launcher").read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("libexec") / "sdcontainer-launcher"
    path.write_text(text.replace("@VENV_PYTHON@", sys.executable).replace("@VENV_SITE@", str(CHECKOUT)))
    return str(path)


def launcher_forms(script: str) -> dict[str, list[str]]:
    return {
        "script": [sys.executable, "-IS", script],  # what installed units run
        "module": [sys.executable, "-E", "-s", "-m", "sdcontainer.launcher"],  # units where it is not installed
    }


CLI = [sys.executable, "-E", "-s", "-m", "sdcontainer.cli"]
GENERATOR = [sys.executable, "-E", "-s", "-m", "sdcontainer.generator"]


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=CHECKOUT, env={**CLEAN_ENV, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


# --- sdcontainer-launcher: every verb, in both forms ----------------------------------------


LAUNCHER_CASES = [
    # (argv after the program, extra environment, status, the line's prefix)
    (["start", "--bogus", "x"], {}, UsageError.exit_status, "sdcontainer-launcher: "),
    (["frobnicate"], {}, UsageError.exit_status, "sdcontainer-launcher: unknown command 'frobnicate'; expected start"),
    (["start", "--rootfs", "/nonexistent", "--", "/bin/true"], {}, LaunchError.exit_status, "sdcontainer-launcher: "),
    (
        ["start", "--rootfs", "/nonexistent", "--", "/bin/true"],
        {"NOTIFY_SOCKET": "/nonexistent/notify"},
        SystemdError.exit_status,
        "sdcontainer-launcher: connect to NOTIFY_SOCKET=/nonexistent/notify: ",
    ),
    (["cleanup", "--unit"], {}, UsageError.exit_status, "sdcontainer-launcher: usage: cleanup --unit UNIT"),
    (["cleanup", "--unit", "../x"], {}, UsageError.exit_status, "sdcontainer-launcher: "),
    (["wait-port", "http"], {}, UsageError.exit_status, "sdcontainer-launcher: wait-port: 'http' has no port number"),
    (["wait-port", "1", "--timeout", "x"], {}, UsageError.exit_status, "sdcontainer-launcher: wait-port: --timeout"),
    (["health", "--unit", "x.service"], {}, UsageError.exit_status, "sdcontainer-health: no check command after --"),
    (["health", "--unit", "../etc", "--", "/bin/true"], {}, UsageError.exit_status, "sdcontainer-health: "),
    (["health", "--unit", NONE, "--", "/bin/true"], {}, 1, f"sdcontainer-health: {NONE} is not running"),
    (["exec", "--unit", NONE], {}, UsageError.exit_status, "sdcontainer-launcher exec: usage: exec --unit UNIT"),
    (["exec", "--unit", NONE, "--", "/bin/true"], {}, ExecError.exit_status, f"sdcontainer-launcher exec: {NONE} is"),
]


@pytest.mark.parametrize(("args", "env", "status", "prefix"), LAUNCHER_CASES)
def test_each_verb_of_the_launcher_fails_with_its_status_and_one_line(
    script: str, args: list[str], env: dict[str, str], status: int, prefix: str
) -> None:
    answers = {}
    for form, argv in launcher_forms(script).items():
        result = run([*argv, *args], **env)
        assert result.returncode == status, (form, result)
        assert result.stdout == "", (form, result)
        answers[form] = one_line(result, prefix)
    assert answers["script"] == answers["module"]  # one dispatch: the two forms cannot differ


def test_the_launchers_help_and_missing_verb_are_the_usage(script: str) -> None:
    for argv in launcher_forms(script).values():
        for args, status in (([], UsageError.exit_status), (["--help"], 0), (["health", "--help"], 0)):
            result = run([*argv, *args])
            assert result.returncode == status, result
            assert result.stdout.startswith("usage: sdcontainer-launcher start [OPTIONS] -- COMMAND [ARG...]\n")
            assert result.stderr == ""


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield str(path)


def interrupted(argv: list[str], fifo: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `argv`, which reads `fifo`; once it has opened it (a writer's open succeeds only
    then, so the program is inside the verb, waiting for data), send it SIGINT."""
    process = subprocess.Popen(argv, cwd=CHECKOUT, env={**CLEAN_ENV, **env}, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    writer = None
    try:
        while writer is None and process.poll() is None:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.01)
        if writer is not None:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if writer is not None:
            os.close(writer)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert writer is not None, f"exited before it read {fifo}: {stderr}"
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_an_interrupted_launcher_exits_130_without_a_traceback(script: str, fifo: str, tmp_path: Path) -> None:
    """^C is 130 (128 + SIGINT) in both forms; the environment file is read on the host,
    before anything is forked."""
    for form, argv in launcher_forms(script).items():
        result = interrupted([*argv, "start", "--rootfs", str(tmp_path), "--env-file", fifo, "--", "/bin/true"], fifo)
        assert (result.returncode, result.stderr) == (130, ""), (form, result)


# --- sdcontainer: click's command line, our errors --------------------------------------------


def test_the_cli_maps_each_error_class_to_its_status_and_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["check", "/nonexistent.container"], {}, ConfigError.exit_status, "sdcontainer: /nonexistent.container: "),
        (["image", "inspect", "nosuch"], {}, ImageError.exit_status, "sdcontainer: no image nosuch in the store"),
        (
            ["run", "--detach", str(tmp_path), "/bin/true"],
            {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"},
            SystemdError.exit_status,
            "sdcontainer: ",
        ),
        (["exec", NONE, "/bin/true"], {}, ExecError.exit_status, "sdcontainer: "),
        # an OSError of no command's own: one line, 1 (an error not covered by the others)
        (["images"], {"SDCONTAINER_STORAGE": str(a_file)}, SdcontainerError.exit_status, f"sdcontainer: {a_file}: "),
    ]
    for args, env, status, prefix in cases:
        result = run([*CLI, *args], **{"SDCONTAINER_STORAGE": str(store), **env})
        assert result.returncode == status, (args, result)
        one_line(result, prefix)


def test_the_cli_leaves_its_usage_errors_to_click() -> None:
    result = run([*CLI, "check"])
    assert result.returncode == UsageError.exit_status, result
    assert result.stderr.startswith("Usage: ") and "Error: Missing argument 'FILES...'." in result.stderr


def test_an_interrupted_cli_exits_130(fifo: str, tmp_path: Path) -> None:
    result = interrupted([*CLI, "image", "import", fifo, "x:1"], fifo, SDCONTAINER_STORAGE=str(tmp_path / "store"))
    assert result.returncode == 130, result
    assert result.stderr.strip() == "", result  # click ends the ^C's line, nothing more


# --- sdcontainer-generator ------------------------------------------------------------------


def test_the_generators_usage_error_is_its_line_and_its_usage() -> None:
    result = run([*GENERATOR, "--bogus"])
    assert result.returncode == UsageError.exit_status, result
    first, *usage = result.stderr.splitlines()
    assert first == "sdcontainer-generator: unknown option --bogus"
    assert usage[0].startswith("usage: sdcontainer-generator [--dry-run]"), result.stderr


# --- run_main itself (a pure function of the exception) -------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (SdcontainerError("no"), 1, "prog: no\n"),
        (UsageError("bad"), 2, "prog: bad\n"),
        (ConfigError("bad key", "/f.container", 3), 3, "prog: /f.container:3: bad key\n"),
        (LaunchError("mount"), 4, "prog: mount\n"),
        (ImageError("gone"), 4, "prog: gone\n"),
        (SystemdError("bus"), 5, "prog: bus\n"),
        (ExecError("not running"), 125, "prog: not running\n"),
        (FileNotFoundError(2, "No such file or directory", "/x"), 7, "prog: /x: No such file or directory\n"),
        (BrokenPipeError(32, "Broken pipe"), 7, "prog: Broken pipe\n"),
        (KeyboardInterrupt(), 130, ""),
        (ValueError("x"), 1, "prog: internal error: ValueError: x (SDCONTAINER_DEBUG=1 shows more)\n"),
    ],
)
def test_run_main_maps_the_exception(
    error: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SDCONTAINER_DEBUG", raising=False)

    def fail(args: list[str]) -> int:
        raise error

    assert run_main("prog", fail, [], os_error_status=7) == status
    assert capsys.readouterr() == ("", line)


def test_run_main_passes_statuses_and_exits_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("prog", lambda args: len(args), ["a", "b"]) == 2

    def leave(args: list[str]) -> int:
        sys.exit(9)

    with pytest.raises(SystemExit) as exit_:
        run_main("prog", leave, [])
    assert exit_.value.code == 9
    assert capsys.readouterr() == ("", "")


def test_sdcontainer_debug_adds_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCONTAINER_DEBUG", "1")

    def fail(args: list[str]) -> int:
        raise LaunchError("mount refused")

    assert run_main("prog", fail, []) == LaunchError.exit_status
    err = capsys.readouterr().err
    assert err.startswith("prog: mount refused\nTraceback (most recent call last):\n"), err
    assert err.rstrip().endswith("sdcontainer.errors.LaunchError: mount refused"), err


# --- the verb table and the one argv parser -------------------------------------------------


def test_every_verb_names_a_function_of_its_module() -> None:
    """Imported here only to look: the table's strings are checked against the code."""
    import importlib

    for verb, (module, function, _) in {**verbs.VERBS, "--help": verbs.HELP}.items():
        assert callable(getattr(importlib.import_module(module), function)), verb


def test_parse_options_words_and_command() -> None:
    got = verbs.parse(["--a", "1", "w", "--b=2", "--f", "--", "cmd", "--a"], options=("--a", "--b"), flags=("--f",),
                      words=1)  # fmt: skip
    assert (got.options, got.words, got.command) == ({"--a": "1", "--b": "2", "--f": ""}, ["w"], ["cmd", "--a"])
    assert verbs.parse(["--a", "1", "--a", "3"], options=("--a",)).options == {"--a": "3"}  # the last one wins
    assert verbs.parse([], options=("--a",)).command is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--a"], "option --a needs a value"),
        (["--nope", "1"], "unknown option '--nope'"),
        (["--f=yes"], "unknown option '--f=yes'"),
        (["w", "x"], "unexpected argument 'x'"),
    ],
)
def test_parse_refuses(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"):
        verbs.parse(args, options=("--a",), flags=("--f",), words=1)
    with pytest.raises(UsageError, match="^usage: it$"):
        verbs.parse(args, options=("--a",), flags=("--f",), words=1, usage="usage: it")


def test_the_modules_of_the_hot_verbs_stay_apart(script: str) -> None:
    """`health` and `exec` (every HealthInterval=, every reload) never load the launcher,
    `cleanup` and `wait-port` not even sdcontainer.enter: the script imports one verb's module
    (seen with -X importtime: `health` leaves with os._exit, before any code of ours could look)."""
    for args, absent in (
        (["health", "--unit", NONE, "--", "/bin/true"], {"sdcontainer.launcher", "sdcontainer.keys"}),
        (["exec", "--unit", NONE, "--", "/bin/true"], {"sdcontainer.launcher", "sdcontainer.keys"}),
        (["cleanup", "--unit", NONE], {"sdcontainer.launcher", "sdcontainer.enter"}),
        (["wait-port", "http"], {"sdcontainer.launcher", "sdcontainer.enter"}),
    ):
        result = run([sys.executable, "-IS", "-X", "importtime", script, *args])
        loaded = {
            line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
        }
        assert "sdcontainer.verbs" in loaded and not loaded & absent, (args, sorted(loaded))
