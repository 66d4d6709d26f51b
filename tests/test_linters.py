"""Linters are tests: ruff and mypy over the package (skipped where a tool is missing
locally; tools/setup installs both, so CI always runs them)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import CHECKOUT


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=CHECKOUT, capture_output=True, text=True)


def test_ruff() -> None:
    paths = [p for p in ("sdcontainer", "tests", "tools", "bench") if (CHECKOUT / p).is_dir()]
    result = run_tool("ruff", "check", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    paths = [p for p in ("sdcontainer", "tests", "tools", "bench") if (CHECKOUT / p).is_dir()]
    result = run_tool("ruff", "format", "--check", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
