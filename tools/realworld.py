"""How the generator fares on real-world Quadlet files (tests/realworld, issue 13).

Runs sdcontainer's generator, in this process, over each project directory of
tests/realworld (one public repository's `.container` files with the `.network`, `.volume`,
`.pod`, `.image` files and drop-ins beside them; see SOURCES.md there) and reports, for each
file: accepted or refused, and the first error (FILE:LINE: message). In total: the share of
`.container` files accepted, and the keys that block them, "key -> files it blocks", with
how many files it blocks alone (supporting that key would let the file through, as far as
the generator's checks, which stop at the first broken key of a file, can tell).

It measures generation only: an accepted file has a unit, which says nothing yet about
whether the container starts (tests/test_realworld_systemd.py, in the testbed) or behaves as Quadlet
documents. For the second, it lists per file the places where Quadlet's meaning is known to
differ from ours ("notes"): a `$` in a [Container] value (Quadlet puts the value on
ExecStart=, where systemd expands `$VAR` and `${VAR}` from the service's environment and turns
`$$` into `$`; here it reaches the container unchanged), and AddCapability= for a non-root
User= (podman gives the user those capabilities; here a non-root user has none).

    tools/realworld                      # the table, the share, the blocking keys
    tools/realworld --json               # the same for machines
    tools/realworld --update-expected    # rewrite tests/realworld/EXPECTED from this run
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent
REALWORLD = CHECKOUT / "tests" / "realworld"
EXPECTED = REALWORLD / "EXPECTED"
# files of the set that are not unit files: the list of sources, the pinned outcomes
NOT_UNITS = {"SOURCES.md", "EXPECTED"}
SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")
# Quadlet writes every [Container] value onto podman's command line in ExecStart=
DOLLAR_RE = re.compile(r"\$(\$|\{?[A-Za-z_])")


@dataclass
class Outcome:
    file: str  # PROJECT/NAME.container, relative to tests/realworld
    kind: str  # ".container", ".network", ...
    accepted: bool
    errors: list[str] = field(default_factory=list)  # FILE:LINE: message, paths relative
    blockers: list[str] = field(default_factory=list)  # sorted, unique: key names or short reasons
    notes: list[str] = field(default_factory=list)  # where Quadlet's meaning differs
    details: list[str] = field(default_factory=list)  # what of the blocking values, sorted

    @property
    def expectation(self) -> str:
        return "accepted" if self.accepted else "refused:" + ",".join(self.blockers)


def _entry_at(path: Path, line: int) -> tuple[str, str, str] | None:
    """The section, key and value (continuations joined) of the entry on `line` of `path`."""
    try:
        lines = _logical_lines(path)
    except OSError:
        return None
    section = ""
    for number, text in lines:
        match = SECTION_RE.match(text)
        if match:
            section = match.group(1)
        elif number == line:
            if "=" not in text or text.lstrip().startswith(("#", ";")):
                return None
            key, value = (part.strip() for part in text.split("=", 1))
            return section, key, value
    return None


def _short_reason(message: str) -> str:
    """A lineless error as a blocker: its message up to the first explanation."""
    return re.split(r" \(|; |: ", message, maxsplit=1)[0].strip()


def blocker_of(error: object, root: Path) -> str:
    """What an error blames: `Key` for a [Container] key, `Section.Key` for another
    section's, else a short reason."""
    return _blame(error)[0]


def details_of(error: object) -> list[str]:
    """What of the value an error blames, for the second ranking: the kind of Volume=,
    Network= or Image= value, each flag of PodmanArgs=; else the key itself."""
    blamed, key, value = _blame(error)
    if key == "Volume":
        source = value.split(":", 1)[0]
        if "$" in source:
            return ["Volume=${VAR}/... (a path from the environment)"]
        if source.endswith(".volume"):
            return ["Volume=NAME.volume:..."]
        if not source.startswith(("/", ".", "%")):
            return ["Volume=NAME:... (a named volume)"]
        return ["Volume= with an option not supported"]
    if key == "Network":
        if value.endswith(".network"):
            return ["Network=NAME.network"]
        if value.split(":", 1)[0] in ("slirp4netns", "pasta"):
            return ["Network=slirp4netns|pasta"]
        return ["Network=NAME (a network made outside)"]
    if key == "Image":
        if value.endswith((".image", ".build")):
            return ["Image=NAME.image"]
        if "$" in value:
            return ["Image= with ${VAR}"]
    if key == "PodmanArgs":
        flags = sorted({word.split("=", 1)[0] for word in value.split() if word.startswith("--")})
        return [f"PodmanArgs={flag}" for flag in flags] or ["PodmanArgs="]
    return [blamed]


