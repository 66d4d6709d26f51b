"""The `sdcontainer` command line, through click's runner (pure logic, no containers)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sdcontainer.cli import cli
from sdcontainer.keys import KEYS

GOLDEN = Path(__file__).parent / "golden"


def test_check_reports_ok_and_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.container"
    bad.write_text("[Container]\nRootfs=/r\nExec=x\nPublishPort=80\n")
    result = CliRunner().invoke(cli, ["check", str(GOLDEN / "hello.container"), str(bad)])
    assert result.exit_code == 3
    assert f"{GOLDEN / 'hello.container'}: ok" in result.output
    assert f"{bad}:4: key PublishPort= in [Container] is a Quadlet key" in result.output


def test_unit_prints_the_generated_service_and_links() -> None:
    result = CliRunner().invoke(cli, ["unit", str(GOLDEN / "hello.container")])
    assert result.exit_code == 0, result.output
    assert "[Service]\nType=notify\n" in result.output
    assert "# enabled by: multi-user.target.wants/hello.service -> ../hello.service" in result.output


def test_keys_lists_the_table() -> None:
    result = CliRunner().invoke(cli, ["keys"])
    assert [line.split()[0] for line in result.output.splitlines()] == [k.name + "=" for k in KEYS]
