"""`sdcontainer pull` as a person at a terminal meets it (issue 14): one progress line
(layers, bytes, rate) on a terminal and none when piped; a registry that cannot be reached
fails at once with a message that says so, not after 14 s of retries with skopeo's "Error
parsing image name". Only the local registry (tests/registry.py), a closed port on
127.0.0.1 and a network namespace of the test's own with no network: never the internet."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests import registry as reg
from tests.helpers import CHECKOUT
from tests.test_images import BASE_ENV, base_layer, pull_env, registry, sdc, store  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the store and unshare need root")


def pull_on_a_terminal(store: Path, name: str, env: dict[str, str]) -> tuple[int, str, str]:  # noqa: F811
    """Pull with stderr on a pseudo-terminal (stdout piped, as in `id=$(sdcontainer pull ...)`)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdcontainer.cli", "pull", name],
        cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
        env={**os.environ, **BASE_ENV, "SDCONTAINER_STORAGE": str(store), **env},
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last writer has closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(), out, seen.decode(errors="replace")


def test_a_pull_on_a_terminal_shows_one_progress_line(store: Path, registry: reg.Registry) -> None:  # noqa: F811
    name = f"{registry.host}/test/web:1"
    status, out, terminal = pull_on_a_terminal(store, name, pull_env(registry))
    assert status == 0, terminal
    assert out.strip().startswith("sha256:") or len(out.strip()) == 64, out  # the id, alone, on stdout
    assert f"\r\x1b[Kpulling {name}: " in terminal and " layers, " in terminal and "/s" in terminal, terminal
    # what stays on the terminal: one line, the layers and the bytes fetched, in how long
    assert f"\r\x1b[Kpulled {name}: 2/2 layers, " in terminal and terminal.endswith(" s\r\n"), terminal
    assert "Copying blob" not in terminal and "Getting image source" not in terminal  # no skopeo bars
    # once stored, a second pull says so, in one line
    status, _out, terminal = pull_on_a_terminal(store, name, pull_env(registry))
    assert status == 0 and terminal.startswith(f"{name}: up to date"), terminal


def test_a_piped_pull_prints_the_id_and_nothing_else(store: Path, registry: reg.Registry) -> None:  # noqa: F811
    result = sdc(store, "pull", f"{registry.host}/test/web:2", env=pull_env(registry))
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1


def test_a_closed_port_fails_at_once_and_says_so(store: Path) -> None:  # noqa: F811
    port = reg.free_port()
    result = sdc(store, "pull", f"127.0.0.1:{port}/x:1", check=False)
    assert result.returncode == 4
    assert f"cannot reach the registry 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "nothing listens there" in result.stderr and "not retried (--retry N tries again)" in result.stderr
    assert "trying again" not in result.stderr and "Error parsing image name" not in result.stderr


def test_no_network_at_all_fails_at_once_and_says_so(store: Path) -> None:  # noqa: F811
    # a network namespace of this test's own: loopback down, no route anywhere, no DNS
    for name in ("registry.example.invalid/x:1", "10.0.0.1:5000/x:1"):
        result = subprocess.run(
            ["unshare", "--net", sys.executable, "-m", "sdcontainer.cli", "pull", name],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
            env={**os.environ, **BASE_ENV, "SDCONTAINER_STORAGE": str(store)},
        )  # fmt: skip
        assert result.returncode == 4, result
        assert "cannot reach the registry" in result.stderr and "not retried" in result.stderr, result.stderr
        assert "trying again" not in result.stderr and "Error parsing image name" not in result.stderr
    assert "no route there: no network?" in result.stderr  # the address: no route at all


def test_an_explicit_retry_still_waits_for_the_registry(store: Path) -> None:  # noqa: F811
    port = reg.free_port()
    result = sdc(store, "pull", "--retry", "1", "--retry-delay", "100ms", f"127.0.0.1:{port}/x:1", check=False)
    assert result.returncode == 4 and "trying again in 0.1 s (1/1)" in result.stderr, result.stderr
    assert "cannot reach the registry" in result.stderr and "(after 2 tries)" in result.stderr