def _blame(error: object) -> tuple[str, str, str]:
    """(blocker, key, value) of an error; key and value empty for an error of no line."""
    path = getattr(error, "path", None)
    line = getattr(error, "line", None)
    message = getattr(error, "message", str(error))
    if path and line:
        found = _entry_at(Path(path), line)
        if found:
            section, key, value = found
            return (key if section == "Container" else f"{section}.{key}"), key, value
    return _short_reason(message), "", ""


def _relative(text: str, root: Path) -> str:
    return text.replace(str(root) + "/", "")


def meaning_notes(paths: list[Path], root: Path) -> list[str]:
    """Lines of a file and its drop-ins whose meaning under Quadlet differs from ours."""
    notes = []
    user = None
    capability_lines = []
    for path in paths:
        section = ""
        for number, text in _logical_lines(path):
            match = SECTION_RE.match(text)
            if match:
                section = match.group(1)
                continue
            if section != "Container" or "=" not in text or text.lstrip().startswith(("#", ";")):
                continue
            key, value = (part.strip() for part in text.split("=", 1))
            where = f"{_relative(str(path), root)}:{number}"
            if DOLLAR_RE.search(value):
                notes.append(
                    f"{where}: $ in {key}=: Quadlet lets systemd expand it (from [Service] environment;"
                    " $$ becomes $), here it reaches the container unchanged"
                )
            if key == "User":
                user = value
            if key == "AddCapability":
                capability_lines.append(where)
    if user not in (None, "", "0", "root") and not (user or "").startswith(("0:", "root:")):
        for where in capability_lines:
            notes.append(
                f"{where}: AddCapability= with User={user}: podman gives the user these capabilities, here a"
                " non-root user has none"
            )
    return notes


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a unit file with continuations (a trailing backslash) joined, each with
    the number of its first line; comment lines inside a continuation are skipped, as
    systemd does."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if pending is not None and text.lstrip().startswith(("#", ";")):
            continue
        start, before = pending if pending is not None else (number, "")
        if text.endswith("\\"):
            pending = (start, before + text[:-1] + " ")
            continue
        pending = None
        joined.append((start, before + text))
    if pending is not None:
        joined.append(pending)
    return joined


def measure(root: Path = REALWORLD) -> list[Outcome]:
    """Every unit file of every project directory under `root`, generated as the generator
    would with that directory as its search path."""
    from sdcontainer.errors import ConfigError
    from sdcontainer.generator import diagnose, find_sources, generate
    from sdcontainer.sources import find_dropins

    outcomes = []
    for project in sorted(p for p in root.iterdir() if p.is_dir()):
        sources, index = find_sources([str(project)])
        known = {source.name for source in sources}
        for source in sources:
            name = _relative(source.path, root)
            kind = source.kind.suffix
            notes = []
            if kind == ".container":
                paths = [Path(source.path), *(Path(p) for p in find_dropins(source, index))]
                notes = meaning_notes(paths, root)
            try:
                generate(source, known, index)
            except ConfigError as first:
                errors = diagnose(source, known, index) or [first]
                blockers = sorted({blocker_of(error, root) for error in errors})
                details = sorted({detail for error in errors for detail in details_of(error)})
                shown = [_relative(str(error), root) for error in errors]
                outcomes.append(Outcome(name, kind, False, shown, blockers, notes, details))
                continue
            outcomes.append(Outcome(name, kind, True, [], [], notes))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    containers = [o for o in outcomes if o.kind == ".container"]
    accepted = [o for o in containers if o.accepted]
    blocks: Counter[str] = Counter()
    alone: Counter[str] = Counter()
    for outcome in containers:
        blocks.update(outcome.blockers)
        if len(outcome.blockers) == 1:
            alone.update(outcome.blockers)
    ranking = [
        {"key": key, "blocks": count, "alone": alone[key]}
        for key, count in sorted(blocks.items(), key=lambda item: (-item[1], -alone[item[0]], item[0]))
    ]
    # the share if the keys of the ranking were supported one after the other, in its order
    # (an upper bound: the generator's checks of a whole file run only once every key of it
    # is good, so a file may meet another refusal then)
    supported: set[str] = set()
    cumulative = []
    for row in ranking:
        supported.add(row["key"])
        through = sum(1 for o in containers if o.accepted or set(o.blockers) <= supported)
        cumulative.append({"with": row["key"], "accepted": through})
    by_value: Counter[str] = Counter()
    for outcome in containers:
        by_value.update(outcome.details)
    others = Counter(o.kind for o in outcomes if o.kind != ".container")
    others_accepted = Counter(o.kind for o in outcomes if o.kind != ".container" and o.accepted)
    return {
        "projects": len({o.file.split("/", 1)[0] for o in outcomes}),
        "containers": len(containers),
        "accepted": len(accepted),
        "share": round(len(accepted) / len(containers), 4) if containers else 0.0,
        "with_notes": sum(1 for o in containers if o.notes),
        "accepted_with_notes": sum(1 for o in accepted if o.notes),
        "ranking": ranking,
        "cumulative": cumulative,
        "by_value": [
            {"value": v, "files": n} for v, n in sorted(by_value.items(), key=lambda item: (-item[1], item[0]))
        ],
        "other_kinds": {kind: {"files": n, "accepted": others_accepted[kind]} for kind, n in sorted(others.items())},
    }


