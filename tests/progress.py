"""A pytest plugin for tools/test: one line per test module as it ends, instead of minutes
of dots (issue 14). With -q it replaces the per-test letters:

    [ 12/68] tests/test_images.py: 23 passed (12.3 s)
    [ 13/68] tests/test_integration.py: 30 passed, 1 skipped (41.0 s)

Loaded with `-p tests.progress -o console_output_style=classic` (no "[100%]"); failures are still reported in full at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator

import pytest

_modules: list[str] = []
_counts: dict[str, Counter[str]] = {}
_started: dict[str, float] = {}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_finish(session: pytest.Session) -> None:
    _modules[:] = list(dict.fromkeys(_module(item.nodeid) for item in session.items))


@pytest.hookimpl(wrapper=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Generator[None, object, object]:
    result = yield
    if config.get_verbosity() < 0 and isinstance(result, tuple) and len(result) == 3:
        return result[0], "", result[2]  # the category counts, the word is the summary's; no letter
    return result


def pytest_runtest_logstart(nodeid: str) -> None:
    _started.setdefault(_module(nodeid), time.monotonic())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    counts = _counts.setdefault(_module(report.nodeid), Counter())
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        counts["error" if report.when == "setup" and report.failed else outcome] += 1
    elif report.when == "teardown" and report.failed:
        counts["error"] += 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    result = yield
    module = _module(item.nodeid)
    if nextitem is None or _module(nextitem.nodeid) != module:
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and item.config.get_verbosity() < 0:
            counts = _counts.get(module, Counter())
            order = ("failed", "error", "passed", "skipped", "xfailed")
            summary = ", ".join(f"{counts[k]} {k}" for k in order if counts[k]) or "nothing run"
            seconds = time.monotonic() - _started.get(module, time.monotonic())
            width = len(str(len(_modules)))
            at = _modules.index(module) + 1 if module in _modules else 0
            reporter.ensure_newline()
            reporter.write_line(f"[{at:>{width}}/{len(_modules)}] {module}: {summary} ({seconds:.1f} s)")
    return result
