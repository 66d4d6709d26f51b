"""sdcontainer.notify's relay for Notify=yes, on sockets of the test's own: which lines of a
container's datagram reach the manager, and that nothing the container passes stays open."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdcontainer import linux
from sdcontainer.notify import Notifier, Relay, container_message


@pytest.mark.parametrize(
    ("datagram", "watchdog", "passed"),
    [
        (b"READY=1", False, "READY=1"),
        (b"MAINPID=1234\nREADY=1", False, "READY=1"),
        (b"READY=1\nMAINPID=1234", False, "READY=1"),
        (b"MAINPID=1234", False, ""),
        (b"STATUS=serving 3 clients\nREADY=1", False, "STATUS=serving 3 clients\nREADY=1"),
        (b"STATUS=", False, "STATUS="),
        (
            b"RELOADING=1\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger",
            False,
            "RELOADING=1\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger",
        ),
        (b"EXTEND_TIMEOUT_USEC=5000000\nERRNO=2", False, "EXTEND_TIMEOUT_USEC=5000000\nERRNO=2"),
        ("EXTEND_TIMEOUT_USEC=-1\nERRNO=two\nERRNO=²".encode(), False, ""),
        (b"FDSTORE=1\nFDNAME=x\nFDSTOREREMOVE=1\nBARRIER=1\nNOTIFYACCESS=all", False, ""),
        (b"MONOTONIC_USEC=1\nBUSERROR=x\nREADY=2\nREADY=1 \nready=1\nX_OWN=1", False, ""),
        (b"WATCHDOG_USEC=1000000", False, ""),
        (b"WATCHDOG_USEC=1000000", True, "WATCHDOG_USEC=1000000"),
        (b"READY=1\0MAINPID=1", False, ""),  # systemd drops a datagram with a NUL whole
        (b"STATUS=\xff\nREADY=1", False, ""),  # and one that is not UTF-8
    ],
)
def test_what_a_container_may_say(datagram: bytes, watchdog: bool, passed: str) -> None:
    assert container_message(datagram, watchdog) == passed


class Manager:
    """The manager's end: records datagrams, closes the fds they carry (so BARRIER=1 is answered)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path

    def receive(self) -> str:
        data, ancillary, _, _ = self.sock.recvmsg(8192, socket.CMSG_SPACE(4 * 16))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for i in range(0, len(payload) - len(payload) % 4, 4):
                    os.close(int.from_bytes(payload[i : i + 4], "little"))
        return data.decode()


def send_from_container(path: str, message: bytes, fds: tuple[int, ...] = ()) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.connect(path)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, "little") for fd in fds))]
        client.sendmsg([message], ancillary if fds else [])


@pytest.fixture()
def init() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A process standing for the container's init, and a pidfd for it."""
    process = subprocess.Popen(["sleep", "1000"])
    pidfd = linux.pidfd_open(process.pid)
    yield process, pidfd
    os.close(pidfd)
    process.kill()
    process.wait()


def test_relay_passes_the_allowed_lines_until_ready(tmp_path: Path, init: tuple[subprocess.Popen[bytes], int]) -> None:
    manager = Manager(str(tmp_path / "manager"))
    relay = Relay(str(tmp_path / "unit" / "notify"))
    assert os.stat(tmp_path / "unit" / "notify").st_mode & 0o777 == 0o700
    assert os.stat(relay.path).st_mode & 0o777 == 0o666
    notifier = Notifier(manager.path)
    serving = threading.Thread(target=relay.serve, args=(notifier, init[1], False))
    serving.start()
    read_end, write_end = os.pipe()
    send_from_container(relay.path, b"MAINPID=1\nFDSTORE=1\nSTATUS=starting", (write_end,))
    os.close(write_end)
    assert manager.receive() == "STATUS=starting"
    # the relay closed the fd the container passed: the pipe's last writer is gone
    assert select.select([read_end], [], [], 30)[0] == [read_end]
    assert os.read(read_end, 1) == b""
    os.close(read_end)
    send_from_container(relay.path, b"MAINPID=1")  # dropped whole: nothing to send
    send_from_container(relay.path, b"READY=1\nMAINPID=1")
    assert manager.receive() == "READY=1"
    assert manager.receive() == "BARRIER=1"  # READY=1 is read before the relay goes
    serving.join(30)
    assert not serving.is_alive()
    relay.close()
    with pytest.raises(ConnectionRefusedError):  # after READY=1 no one reads the socket
        send_from_container(relay.path, b"STATUS=late")
    notifier.close()


def test_relay_with_a_watchdog_stays_until_the_init_exits(
    tmp_path: Path, init: tuple[subprocess.Popen[bytes], int]
) -> None:
    manager = Manager(str(tmp_path / "manager"))
    relay = Relay(str(tmp_path / "notify"))
    notifier = Notifier(manager.path)
    serving = threading.Thread(target=relay.serve, args=(notifier, init[1], True))
    serving.start()
    send_from_container(relay.path, b"READY=1")
    assert manager.receive() == "READY=1"
    send_from_container(relay.path, b"WATCHDOG=1\nWATCHDOG_USEC=2000000")
    assert manager.receive() == "WATCHDOG=1\nWATCHDOG_USEC=2000000"
    assert serving.is_alive()
    init[0].kill()
    serving.join(30)
    assert not serving.is_alive()
    relay.close()
    notifier.close()


def test_a_relay_replaces_the_socket_a_previous_container_left(tmp_path: Path) -> None:
    first = Relay(str(tmp_path / "notify"))
    first.close()
    second = Relay(str(tmp_path / "notify"))  # RuntimeDirectoryPreserve=restart keeps the file
    assert second.path == first.path
    second.close()
