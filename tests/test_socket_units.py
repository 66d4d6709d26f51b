"""The [Socket] section and SocketProxy=: what the generator writes and what it refuses. The
units themselves run in tests/test_sockets.py, against the real systemd."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdcontainer.sockets import SOCKET_KEYS
from tests.helpers import CHECKOUT
from tests.test_generator import generate_into, stand_ins, write

BASE = "[Container]\nRootfs=/srv/rootfs\nExec=/bin/true\n"


def generate_one(tmp_path: Path, name: str, text: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    units = tmp_path / "units"
    write(units / name, text)
    return generate_into(tmp_path, [units])


def test_the_socket_keys_are_systemds() -> None:
    """The table of [Socket] settings is the one of the systemd that runs the units."""
    try:
        dump = subprocess.run(
            ["/lib/systemd/systemd", "--dump-configuration-items"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"no systemd to ask: {error}")
    section, known = "", set()
    for line in dump.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Socket" and "=" in line:
            known.add(line.split("=", 1)[0])
    assert known == set(SOCKET_KEYS), (sorted(known - SOCKET_KEYS), sorted(SOCKET_KEYS - known))


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "web.container",
            BASE + "[Socket]\nListenStream=80\nService=other.service\n",
            "web.container:6: Service= in [Socket] is not allowed here: the socket activates the container's "
            "own service; for another service, write a separate .socket",
        ),
        (
            "web.container",
            BASE + "[Socket]\nListenStream=80\nListenPort=81\n",
            "web.container:6: unknown key ListenPort= in [Socket] (see systemd.socket(5))",
        ),
        (
            "web.container",
            BASE + "[Socket]\nListenStream=80\nAccept=yes\n",
            "web.container:6: Accept=yes starts one service per connection: the file must be a template, "
            "web@.container, not web.container",
        ),
        (
            "web@blue.container",
            BASE + "[Socket]\nListenStream=80\nAccept=true\n",
            "web@blue.container:6: Accept=yes starts one service per connection: the file must be a template, "
            "web@.container, not web@blue.container",
        ),
        (
            "web.container",
            BASE + "[Socket]\nListenStream=80\nAccept=maybe\n",
            "web.container:6: invalid Accept=: ",
        ),
        (
            "web@.container",
            BASE + "[Socket]\nListenStream=80\nListenDatagram=81\nAccept=yes\n",
            "web@.container:6: ListenDatagram= cannot be used with Accept=yes: only connections",
        ),
        ("web.container", BASE + "[Socket]\nBacklog=5\n", "web.container:4: [Socket] has no Listen...= setting"),
        (
            "web.container",
            BASE + "SocketProxy=80\n",
            "web.container:4: SocketProxy= needs a [Socket] section: the socket the proxy serves",
        ),
        (
            "web@.container",
            BASE + "SocketProxy=80\n[Socket]\nListenStream=80\nAccept=yes\n",
            "web@.container:7: Accept=yes cannot be combined with SocketProxy=",
        ),
        (
            "web.container",
            BASE + "SocketProxy=http\n",
            "web.container:4: invalid SocketProxy=: 'http' is not a TCP port",
        ),
        ("web.container", BASE + "SocketProxy=70000\n", "web.container:4: invalid SocketProxy=: '70000'"),
        (
            "web.container",
            BASE + "SocketProxyExitIdleTime=5 parsecs\n",
            "web.container:4: invalid SocketProxyExitIdleTime=: '5 parsecs' is not a time span",
        ),
        (
            "web.container",
            BASE + "SocketProxyExitIdleTime=5s\n[Socket]\nListenStream=80\n",
            "web.container:4: SocketProxyExitIdleTime= needs SocketProxy=",
        ),
        ("web.container", BASE + "ReloadSignal=SIGNOPE\n", "web.container:4: invalid ReloadSignal=: 'SIGNOPE'"),
        (
            "web.container",
            BASE + "[Socket]\nListenStream=80\n[Install]\nAlias=www.service\n",
            "web.container:7: Alias=www.service: must be a relative name ending in .socket",
        ),
    ],
)
def test_bad_socket_settings_name_file_line_and_key(tmp_path: Path, name: str, text: str, error: str) -> None:
    out, result = generate_one(tmp_path, name, text)
    assert result.returncode == 1
    assert f"{tmp_path}/units/{error}" in result.stderr, result.stderr
    # nothing of a failed file is left behind but the service that says why it was refused
    assert [p.name for p in out.iterdir()] == [name.replace(".container", ".service")]
    assert stand_ins(out) == [name.replace(".container", ".service")]


def test_a_template_socket_without_accept(tmp_path: Path) -> None:
    """web@.container with Accept=no: a socket template web@.socket, each instance activating
    the service instance of its name; enabled through DefaultInstance=."""
    out, result = generate_one(
        tmp_path, "web@.container", BASE + "[Socket]\nListenStream=/run/web-%i.sock\n[Install]\n"
        "WantedBy=sockets.target\nDefaultInstance=blue\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.rglob("*")) == [
        "sockets.target.wants", "web@.service", "web@.socket", "web@blue.socket"
    ]  # fmt: skip
    assert "Requires=web@%i.socket\nAfter=web@%i.socket\n" in (out / "web@.service").read_text()
    assert "[Install]" not in (out / "web@.service").read_text()


def test_socket_keys_from_a_drop_in(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "web.container", BASE)
    write(units / "web.container.d" / "socket.conf", "[Socket]\nListenStream=8080\nFileDescriptorName=http\n")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 0, result.stderr
    assert "[Socket]\nListenStream=8080\nFileDescriptorName=http\n" in (out / "web.socket").read_text()


def test_reload_signal_becomes_exec_reload(tmp_path: Path) -> None:
    out, result = generate_one(tmp_path, "web.container", BASE + "ReloadSignal=usr1\n")
    assert result.returncode == 0, result.stderr
    assert "\nExecReload=/bin/kill -s SIGUSR1 $MAINPID\n" in (out / "web.service").read_text()


def test_wait_port_returns_once_something_listens(tmp_path: Path) -> None:
    """The proxy's ExecStartPre=: found in /proc/net/tcp of its own network namespace."""
    import socket
    import sys

    from sdcontainer import sockets

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        assert sockets.main(["wait-port", f"{port}", "--timeout", "0.2"]) == 1  # bound, not listening
        listener.listen()
        assert sockets.main(["wait-port", f"127.0.0.1:{port}", "--timeout", "5"]) == 0
        # the same through the launcher's command line
        result = subprocess.run(
            [sys.executable, "-I", "-m", "sdcontainer.launcher", "wait-port", f"{port}"],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (0, "")
        # and with a program: exec'd once the port listens (the proxy's ExecStart=)
        result = subprocess.run(
            [sys.executable, "-I", "-m", "sdcontainer.launcher", "wait-port", f"{port}", "--", "/bin/sh", "-c",
             "echo ran as $$"],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.startswith("ran as "), result
        assert sockets.main(["wait-port", f"{port}", "--", "/nonexistent"]) == 127
    finally:
        listener.close()
    assert sockets.main(["wait-port", "http"]) == 2
