"""The `sdcontainer` command line, through click's runner (pure logic, no containers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sdcontainer.cli import cli
from sdcontainer.keys import KEYS

GOLDEN = Path(__file__).parent / "golden"


def test_check_reports_ok_and_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.container"
    bad.write_text("[Container]\nRootfs=/r\nExec=x\nAddDevice=/dev/fuse\n")
    result = CliRunner().invoke(cli, ["check", str(GOLDEN / "hello.container"), str(bad)])
    assert result.exit_code == 3
    assert f"{GOLDEN / 'hello.container'}: ok" in result.output
    assert f"{bad}:4: key AddDevice= in [Container] is a Quadlet key" in result.output


def test_unit_prints_the_generated_service_and_links() -> None:
    result = CliRunner().invoke(cli, ["unit", str(GOLDEN / "hello.container")])
    assert result.exit_code == 0, result.output
    assert "[Service]\nType=notify\n" in result.output
    assert "# enabled by: multi-user.target.wants/hello.service -> ../hello.service" in result.output


def test_keys_lists_the_table() -> None:
    result = CliRunner().invoke(cli, ["keys"])
    assert [line.split()[0] for line in result.output.splitlines()] == [k.name + "=" for k in KEYS]


# --- run speaks podman ------------------------------------------------------------------------


def test_run_has_podmans_short_options_from_the_key_table() -> None:
    from sdcontainer.cli import run

    opts = {o: p for p in run.params for o in p.opts}
    for key in KEYS:
        if key.short:
            assert opts[key.short] is opts[key.option], key.name  # one option, two spellings
    assert {"-e", "-v", "-p", "-w", "-u", "-i", "-t", "-d", "--rm", "--name", "--network"} <= set(opts)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--privileged"], "no such option: --privileged (podman's; there is no privileged mode; add capabilities"),
        (["--rmm"], "no such option: --rmm; did you mean --rm?"),
        (["--working-dir", "/"], "no such option: --working-dir; did you mean --workdir?"),
        (["--enviroment", "A=1"], "no such option: --enviroment; did you mean --env (Environment= in a .container"),
        (["--uidmap", "0:1:1"], "no such option: --uidmap: UIDMap= is not supported yet"),
        (["--frobnicate"], "no such option: --frobnicate (sdcontainer run --help lists them)"),
    ],
)
def test_run_names_the_nearest_option_or_key_for_an_unknown_one(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["run", *argv, "/srv/rootfs", "/bin/true"])
    assert result.exit_code == 2
    assert f"Error: {message}" in result.output, result.output
    assert "Did you mean" not in result.output  # not click's own suggestion


def test_run_name_must_be_able_to_name_the_unit() -> None:
    result = CliRunner().invoke(cli, ["run", "--name", "a b", "/srv/rootfs", "/bin/true"])
    assert result.exit_code == 2 and "--name 'a b' cannot name a unit: give --unit too" in result.output
