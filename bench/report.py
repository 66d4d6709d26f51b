"""Statistics over the raw samples, the targets' verdicts, and the markdown report."""

from __future__ import annotations

import statistics
from typing import Any

#: The foundation issue's targets.
START_RATIO_MAX = 1.25  # sdcontainer start / plain-unit floor
PODMAN_RATIO_MIN = 4.0  # podman start / sdcontainer start ("about 4.5x" in the issue)
GEN_100_MAX_MS = 30.0
GEN_1000_MAX_MS = 150.0
PARALLEL_FLAT_MAX = 1.25  # per-start time of 100 parallel starts / that of 10 ("flat": no global lock)
#: Issue 11's hot-path targets, each against its systemd equivalent in the same run.
HOT_START_RATIO_MAX = 1.4  # sdcontainer start / plain-unit floor
RUN_RATIO_MAX = 2.5  # `sdcontainer run /bin/true` / `systemd-run --wait --pipe` of it
EXEC_RATIO_MAX = 1.0  # `sdcontainer exec NAME /bin/true` / that same systemd-run


def summarize(samples: list[float]) -> dict[str, float | int | None]:
    """median, p90 (inclusive quantiles), mean, min, max, n; None when there are no samples."""
    if not samples:
        return {"n": 0, "median": None, "p90": None, "mean": None, "min": None, "max": None}
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 else samples[0]
    return {
        "n": len(samples),
        "median": round(statistics.median(samples), 3),
        "p90": round(p90, 3),
        "mean": round(statistics.fmean(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _ms(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue: what, measured, limit, met."""
    start = results["start_stop"]["summary"]
    sd = start.get("sdcontainer", {}).get("start", {}).get("median")
    plain = start.get("plain", {}).get("start", {}).get("median")
    with_podman = results.get("start_stop_podman", {})
    pod = with_podman.get("summary", {}).get("podman", {}).get("start", {}).get("median")
    sd_a2 = with_podman.get("summary", {}).get("sdcontainer", {}).get("start", {}).get("median")
    gen = results["generator"]["summary"]
    g100 = gen.get("100", {}).get("median")
    g1000 = gen.get("1000", {}).get("median")
    dens = results["density"]["summary"].get("sdcontainer", {})
    helper_rss = dens.get("helper_rss_mb_per_container")
    rows = [
        {
            "target": f"sdcontainer start within {START_RATIO_MAX}x of the plain-unit floor",
            "measured": _x(ratio(sd, plain)) + f" ({_ms(sd)} vs {_ms(plain)} ms)",
            "met": None if sd is None or plain is None else sd <= START_RATIO_MAX * plain,
        },
        {
            "target": f"sdcontainer start within {HOT_START_RATIO_MAX}x of the plain-unit floor (issue 11)",
            "measured": _x(ratio(sd, plain)) + f" ({_ms(sd)} vs {_ms(plain)} ms)",
            "met": None if sd is None or plain is None else sd <= HOT_START_RATIO_MAX * plain,
        },
        {
            "target": f"Quadlet-style podman at least {PODMAN_RATIO_MIN}x slower to start (issue: about 4.5x)",
            "measured": _x(ratio(pod, sd_a2)) + f" ({_ms(pod)} vs {_ms(sd_a2)} ms, A2)"
            if pod is not None
            else with_podman.get("podman_error") or "n/a",
            "met": None if pod is None or sd_a2 is None else pod >= PODMAN_RATIO_MIN * sd_a2,
        },
        {
            "target": f"generator, 100 files <= {GEN_100_MAX_MS:.0f} ms",
            "measured": f"{_ms(g100)} ms",
            "met": None if g100 is None else g100 <= GEN_100_MAX_MS,
        },
        {
            "target": f"generator, 1000 files <= {GEN_1000_MAX_MS:.0f} ms",
            "measured": f"{_ms(g1000)} ms",
            "met": None if g1000 is None else g1000 <= GEN_1000_MAX_MS,
        },
        {
            "target": "zero resident helper memory per container",
            "measured": "n/a"
            if helper_rss is None
            else f"{helper_rss:.2f} MB RSS, {dens.get('helper_pss_mb_per_container', 0):.2f} MB PSS, "
            f"{dens.get('helper_processes', 0)} helper processes in {dens.get('containers', 0)} units",
            "met": None if helper_rss is None else helper_rss == 0 and dens.get("helper_processes") == 0,
        },
    ]
    rows += _run_to_end_targets(results.get("run_to_end", {}).get("summary", {}))
    img = start.get("sdimage", {}).get("start", {}).get("median")
    if img is not None or "sdimage" in start:
        rows.append(
            {
                "target": "start from a stored image no slower than from Rootfs= (within 1.05x: noise)",
                "measured": _x(ratio(img, sd)) + f" ({_ms(img)} vs {_ms(sd)} ms)",
                "met": None if img is None or sd is None else img <= 1.05 * sd,
            }
        )
    unpack = results.get("images", {}).get("unpack", {}).get("methods", {})
    if unpack:
        speed = unpack.get("sdcontainer", {}).get("speed_vs_tar")
        rows.append(
            {
                "target": "image unpacking at least 0.8x the speed of tar -xzf (same layers, tmpfs)",
                "measured": "n/a" if speed is None else f"{speed:.2f}x",
                "met": None if speed is None else speed >= 0.8,
            }
        )
    sock = results.get("sockets")
    if sock:
        cold = sock["summary"].get("sdcontainer", {}).get("cold", {}).get("median")
        plain_cold = sock["summary"].get("plain", {}).get("cold", {}).get("median")
        rows.append(
            {
                "target": "socket-activated cold first byte within 1.3x of the same server as a plain unit",
                "measured": _x(ratio(cold, plain_cold)) + f" ({_ms(cold)} vs {_ms(plain_cold)} ms)",
                "met": None if cold is None or plain_cold is None else cold <= 1.3 * plain_cold,
            }
        )
    par = results.get("parallel", {}).get("summary", {}).get("sdcontainer", {})
    p10, p100 = par.get("10", {}).get("median"), par.get("100", {}).get("median")
    if par:
        flat = None if p10 is None or p100 is None else (p100 / 100) / (p10 / 10)
        rows.append(
            {
                "target": "100 parallel starts with no global lock: time per start flat "
                f"(100 at once within {PARALLEL_FLAT_MAX}x of 10 at once, per start)",
                "measured": "n/a" if flat is None else f"{p100 / 100:.1f} vs {p10 / 10:.1f} ms per start ({flat:.2f}x)",
                "met": None if flat is None else flat <= PARALLEL_FLAT_MAX,
            }
        )
    return rows


def _run_to_end_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's targets for `sdcontainer run` and `exec` against `systemd-run --wait --pipe`
    (E); none when this run has no such row."""
    pipe = summary.get("systemd_run_pipe", {}).get("median")
    if not summary or "systemd_run_pipe" not in summary:
        return []
    rows = []
    for key, what, limit in (
        ("sdcontainer", "`sdcontainer run ROOTFS /bin/true`", RUN_RATIO_MAX),
        ("exec", "`sdcontainer exec NAME /bin/true`", EXEC_RATIO_MAX),
    ):
        value = summary.get(key, {}).get("median")
        bound = f"within {limit}x of" if limit != 1.0 else "no slower than"
        rows.append(
            {
                "target": f"{what} {bound} `systemd-run --wait --pipe` of it in the same root (issue 11)",
                "measured": _x(ratio(value, pipe)) + f" ({_ms(value)} vs {_ms(pipe)} ms, E)",
                "met": None if value is None or pipe is None else value <= limit * pipe,
            }
        )
    return rows


def decomposition(results: dict[str, Any]) -> list[str]:
    """Where sdcontainer's start goes, from differences of the medians above (each difference
    of two noisy medians is itself good to a few ms only)."""
    start = {k: v["start"]["median"] for k, v in results["start_stop"]["summary"].items()}
    comp = {k: v["median"] for k, v in results["profile"].get("components", {}).items()}

    def diff(table: dict[str, float | None], a: str, b: str) -> float | None:
        x, y = table.get(a), table.get(b)
        return None if x is None or y is None else x - y

    rows = [
        ("systemd + systemctl, nothing else (bare unit)", start.get("bare")),
        ("systemd's sandbox for the floor (plain - bare)", diff(start, "plain", "bare")),
        ("a Python interpreter that says READY=1 (Python floor - bare)", diff(start, "pynotify", "bare")),
        ("sdcontainer's launcher beyond that (sdcontainer - Python floor)", diff(start, "sdcontainer", "pynotify")),
        ("  of which, sdcontainer's unit policy around that floor (Python floor in its unit - Python floor)",
         diff(start, "pyunit", "pynotify")),
        ("  and the launcher's own work (sdcontainer - Python floor in sdcontainer's unit)",
         diff(start, "sdcontainer", "pyunit")),
        ("  of which, from the components: imports of the start path (launcher --help - interpreter)",
         diff(comp, "help", "floor")),
        ("    of those, ctypes alone (for sdcontainer.linux)", diff(comp, "ctypes", "floor")),
        ("  the container itself: forks, unshare, mounts, pivot_root, exec of /bin/true (foreground - --help)",
         diff(comp, "foreground", "help")),
        ("(for comparison) what `python -I -m sdcontainer.launcher` would add (runpy, site.py)",
         diff(comp, "help_m", "help")),
        ("(for comparison) site.py alone (-I vs -I -S)", diff(comp, "pass_I", "pass_IS")),
        ("(no longer run: RuntimeDirectory=) the cleanup verb of older units' ExecStopPost", comp.get("cleanup")),
    ]  # fmt: skip
    out = ["Where the sdcontainer start goes (differences of the medians above):", ""]
    out += ["| part | ms |", "|---|---|"]
    out += [f"| {label} | {_ms(value)} |" for label, value in rows]
    out.append("")
    return out


def start_table(ss: dict[str, Any], heading: str) -> list[str]:
    out = [heading, ""]
    out.append(
        f"{ss['config']['warmup']} warm-up + {ss['config']['runs']} measured runs per case, interleaved round-robin "
        "(the first case rotating each round); each sample is `time.perf_counter_ns()` around "
        '`subprocess.run(["systemctl", "start"|"stop", unit])`, run inside the testbed (no nsenter in '
        "the interval). Payload `/bin/sleep 1000` from the same busybox rootfs in every case."
    )
    out.append("")
    out.append("| case | start median | start p90 | x floor | x sdcontainer | stop median (D) | stop p90 (D) | n |")
    out.append("|---|---|---|---|---|---|---|---|")
    summ = ss["summary"]
    floor = summ.get("plain", {}).get("start", {}).get("median")
    sdm = summ.get("sdcontainer", {}).get("start", {}).get("median")
    for case in ss["cases"]:
        s = summ.get(case["key"])
        if case.get("error"):
            out.append(f"| {case['label']} | failed: {case['error']} | | | | | | 0 |")
            continue
        st, sp = s["start"], s["stop"]
        out.append(
            f"| {case['label']} | {_ms(st['median'])} | {_ms(st['p90'])} | {_x(ratio(st['median'], floor))} | "
            f"{_x(ratio(st['median'], sdm))} | {_ms(sp['median'])} | {_ms(sp['p90'])} | {st['n']} |"
        )
    notes = [f"- {k}: {len(v)} failed rounds, first: {v[0][:300]}" for k, v in ss["failures"].items() if v]
    if notes:
        out.append("")
        out.extend(notes)
    out.append("")
    return out


def run_to_end_table(rte: dict[str, Any]) -> list[str]:
    out = ["## E. Run to completion: `/bin/true` in a container, from the shell", ""]
    out.append(
        f"{rte['config']['warmup']} warm-up + {rte['config']['runs']} runs each, interleaved round-robin, "
        "posix_spawn to exit inside the testbed (stdio on /dev/null). Same busybox rootfs for every tool."
    )
    out.append("")
    out.append("| tool | median | p90 | x sdcontainer | n |")
    out.append("|---|---|---|---|---|")
    sd = rte["summary"].get("sdcontainer", {}).get("median")
    for key, label in rte["labels"].items():
        if key in rte["errors"]:
            out.append(f"| {label} | failed: {rte['errors'][key]} | | | 0 |")
            continue
        s = rte["summary"][key]
        out.append(f"| {label} | {_ms(s['median'])} | {_ms(s['p90'])} | {_x(ratio(s['median'], sd))} | {s['n']} |")
    failed = {k: n for k, n in rte["failures"].items() if n}
    if failed:
        out += ["", f"Failed runs: {failed}"]
    out.append("")
    return out


KIND_LABELS = {"plain": "plain sandboxed unit", "sdcontainer": "sdcontainer", "podman": "Quadlet-style podman"}


def parallel_table(par: dict[str, Any]) -> list[str]:
    sizes = par["config"]["sizes"]
    out = ["## F. Parallel starts: one `systemctl start U1 ... Un`", ""]
    out.append(
        f"systemd runs the n start jobs at once; 1 warm-up + {par['config']['rounds']} rounds per size, kinds "
        "interleaved; the whole batch is checked active, then stopped. Per start = batch time / n: flat or "
        "falling means no global lock (2 CPUs: once both are busy, the batch time grows with the work)."
    )
    out.append("")
    out.append("| kind | " + " | ".join(f"{n} units: batch / per start" for n in sizes) + " |")
    out.append("|---|" + "---|" * len(sizes))
    for kind, per_size in par["summary"].items():
        cells = []
        for n in sizes:
            med = per_size.get(str(n), {}).get("median")
            cells.append("n/a" if med is None else f"{med:.0f} / {med / n:.1f}")
        out.append(f"| {KIND_LABELS.get(kind, kind)} | " + " | ".join(cells) + " |")
    for kind, fails in par["failures"].items():
        if fails:
            out.append(f"\n- {kind}: {len(fails)} failed batches, first: {fails[0][:300]}")
    out.append("")
    return out


def scaling_table(sc: dict[str, Any]) -> list[str]:
    cps = sc["config"]["checkpoints"]
    out = ["## G. Scaling: start time and memory from 1 to " + str(max(cps)) + " running containers", ""]
    out.append(
        "Per kind, units started one after the other (each `systemctl start` timed) until "
        f"{max(cps)} run, then one `systemctl stop` of them all; kinds one after the other. Memory: the "
        "units' MemoryCurrent (their cgroups: payload, helpers such as conmon, tmpfs pages, kernel memory "
        "charged to them), per running container; and, for the record, how much the whole machine's "
        "MemAvailable fell with all of them running (other load on this shared machine moves it by tens "
        "of MB either way)."
    )
    out.append("")
    first: dict[str, Any] = next(iter(sc["summary"].values()), {})
    windows = list(first.get("windows", {}))
    out.append("| kind | " + " | ".join(f"start ms, #{w}" for w in windows) + " | stop all (ms) |")
    out.append("|---|" + "---|" * (len(windows) + 1))
    for kind, s in sc["summary"].items():
        cells = [_ms(s["windows"].get(w, {}).get("median")) for w in windows]
        out.append(f"| {KIND_LABELS.get(kind, kind)} | " + " | ".join(cells) + f" | {_ms(s['stop_all_ms'], 0)} |")
    out.append("")
    out.append(
        "| kind | "
        + " | ".join(f"MB per container, {cp} running" for cp in cps)
        + f" | MemAvailable drop with {max(cps)} running (whole machine, noisy) |"
    )
    out.append("|---|" + "---|" * (len(cps) + 1))
    for kind, s in sc["summary"].items():
        by_n = {m["n"]: m for m in s["memory"]}
        cells = []
        for cp in cps:
            m = by_n.get(cp)
            cells.append("n/a" if not m or not m["running"] else f"{m['memory_current_mb'] / m['running']:.2f}")
        last = by_n.get(max(cps))
        drop = "n/a" if not last else f"{last['mem_available_drop_mb']:.0f} MB"
        out.append(f"| {KIND_LABELS.get(kind, kind)} | " + " | ".join(cells) + f" | {drop} |")
    for kind, data in sc["raw"].items():
        if data["failures"]:
            out.append(f"\n- {kind}: {len(data['failures'])} failed starts, first: {data['failures'][0][:300]}")
    out.append("")
    return out


def socket_table(sock: dict[str, Any]) -> list[str]:
    from bench.sockets import render as render_sockets

    text = render_sockets(sock).replace("# Socket activation", "## S. Socket activation", 1)
    return [*text.splitlines(), ""]


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    v = meta["versions"]
    out.append("# sdcontainer benchmark")
    out.append("")
    out.append(
        f"{meta['date']} on {meta['machine']['model']} ({meta['machine']['nproc']} CPUs), kernel {v['kernel']}, "
        f"{v['systemd']}, {v['python']}, {v['podman']}, runc {v['runc']}, crun {v['crun']}, "
        f"conmon {v['conmon']}, {v['hyperfine']}; checkout {meta['git']}. One testbed (systemd as PID 1 of "
        f"throwaway namespaces, tests/testbed.py), booted in {_ms(meta['testbed']['boot_s'], 2)} s, "
        f"`make install` in {_ms(meta['testbed']['install_s'], 1)} s. Milliseconds; compare only within one run."
    )
    launcher = meta.get("launcher")
    if launcher:
        out.append(
            f"The generated units run the launcher as `{' '.join(launcher['argv'])}` "
            f"(interpreter `{launcher['python']} {' '.join(launcher['flags'])}`)."
        )
    out.append("")

    out.append("## Targets")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for row in targets(results):
        out.append(f"| {row['target']} | {row['measured']} | {verdict(row['met'])} |")
    out.append("")

    out.extend(start_table(results["start_stop"], "## A. `systemctl start` until active, D. `systemctl stop`"))
    if "start_stop_podman" in results:
        out.extend(
            start_table(
                results["start_stop_podman"],
                "## A2. The same against the Quadlet-style podman unit (a separate interleaved run)",
            )
        )
    out.append(
        "Stop (D): the plain unit's `sleep` dies of SIGTERM; in both container cases `sleep` is PID 1 of its "
        "pid namespace and ignores SIGTERM, so both use SIGKILL as stop signal (sdcontainer `StopSignal=SIGKILL`, "
        "podman `--stop-signal=SIGKILL`), else each stop would wait out a timeout. sdcontainer's stop runs no "
        "process of its own (systemd removes the record with the unit's `RuntimeDirectory=`); "
        "podman's includes `ExecStop=podman rm -f -i` (a real "
        "Quadlet unit also has `ExecStopPost=podman rm`, which this one leaves out)."
    )
    out.append("")
    out.append(
        "Podman runs with `--runtime runc`: crun 1.8.1 refuses this machine's hybrid cgroup layout, and the "
        "tmpfs-over-`/sys/fs/cgroup/unified` trick (`TemporaryFileSystem=` in the unit) breaks podman itself "
        "(`--cgroups=split` then fails to open `/sys/fs/cgroup/unified/system.slice/<unit>/runtime/cgroup.procs`). "
        "For direct runs, performance.md has podman+crun about 40 ms faster than podman+runc."
    )
    out.append("")

    if "run_to_end" in results:
        out.extend(run_to_end_table(results["run_to_end"]))
    if "parallel" in results:
        out.extend(parallel_table(results["parallel"]))
    if "scaling" in results:
        out.extend(scaling_table(results["scaling"]))
    if "sockets" in results:
        out.extend(socket_table(results["sockets"]))
    if "images" in results:
        from bench.images import markdown as images_markdown

        out += ["## I. Images: unpacking, and starting from a stored image (bench/images.py)", ""]
        out += [*images_markdown(results["images"]).splitlines(), ""]

    gen = results["generator"]
    out.append("## B. Generator (installed `sdcontainer-generator`, output on tmpfs)")
    out.append("")
    out.append(
        f"hyperfine -N inside the testbed, {gen['config']['warmup']} warm-up + {gen['config']['runs']} runs, "
        "`--prepare` empties the three output directories; `.container` files from a template (Rootfs, Exec, "
        "2x Environment, Volume, Network, [Unit] Description/After, [Install] WantedBy)."
    )
    out.append("")
    out.append("| command | median | p90 | mean | minus the floor |")
    out.append("|---|---|---|---|---|")
    gfloor = gen["summary"].get("floor", {}).get("median")
    for key, label in gen["labels"].items():
        s = gen["summary"].get(key, {})
        minus = None if s.get("median") is None or gfloor is None else s["median"] - gfloor
        out.append(f"| {label} | {_ms(s.get('median'))} | {_ms(s.get('p90'))} | {_ms(s.get('mean'))} | {_ms(minus)} |")
    rl = results["reload"]
    r_none, r_with = rl["summary"].get("none", {}), rl["summary"].get("with", {})
    added = (
        None if r_none.get("median") is None or r_with.get("median") is None else r_with["median"] - r_none["median"]
    )
    out.append("")
    out.append(
        f"`systemctl daemon-reload`, {rl['config']['runs']} runs each, interleaved (each timed reload follows an "
        "untimed one in the same state):"
    )
    out.append("")
    out.append("| state | loaded units | median | p90 |")
    out.append("|---|---|---|---|")
    for key, label in (("none", "no benchmark files"), ("with", f"+ {rl['config']['files']} `.container` files")):
        s = rl["summary"].get(key, {})
        out.append(f"| {label} | {rl['loaded_units'].get(key, 'n/a')} | {_ms(s.get('median'))} | {_ms(s.get('p90'))} |")
    out.append(f"| **added cost of {rl['config']['files']} files** | | **{_ms(added)}** | |")
    out.append("")

    dens = results["density"]
    out.append("## C. Density: helper memory left per running container")
    out.append("")
    out.append(
        f"{dens['config']['count']} units of each kind running `/bin/sleep 1000`; every process in each unit's "
        "cgroup (recursively) except the payload, RSS and PSS from `/proc/<pid>/smaps_rollup`."
    )
    out.append("")
    out.append(
        "| kind | units running | helper processes (names) | RSS MB / container | PSS MB / container "
        "| unit MemoryCurrent MB (info) |"
    )
    out.append("|---|---|---|---|---|---|")
    for key, label in (("sdcontainer", "sdcontainer"), ("podman", "Quadlet-style podman")):
        s = dens["summary"].get(key)
        if not s:
            continue
        if s.get("error"):
            out.append(f"| {label} | failed: {s['error']} | | | | |")
            continue
        out.append(
            f"| {label} | {s['containers']} | {s['helper_processes']} ({', '.join(s['helper_names']) or 'none'}) | "
            f"{s['helper_rss_mb_per_container']:.2f} | {s['helper_pss_mb_per_container']:.2f} | "
            f"{_ms(s.get('memory_current_mb_per_container'), 2)} |"
        )
    out.append("")

    prof = results["profile"]
    out.append("## Profile of the sdcontainer start path")
    out.append("")
    comp = prof.get("components", {})
    if comp:
        out.append(
            f"Components, inside the testbed, {prof['config']['runs']} runs each, interleaved round-robin "
            "(posix_spawn to exit; `$VENV` = /usr/local/lib/sdcontainer/venv, `$PY` = `$VENV/bin/python3`):"
        )
        out.append("")
        out.append("| command | median | p90 |")
        out.append("|---|---|---|")
        labels = prof.get("component_labels", {})
        for key, s in comp.items():
            out.append(f"| `{labels.get(key, key)}` | {_ms(s['median'])} | {_ms(s['p90'])} |")
        for key, n in prof.get("component_failures", {}).items():
            out.append(f"| `{labels.get(key, key)}`: {n} runs failed | | |")
        out.append("")
        out.extend(decomposition(results))
        out.append("")
    it = prof.get("importtime")
    if it:
        out.append(
            f"`-X importtime` of the launcher's start path, run as the unit runs it (foreground: "
            f"`{prof.get('importtime_command', '?')}`; median of {it['runs']} runs; sum of top-level imports "
            f"{_ms(it['total_ms'], 2)} ms, importtime's own overhead included):"
        )
        out.append("")
        out.append("| import (depth 0 or 1; children indented) | cumulative ms | | largest self time | self ms |")
        out.append("|---|---|---|---|---|")
        for a, b in zip(it["top_level"], it["by_self"], strict=False):
            name = ("&nbsp;&nbsp;" * a["depth"]) + a["module"]
            out.append(f"| {name} | {a['cumulative_ms']:.2f} | | {b['module']} | {b['self_ms']:.2f} |")
        out.append("")
    gp = prof.get("generator_cprofile")
    if gp:
        out.append("`python -I -m cProfile -s tottime` of the installed generator on 1000 files (output on tmpfs):")
        out.append("")
        out.append("```")
        out.append(gp)
        out.append("```")
        out.append("")
    ph = prof.get("phases")
    if ph:
        out.append(
            f"One start under systemd with the launcher wrapped in `strace -f --seccomp-bpf -ttt -T` (only the "
            f"syscalls that mark phases stop; median of {prof['config']['traces']} traced starts). ptrace adds "
            "to every fork, so absolute numbers run high; the shares are the point:"
        )
        out.append("")
        out.append("| phase | ms |")
        out.append("|---|---|")
        for k, val in ph.items():
            out.append(f"| {k} | {val:g} |")
        out.append("")
    if prof.get("errors"):
        out.extend(f"- profile error: {e}" for e in prof["errors"])
        out.append("")
    return "\n".join(out) + "\n"


README_START = "<!-- bench results: written by `python3 -m bench.run --readme`; do not edit by hand -->"
README_END = "<!-- end of bench results -->"


def readme_summary(results: dict[str, Any]) -> str:
    """The block the README shows: targets, the start table, runs to completion."""
    meta = results["meta"]
    v = meta["versions"]
    out = [README_START, ""]
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    out += [f"| {row['target']} | {row['measured']} | {verdict(row['met'])} |" for row in targets(results)]
    out.append("")
    out += start_table(results["start_stop"], "Start and stop (A, D), milliseconds:")
    if "start_stop_podman" in results:
        out += start_table(results["start_stop_podman"], "Against the Quadlet-style podman unit, a separate run (A2):")
    if "run_to_end" in results:
        out += run_to_end_table(results["run_to_end"])[2:]
    if "sockets" in results:
        table = socket_table(results["sockets"])
        out += ["Socket activation (S): " + table[2], ""]
        out += table[4 : table.index("", 4) + 1]
    out.append(
        f"The run above: {meta['date']} on {meta['machine']['model']} ({meta['machine']['nproc']} CPUs), "
        f"kernel {v['kernel']}, {v['systemd']}, {v['python']}, {v['podman']}, runc {v['runc']}, crun {v['crun']}; "
        f"checkout {meta['git']}."
    )
    out += ["", README_END]
    return "\n".join(out)


def update_readme(text: str, results: dict[str, Any]) -> str:
    """`text` with the block between the markers replaced by the latest results."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError("README.md has no bench results markers")
    return text[:start] + readme_summary(results) + text[end + len(README_END) :]


def main() -> None:
    """`python3 -m bench.report [RESULTS.json]`: render the markdown again from saved results
    (after a change to this module; nothing is measured)."""
    import json
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    results = json.loads(path.read_text())
    markdown = render(results)
    path.with_suffix(".md").write_text(markdown)
    print(markdown, end="")


if __name__ == "__main__":
    main()
