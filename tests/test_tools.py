"""tools/step.sh, the one-line-per-step output of tools/setup (issue 14): a long step says
what it does and how long it took, shows the command's latest line on a terminal, and its
whole output only when it fails."""

from __future__ import annotations

import os
import pty
import re
import subprocess

from tests.helpers import CHECKOUT

STEP = str(CHECKOUT / "tools" / "step.sh")


def script(*steps: str) -> str:
    return f"set -euo pipefail; . {STEP}; " + "; ".join(steps) + "; echo after"


def test_one_line_per_step_when_not_on_a_terminal() -> None:
    result = subprocess.run(
        ["bash", "-c", script('step "two lines" sh -c "echo a; echo b"', 'step "quiet" true')],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result
    assert re.fullmatch(r"setup: two lines \(\d+s\)\nsetup: quiet \(\d+s\)\nafter\n", result.stdout), result.stdout
    assert result.stderr == ""


def test_a_failing_step_shows_its_output_and_ends_the_script_with_its_status() -> None:
    result = subprocess.run(
        ["bash", "-c", script('step "fails" sh -c "echo out; echo err >&2; exit 3"')],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == "setup: fails failed (exit status 3); its output:\nout\nerr\n"


def test_on_a_terminal_the_latest_line_of_the_command_is_shown_in_place() -> None:
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp("bash", ["bash", "-c", script('step "pip" sh -c "echo Collecting click; echo Installing"')])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = out.decode()
    assert "\r\x1b[Ksetup: pip ... Collecting click" in text and "\r\x1b[Ksetup: pip ... Installing" in text, text
    # what is left on the screen: one line for the step
    assert re.fullmatch(r"setup: pip \(\d+s\)\r\nafter\r\n", text.rpartition("\r\x1b[K")[2]), text
