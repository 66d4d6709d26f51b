"""Where the sdcontainer start goes: `-X importtime` aggregation and a phase breakdown of an
strace (`-f --seccomp-bpf -ttt -T`) of the launcher as systemd runs it."""

from __future__ import annotations

import re
import statistics
from typing import Any, NamedTuple

# --- python -X importtime -----------------------------------------------------------------

_IMPORT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def parse_importtime(stderr: str) -> dict[str, tuple[int, int, int]]:
    """module -> (self us, cumulative us, nesting depth) for one run."""
    out: dict[str, tuple[int, int, int]] = {}
    for line in stderr.splitlines():
        m = _IMPORT.match(line)
        if m:
            out[m.group(4)] = (int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2)
    return out


def aggregate_importtime(runs: list[dict[str, tuple[int, int, int]]], top: int = 12) -> dict[str, Any]:
    """Medians over the runs: the total, the imports of nesting depth 0 and 1 by cumulative
    time, and the modules with the largest self time."""
    names = set().union(*runs) if runs else set()
    rows: list[dict[str, Any]] = []
    for name in names:
        seen = [r[name] for r in runs if name in r]
        rows.append(
            {
                "module": name,
                "self_ms": statistics.median(s for s, _c, _d in seen) / 1000,
                "cumulative_ms": statistics.median(c for _s, c, _d in seen) / 1000,
                "depth": seen[0][2],
            }
        )
    # depth 0 and 1: with a launcher script the only top-level import is the launcher itself
    top_level = sorted((r for r in rows if r["depth"] <= 1), key=lambda r: -r["cumulative_ms"])
    totals = [sum(c for _s, c, d in r.values() if d == 0) / 1000 for r in runs]
    return {
        "runs": len(runs),
        "total_ms": statistics.median(totals) if totals else None,
        "top_level": top_level[:top],
        "by_self": sorted(rows, key=lambda r: -r["self_ms"])[:top],
    }


# --- strace -f -ttt -T ---------------------------------------------------------------------


class Event(NamedTuple):
    pid: int
    ts: float  # seconds, syscall entry
    call: str
    text: str  # the whole line after the timestamp (the resumed part appended)
    dur: float | None  # seconds in the syscall (-T), None when unknown


_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\(")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>")
_DUR = re.compile(r"<(\d+\.\d+)>$")


def parse_strace(text: str) -> list[Event]:
    events: list[Event] = []
    pending: dict[int, int] = {}  # pid -> index of its unfinished event
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        pid, ts, body = int(m.group(1)), float(m.group(2)), m.group(3)
        dur_m = _DUR.search(body)
        dur = float(dur_m.group(1)) if dur_m else None
        resumed = _RESUMED.match(body)
        if resumed and pid in pending:
            i = pending.pop(pid)
            e = events[i]
            events[i] = e._replace(text=e.text + body, dur=dur)
            continue
        call = _CALL.match(body)
        if not call:
            continue  # signals, exits
        events.append(Event(pid, ts, call.group(1), body, dur))
        if body.endswith("<unfinished ...>"):
            pending[pid] = len(events) - 1
    return events


def _first(events: list[Event], pid: int | None = None, call: str | None = None, contains: str = "") -> Event:
    for e in events:
        if (pid is None or e.pid == pid) and (call is None or e.call == call) and contains in e.text:
            return e
    raise LookupError(f"no {call}({contains!r}) of pid {pid} in the trace")


def launcher_phases(text: str) -> dict[str, float]:
    """Milliseconds per phase of one traced start, from the launcher's execve on."""
    ev = parse_strace(text)
    launcher = ev[0].pid  # strace's first tracee: the launcher
    t0 = _first(ev, launcher, "execve").ts
    connect = _first(ev, launcher, "connect", "notify")
    fork = _first(ev, launcher, "clone")
    init_unshare = _first(ev, None, "unshare", "CLONE_NEWNS")
    init = init_unshare.pid
    middle = _first(ev, None, "unshare", "CLONE_NEWPID").pid
    fork_init = _first(ev, middle, "clone")
    fork_init_end = fork_init.ts + (fork_init.dur or 0.0)
    pivot = _first(ev, init, "pivot_root")
    ready_line = _first(ev, init, "write", '"R\\n"')
    mainpid = _first(ev, launcher, "sendmsg", "MAINPID=")
    barrier = _first(ev, launcher, "poll")
    barrier_end = barrier.ts + (barrier.dur or 0.0)
    exec_payload = next(e for e in ev if e.pid == init and e.call == "execve")
    exit_launcher = _first(ev, launcher, "exit_group")
    mounts = [e for e in ev if e.pid == init and e.call in ("mount", "move_mount")]
    unshare_end = init_unshare.ts + (init_unshare.dur or 0.0)

    def ms(a: float, b: float) -> float:
        return round((b - a) * 1000, 3)

    return {
        "interpreter + imports + Plan (execve -> connect $NOTIFY_SOCKET)": ms(t0, connect.ts),
        "makedirs, pipes": ms(connect.ts, fork.ts),
        "fork intermediate -> it unshares CLONE_NEWPID and forks the init": ms(fork.ts, fork_init_end),
        "init: after fork (signal resets) until unshare": ms(fork_init_end, init_unshare.ts),
        "unshare(mnt,uts,ipc,cgroup,net)": ms(init_unshare.ts, unshare_end),
        "mounts, /etc files, masked paths -> pivot_root": ms(unshare_end, pivot.ts),
        "pivot_root -> identity, caps, seccomp, READY line": ms(pivot.ts, ready_line.ts),
        "launcher: READY seen -> state file -> sendmsg MAINPID+READY": ms(ready_line.ts, mainpid.ts),
        "BARRIER=1 round trip to systemd": ms(mainpid.ts, barrier_end),
        "TOTAL launcher execve -> ready (barrier answered)": ms(t0, barrier_end),
        "(after ready) payload execve starts": ms(barrier_end, exec_payload.ts),
        "(after ready) launcher exit_group": ms(barrier_end, exit_launcher.ts),
        "(info) mount/move_mount calls": float(len(mounts)),
    }


def median_phases(traces: list[dict[str, float]]) -> dict[str, float]:
    keys = list(traces[0]) if traces else []
    out = {}
    for k in keys:
        values = [t[k] for t in traces if k in t]
        out[k] = round(statistics.median(values), 2)
    return out
