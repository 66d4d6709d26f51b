"""The part of the benchmark that runs INSIDE the testbed, next to the testbed's systemd.

    /usr/bin/python3 -I -S bench/inner.py COMMAND JSON-ARGS   ->  JSON on stdout

Timing loops run here rather than on the host so that no `nsenter` (about 2 ms, with a
noisy spread) sits inside any measured interval: each sample is `time.perf_counter_ns()`
around `subprocess.run(["systemctl", ...])`. Standard library only (it runs with -I -S).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SYSTEMCTL = "/bin/systemctl"


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SYSTEMCTL, "--no-pager", *args], capture_output=True, text=True)


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Milliseconds that `systemctl ARGS` took, and its result."""
    t0 = time.perf_counter_ns()
    r = systemctl(*args)
    return (time.perf_counter_ns() - t0) / 1e6, r


def show(unit: str, *props: str) -> dict[str, str]:
    out = systemctl("show", unit, "-p", ",".join(props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal_tail(unit: str, lines: int = 15) -> str:
    r = subprocess.run(
        ["journalctl", "-u", unit, "-o", "cat", "-n", str(lines), "--no-pager"], capture_output=True, text=True
    )
    return r.stdout.strip()


# --- A and D: start until active, stop ----------------------------------------------------


def start_stop(units: list[str], warmup: int, runs: int, settle: float) -> dict[str, Any]:
    """Round-robin over the units, the starting unit rotating each round so that no case
    always follows the same one; per unit and round: timed start, check active, timed stop."""
    samples: dict[str, dict[str, list[float]]] = {u: {"start": [], "stop": []} for u in units}
    failures: dict[str, list[str]] = {u: [] for u in units}
    for u in units:
        systemctl("reset-failed", u)
    for rnd in range(warmup + runs):
        k = rnd % len(units)
        for unit in units[k:] + units[:k]:
            t_start, r = timed("start", unit)
            state = show(unit, "ActiveState", "SubState", "MainPID")
            ok = r.returncode == 0 and state.get("ActiveState") == "active"
            if not ok:
                failures[unit].append(
                    f"round {rnd}: start rc={r.returncode} {state} {r.stderr.strip()} | {journal_tail(unit)}"
                )
            t_stop, r2 = timed("stop", unit)
            after = show(unit, "ActiveState", "Result")
            if r2.returncode != 0 or after.get("ActiveState") != "inactive":
                failures[unit].append(f"round {rnd}: stop rc={r2.returncode} {after} {r2.stderr.strip()}")
                systemctl("reset-failed", unit)
            if rnd >= warmup and ok:
                samples[unit]["start"].append(t_start)
                samples[unit]["stop"].append(t_stop)
            time.sleep(settle)
    return {"samples": samples, "failures": failures}


# --- profile: short commands, interleaved --------------------------------------------------


def spawn_times(commands: dict[str, list[str]], warmup: int, runs: int) -> dict[str, Any]:
    """Wall time of each command from posix_spawn to its exit (stdio on /dev/null), round-robin
    like start_stop: on this noisy machine, hyperfine's one-command-after-the-other lets drift
    between commands swamp differences of a few milliseconds."""
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
    names = list(commands)
    samples: dict[str, list[float]] = {n: [] for n in names}
    failures: dict[str, int] = {n: 0 for n in names}
    for rnd in range(warmup + runs):
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            argv = commands[name]
            t0 = time.perf_counter_ns()
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            dt = (time.perf_counter_ns() - t0) / 1e6
            if os.waitstatus_to_exitcode(status) != 0:
                failures[name] += 1
            elif rnd >= warmup:
                samples[name].append(dt)
    return {"samples": samples, "failures": failures}


# --- B: daemon-reload with and without the generator's 100 files ---------------------------


def _set_link(link: str, target: str, present: bool) -> None:
    if present and not os.path.lexists(link):
        os.symlink(target, link)
    elif not present and os.path.lexists(link):
        os.unlink(link)


def _loaded_units() -> int:
    out = systemctl("list-units", "--all", "--no-legend", "--plain").stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def reload(link: str, target: str, runs: int) -> dict[str, Any]:
    """Interleaved: per round, for each state (rotating): make the state, one untimed reload
    to reach it, then the timed `systemctl daemon-reload` in that steady state."""
    states = ["none", "with"]
    samples: dict[str, list[float]] = {s: [] for s in states}
    units: dict[str, int] = {}
    for rnd in range(runs + 1):  # round 0 is a warm-up
        k = rnd % 2
        for state in states[k:] + states[:k]:
            _set_link(link, target, state == "with")
            systemctl("daemon-reload")
            t, r = timed("daemon-reload")
            if r.returncode != 0:
                raise SystemExit(f"daemon-reload failed: {r.stderr}")
            if rnd > 0:
                samples[state].append(t)
            units.setdefault(state, _loaded_units())
    _set_link(link, target, False)
    systemctl("daemon-reload")
    return {"samples": samples, "loaded_units": units}


# --- C: density -------------------------------------------------------------------------------


def _cgroup_root() -> str:
    """Where the unit cgroups can be listed: the named systemd v1 hierarchy on a hybrid
    layout, /sys/fs/cgroup itself on pure v2."""
    return "/sys/fs/cgroup/systemd" if os.path.isdir("/sys/fs/cgroup/systemd") else "/sys/fs/cgroup"


def _cgroup_pids(cgroup: str) -> list[int]:
    pids: set[int] = set()
    top = _cgroup_root() + cgroup
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids.update(int(x) for x in f.read().split())
    return sorted(pids)


def _memory_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0])
    return out


