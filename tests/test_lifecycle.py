"""The lifecycle verbs' logic without a systemd: names, what ExecStart= says, the table,
journalctl's argv, the processes of a cgroup. (tests/test_lifecycle_systemd.py runs the
verbs against a real one.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sdcontainer.errors import SystemdError, UsageError
from sdcontainer.keys import spec_to_argv
from sdcontainer.lifecycle import (
    WINDOW,
    Systemd,
    Unit,
    age,
    cgroup_pids,
    journalctl_argv,
    launcher_options,
    port_text,
    process_line,
    table,
)
from sdcontainer.spec import ContainerSpec
from sdcontainer.state import unit_of


@pytest.mark.parametrize(
    ("name", "unit"),
    [("web", "web.service"), ("web.service", "web.service"), ("sdcontainer-run-1a2b", "sdcontainer-run-1a2b.service"),
     ("web@1", "web@1.service")],
)  # fmt: skip
def test_a_name_is_its_unit(name: str, unit: str) -> None:
    assert unit_of(name) == unit


@pytest.mark.parametrize("name", ["", "../web", "a b", ".hidden", "x/y.service", "web.socket.service\n"])
def test_a_name_that_is_no_service_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match="is not a container name"):
        unit_of(name)


def exec_start(*argv: str) -> list[tuple[Any, ...]]:
    """ExecStart as D-Bus gives it: (path, argv, ignore failure, 4 times, pid, code, status)."""
    return [(argv[0], list(argv), False, 0, 0, 0, 0, 0, 0, 0)]


SPEC = ContainerSpec(
    unit="web.service", name="web", image="docker.io/library/nginx:1", network="sdcontainer",
    publish_ports=("8080:80/tcp", "127.0.0.1:5353:53/udp", "9000-9001:90-91/tcp"), exec=("nginx", "-g", "x"),
)  # fmt: skip


def test_the_launchers_options_are_found_however_it_is_spelled() -> None:
    options = spec_to_argv(SPEC)
    for launcher in (["/usr/local/lib/sdcontainer/venv/bin/sdcontainer-launcher"],
                     ["/usr/bin/python3", "-I", "-m", "sdcontainer.launcher"]):  # fmt: skip
        assert launcher_options(exec_start(*launcher, "start", *options)) == options
    assert launcher_options(exec_start("/usr/sbin/sshd", "-D")) is None
    assert launcher_options(exec_start("/bin/start", "--unit", "x")) is None  # `start` must follow the program
    assert launcher_options([]) is None


def unit(active: str = "active", **properties: Any) -> Unit:
    values = {
        "ExecStart": exec_start("/x/sdcontainer-launcher", "start", *spec_to_argv(SPEC)),
        "ActiveState": active, "ActiveEnterTimestamp": 1_000_000_000 * 1_000_000, "InactiveEnterTimestamp": 0,
        "ExecMainCode": 0, "ExecMainStatus": 0, "Result": "success", "MainPID": 42, "Transient": True,
    }  # fmt: skip
    values.update(properties)
    return Unit("web.service", values)


def test_a_unit_is_described_by_its_exec_start() -> None:
    web = unit()
    assert web.ours and web.spec == SPEC
    assert (web.container_name, web.image, web.command) == ("web", "docker.io/library/nginx:1", ["nginx", "-g", "x"])
    assert web.ports == ["0.0.0.0:8080->80/tcp", "127.0.0.1:5353->53/udp", "0.0.0.0:9000-9001->90-91/tcp"]
    other = Unit("sshd.service", {"ExecStart": exec_start("/usr/sbin/sshd", "-D")})
    assert not other.ours and other.spec is None and other.image == "?"
    # an ExecStart this version cannot read: still ours, with what systemd knows
    odd = Unit(
        "old.service", {"ExecStart": exec_start("/x/launcher", "start", "--unit", "old.service", "--new-x", "1")}
    )
    assert odd.ours and odd.spec is None and odd.container_name == "old" and odd.image == "?"


def test_status_reads_like_podmans() -> None:
    now = 1_000_000_000 + 300
    assert unit().status(now) == "Up 5m"
    assert unit("activating").status(now) == "Starting"
    ended = 1_000_000_000 * 1_000_000 + 100_000_000
    assert unit("inactive", ExecMainCode=1, ExecMainStatus=3, InactiveEnterTimestamp=ended).status(now) == (
        "Exited (3) 3m ago"
    )
    failed = unit("failed", ExecMainCode=2, ExecMainStatus=9, InactiveEnterTimestamp=ended, Result="signal")
    assert failed.status(now) == "Failed (signal 9) 3m ago"
    never = unit("failed", ExecMainCode=0, InactiveEnterTimestamp=ended, Result="resources")
    assert never.status(now) == "Failed (resources) 3m ago"
    assert unit("inactive", ExecMainCode=0, InactiveEnterTimestamp=0).status(now) == "Stopped"
    assert [age(s) for s in (0, 119, 120, 7199, 7200, 172800, -5)] == ["0s", "119s", "2m", "119m", "2h", "2d", "0s"]


def test_the_table_and_the_json() -> None:
    lines = table([unit()], 1_000_000_000 + 5)
    assert lines[0].split() == ["NAME", "UNIT", "IMAGE", "STATUS", "PORTS", "COMMAND"]
    assert lines[1].split("  ")[0] == "web"
    assert "Up 5s" in lines[1] and lines[1].endswith("0.0.0.0:9000-9001->90-91/tcp  nginx -g x")
    assert lines[0].index("IMAGE") == lines[1].index("docker.io")  # aligned
    data = unit("failed", ExecMainCode=1, ExecMainStatus=3).to_dict(0)
    assert data["exit_code"] == 3 and data["started"] is None and data["state"] == "failed"
    assert data["ports"][0] == "0.0.0.0:8080->80/tcp" and data["network"] == "sdcontainer"
    assert unit().to_dict(0)["started"] == "2001-09-09T01:46:40Z"


def test_port_text_of_ipv6() -> None:
    assert port_text("[::1]:8080:80/tcp") == "[::1]:8080->80/tcp"


def test_journalctl_argv() -> None:
    assert journalctl_argv("web.service", follow=False, lines=None, since=None, timestamps=False) == [
        "journalctl", "_SYSTEMD_UNIT=web.service", "--no-pager", "-o", "cat",
    ]  # fmt: skip
    argv = journalctl_argv("web.service", follow=True, lines=5, since="-1h", timestamps=True)
    assert argv[3:] == ["-o", "short-iso", "--follow", "--lines", "5", "--since", "-1h"]


def test_cgroup_pids_walks_the_first_hierarchy_that_has_the_cgroup(tmp_path: Path) -> None:
    unified, named = tmp_path / "unified", tmp_path / "systemd"
    unit_dir = named / "sdcontainer.slice" / "web.service"
    (unit_dir / "payload").mkdir(parents=True)
    (unit_dir / "cgroup.procs").write_text("")
    (unit_dir / "payload" / "cgroup.procs").write_text("12\n7\n")
    unified.mkdir()
    roots = [str(unified), str(named)]
    assert cgroup_pids("/sdcontainer.slice/web.service", roots) == [7, 12]
    assert cgroup_pids("/sdcontainer.slice/gone.service", roots) == []


def test_process_line_of_a_real_process() -> None:
    pid, inside, uid, cpu, command = process_line(os.getpid()) or ()
    assert pid == str(os.getpid()) and uid == str(os.geteuid())
    assert inside.isdigit() and cpu.count(":") == 1 and "pytest" in command
    assert process_line(2**22 + 1) is None  # above pid_max: no such process


class CountingBus:
    """Stands in for transient.Bus: counts the calls waiting for their replies."""

    def __init__(self) -> None:
        self.serial = 0
        self.pending: set[int] = set()
        self.most = 0

    def call(self, path: str, interface: str, member: str, signature: str = "", *args: Any) -> int:
        self.serial += 1
        self.pending.add(self.serial)
        self.most = max(self.most, len(self.pending))
        return self.serial

    def reply(self, serial: int, what: str) -> list[Any]:
        self.pending.remove(serial)
        if serial % 7 == 0:
            raise SystemdError(f"{what}: no such property")
        return [serial * 10]


def test_the_pipeline_keeps_under_the_buses_limit_of_pending_replies() -> None:
    """The system bus answers a 129th pending call of one connection with an error (its
    max_replies_per_connection): ps lost units at random when it sent every Get at once."""
    systemd = Systemd.__new__(Systemd)
    systemd.bus = CountingBus()  # type: ignore[assignment]
    results = systemd.pipeline([("/p", "i", "Get", "ss", ("a", "b"))] * 1000)
    assert systemd.bus.most == WINDOW <= 128  # type: ignore[attr-defined]
    assert results == [None if n % 7 == 0 else n * 10 for n in range(1, 1001)]
