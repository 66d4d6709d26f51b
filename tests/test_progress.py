"""tests/progress.py, tools/test's one line per module (issue 14), on a small suite of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import CHECKOUT


def test_one_line_per_module_then_the_failures_in_full(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(
        "import pytest\ndef test_1(): pass\ndef test_2(): pass\n@pytest.mark.skip(reason='x')\ndef test_3(): pass\n"
    )
    (tmp_path / "test_b.py").write_text("def test_1(): assert 1 == 2, 'the reason'\ndef test_2(): pass\n")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.progress", "-p", "no:cacheprovider", "-o", "console_output_style=classic", "-ra",
         str(tmp_path / "test_a.py"), str(tmp_path / "test_b.py")],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"\[1/2\] .*test_a\.py: 2 passed, 1 skipped \(\d+\.\d s\)", lines[0]), r.stdout
    assert re.fullmatch(r"\[2/2\] .*test_b\.py: 1 failed, 1 passed \(\d+\.\d s\)", lines[1]), r.stdout
    assert "the reason" in r.stdout and "FAILED" in r.stdout  # the failure, in full, at the end
    assert not any(re.fullmatch(r"[.sF]+", line) for line in lines)  # no dots
