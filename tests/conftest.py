"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.rootfs import build_busybox_rootfs
from tests.testbed import PROJECT_DIR, Testbed, TestbedUnavailable


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox root file system (tests/rootfs.py), built once per session; tests must only
    use it as a container's Rootfs= (read-only through the overlay), never write to it."""
    return build_busybox_rootfs(str(tmp_path_factory.mktemp("busybox-rootfs") / "root"))


# --- a real systemd (tests/testbed.py) ------------------------------------------------------

WHEELHOUSE = PROJECT_DIR / "build" / "wheels"


def _boot(**kwargs: object) -> Testbed:
    """Boot a testbed and wait for it; skip the test when this machine cannot (not root, no
    namespaces): found by trying, not by looking at the uid."""
    tb = Testbed(**kwargs)  # type: ignore[arg-type]
    try:
        tb.start()
    except TestbedUnavailable as e:
        pytest.skip(f"cannot boot a systemd testbed here: {e}")
    try:
        tb.wait_running(timeout=60)
    except BaseException:
        tb.close()
        raise
    return tb


@pytest.fixture(scope="module")
def testbed() -> Iterator[Testbed]:
    """systemd 252 as PID 1 of throwaway namespaces, with a network namespace of its own
    (loopback only), shared by the tests of one module (it boots in well under a second)."""
    tb = _boot(network=True)
    yield tb
    tb.close()


@pytest.fixture(scope="module")
def unified_testbed() -> Iterator[Testbed]:
    """Like ``testbed``, but its /sys/fs/cgroup is one cgroup2 mount (``cgroup="unified"``), so
    its systemd runs in unified mode, as on a pure cgroup v2 host, even on a hybrid one."""
    tb = _boot(network=True, cgroup="unified")
    yield tb
    tb.close()


@pytest.fixture()
def make_testbed() -> Iterator[Callable[..., Testbed]]:
    """A factory for testbeds of a test's own (``make_testbed(network=False)``); each is closed
    when the test ends, and may be closed earlier."""
    made: list[Testbed] = []

    def make(**kwargs: object) -> Testbed:
        tb = _boot(**kwargs)
        made.append(tb)
        return tb

    yield make
    for tb in made:
        tb.close()


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """build/wheels, filled by `make wheels` on the host when empty: a testbed has no network,
    so `make install` inside it installs the dependencies from there."""
    # a no-op (make's stamp) while build/wheels is newer than pyproject.toml
    r = subprocess.run(
        ["make", "-C", str(PROJECT_DIR), "wheels", "PYTHON=/usr/bin/python3"],
        capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    if r.returncode != 0 or not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(f"`make wheels` failed (no PyPI? no libsystemd-dev?):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return WHEELHOUSE


@pytest.fixture(scope="module")
def installed_testbed(testbed: Testbed, wheelhouse: Path) -> Testbed:
    """The module's testbed after `make install` (PREFIX=/usr/local, offline from build/wheels)."""
    if testbed.install_seconds is None:
        testbed.install_project()
    return testbed


TESTBED_FIXTURES = {"testbed", "unified_testbed", "make_testbed", "installed_testbed"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that boots a systemd, through any fixture that leads to one, carries the
    `testbed` marker (`-m "not testbed"` runs the rest in about half a minute): derived from the fixtures
    it uses, so a new test file cannot forget it."""
    for item in items:
        if TESTBED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.testbed)
