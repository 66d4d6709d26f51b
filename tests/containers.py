"""What the real-systemd tests share: writing .container units into a testbed and looking at
the processes systemd runs for them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tests.testbed import Testbed

ROOTFS = "/srv/rootfs/busybox"
UNITS = "/etc/sdcontainer"

T = TypeVar("T")


def add_container(bed: Testbed, name: str, body: str, *, reload: bool = True) -> None:
    bed.write_file(f"{UNITS}/{name}.container", body)
    if reload:
        bed.daemon_reload()


def container(exec_line: str, extra: str = "", service: str = "") -> str:
    text = f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nRootfs={ROOTFS}\nExec={exec_line}\n{extra}"
    if service:
        text += f"[Service]\n{service}\n"
    return text


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll until `predicate` returns something true, or the timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def proc_status(bed: Testbed, pid: str) -> dict[str, str]:
    text = bed.read_file(f"/proc/{pid}/status")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def unit_processes(bed: Testbed, unit: str) -> list[str]:
    """Every process in the unit's cgroup and below it: in the name=systemd hierarchy of a
    hybrid testbed, in the only one of a unified testbed."""
    cgroup = bed.show(unit, "ControlGroup")
    if not cgroup:
        return []  # no cgroup: the unit has no processes
    script = (
        "top=/sys/fs/cgroup; [ -d $top/systemd ] && top=$top/systemd; "
        f'find "$top{cgroup}" -name cgroup.procs -exec cat {{}} + 2>/dev/null'
    )
    out = bed.run(["sh", "-c", script], check=False).stdout
    return sorted(set(out.split()), key=int)


def run_to_end(bed: Testbed, unit: str, timeout: float = 15.0) -> None:
    """Start a unit whose container ends by itself, and wait until it has (a failed start is
    fine: the tests look at how it ended)."""
    bed.systemctl("start", unit, check=False)
    wait_for(lambda: bed.show(unit, "ActiveState") in ("failed", "inactive"), timeout=timeout)
