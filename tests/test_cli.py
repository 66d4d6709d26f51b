"""The `sdcontainer` command line, through click's runner (pure logic, no containers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdcontainer import state
from sdcontainer.cli import cli
from sdcontainer.keys import KEYS

GOLDEN = Path(__file__).parent / "golden"


def test_check_reports_ok_and_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.container"
    bad.write_text("[Container]\nRootfs=/r\nExec=x\nLogDriver=journald\n")
    result = CliRunner().invoke(cli, ["check", str(GOLDEN / "hello.container"), str(bad)])
    assert result.exit_code == 3
    assert f"{GOLDEN / 'hello.container'}: ok" in result.output
    assert f"{bad}:4: key LogDriver= in [Container] is a Quadlet key" in result.output


def test_unit_prints_the_generated_service_and_links() -> None:
    result = CliRunner().invoke(cli, ["unit", str(GOLDEN / "hello.container")])
    assert result.exit_code == 0, result.output
    assert "[Service]\nType=notify\n" in result.output
    assert "# enabled by: multi-user.target.wants/hello.service -> ../hello.service" in result.output


def test_keys_lists_the_table() -> None:
    result = CliRunner().invoke(cli, ["keys"])
    assert [line.split()[0] for line in result.output.splitlines()] == [k.name + "=" for k in KEYS]


def test_list_shows_the_readable_records_and_reports_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record of this very process stands in for a running container (the real-systemd
    tests start real ones); a record of a newer sdcontainer beside it is reported, not shown."""
    if os.geteuid() != 0:
        pytest.skip("list needs root")
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path))
    record = state.ContainerRecord(
        name="web", unit="web.service", pid=os.getpid(), rootfs="/srv/rootfs/web", image=None, image_id=None,
        command=("/bin/httpd", "-f"), hostname="web", network="none", labels=(("app", "web"),), annotations=(),
        started="2020-01-01T00:00:00Z", user=None, group=None, group_add=(), caps=0, no_new_privileges=True,
        working_dir="/", notify="no", notify_socket=None,
    )  # fmt: skip
    state.write(record)
    newer = {**state.to_dict(record), "unit": "new.service", "version": state.VERSION + 1}
    (tmp_path / "new.service").mkdir()
    (tmp_path / "new.service" / "record.json").write_text(json.dumps(newer))
    warning = (
        "sdcontainer: new.service: record written by a newer sdcontainer (record version 2, this one reads up to 1);"
        " restart the container or upgrade\n"
    )
    table = CliRunner().invoke(cli, ["list"])
    assert table.exit_code == 0 and table.stderr == warning
    name, unit, pid, up, *command = table.stdout.splitlines()[1].split()
    assert [name, unit, pid, command] == ["web", "web.service", str(os.getpid()), ["/bin/httpd", "-f"]]
    assert up.endswith("h") and len(table.stdout.splitlines()) == 2  # started long ago; new.service not shown
    listed = CliRunner().invoke(cli, ["list", "--format", "json"])
    assert listed.exit_code == 0 and listed.stderr == warning
    assert json.loads(listed.stdout) == [
        {
            "name": "web", "unit": "web.service", "pid": os.getpid(), "rootfs": "/srv/rootfs/web", "image": None,
            "image_id": None, "command": ["/bin/httpd", "-f"], "hostname": "web", "network": "none",
            "labels": {"app": "web"}, "annotations": {}, "started": "2020-01-01T00:00:00Z", "user": None,
            "group": None, "group_add": [], "caps": 0, "no_new_privileges": True, "working_dir": "/",
            "notify": "no", "notify_socket": None,
        }
    ]  # fmt: skip  # the keys the launcher's dict had, and no others
