"""The README's examples, run as written in the try-shell (tools/shell: a throwaway systemd
with this checkout installed), so that they stay true (issue 14).

A fenced block preceded by ``<!-- try -->`` is run line by line, in the checkout, by bash
in that system; ``<!-- try: file PATH -->`` marks the contents of the file at PATH (which
examples/ must hold too), ``<!-- try: check -->`` a .container file that ``sdcontainer check``
must pass. A line whose comment says ``exit status N`` must end with N, any
other with 0; a line with ``-it`` runs on a terminal (``script``) and gets ``exit`` as input.
A failure names the README's line.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import CHECKOUT

README = CHECKOUT / "README.md"
MARK = re.compile(r"<!-- try(?:: (file \S+|check))? -->")


def blocks(text: str) -> list[tuple[str | None, int, list[str]]]:
    """(file path, "check" or None for commands; the line number of the block's first line; its lines)."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = MARK.fullmatch(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise AssertionError(f"README.md:{i + 1}: a try mark must come right before a fenced block")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        what = m.group(1)
        found.append((what[len("file ") :] if what and what.startswith("file ") else what, i + 3, lines[i + 2 : end]))
    return found


def expected_status(line: str) -> int:
    m = re.search(r"#.*exit status (\d+)", line)
    return int(m.group(1)) if m else 0


def script(text: str) -> str:
    """A bash script that runs every marked line and reports each one's status."""
    out = ["set +e"]
    for path, first, lines in blocks(text):
        if path == "check":  # a .container file that `sdcontainer check` must pass
            body = "\n".join(lines)
            out.append(
                f"echo '@@start {first}'; cat > /tmp/readme-{first}.container <<'README_EOF'\n{body}\nREADME_EOF\n"
                f'sdcontainer check /tmp/readme-{first}.container 2>&1; echo "@@end {first} $?"'
            )
            continue
        if path is not None:
            continue
        for n, line in enumerate(lines, first):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            want = expected_status(line)
            cmd = line
            if re.search(r"\s-it\s", line):
                cmd = f"echo exit | script -qec {shlex.quote(line)} /dev/null"
            # a server in a container may take a moment to listen: a line gets a few tries
            # the line on lines of its own: its comment must not swallow the rest
            out.append(
                f"echo '@@start {n}'; for try in 1 2 3 4 5 6 7 8 9 10; do (\n{cmd}\n) 2>&1; s=$?\n"
                f'[ $s = {want} ] && break; sleep 1; done; echo "@@end {n} $s"'
            )
    return "\n".join(out) + "\n"


def results(output: str) -> dict[int, tuple[int, str]]:
    """README line -> (exit status, what it printed)."""
    found: dict[int, tuple[int, str]] = {}
    current: int | None = None
    text: list[str] = []
    for line in output.splitlines():
        if line.startswith("@@start "):
            current, text = int(line.split()[1]), []
        elif line.startswith("@@end ") and current is not None:
            found[current] = (int(line.split()[2]), "\n".join(text))
            current = None
        else:
            text.append(line)
    return found


def test_marked_blocks_are_there_and_the_file_is_the_example() -> None:
    text = README.read_text()
    found = blocks(text)
    files = {path: lines for path, _first, lines in found if path is not None}
    assert "/etc/sdcontainer/hello.container" in files
    example = (CHECKOUT / "examples" / "hello.container").read_text()
    assert "\n".join(files["/etc/sdcontainer/hello.container"]) + "\n" == example
    commands = [line for path, _f, lines in found if path is None for line in lines]
    assert "systemctl start hello" in commands
    assert any(line.startswith("sdcontainer run ") and expected_status(line) == 3 for line in commands)


def test_a_mark_without_a_block_is_an_error_naming_the_line() -> None:
    with pytest.raises(AssertionError, match=r"README.md:2: "):
        blocks("text\n<!-- try -->\nnot a fence\n")


@pytest.mark.testbed
def test_every_marked_readme_line_works_in_the_try_shell(wheelhouse: Path) -> None:
    text = README.read_text()
    r = subprocess.run(
        [str(CHECKOUT / "tools" / "shell"), "--no-setup", "-q", "--", "bash", "-c", script(text)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = results(r.stdout)
    lines = text.splitlines()
    failures = []
    for path, first, block in blocks(text):
        if path == "check":
            status, out = got.get(first, (-1, "(not run)"))
            if status != 0:
                failures.append(f"README.md:{first}: this .container file fails `sdcontainer check`:\n{out}")
            continue
        if path is not None:
            continue
        for n, line in enumerate(block, first):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            status, out = got.get(n, (-1, "(not run)"))
            if status != expected_status(line):
                failures.append(f"README.md:{n}: `{lines[n - 1]}` exited {status}, not {expected_status(line)}:\n{out}")
    assert not failures, "\n".join(failures) + f"\nstderr:\n{r.stderr}"
    # what the examples promise, beyond their exit statuses
    by_line = {lines[n - 1].split("#")[0].strip(): got[n][1] for n in got}
    assert "hello from a container" in by_line["busybox wget -qO- http://127.0.0.1:8080/"]
    assert by_line["systemctl show -P MainPID hello"].strip().isdigit()
    assert "hello" in by_line["sdcontainer ps"]
    assert "ExecStart=" in by_line["sdcontainer unit /etc/sdcontainer/hello.container"]
    assert "hi" in by_line["sdcontainer run /srv/rootfs/busybox /bin/sh -c 'echo hi; exit 3'"]
    assert by_line["sdcontainer run busybox:1 /bin/echo hi from an image"].strip() == "hi from an image"
    checks = [first for path, first, _lines in blocks(text) if path == "check"]
    assert len(checks) == 2 and all(got[n][0] == 0 for n in checks)