def density(groups: dict[str, list[str]], payload: list[str], settle: float) -> dict[str, Any]:
    """Start every unit of every group (one at a time), let them settle, then list each
    unit's cgroup (recursively) and take RSS and PSS of every process but the payload."""
    result: dict[str, Any] = {}
    for name, units in groups.items():
        failures = []
        for u in units:
            systemctl("reset-failed", u)
            r = systemctl("start", u)
            if r.returncode != 0:
                failures.append(f"{u}: {r.stderr.strip()} | {journal_tail(u)}")
        time.sleep(settle)
        per_unit = []
        for u in units:
            props = show(u, "ControlGroup", "MainPID", "MemoryCurrent", "ActiveState")
            procs = []
            for pid in _cgroup_pids(props.get("ControlGroup", "")) if props.get("ControlGroup") else []:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                    mem = _memory_kb(pid)
                except (FileNotFoundError, ProcessLookupError):
                    continue  # exited meanwhile
                procs.append({"pid": pid, "comm": comm, "argv": argv[:4], "payload": argv == payload, **mem})
            per_unit.append({"unit": u, **props, "processes": procs})
        result[name] = {"units": per_unit, "failures": failures}
        for u in units:
            systemctl("stop", u)
            systemctl("reset-failed", u)
    return result


# --- F and G: parallel starts, and scaling to many running containers -------------------------


def _active_count(units: list[str]) -> int:
    out = systemctl("show", "-p", "ActiveState", *units).stdout
    return out.count("ActiveState=active")


def _mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _memory_current_bytes(units: list[str]) -> int:
    out = systemctl("show", "-p", "MemoryCurrent", *units).stdout
    return sum(int(v) for v in (ln.partition("=")[2] for ln in out.splitlines()) if v.isdigit())


def parallel(groups: dict[str, list[str]], sizes: list[int], rounds: int) -> dict[str, Any]:
    """One `systemctl start U1 ... Un` (systemd runs the n start jobs at once) per kind, size
    and round, kinds interleaved; each batch is checked active and then stopped. Round 0 is a
    warm-up."""
    samples: dict[str, dict[str, list[float]]] = {k: {str(n): [] for n in sizes} for k in groups}
    failures: dict[str, list[str]] = {k: [] for k in groups}
    for rnd in range(rounds + 1):
        for n in sizes:
            kinds = list(groups)
            k = rnd % len(kinds)
            for kind in kinds[k:] + kinds[:k]:
                batch = groups[kind][:n]
                systemctl("reset-failed", *batch)
                t, r = timed("start", *batch)
                active = _active_count(batch)
                if r.returncode != 0 or active != n:
                    failures[kind].append(
                        f"round {rnd}, {n} units: rc={r.returncode}, {active} active {r.stderr[-300:]}"
                    )
                elif rnd > 0:
                    samples[kind][str(n)].append(t)
                systemctl("stop", *batch)
                systemctl("reset-failed", *batch)
    return {"samples": samples, "failures": failures}


def scaling(groups: dict[str, list[str]], checkpoints: list[int], settle: float) -> dict[str, Any]:
    """Per kind: start its units one after the other up to the last checkpoint, timing every
    start; at each checkpoint, the drop in MemAvailable since before the first start (the whole
    machine's view: kernel objects, tmpfs, helpers) and the units' MemoryCurrent sum; then one
    `systemctl stop` of them all, timed."""
    result: dict[str, Any] = {}
    count = max(checkpoints)
    for kind, all_units in groups.items():
        units = all_units[:count]
        systemctl("reset-failed", *units)
        time.sleep(settle)
        base = _mem_available_kb()
        starts: list[float | None] = []
        memory: list[dict[str, float]] = []
        failures: list[str] = []
        for i, unit in enumerate(units, 1):
            t, r = timed("start", unit)
            ok = r.returncode == 0
            starts.append(t if ok else None)
            if not ok:
                failures.append(f"{unit}: rc={r.returncode} {r.stderr.strip()[-200:]} | {journal_tail(unit, 5)}")
                if len(failures) > 5:
                    break
            if i in checkpoints:
                time.sleep(settle)
                memory.append(
                    {
                        "running": _active_count(units[:i]),
                        "n": i,
                        "mem_available_drop_mb": (base - _mem_available_kb()) / 1024,
                        "memory_current_mb": _memory_current_bytes(units[:i]) / 1024 / 1024,
                    }
                )
        t_stop, r = timed("stop", *units)
        systemctl("reset-failed", *units)
        result[kind] = {"starts": starts, "memory": memory, "stop_all_ms": t_stop, "failures": failures}
    return result


COMMANDS: dict[str, Callable[..., Any]] = {
    "start_stop": start_stop,
    "reload": reload,
    "density": density,
    "spawn_times": spawn_times,
    "parallel": parallel,
    "scaling": scaling,
}


def main() -> None:
    command, args = sys.argv[1], json.loads(sys.argv[2])
    json.dump(COMMANDS[command](**args), sys.stdout)


if __name__ == "__main__":
    main()
