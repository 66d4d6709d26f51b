"""sd_notify(3) and sd_notify_barrier(3) in a few lines of stdlib.

The launcher tells systemd which process is the service (MAINPID=) and then exits; the
barrier makes sure systemd has read that message before the launcher's exit is noticed,
otherwise systemd could see its main process vanish and fail the unit.

With Notify=yes the container speaks sd_notify too, but never to the manager directly: the
manager believes a root sender in the unit's cgroup, and systemd 252 takes MAINPID= from one
even for a process outside the unit, which a later `systemctl stop` would signal. So the
container gets a socket of the launcher's (Relay), bound into it, and the launcher passes on
only what a container may say (container_message): READY=1, STATUS=, RELOADING=1,
STOPPING=1, WATCHDOG=1, WATCHDOG=trigger, EXTEND_TIMEOUT_USEC=, ERRNO= (and WATCHDOG_USEC=
when the unit has a watchdog), as the launcher's own message, without the fds that came
with it. It does so until READY=1, or for the container's whole life when WatchdogSec= wants
pings; then the socket is closed and later messages are refused (ECONNREFUSED).

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


# --- the container's socket (Notify=yes) ---------------------------------------------------

# systemd 252 reads at most this much of a datagram (NOTIFY_BUFFER_MAX, PIPE_BUF) and drops
# longer ones; so does the relay
MESSAGE_MAX = 4096
SCM_MAX_FD = 253  # the most fds one datagram can carry
SOCKET_NAME = "notify.sock"
_FLAGS = frozenset(("READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", "WATCHDOG=trigger"))
_NUMBERS = ("EXTEND_TIMEOUT_USEC=", "ERRNO=")


def _number(value: str) -> bool:
    return value.isascii() and value.isdigit()


def container_message(data: bytes, watchdog: bool = False) -> str:
    """The lines of a container's datagram that may reach the manager, in their order; "" if
    none. Everything else is dropped: MAINPID= (a process of the container's choosing, maybe
    outside it, would become the unit's main process), FDSTORE=, FDNAME=, FDSTOREREMOVE=,
    BARRIER=1, NOTIFYACCESS=, MONOTONIC_USEC=, BUSERROR=, unknown keys, malformed values.
    WATCHDOG_USEC= only with a watchdog the relay stays for (`watchdog`): without one, a
    container that turned it on could not ping once the relay is gone."""
    if b"\0" in data:
        return ""  # systemd ignores such a datagram whole
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return ""  # systemd ignores a message that is not UTF-8
    numbers = (*_NUMBERS, "WATCHDOG_USEC=") if watchdog else _NUMBERS
    kept = []
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        if line in _FLAGS or (key == "STATUS" and eq) or (eq and key + eq in numbers and _number(value)):
            kept.append(line)
    return "\n".join(kept)


def _close_passed_fds(ancillary: list[tuple[int, int, bytes]]) -> None:
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            for i in range(0, len(data) - len(data) % 4, 4):
                try:  # noqa: SIM105 - contextlib is one more import on every start
                    os.close(int.from_bytes(data[i : i + 4], "little"))
                except OSError:
                    pass


class Relay:
    """The socket bound into a Notify=yes container at /run/notify/notify.sock, created by the
    launcher in `directory` (root's only: no other user of the host may speak for the
    container; the socket itself is open to every user of the container, as systemd's is)."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, 0o700, exist_ok=True)
        dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:  # noqa: SIM105
                os.unlink(SOCKET_NAME, dir_fd=dir_fd)  # a container before a restart left it
            except FileNotFoundError:
                pass
            self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, 0)
            try:
                # by the directory's fd: a unit name may be longer than a socket address can be
                self.sock.bind(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
                os.chmod(SOCKET_NAME, 0o666, dir_fd=dir_fd)
            except BaseException:
                self.sock.close()
                raise
        finally:
            os.close(dir_fd)
        self.path = f"{directory}/{SOCKET_NAME}"

    def serve(self, manager: Notifier, pidfd: int, watchdog: bool) -> None:
        """Pass the container's messages on (container_message) until one says READY=1, or,
        with a watchdog, until the container's init (`pidfd`) exits; also when it exits
        before READY=1. READY=1 goes with a barrier: the manager must have read it before
        this process is gone, or it could no longer tell whose it was."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        space = _socket.CMSG_SPACE(4 * SCM_MAX_FD)
        flags = _socket.MSG_DONTWAIT | _socket.MSG_CMSG_CLOEXEC
        while True:
            if any(fd == pidfd for fd, _ in poller.poll()):
                return  # the container's init has exited: nothing left to speak for
            try:
                data, ancillary, got, _ = self.sock.recvmsg(MESSAGE_MAX + 1, space, flags)
            except (BlockingIOError, InterruptedError):
                continue
            _close_passed_fds(ancillary)
            if got & _socket.MSG_TRUNC or len(data) > MESSAGE_MAX:
                continue
            message = container_message(data, watchdog)
            if not message:
                continue
            try:
                manager.send(message)
            except OSError:
                continue  # the manager refused this one (its queue is full...): the next may pass
            if not watchdog and "READY=1" in message.split("\n"):
                # READY=1 went out: the relay ends here, whether or not the barrier answers
                try:  # noqa: SIM105 - contextlib is one more import on the start path
                    manager.barrier(5.0)
                except OSError:
                    pass
                return

    def close(self) -> None:
        self.sock.close()