def expected_text(outcomes: list[Outcome]) -> str:
    header = (
        "# The outcome of each file of tests/realworld under the generator, pinned by\n"
        "# tests/test_realworld.py. After a change that moves one, rerun\n"
        "#     tools/realworld --update-expected\n"
        "# and read the diff: a key newly supported drops out of the refused:KEYS lists.\n"
    )
    return header + "".join(f"{o.file} {o.expectation}\n" for o in outcomes)


def read_expected(path: Path = EXPECTED) -> dict[str, str]:
    pinned = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, outcome = line.partition(" ")
            pinned[name] = outcome.strip()
    return pinned


def table(outcomes: list[Outcome]) -> str:
    rows = []
    width = max((len(o.file) for o in outcomes), default=4)
    for o in outcomes:
        first = o.errors[0].split(": ", 1)[-1] if o.errors else ""
        where = o.errors[0].split(": ", 1)[0] if o.errors else ""
        state = "accepted" if o.accepted else "refused"
        line = f"{o.file:<{width}}  {state:<8}"
        if o.errors:
            line += f"  {where}: {first}"
        rows.append(line.rstrip())
        rows.extend(f"{'':<{width}}  note      {note}" for note in o.notes)
    return "\n".join(rows)


def report(outcomes: list[Outcome]) -> str:
    s = summary(outcomes)
    out = [table(outcomes), ""]
    out.append(
        f"{s['accepted']} of {s['containers']} .container files accepted ({float(s['share']):.1%}),"
        f" from {s['projects']} repositories; {s['with_notes']} have lines whose meaning differs from"
        f" Quadlet's ({s['accepted_with_notes']} of them accepted)"
    )
    other = s["other_kinds"]
    if other:
        out.append(
            "other unit files: " + ", ".join(f"{v['accepted']} of {v['files']} {k} accepted" for k, v in other.items())
        )
    out.append("")
    out.append("blocking keys (files refused with it; alone: files refused for it only)")
    for row in s["ranking"]:
        out.append(f"  {row['key']:<40} {row['blocks']:>3}   alone {row['alone']:>3}")
    out.append("")
    out.append("accepted if the keys above were supported, down to each (no refusal of another kind met then)")
    for row in s["cumulative"]:
        out.append(f"  + {row['with']:<38} {row['accepted']:>3} of {s['containers']}")
    out.append("")
    out.append("what of the values blocks (files)")
    for row in s["by_value"]:
        out.append(f"  {row['value']:<48} {row['files']:>3}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/realworld", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="print the outcomes and the summary as JSON")
    parser.add_argument("--update-expected", action="store_true", help=f"rewrite {EXPECTED.relative_to(CHECKOUT)}")
    parser.add_argument("--root", type=Path, default=REALWORLD, help="the directory of project directories")
    args = parser.parse_args(argv)
    outcomes = measure(args.root)
    if args.update_expected:
        (args.root / "EXPECTED").write_text(expected_text(outcomes))
    if args.json:
        print(json.dumps({"summary": summary(outcomes), "files": [asdict(o) for o in outcomes]}, indent=2))
    else:
        print(report(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
