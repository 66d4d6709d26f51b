"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from tests.rootfs import build_busybox_rootfs


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox root file system (tests/rootfs.py), built once per session; tests must only
    use it as a container's Rootfs= (read-only through the overlay), never write to it."""
    return build_busybox_rootfs(str(tmp_path_factory.mktemp("busybox-rootfs") / "root"))
