"""sd_notify(3) and sd_notify_barrier(3) in a few lines of stdlib.

The launcher tells systemd which process is the service (MAINPID=) and then exits; the
barrier makes sure systemd has read that message before the launcher's exit is noticed,
otherwise systemd could see its main process vanish and fail the unit.

Built on `_socket`, the C module behind `socket`: `socket.py` builds its enums and imports
selectors at import time, about 2.5 ms on every container start for nothing used here.
"""

from __future__ import annotations

import _socket
import os
import select


class NotifyError(OSError):
    pass


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # an abstract socket
    if value.startswith("/"):
        return value
    raise NotifyError(f"NOTIFY_SOCKET={value!r} is neither a path nor an abstract socket")


class Notifier:
    """A datagram socket connected to the manager. Connecting once, early, lets a process
    that later leaves the host's mount or network namespace still reach it."""

    def __init__(self, socket_path: str) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, 0)
        try:
            self.sock.connect(_address(socket_path))
        except BaseException:
            self.sock.close()
            raise

    def send(self, message: str, fds: tuple[int, ...] = ()) -> None:
        ancillary = []
        if fds:
            data = b"".join(fd.to_bytes(4, "little") for fd in fds)
            ancillary.append((_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data))
        self.sock.sendmsg([message.encode()], ancillary)

    def barrier(self, timeout: float = 5.0) -> bool:
        """Wait until the manager has processed every message sent before this one.

        systemd closes the pipe end it receives with BARRIER=1 only after handling the
        earlier datagrams; POLLHUP on our end says so. False if it timed out.
        """
        read_end, write_end = os.pipe()
        try:
            try:
                self.send("BARRIER=1", (write_end,))
            finally:
                os.close(write_end)
            poller = select.poll()
            poller.register(read_end, select.POLLHUP)
            return bool(poller.poll(int(timeout * 1000)))
        finally:
            os.close(read_end)

    def close(self) -> None:
        self.sock.close()


def notify(message: str, fds: tuple[int, ...] = (), socket_path: str | None = None) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; False when there is no socket to send to."""
    target = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    notifier = Notifier(target)
    try:
        notifier.send(message, fds)
    finally:
        notifier.close()
    return True


def barrier(timeout: float = 5.0, socket_path: str | None = None) -> bool:
    """sd_notify_barrier(): False if there is no socket or it timed out."""
    target = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    notifier = Notifier(target)
    try:
        return notifier.barrier(timeout)
    finally:
        notifier.close()
