"""The man pages (man/*.scd) against the code they describe.

The key table, the generator's --help and the CLI's options are the sources of truth; these
tests fail when a page and the code drift apart. scdoc builds every page (skipped where
scdoc is missing; CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdcontainer.keys import KEYS, QUADLET_ONLY_KEYS
from tests.helpers import CHECKOUT

MAN = CHECKOUT / "man"
CONTAINER_PAGE = MAN / "sdcontainer.container.5.scd"
GENERATOR_PAGE = MAN / "sdcontainer-generator.8.scd"
CLI_PAGE = MAN / "sdcontainer.1.scd"
VOLUME_PAGE = MAN / "sdcontainer.volume.5.scd"
NETWORK_PAGE = MAN / "sdcontainer.network.5.scd"
PAGES = [CONTAINER_PAGE, GENERATOR_PAGE, CLI_PAGE, VOLUME_PAGE, NETWORK_PAGE]

# A key's term line: `*Volume=*_SOURCE:TARGET[:OPTIONS]_` at the start of a line.
KEY_TERM = re.compile(r"^\*([A-Za-z0-9]+)=\*", re.MULTILINE)


def section(text: str, header: str) -> str:
    """The body of `header` (a `#` or `##` line) up to the next header of the same or a
    higher level."""
    level = header.split(" ", 1)[0]
    lines = text.splitlines()
    start = lines.index(header) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{len(level)}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


# --- (a) the [Container] keys --------------------------------------------------------------


def test_every_key_in_the_table_has_a_term_line_and_every_term_line_is_a_key() -> None:
    terms = KEY_TERM.findall(CONTAINER_PAGE.read_text(encoding="utf-8"))
    table = {key.name for key in KEYS}
    missing = sorted(table - set(terms))
    unknown = sorted(set(terms) - table)
    assert not missing, f"keys without a `*Key=*...` term line in {CONTAINER_PAGE.name}: {missing}"
    assert not unknown, (
        f"`*Key=*` lines in {CONTAINER_PAGE.name} that name no key in sdcontainer.keys.KEYS: {unknown} "
        "(a prose line must not start with `*Key=*`; rewrap it)"
    )
    duplicates = sorted({t for t in terms if terms.count(t) > 1})
    assert not duplicates, f"keys described twice: {duplicates}"


def test_each_key_term_line_is_followed_by_an_indented_description() -> None:
    lines = CONTAINER_PAGE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if KEY_TERM.match(line):
            following = lines[number + 1] if number + 1 < len(lines) else ""
            assert following.startswith("\t") and following.strip(), (
                f"{CONTAINER_PAGE.name}:{number + 1}: {line!r} is not followed by a tab-indented description"
            )


def test_every_volume_key_has_a_term_line_and_every_term_line_is_a_key() -> None:
    from sdcontainer.volumefile import QUADLET_ONLY, VOLUME_KEYS

    page = VOLUME_PAGE.read_text(encoding="utf-8")
    terms = KEY_TERM.findall(section(page, "# OPTIONS"))
    assert sorted(terms) == sorted(key.name for key in VOLUME_KEYS)
    assert len(terms) == len(set(terms))
    refused = section(page, "# OPTIONS").rsplit("\n\n", 1)[-1]
    assert set(re.findall(r"\*([A-Za-z]+)=\*", refused)) == set(QUADLET_ONLY)


def test_the_quadlet_keys_not_supported_yet_are_listed_exactly() -> None:
    text = section(CONTAINER_PAGE.read_text(encoding="utf-8"), "## Quadlet keys not supported yet")
    listed = set(re.findall(r"(?<![*\w])([A-Z][A-Za-z0-9]*)=(?!\*)", text))
    expected = set(QUADLET_ONLY_KEYS)
    assert listed == expected, f"missing: {sorted(expected - listed)}, extra: {sorted(listed - expected)}"


def test_every_network_key_has_a_term_line_and_every_term_line_is_a_key() -> None:
    """The same for the [Network] table (sdcontainer.networks.KEYS) and sdcontainer.network(5)."""
    from sdcontainer.networks import KEYS as NETWORK_KEYS
    from sdcontainer.networks import QUADLET_ONLY_KEYS as NETWORK_QUADLET_ONLY

    text = NETWORK_PAGE.read_text(encoding="utf-8")
    terms = KEY_TERM.findall(section(text, "# [NETWORK] SECTION"))
    assert sorted(terms) == sorted(key.name for key in NETWORK_KEYS)
    assert KEY_TERM.findall(text) == terms, "a prose line starts with `*Key=*` outside the key list; rewrap it"
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if KEY_TERM.match(line):
            assert lines[number + 1].startswith("\t"), f"{NETWORK_PAGE.name}:{number + 1}: no description"
    assert all(f"*{key}=*" in text for key in NETWORK_QUADLET_ONLY)


# --- (b) the pages build -------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_builds_with_scdoc(page: Path) -> None:
    scdoc = shutil.which("scdoc")
    if scdoc is None:
        pytest.skip("scdoc is not installed")
    result = subprocess.run(
        [scdoc],
        stdin=page.open("rb"),
        capture_output=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
    )
    assert result.returncode == 0, f"{page.name}: {result.stderr.decode(errors='replace')}"
    roff = result.stdout.decode()
    name, _, number = page.name[: -len(".scd")].rpartition(".")
    assert f'.TH "{name}" "{number}"' in roff


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_text_line_starts_with_a_roff_control_character(page: Path) -> None:
    """scdoc copies a text line starting with '.' into the roff output as it is, where it
    is a request and the line disappears from the page. ('. ' starts a numbered list.)"""
    in_literal = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip("\t").startswith("```"):
            in_literal = not in_literal
            continue
        if not in_literal and re.match(r"\t*\.(?! )", line):
            pytest.fail(f"{page.name}:{number}: line starts with '.': {line!r}; rewrap it")


# --- (c) the generator's options and environment -------------------------------------------


def test_every_generator_option_in_help_is_in_its_page() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDCONTAINER_")}
    env["PYTHONPATH"] = str(CHECKOUT)
    result = subprocess.run(
        [sys.executable, "-m", "sdcontainer.generator", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.stdout))
    assert options, f"no --options found in:\n{result.stdout}"
    page = GENERATOR_PAGE.read_text(encoding="utf-8")
    undocumented = sorted(o for o in options if f"*{o}*" not in page)
    assert not undocumented, f"options in --help but not in {GENERATOR_PAGE.name}: {undocumented}"


def test_every_environment_variable_the_generator_reads_is_in_its_page() -> None:
    source = (CHECKOUT / "sdcontainer" / "generator.py").read_text(encoding="utf-8")
    variables = set(re.findall(r"os\.environ(?:\.get\(|\[)\"(\w+)\"", source))
    assert variables
    page = section(GENERATOR_PAGE.read_text(encoding="utf-8"), "# ENVIRONMENT")
    undocumented = sorted(v for v in variables if f"*{v}*" not in page)
    assert not undocumented, f"variables not under ENVIRONMENT in {GENERATOR_PAGE.name}: {undocumented}"


# --- the sdcontainer command ---------------------------------------------------------------


def test_every_cli_command_and_option_is_in_the_page_and_nothing_else() -> None:
    click = pytest.importorskip("click")
    from sdcontainer.cli import cli

    page = CLI_PAGE.read_text(encoding="utf-8")
    commands = dict(cli.commands)
    synopsis = set(re.findall(r"^\*sdcontainer (\w[\w-]*)\*", section(page, "# SYNOPSIS"), re.MULTILINE))
    assert synopsis == set(commands), (
        f"commands in the code but not in the SYNOPSIS: {sorted(set(commands) - synopsis)}; "
        f"in the SYNOPSIS but not in the code: {sorted(synopsis - set(commands))}"
    )
    undocumented = []
    for name, command in [("", cli), *commands.items()]:
        if name and not re.search(rf"^\*{name}\*", page, re.MULTILINE):
            undocumented.append(name)
        for param in command.params:
            if isinstance(param, click.Option):
                undocumented += [
                    f"{name} {o}".strip() for o in (*param.opts, *param.secondary_opts) if f"*{o}*" not in page
                ]
    assert not undocumented, f"not in {CLI_PAGE.name}: {undocumented}"


def test_the_generator_pages_example_unit_is_what_the_generator_writes() -> None:
    """sdcontainer-generator(8) shows hello.service; it must not drift from the real output
    (tests/golden/hello.service.expected, with the launcher where make install puts it)."""
    page = (MAN / "sdcontainer-generator.8.scd").read_text()
    golden = (CHECKOUT / "tests" / "golden" / "hello.service.expected").read_text()
    installed = golden.replace(
        "/usr/libexec/sdcontainer/launcher", "/usr/local/lib/sdcontainer/venv/bin/sdcontainer-launcher"
    )
    service = installed[installed.index("[Service]\n") : installed.index("\n[Install]")]
    assert service in page


def help_commands(*args: str) -> list[str]:
    """The commands `sdcontainer [ARGS] --help` lists, as a user sees them."""
    from click.testing import CliRunner

    from sdcontainer.cli import cli

    output = CliRunner().invoke(cli, [*args, "--help"]).output
    listing = output.partition("\nCommands:\n")[2]
    return [line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split()]


def test_every_command_the_help_lists_is_described_under_a_commands_section() -> None:
    """Each verb of `sdcontainer --help` (and each of a group's, `image inspect`) has its
    term line in a section whose title ends in COMMANDS: once the image verbs sat under
    EXEC OPTIONS, where no reader looks for a command."""
    pytest.importorskip("click")
    page = CLI_PAGE.read_text(encoding="utf-8")
    titles = re.findall(r"^# (.+)$", page, re.MULTILINE)
    where: dict[str, list[str]] = {}
    for title in titles:
        # `*list* [...]`, `*image* inspect _IMAGE_`: the verb, and a group's verb with its own
        for verb, sub in re.findall(r"^\*([a-z][a-z-]*)\*(?: ([a-z]+))?", section(page, f"# {title}"), re.MULTILINE):
            where.setdefault(verb, []).append(title)
            if sub:
                where.setdefault(f"{verb} {sub}", []).append(title)
    verbs = help_commands()
    assert "check" in verbs and "image" in verbs
    wanted = [*verbs, *(f"image {sub}" for sub in help_commands("image"))]
    misplaced = {
        verb: where.get(verb) for verb in wanted if not any(t.endswith("COMMANDS") for t in where.get(verb, []))
    }
    assert misplaced == {}, f"commands of --help with no term line under a COMMANDS section: {misplaced}"
