"""Real-world Quadlet files (tests/realworld, issue 13): the outcome of each under the
generator is pinned in tests/realworld/EXPECTED, one line per file, `accepted` or
`refused:KEYS` (the keys its errors blame, or a short reason for an error of the whole file).

When a change moves a file (a key newly supported, a new check), this test fails with the
lines that changed. Refresh the pins with

    tools/realworld --update-expected

and commit EXPECTED with the change: its diff is the record of what the change did to real
files. `tools/realworld` prints the table, the share accepted and the blocking keys.

The files are kept verbatim, with their source in tests/realworld/SOURCES.md; the second
test checks that it names every file. Quadlet's own test inputs are a different set
(tests/test_quadlet_corpus.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.helpers import CHECKOUT
from tools import realworld

ROOT = CHECKOUT / "tests" / "realworld"


def test_every_file_has_the_outcome_pinned_in_expected(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = realworld.measure(ROOT)
    pinned = realworld.read_expected(ROOT / "EXPECTED")
    found = {o.file: o.expectation for o in outcomes}
    summary = realworld.summary(outcomes)
    with capsys.disabled():
        print(
            f"\nreal-world set: {summary['accepted']} of {summary['containers']} .container files accepted"
            f" ({float(summary['share']):.1%}); {summary['with_notes']} with lines whose meaning differs from Quadlet's"
        )
    changed = [
        f"- {name} {pinned[name]}\n+ {name} {found[name]}"
        for name in sorted(pinned.keys() & found.keys())
        if pinned[name] != found[name]
    ]
    changed += [f"- {name} {pinned[name]} (no such file now)" for name in sorted(pinned.keys() - found.keys())]
    changed += [f"+ {name} {found[name]} (not pinned)" for name in sorted(found.keys() - pinned.keys())]
    assert not changed, (
        "outcomes of tests/realworld changed; if that is what the change meant to do, run"
        " `tools/realworld --update-expected` and commit EXPECTED:\n" + "\n".join(changed)
    )
    assert len([o for o in outcomes if o.kind == ".container"]) >= 30


def test_sources_names_every_file_as_it_was_read() -> None:
    text = (ROOT / "SOURCES.md").read_text()
    listed: set[str] = set()
    directory = None
    for line in text.splitlines():
        match = re.match(r"Directory: `([^`]+)/`", line)
        if match:
            directory = match.group(1)
        match = re.match(r"\| `([^`]+)` \| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{16})` \|$", line)
        if match:
            assert directory is not None, line
            name = f"{directory}/{match.group(1)}"
            listed.add(name)
            if (ROOT / name).is_file():
                digest = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:16]
                assert digest == match.group(4), f"{name} is not as it was read: keep the files verbatim"
    present = {
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file() and path.parent != ROOT  # SOURCES.md and EXPECTED themselves
    }
    assert present - listed == set(), "files under tests/realworld that SOURCES.md does not name"
    assert listed - present == set(), "files SOURCES.md names that are not there"


def test_blockers_come_from_the_line_of_each_error(tmp_path: Path) -> None:
    """The pure parts of the tool: the key an error blames, continuation lines, the notes."""
    from sdcontainer.errors import ConfigError

    path = tmp_path / "web.container"
    path.write_text(
        "[Unit]\nBindsTo=x.container\n[Container]\nImage=${IMG}\nPodmanArgs=--a \\\n# inside\n  --b=$X\n"
        "User=10001\nAddCapability=CAP_NET_BIND_SERVICE\n"
    )
    assert realworld.blocker_of(ConfigError("bad", str(path), 4), tmp_path) == "Image"
    assert realworld.blocker_of(ConfigError("bad", str(path), 2), tmp_path) == "Unit.BindsTo"
    assert realworld.blocker_of(
        ConfigError(".pod files are not supported yet (only .container)", str(path)), tmp_path
    ) == (".pod files are not supported yet")
    assert realworld._logical_lines(path)[4] == (5, "PodmanArgs=--a    --b=$X")
    notes = realworld.meaning_notes([path], tmp_path)
    assert [note.split(": ", 1)[0] for note in notes] == ["web.container:4", "web.container:5", "web.container:9"]
    assert "User=10001" in notes[2]


def test_details_name_the_kind_of_value_and_json_carries_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdcontainer.errors import ConfigError

    path = tmp_path / "web.container"
    path.write_text(
        "[Container]\nVolume=${DATA}/x:/x\nVolume=data.volume:/d\nVolume=cache:/c\nNetwork=app.network\n"
        "PodmanArgs=--memory=1G \\\n  --env A=$B\n"
    )
    found = [realworld.details_of(ConfigError("bad", str(path), line)) for line in (2, 3, 4, 5, 6)]
    assert found == [
        ["Volume=${VAR}/... (a path from the environment)"],
        ["Volume=NAME.volume:..."],
        ["Volume=NAME:... (a named volume)"],
        ["Network=NAME.network"],
        ["PodmanArgs=--env", "PodmanArgs=--memory"],
    ]
    assert realworld.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["containers"] == len([f for f in data["files"] if f["kind"] == ".container"])
    assert {"file", "accepted", "errors", "blockers", "notes", "details"} <= set(data["files"][0])
