"""Throwaway network namespaces for the networking tests: nothing here touches the host's own
interfaces, routes, sysctls or nftables ruleset.

`in_netns(fn)` forks; the child unshares a network namespace (its "host": loopback, up),
runs `fn()` there and sends back its result (pickled) or its traceback; the parent (pytest)
never leaves its namespace. Inside, `Namespaces` makes more namespaces ("containers", an
"outside" host) as fds, without processes (an fd keeps a netns alive), and runs commands in
them; every process it starts is killed by PID when the child ends.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from sdcontainer import linux

T = TypeVar("T")

PYTHON = sys.executable


def in_netns(fn: Callable[[], T]) -> T:
    """Run fn() in a forked child inside a new network namespace; return its result, or fail
    the test with the child's traceback. Skips where unshare(CLONE_NEWNET) is refused."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(r)
            try:
                linux.unshare(linux.CLONE_NEWNET)
                linux.interface_up("lo")  # as on a real host: 127.0.0.1 works
            except PermissionError as e:
                payload = ("skip", f"cannot unshare a network namespace here: {e}")
            else:
                try:
                    payload = ("ok", fn())
                except BaseException:
                    payload = ("error", traceback.format_exc())
            data = pickle.dumps(payload)
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        pytest.fail(f"the netns child died without an answer (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "skip":
        pytest.skip(value)
    if kind == "error":
        pytest.fail(f"in the test's network namespace:\n{value}", pytrace=False)
    return value  # type: ignore[no-any-return]


def new_netns() -> int:
    """A fresh network namespace as an fd (the caller's stays its own)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWNET)
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        linux.setns(home, linux.CLONE_NEWNET)
    finally:
        os.close(home)
    return fd


class Namespaces:
    """Network namespaces and the processes started in them; use as a context manager."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.procs: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        for fd in self.fds:
            os.close(fd)

    def netns(self) -> int:
        fd = new_netns()
        self.fds.append(fd)
        return fd

    def _enter(self, netns: int | None) -> Callable[[], None] | None:
        if netns is None:
            return None
        return lambda: linux.setns(netns, linux.CLONE_NEWNET)

    def run(
        self,
        netns: int | None,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in `netns` (None: this "host" netns) and wait for it."""
        result = subprocess.run(
            list(argv), preexec_fn=self._enter(netns), capture_output=True, text=True, input=input, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def start(self, netns: int | None, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a long-running command (a server) in `netns`; killed on exit."""
        p = subprocess.Popen(
            list(argv), preexec_fn=self._enter(netns), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(p)
        return p

    def python(self, netns: int | None, code: str, *args: str, check: bool = True) -> str:
        return self.run(netns, [PYTHON, "-I", "-c", code, *args], check=check).stdout


# A server that answers each TCP connection with a line naming itself and the peer's address,
# and each UDP datagram likewise; it prints "ready" once bound.
SERVER = r"""
import socket, sys, threading
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = socket.socket(family, socket.SOCK_STREAM); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((host, port)); t.listen(16)
u = socket.socket(family, socket.SOCK_DGRAM); u.bind((host, port))
def udp():
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(f"{name} {peer[0]}\n".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{name} {peer[0]}\n".encode()); c.close()
"""

# Connect (TCP) or send a datagram (UDP) and print the answer; exit 1 on any failure.
CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=5)
        print(s.recv(100).decode().strip())
    else:
        s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(5)
        s.sendto(b"hi", (host, port)); print(s.recv(100).decode().strip())
except OSError as e:
    print(f"failed: {e}"); sys.exit(1)
"""


def serve(ns: Namespaces, netns: int, host: str, port: int, name: str) -> None:
    p = ns.start(netns, [PYTHON, "-I", "-c", SERVER, host, str(port), name])
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError(f"server {name} did not start: {line}{p.stderr.read() if p.stderr else ''}")


def connect(ns: Namespaces, netns: int | None, host: str, port: int, proto: str = "tcp") -> str:
    """The server's answer ('NAME PEER-ADDRESS'), or 'failed: ...'."""
    return ns.python(netns, CLIENT, host, str(port), proto, check=False).strip()


def link_outside(ns: Namespaces, *, host_address: str = "192.0.2.1/24", address: str = "192.0.2.2/24") -> int:
    """An "outside" host: a new netns joined to this one by a plain veth (`uplink` here,
    `eth0` there), addressed from TEST-NET-1; returns its fd. It has no route to the
    containers' subnets: what it receives from them must have been masqueraded."""
    from sdcontainer import netlink

    outside = ns.netns()
    with netlink.Rtnl() as nl:
        nl.add_veth("uplink", "eth0", peer_netns=outside)
        nl.add_address(nl.link("uplink").index, host_address)
    with netlink.Rtnl(outside) as nl:
        nl.set_link(netlink.LO_INDEX, up=True)
        nl.add_address(nl.link("eth0").index, address)
        nl.set_link("eth0", up=True)
    return outside
