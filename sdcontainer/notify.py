"""sd_notify(3) and sd_notify_barrier(3) in a few lines of stdlib.

The launcher tells systemd which process is the service (MAINPID=) and then exits; the
barrier makes sure systemd has read that message before the launcher's exit is noticed,
otherwise systemd could see its main process vanish and fail the unit.
"""

from __future__ import annotations

import os
import select
import socket


class NotifyError(OSError):
    pass


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # an abstract socket
    if value.startswith("/"):
        return value
    raise NotifyError(f"NOTIFY_SOCKET={value!r} is neither a path nor an abstract socket")


def notify(message: str, fds: tuple[int, ...] = (), socket_path: str | None = None) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; False when there is no socket to send to."""
    target = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = _address(target)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        ancillary = []
        if fds:
            ancillary.append(
                (socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, "little") for fd in fds))
            )
        sock.sendmsg([message.encode()], ancillary)
    return True


def barrier(timeout: float = 5.0, socket_path: str | None = None) -> bool:
    """Wait until systemd has processed every message sent before this one.

    systemd closes the pipe end it receives with BARRIER=1 only after handling the earlier
    datagrams; POLLHUP on our end says so. False if there is no socket or it timed out.
    """
    read_end, write_end = os.pipe()
    try:
        try:
            if not notify("BARRIER=1", (write_end,), socket_path):
                return False
        finally:
            os.close(write_end)
        poller = select.poll()
        poller.register(read_end, select.POLLHUP)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(read_end)
