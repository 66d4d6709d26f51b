"""ReloadCmd=: its value, the ExecReload= the generator writes for it, and the launcher's
`exec` verb that line runs. (What `systemctl reload` then does against a real systemd:
tests/test_exec_health.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdcontainer import enter
from sdcontainer.errors import ConfigError
from sdcontainer.keys import spec_from_argv, spec_to_argv
from tests.helpers import CHECKOUT
from tests.test_generator import generate_into, stand_ins, write
from tests.test_keys import spec

BASE = "[Container]\nRootfs=/srv/rootfs\nExec=/bin/sleep infinity\n"
LAUNCHER = "/usr/libexec/sdcontainer-launcher"


def service(tmp_path: Path, name: str, text: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    units = tmp_path / "units"
    write(units / name, text)
    out, result = generate_into(tmp_path, [units], launcher=LAUNCHER)
    made = out / (name[: -len(".container")] + ".service")
    return (made.read_text() if made.exists() else ""), result


def exec_reload_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ExecReload=")]


def test_reload_cmd_is_split_as_exec_is() -> None:
    s = spec('Rootfs=/r\nExec=x\nReloadCmd="/some/binary file" --arg1 \\\n  "arg 2" \'$HOME\' %N\n')
    assert s.reload_cmd == ("/some/binary file", "--arg1", "arg 2", "$HOME", "%N")
    # the last assignment counts; an empty one removes it (a drop-in can take it away)
    assert spec("Rootfs=/r\nExec=x\nReloadCmd=/bin/a\nReloadCmd=/bin/b c\n").reload_cmd == ("/bin/b", "c")
    assert spec("Rootfs=/r\nExec=x\nReloadCmd=/bin/a\nReloadCmd=\n").reload_cmd is None
    assert spec("Rootfs=/r\nExec=x\nReloadCmd=/bin/a\nReloadCmd=\nReloadSignal=HUP\n").reload_signal == "SIGHUP"


def test_reload_cmd_never_reaches_the_launchers_start_options() -> None:
    s = spec("Rootfs=/r\nExec=/bin/true\nReloadCmd=/bin/reload now\n")
    argv = spec_to_argv(s)
    assert "/bin/reload" not in argv and argv[-2:] == ["--", "/bin/true"]
    assert spec_from_argv(argv).reload_cmd is None


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("Rootfs=/r\nExec=x\nReloadCmd=/usr/bin/command\nReloadSignal=SIGHUP\n", 4),
        ("Rootfs=/r\nExec=x\nReloadSignal=SIGHUP\nReloadCmd=/usr/bin/command\n", 5),
    ],
)
def test_reload_cmd_and_reload_signal_exclude_each_other(body: str, line: int) -> None:
    """As Quadlet refuses them (its corpus: reloadboth.container); the error points at ReloadCmd=."""
    with pytest.raises(ConfigError) as caught:
        spec(body)
    assert str(caught.value) == (
        f"/etc/sdcontainer/t.container:{line}: ReloadCmd= and ReloadSignal= exclude each other; set one of them"
    )


def test_the_conflict_from_a_drop_in_names_the_drop_ins_line(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "web.container", BASE + "ReloadSignal=HUP\n")
    write(units / "web.container.d" / "reload.conf", "[Container]\n# run a command instead\nReloadCmd=/bin/reload\n")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 1 and stand_ins(out) == ["web.service"]
    assert f"{units}/web.container.d/reload.conf:3: ReloadCmd= and ReloadSignal= exclude each other" in result.stderr


def test_exec_reload_runs_the_command_through_the_launchers_exec(tmp_path: Path) -> None:
    text, result = service(tmp_path, "web.container", BASE + "ReloadCmd=/usr/sbin/nginx -s reload\n")
    assert result.returncode == 0, result.stderr
    assert exec_reload_lines(text) == [f"ExecReload={LAUNCHER} exec --unit %n -- /usr/sbin/nginx -s reload"]
    # without the key: no ExecReload= at all (systemctl reload then fails, as before)
    text, result = service(tmp_path / "none", "web.container", BASE)
    assert result.returncode == 0 and exec_reload_lines(text) == []


def test_exec_reload_words_are_quoted_as_exec_start_words(tmp_path: Path) -> None:
    """`$` is left for systemd (`$(` is nothing to it; `${VAR}` would be expanded, as in
    Quadlet), quotes, spaces and backslashes are escaped, `%` specifiers are left for
    systemd: the same as the Exec= words."""
    words = r'/bin/sh -c "kill -HUP $(cat /run/app.pid) && echo \"done\" in %N" "a\\b"'
    text, result = service(
        tmp_path, "web.container", f"[Container]\nRootfs=/srv/rootfs\nExec={words}\nReloadCmd={words}\n"
    )
    assert result.returncode == 0, result.stderr
    (reload_line,) = exec_reload_lines(text)
    (start_line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    quoted = r'/bin/sh -c "kill -HUP $(cat /run/app.pid) && echo \"done\" in %N" "a\\b"'
    assert reload_line == f"ExecReload={LAUNCHER} exec --unit %n -- {quoted}"
    assert start_line.endswith(f" -- {quoted}")


def test_a_templates_instances_each_reload_their_own_container(tmp_path: Path) -> None:
    text, result = service(tmp_path, "web@.container", BASE + "ReloadCmd=/bin/reload\n")
    assert result.returncode == 0, result.stderr
    # %n is web@1.service in the instance web@1: the record its launcher wrote
    assert exec_reload_lines(text) == [f"ExecReload={LAUNCHER} exec --unit %n -- /bin/reload"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--unit", "web.service"],
        ["--unit", "web.service", "--"],
        ["--unit", "web.service", "/bin/true"],
        ["--name", "web", "--", "/bin/true"],
    ],
)
def test_exec_verb_usage(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert enter.main(["exec", *args]) == 2
    assert "usage: exec --unit UNIT -- COMMAND" in capsys.readouterr().err


def test_exec_verb_refuses_a_bad_unit_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert enter.main(["exec", "--unit", "../etc/passwd", "--", "/bin/true"]) == 2
    assert "invalid unit name" in capsys.readouterr().err


def test_exec_verb_without_a_running_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """125, as `sdcontainer exec` says it could not run the command; through the launcher's
    own dispatch (the module form units run when the script is not installed)."""
    monkeypatch.setattr("sdcontainer.state.STATE_DIR", str(tmp_path))
    assert enter.main(["exec", "--unit", "web.service", "--", "/bin/true"]) == 125
    result = subprocess.run(
        [sys.executable, "-I", "-m", "sdcontainer.launcher", "exec", "--unit", "sdcontainer-test-none.service",
         "--", "/bin/true"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 125, result.stderr
    assert result.stderr == (
        "sdcontainer-launcher exec: sdcontainer-test-none.service is not running; nothing to run '/bin/true' in\n"
    )


def test_the_launchers_usage_names_the_exec_verb() -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-m", "sdcontainer.launcher", "--help"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "sdcontainer-launcher exec --unit UNIT -- COMMAND [ARG...]" in result.stdout
