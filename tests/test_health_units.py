"""Notify= and the health keys: their values, and the units the generator writes for them.
(What the units do against a real systemd: tests/test_exec_health.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.health import Options
from sdcontainer.keys import spec_from_argv, spec_to_argv
from sdcontainer.values import duration_ms
from tests.test_generator import generate_into, write
from tests.test_keys import spec


@pytest.mark.parametrize(
    ("value", "argv"),
    [
        ("curl -f http://localhost/ || exit 1", ("/bin/sh", "-c", "curl -f http://localhost/ || exit 1")),
        ('["/bin/check", "--quick"]', ("/bin/check", "--quick")),
        ('["CMD", "/bin/check", "a b"]', ("/bin/check", "a b")),
        ('["CMD-SHELL", "test -e /ready"]', ("/bin/sh", "-c", "test -e /ready")),
        ("none", ()),
        ('["NONE"]', ()),
    ],
)
def test_health_cmd_forms(value: str, argv: tuple[str, ...]) -> None:
    assert spec(f"Rootfs=/r\nExec=x\nHealthCmd={value}\n").health_cmd == argv


@pytest.mark.parametrize(
    ("value", "ms"),
    [("30s", 30_000), ("1m30s", 90_000), ("500ms", 500), ("1.5s", 1500), ("10", 10_000), ("2h", 7_200_000)],
)
def test_durations_in_podmans_syntax(value: str, ms: int) -> None:
    assert duration_ms(value) == ms


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("HealthInterval=soon\n", 4, "invalid HealthInterval=: 'soon' is not a duration (such as 30s, 1m30s or 500ms)"),
        ("HealthTimeout=0s\n", 4, "invalid HealthTimeout=: '0s': must be longer than 0"),
        ("HealthRetries=0\n", 4, "invalid HealthRetries=: '0' is not a number of at least 1"),
        ("HealthOnFailure=reboot\n", 4, "invalid HealthOnFailure=: 'reboot' is not one of none, kill, restart, stop"),
        ('HealthCmd=["CMD"]\n', 4, 'invalid HealthCmd=: ["CMD"] needs a program after it'),
        ("Notify=maybe\n", 4, "invalid Notify=: 'maybe' is not a boolean or healthy"),
        ("Notify=healthy\n", 4, "Notify=healthy needs a health check: set HealthCmd="),
    ],
)
def test_bad_values_name_file_line_and_key(body: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec("Rootfs=/r\nExec=x\n" + body)
    assert str(caught.value) == f"/etc/sdcontainer/t.container:{line}: {message}"


def test_notify_travels_to_the_launcher_and_health_keys_do_not() -> None:
    s = spec("Rootfs=/r\nExec=x\nNotify=yes\nHealthCmd=true\nHealthInterval=5s\n")
    argv = spec_to_argv(s)
    assert argv[argv.index("--notify") + 1] == "yes"
    assert not [a for a in argv if "health" in a]
    assert spec_from_argv(argv).notify == "yes"
    assert spec("Rootfs=/r\nExec=x\nNotify=true\n").notify == "yes"
    assert spec("Rootfs=/r\nExec=x\n").notify == "no"


def units(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    write(tmp_path / "units" / f"{name}.container", "[Container]\nRootfs=/srv/rootfs\nExec=/bin/sleep 1000\n" + body)
    out, result = generate_into(tmp_path, [tmp_path / "units"])
    assert result.returncode == 0, result.stderr
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


def test_health_units_beside_the_service(tmp_path: Path) -> None:
    files = units(
        tmp_path,
        "web",
        "HealthCmd=wget -q http://127.0.0.1/ || exit 1\nHealthInterval=1m30s\nHealthRetries=5\n"
        "HealthTimeout=2s\nHealthStartPeriod=500ms\nHealthOnFailure=restart\nNotify=healthy\n",
    )
    assert sorted(files) == ["web-health.service", "web-health.timer", "web.service"]
    service = files["web.service"]
    assert "Wants=web-health.timer\nUpholds=web-health.timer\n" in service
    assert "--notify healthy" in service
    timer = files["web-health.timer"]
    assert "BindsTo=web.service\n" in timer
    assert "After=" not in timer  # Notify=healthy: the checks run while the service starts
    assert "OnActiveSec=90s\nOnUnitInactiveSec=90s\n" in timer
    assert "Unit=web-health.service\n" in timer
    check = files["web-health.service"]
    assert "Type=oneshot\n" in check and "StartLimitIntervalSec=0\n" in check
    exec_start = next(line for line in check.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        "ExecStart=/usr/libexec/sdcontainer/launcher health --unit web.service --retries 5 --timeout 2000 "
        '--start-period 500 --on-failure restart --notify-healthy -- /bin/sh -c "wget -q http://127.0.0.1/ || exit 1"'
    )


def test_defaults_templates_and_no_timer(tmp_path: Path) -> None:
    files = units(tmp_path, "app@", "HealthCmd=true\n")
    assert sorted(files) == ["app-health@.service", "app-health@.timer", "app@.service"]
    assert "Wants=app-health@%i.timer\n" in files["app@.service"]
    assert "BindsTo=app@%i.service\n" in files["app-health@.timer"]
    assert "OnActiveSec=30s\n" in files["app-health@.timer"]
    assert "Unit=app-health@%i.service\n" in files["app-health@.timer"]
    assert (
        "--unit app@%i.service --retries 3 --timeout 30000 --start-period 0 --on-failure none --"
        in (files["app-health@.service"])
    )


def test_interval_disable_and_cmd_none(tmp_path: Path) -> None:
    files = units(tmp_path, "manual", "HealthCmd=true\nHealthInterval=disable\n")
    assert sorted(files) == ["manual-health.service", "manual.service"]
    assert "health.timer" not in files["manual.service"]
    (tmp_path / "out").rename(tmp_path / "out-1")
    files = units(tmp_path, "manual", "HealthCmd=none\n")
    assert sorted(files) == ["manual.service"]


def test_health_command_line() -> None:
    options = Options(["--unit", "a.service", "--retries", "2", "--on-failure", "kill", "--notify-healthy", "--", "x"])
    assert (options.unit, options.retries, options.on_failure, options.notify_healthy, options.argv) == (
        "a.service", 2, "kill", True, ["x"],
    )  # fmt: skip
    for bad in (["--", "x"], ["--unit", "a.service"], ["--unit", "a", "--on-failure", "reboot", "--", "x"]):
        with pytest.raises(UsageError):
            Options(bad)
