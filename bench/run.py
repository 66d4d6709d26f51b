"""The foundation issue's benchmark, in one command (as root, from the checkout):

    /usr/bin/python3 -m bench.run [--runs 30] [--warmup 3] [--quick]

Boots ONE testbed (tests/testbed.py: systemd 252 as PID 1 of throwaway namespaces), runs
`make install` in it offline from build/wheels (filled by `make wheels` on the host when
empty), copies a busybox rootfs in, imports the same rootfs as a podman image, and measures:

  A/D  `systemctl start` until active / `systemctl stop` of sdcontainer, a plain sandboxed
       unit (the floor) and two reference units, interleaved;
  A2   the same for sdcontainer, the floor and a Quadlet-style podman unit (podman apart, as
       its background work slowed whichever case came next);
  E    `/bin/true` run to completion by sdcontainer run, systemd-run, systemd-nspawn, crun,
       podman run and unshare+chroot, interleaved;
  F    1/10/50/100 units started by one `systemctl start` (parallel jobs), per kind;
  G    start time and memory as 1..200 units of each kind run at once;
  S    time to first byte of a socket-activated server, cold and warm (bench/sockets.py);
  I    unpacking a 300 MB multi-layer image: sdcontainer, tar -xzf, umoci (bench/images.py);
  B    the installed generator on 0/1/100/1000 files (hyperfine -N) and the added cost of
       100 files to `systemctl daemon-reload`;
  C    helper memory left per running container (10 sdcontainer units, 10 podman units);
  and a profile of the sdcontainer start path (component timings, -X importtime, strace).

The markdown report goes to stdout and bench/results/latest.md, every raw sample to
bench/results/latest.json; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench import cases, images, profile, report, sockets
from bench.cases import GEN_OUTPUT, GEN_SOURCES, ROOTFS, VENV_PYTHON
from tests.rootfs import build_busybox_rootfs
from tests.testbed import HOST_PYTHON, PROJECT_DIR, Testbed

RESULTS = PROJECT_DIR / "bench" / "results"
INNER = PROJECT_DIR / "bench" / "inner.py"
STRACE_OUT = "/run/bench-strace.txt"
STRACE_CALLS = (
    "execve,clone,clone3,vfork,unshare,mount,umount2,pivot_root,open_tree,move_mount,"
    "mount_setattr,sendmsg,poll,write,exit_group,seccomp,connect"
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- helpers around the testbed ----------------------------------------------------------


def inner(tb: Testbed, command: str, timeout: float = 3600, **args: Any) -> Any:
    """Run bench/inner.py COMMAND inside the testbed; its JSON answer. (The checkout shows
    at its own path inside, unless that is under /tmp or another of the testbed's fresh
    directories: then at its fallback place.)"""
    script = f"{tb.project_dir_inside}/{INNER.relative_to(PROJECT_DIR)}"
    r = tb.run([HOST_PYTHON, "-I", "-S", script, command, json.dumps(args)], check=False, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"inner {command} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return json.loads(r.stdout)


def hyperfine(
    tb: Testbed,
    commands: list[tuple[str, list[str]]],
    *,
    runs: int,
    warmup: int,
    prepare: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, list[float]]:
    """hyperfine -N inside the testbed; name -> run times in ms."""
    export = "/tmp/bench-hyperfine.json"
    argv = ["hyperfine", "-N", "--style", "basic", "-w", str(warmup), "-r", str(runs), "--export-json", export]
    if prepare:
        argv += ["--prepare", shlex.join(prepare)]
    for name, cmd in commands:
        argv += ["-n", name, shlex.join(cmd)]
    r = tb.run(argv, check=False, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"hyperfine failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    data = json.loads(tb.read_file(export))
    return {res["command"]: [t * 1000 for t in res["times"]] for res in data["results"]}


def journal_error(tb: Testbed, unit: str) -> str:
    text = tb.journal(unit, "-n", "30")
    lines = [ln for ln in text.splitlines() if "rror" in ln or "failed" in ln.lower()]
    return (lines[-1] if lines else text.splitlines()[-1] if text else "no journal").strip()[:300]


def smoke(tb: Testbed, unit: str) -> str | None:
    """Start, check active, stop; None if fine, else why not."""
    tb.systemctl("reset-failed", unit, check=False)
    r = tb.systemctl("start", unit, check=False)
    state = tb.show(unit, "ActiveState")
    error = None
    if r.returncode != 0 or state != "active":
        error = f"start: {state}: {journal_error(tb, unit)}"
    tb.systemctl("stop", unit, check=False)
    tb.systemctl("reset-failed", unit, check=False)
    return error


# --- preparation -------------------------------------------------------------------------


def make_wheels() -> None:
    r = subprocess.run(
        ["make", "-C", str(PROJECT_DIR), "wheels", f"PYTHON={HOST_PYTHON}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    if r.returncode != 0 or not any((PROJECT_DIR / "build" / "wheels").glob("*.whl")):
        raise SystemExit(f"`make wheels` failed (needs PyPI once):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")


def prepare_podman(tb: Testbed, rootfs_tar: Path) -> str | None:
    """Import the busybox rootfs as localhost/busybox into the testbed's store; None or why not."""
    if not shutil.which("podman"):
        return "podman is not installed (apt-get install podman runc)"
    r = tb.run(["findmnt", "-n", "-o", "FSTYPE", "/var/lib/containers"], check=False)
    if r.stdout.strip() != "tmpfs":
        return f"/var/lib/containers is not a tmpfs in the testbed ({r.stdout.strip() or 'not a mount'})"
    with open(rootfs_tar, "rb") as f:
        r2 = subprocess.run(
            tb.command(["podman", "import", "-", cases.PODMAN_IMAGE]),
            stdin=f, capture_output=True, text=True, env=tb.env(),
        )  # fmt: skip
    if r2.returncode != 0:
        return f"podman import failed: {r2.stderr.strip()[-300:]}"
    return None


def prepare_image(tb: Testbed, rootfs_tar: Path) -> None:
    """The busybox tree as an image in the testbed's sdcontainer store (`sdcontainer image
    import`), so that the Image= case starts from the very same files as the Rootfs= one."""
    tb.copy_in(rootfs_tar, "/tmp/bench-busybox.tar")
    r = tb.run(["sdcontainer", "image", "import", "/tmp/bench-busybox.tar", cases.IMAGE], check=False)
    if r.returncode != 0:
        log(f"image import failed: {r.stderr.strip()[-300:]}")


def prepare_crun(tb: Testbed) -> None:
    """An OCI bundle for `crun run`: crun's own default spec, root = the busybox rootfs."""
    tb.run(["sh", "-c", f"mkdir -p {cases.CRUN_BUNDLE} && cd {cases.CRUN_BUNDLE} && crun spec"], check=False)
    if not tb.exists(f"{cases.CRUN_BUNDLE}/config.json"):
        return
    config = json.loads(tb.read_file(f"{cases.CRUN_BUNDLE}/config.json"))
    config["root"] = {"path": ROOTFS, "readonly": True}
    config["process"].update(args=["/bin/true"], terminal=False)
    tb.write_file(f"{cases.CRUN_BUNDLE}/config.json", json.dumps(config, indent=1))


class Launcher(NamedTuple):
    """The launcher exactly as the generated unit runs it (ExecStart= up to `start`)."""

    argv: list[str]  # [<venv>/bin/sdcontainer-launcher] or [<venv>/bin/python3, -I, -m, sdcontainer.launcher]
    python: str  # the interpreter that ends up running
    flags: list[str]  # its options (-IS, -I)
    script: str | None  # the script, when argv[0] is one

    def command(self, *args: str, python_options: tuple[str, ...] = ()) -> list[str]:
        """argv for `launcher ARGS`, with extra interpreter options (-X importtime)."""
        if self.script:
            return [self.python, *self.flags, *python_options, self.script, *self.argv[1:], *args]
        return [self.python, *self.flags, *python_options, *self.argv[1 + len(self.flags) :], *args]


def find_launcher(tb: Testbed, unit: str) -> Launcher:
    generated = tb.read_file(f"/run/systemd/generator/{unit}")
    line = next(ln for ln in generated.splitlines() if ln.startswith("ExecStart="))
    words = shlex.split(line[len("ExecStart=") :])
    argv = words[: words.index("start")]
    if os.path.basename(argv[0]).startswith("python"):
        flags = []
        for word in argv[1:]:
            if not word.startswith("-") or word in ("-m", "-c"):
                break
            flags.append(word)
        return Launcher(argv, argv[0], flags, None)
    interpreter = tb.read_file(argv[0]).splitlines()[0][2:].split()  # the shebang
    return Launcher(argv, interpreter[0], interpreter[1:], argv[0])


def write_units(tb: Testbed, podman_ok: bool) -> Launcher:
    tb.write_file(f"{cases.CONTAINER_DIR}/bench-sd.container", cases.sdcontainer_container())
    tb.write_file(f"{cases.CONTAINER_DIR}/bench-prof.container", cases.sdcontainer_container("profile"))
    tb.write_file(f"{cases.CONTAINER_DIR}/bench-img.container", cases.image_container())
    tb.write_file(f"{cases.CONTAINER_DIR}/bench-exec.container", cases.sdcontainer_container("exec"))
    tb.daemon_reload()
    launcher = find_launcher(tb, cases.SDCONTAINER.unit)
    tb.add_unit(cases.PLAIN.unit, cases.plain_unit(), reload=False)
    tb.add_unit(cases.BARE.unit, cases.bare_unit(), reload=False)
    tb.add_unit(cases.PYNOTIFY.unit, cases.pynotify_unit(launcher.python, launcher.flags), reload=False)
    generated = tb.read_file(f"/run/systemd/generator/{cases.SDCONTAINER.unit}")
    pyunit = cases.pyunit_unit(generated, launcher.python, launcher.flags)
    tb.write_file(f"{cases.UNIT_DIR}/{cases.PYUNIT.unit}", pyunit)
    sd, pod = cases.density_units()
    for path, text in sd:
        tb.write_file(path, text)
    kinds = ["sdcontainer", "plain"]
    if podman_ok:
        tb.add_unit(cases.PODMAN.unit, cases.podman_unit(), reload=False)
        for path, text in pod:
            tb.write_file(path, text)
        kinds.append("podman")
    for kind in kinds:
        for path, text in cases.many_units(kind):
            tb.write_file(path, text)
    tb.daemon_reload()
    return launcher


def generator_sources(tmp: Path) -> Path:
    """/srv/bench-gen/<n>/bench-gen-NNNN.container for every benchmark size (on the host)."""
    top = tmp / "bench-gen"
    for n in cases.GEN_SIZES:
        d = top / str(n)
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"bench-gen-{i:04d}.container").write_text(cases.generator_container(i))
    return top


# --- phases ------------------------------------------------------------------------------


def phase_start_stop(
    tb: Testbed, start_cases: tuple[cases.Case, ...], podman_error: str | None, warmup: int, runs: int, name: str
) -> dict[str, Any]:
    errors: dict[str, str | None] = {c.key: None for c in start_cases}
    if "podman" in errors:
        errors["podman"] = podman_error
    for case in start_cases:
        if errors[case.key] is None:
            errors[case.key] = smoke(tb, case.unit)
            if errors[case.key]:
                log(f"  {case.key}: smoke test failed: {errors[case.key]}")
    live = [c for c in start_cases if errors[c.key] is None]
    log(f"{name}: {warmup}+{runs} interleaved start/stop rounds of {', '.join(c.key for c in live)}")
    raw = inner(tb, "start_stop", units=[c.unit for c in live], warmup=warmup, runs=runs, settle=0.05)
    samples = {c.key: raw["samples"][c.unit] for c in live}
    summary = {
        k: {"start": report.summarize(v["start"]), "stop": report.summarize(v["stop"])} for k, v in samples.items()
    }
    return {
        "config": {
            "warmup": warmup,
            "runs": runs,
            "timing": "perf_counter_ns around subprocess.run(systemctl) inside the testbed",
        },
        "cases": [{"key": c.key, "label": c.label, "unit": c.unit, "error": errors[c.key]} for c in start_cases],
        "podman_error": f"failed: {errors['podman']}" if errors.get("podman") else None,
        "samples": samples,
        "summary": summary,
        "failures": {c.key: raw["failures"][c.unit] for c in live},
    }


def phase_run_to_end(tb: Testbed, podman_ok: bool, warmup: int, runs: int) -> dict[str, Any]:
    commands = [c for c in cases.run_to_end_commands() if podman_ok or c[0] != "podman"]
    errors: dict[str, str] = {}
    tb.systemctl("reset-failed", cases.EXEC.unit, check=False)
    if tb.systemctl("start", cases.EXEC.unit, check=False).returncode != 0:
        errors["exec"] = f"{cases.EXEC.unit} did not start: {journal_error(tb, cases.EXEC.unit)}"
    try:
        return _run_to_end(tb, commands, errors, warmup, runs)
    finally:
        tb.systemctl("stop", cases.EXEC.unit, check=False)


def _run_to_end(
    tb: Testbed, commands: list[tuple[str, str, list[str]]], errors: dict[str, str], warmup: int, runs: int
) -> dict[str, Any]:
    for key, _label, argv in commands:
        if key in errors:
            continue
        r = tb.run(argv, check=False, timeout=120)
        if r.returncode != 0:
            errors[key] = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
            log(f"  E {key}: smoke run failed: {errors[key]}")
    live = {key: argv for key, _label, argv in commands if key not in errors}
    log(f"E: {warmup}+{runs} interleaved runs to completion of {', '.join(live)}")
    raw = inner(tb, "spawn_times", commands=live, warmup=warmup, runs=runs)
    return {
        "config": {"warmup": warmup, "runs": runs, "timing": "posix_spawn to exit, inside the testbed"},
        "labels": {key: label for key, label, _argv in commands},
        "argv": {key: argv for key, _label, argv in commands},
        "errors": errors,
        "samples": raw["samples"],
        "failures": raw["failures"],
        "summary": {k: report.summarize(v) for k, v in raw["samples"].items()},
    }


def _many_groups(podman_ok: bool) -> dict[str, list[str]]:
    kinds = ["plain", "sdcontainer"] + (["podman"] if podman_ok else [])
    return {kind: [cases.unit_of(p) for p, _t in cases.many_units(kind)] for kind in kinds}


def phase_parallel(tb: Testbed, podman_ok: bool, rounds: int) -> dict[str, Any]:
    sizes = list(cases.PARALLEL_SIZES)
    log(f"F: parallel starts of {sizes} units, 1+{rounds} rounds")
    raw = inner(tb, "parallel", groups=_many_groups(podman_ok), sizes=sizes, rounds=rounds, timeout=7200)
    summary = {kind: {n: report.summarize(v) for n, v in per_size.items()} for kind, per_size in raw["samples"].items()}
    return {"config": {"sizes": sizes, "rounds": rounds}, **raw, "summary": summary}


def phase_scaling(tb: Testbed, podman_ok: bool) -> dict[str, Any]:
    checkpoints = list(cases.SCALING_CHECKPOINTS)
    log(f"G: scaling to {max(checkpoints)} running units per kind, one kind after the other")
    raw = inner(tb, "scaling", groups=_many_groups(podman_ok), checkpoints=checkpoints, settle=1.0, timeout=7200)
    summary: dict[str, Any] = {}
    for kind, data in raw.items():
        starts = data["starts"]
        windows = {}
        lo = 0
        for cp in checkpoints:
            window = [t for t in starts[lo:cp] if t is not None]
            windows[f"{lo + 1}-{cp}"] = report.summarize(window)
            lo = cp
        summary[kind] = {"windows": windows, "memory": data["memory"], "stop_all_ms": data["stop_all_ms"]}
    return {"config": {"checkpoints": checkpoints}, "raw": raw, "summary": summary}


def phase_density(tb: Testbed, podman_ok: bool) -> dict[str, Any]:
    sd, pod = cases.density_units()
    groups = {"sdcontainer": [cases.unit_of(p) for p, _ in sd]}
    if podman_ok:
        groups["podman"] = [cases.unit_of(p) for p, _ in pod]
    log(f"C: density, {cases.DENSITY_COUNT} units per kind")
    raw = inner(tb, "density", groups=groups, payload=list(cases.PAYLOAD), settle=1.0)
    summary: dict[str, Any] = {}
    for kind, data in raw.items():
        units = data["units"]
        running = [u for u in units if any(p["payload"] for p in u["processes"])]
        helpers = [p for u in units for p in u["processes"] if not p["payload"]]
        n = len(running) or 1
        mem = [int(u["MemoryCurrent"]) for u in units if u.get("MemoryCurrent", "").isdigit()]
        summary[kind] = {
            "containers": len(running),
            "helper_processes": len(helpers),
            "helper_names": sorted({p["comm"] for p in helpers}),
            "helper_rss_mb_per_container": sum(p.get("rss", 0) for p in helpers) / 1024 / n,
            "helper_pss_mb_per_container": sum(p.get("pss", 0) for p in helpers) / 1024 / n,
            "payload_rss_mb_per_container": sum(p.get("rss", 0) for u in units for p in u["processes"] if p["payload"])
            / 1024
            / n,
            "memory_current_mb_per_container": sum(mem) / 1024 / 1024 / len(mem) if mem else None,
            "error": "; ".join(data["failures"])[:300] if data["failures"] and not running else None,
        }
    if not podman_ok:
        summary["podman"] = {"error": "podman case failed earlier (see A)"}
    return {"config": {"count": cases.DENSITY_COUNT}, "raw": raw, "summary": summary}


def phase_generator(tb: Testbed, host_tmp: Path, warmup: int, runs: int) -> dict[str, Any]:
    tb.copy_in(generator_sources(host_tmp), GEN_SOURCES)
    out = GEN_OUTPUT
    dirs = [f"{out}/normal", f"{out}/early", f"{out}/late"]
    prepare = ["sh", "-c", f"rm -rf {out} && mkdir -p {' '.join(dirs)}"]
    gen_cmd = [cases.GENERATOR, *dirs]
    samples: dict[str, list[float]] = {}
    shebang = tb.read_file(cases.GENERATOR).splitlines()[0][2:].split()  # the generator's interpreter
    labels = {
        "floor_I": f"`{VENV_PYTHON} -I -c pass` (bare interpreter)",
        "floor": f"`{' '.join(shebang)} -c pass` (bare interpreter as the generator's #! runs it: the floor)",
    }
    log("B: generator floor")
    floors = [("floor_I", [VENV_PYTHON, "-I", "-c", "pass"]), ("floor", [*shebang, "-c", "pass"])]
    samples.update(hyperfine(tb, floors, runs=runs, warmup=warmup))
    checks: dict[str, int] = {}
    for n in cases.GEN_SIZES:
        log(f"B: generator on {n} files")
        env = {"SDCONTAINER_UNIT_PATH": f"{GEN_SOURCES}/{n}"}
        res = hyperfine(tb, [(str(n), gen_cmd)], runs=runs, warmup=warmup, prepare=prepare, env=env)
        samples[str(n)] = res[str(n)]
        labels[str(n)] = f"generator, {n} file{'' if n == 1 else 's'}" + (
            " (start-up and imports only)" if n == 0 else ""
        )
        # one more run to check that it really generated every unit
        tb.run(prepare)
        tb.run(gen_cmd, env=env)
        listed = tb.run(["sh", "-c", f"ls {out}/normal | grep -c '\\.service$' || true"]).stdout.strip()
        checks[str(n)] = int(listed or 0)
        if checks[str(n)] != n:
            raise RuntimeError(f"generator wrote {checks[str(n)]} units for {n} files")
    return {
        "config": {"warmup": warmup, "runs": runs, "tool": "hyperfine -N inside the testbed"},
        "labels": labels,
        "units_written": checks,
        "samples": samples,
        "summary": {k: report.summarize(v) for k, v in samples.items()},
    }


def phase_reload(tb: Testbed, runs: int) -> dict[str, Any]:
    log(f"B: daemon-reload with/without {cases.RELOAD_SIZE} files, {runs} runs each")
    raw = inner(tb, "reload", link=cases.RELOAD_LINK, target=f"{GEN_SOURCES}/{cases.RELOAD_SIZE}", runs=runs)
    return {
        "config": {"runs": runs, "files": cases.RELOAD_SIZE},
        "samples": raw["samples"],
        "loaded_units": raw["loaded_units"],
        "summary": {k: report.summarize(v) for k, v in raw["samples"].items()},
    }


def phase_profile(tb: Testbed, launcher: Launcher, warmup: int, runs: int, traces: int) -> dict[str, Any]:
    py, flags = launcher.python, launcher.flags
    run_args = ["start", "--unit", "bench-fg.service", "--name", "bench-fg", "--rootfs", ROOTFS, "--", "/bin/true"]
    fg = launcher.command(*run_args)
    unshare = ["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "chroot", ROOTFS, "/bin/true"]
    shown = " ".join(launcher.argv).replace(VENV_PYTHON, "$PY").replace(f"{cases.VENV}/", "$VENV/")
    fl = " ".join(flags)
    components: list[tuple[str, str, list[str]]] = [  # key, label, argv
        ("floor", f"$PY {fl} -c pass  (the launcher's interpreter and flags)", [py, *flags, "-c", "pass"]),
        ("pass_I", "$PY -I -c pass  (with site.py)", [py, "-I", "-c", "pass"]),
        ("pass_IS", "$PY -I -S -c pass  (without site.py)", [py, "-I", "-S", "-c", "pass"]),
        ("ctypes", f"$PY {fl} -c 'import ctypes'  (sdcontainer.linux needs it)", [py, *flags, "-c", "import ctypes"]),
        ("help", f"{shown} --help  (interpreter + every import of the start path)", launcher.command("--help")),
        ("help_m", "$PY -I -m sdcontainer.launcher --help  (for comparison: -m and site.py)",
         [py, "-I", "-m", "sdcontainer.launcher", "--help"]),
        ("cleanup", f"{shown} cleanup --unit x.service  (older units' ExecStopPost)",
         launcher.command("cleanup", "--unit", "x.service")),
        ("foreground", f"{shown} start ... -- /bin/true  (foreground: whole container, run to exit)", fg),
        ("unshare", "unshare --pid --fork --mount --net --uts --ipc chroot ROOTFS /bin/true  (C floor)", unshare),
    ]  # fmt: skip
    result: dict[str, Any] = {"config": {"runs": runs, "warmup": warmup, "traces": traces}, "errors": []}
    log("profile: component timings (interleaved)")
    commands = {key: argv for key, _label, argv in components}
    raw = inner(tb, "spawn_times", commands=commands, warmup=warmup, runs=runs)
    comp = raw["samples"]
    result["component_labels"] = {key: label for key, label, _argv in components}
    result["component_samples"] = comp
    result["component_failures"] = {k: v for k, v in raw["failures"].items() if v}
    result["components"] = {k: report.summarize(v) for k, v in comp.items()}

    log("profile: -X importtime")
    it_runs = []
    importtime = launcher.command(*run_args, python_options=("-X", "importtime"))
    for _ in range(15):
        r = tb.run(importtime, check=False)
        it_runs.append(profile.parse_importtime(r.stderr))
    result["importtime"] = profile.aggregate_importtime(it_runs)
    result["importtime_command"] = (
        shlex.join(importtime).replace(VENV_PYTHON, "$PY").replace(f"{cases.VENV}/", "$VENV/")
    )

    log("profile: cProfile of the generator on 1000 files")
    out = GEN_OUTPUT
    dirs = [f"{out}/normal", f"{out}/early", f"{out}/late"]
    tb.run(["sh", "-c", f"rm -rf {out} && mkdir -p {' '.join(dirs)}"])
    r = tb.run(
        [py, "-I", "-m", "cProfile", "-s", "tottime", cases.GENERATOR, *dirs],
        env={"SDCONTAINER_UNIT_PATH": f"{GEN_SOURCES}/1000"},
        check=False,
    )
    result["generator_cprofile"] = cprofile_top(r.stdout, 18)

    if not shutil.which("strace"):
        result["errors"].append("strace is not installed; no phase breakdown")
        return result
    log(f"profile: {traces} starts under strace")
    unit = "bench-prof.service"
    generated = tb.read_file(f"/run/systemd/generator/{unit}")
    exec_start = next(ln for ln in generated.splitlines() if ln.startswith("ExecStart="))[len("ExecStart=") :]
    strace = f"/usr/bin/strace -f --seccomp-bpf -ttt -T -qq -o {STRACE_OUT} -e trace={STRACE_CALLS}"
    tb.write_file(
        f"{cases.UNIT_DIR}/{unit}.d/50-strace.conf", f"[Service]\nExecStart=\nExecStart={strace} {exec_start}\n"
    )
    tb.daemon_reload()
    phases = []
    for i in range(2 + traces):
        tb.run(["rm", "-f", STRACE_OUT])
        error = smoke(tb, unit)
        if error:
            result["errors"].append(f"traced start {i}: {error}")
            continue
        if i >= 2:
            text = tb.read_file(STRACE_OUT)
            try:
                phases.append(profile.launcher_phases(text))
            except (LookupError, StopIteration, ValueError) as e:
                result["errors"].append(f"trace {i}: {e}")
    tb.run(["rm", "-rf", f"{cases.UNIT_DIR}/{unit}.d"])
    tb.daemon_reload()
    result["phase_samples"] = phases
    if phases:
        result["phases"] = profile.median_phases(phases)
    return result


def cprofile_top(text: str, rows: int) -> str:
    """The summary line and the first rows of a `python -m cProfile -s tottime` table."""
    lines = text.splitlines()
    summary = next((ln.strip() for ln in lines if "function calls" in ln), "")
    try:
        header = next(i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls"))
    except StopIteration:
        return text[-2000:]
    return "\n".join([summary, "", *lines[header : header + 1 + rows]])


# --- versions ----------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return ((r.stdout or r.stderr).strip().splitlines() or ["unavailable"])[0]


def meta(tb: Testbed) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    git = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )

    def word(line: str, i: int) -> str:
        parts = line.split()
        return parts[i] if len(parts) > i else line

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git": git.stdout.strip() or "?",
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "cpu_count": os.cpu_count(),
            "model": model,
            "mem_total_mb": int(mem) // 1024,
        },
        "versions": {
            "kernel": os.uname().release,
            "systemd": _first_line(["systemctl", "--version"]),
            "python": _first_line([HOST_PYTHON, "--version"]),
            "venv_python": tb.run([VENV_PYTHON, "--version"], check=False).stdout.strip(),
            "podman": _first_line(["podman", "--version"]),
            "runc": word(_first_line(["runc", "--version"]), 2),
            "crun": word(_first_line(["crun", "--version"]), 2),
            "conmon": word(_first_line(["conmon", "--version"]), 2),
            "hyperfine": _first_line(["hyperfine", "--version"]),
            "strace": _first_line(["strace", "-V"]),
        },
        "testbed": {"boot_s": tb.boot_seconds, "install_s": tb.install_seconds},
    }


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="measured runs per case (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up runs per case (default 3)")
    ap.add_argument("--reload-runs", type=int, default=10, help="daemon-reload runs per state (default 10)")
    ap.add_argument("--traces", type=int, default=5, help="strace'd starts for the phase breakdown (default 5)")
    ap.add_argument("--parallel-rounds", type=int, default=3, help="rounds of parallel starts per size (default 3)")
    ap.add_argument("--no-podman", action="store_true", help="leave podman out of every phase")
    ap.add_argument(
        "--image-runs", type=int, default=3, help="unpack runs per tool of the 300 MB image (phase I; 0: skip it)"
    )
    ap.add_argument("--quick", action="store_true", help="5 runs, 1 warm-up: a smoke test of the benchmark itself")
    ap.add_argument("--output", type=Path, default=RESULTS, help="directory for latest.md and latest.json")
    ap.add_argument("--readme", action="store_true", help="also put the targets and start tables into README.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.reload_runs, args.traces, args.parallel_rounds = 5, 1, 2, 2, 1
        args.image_runs = min(args.image_runs, 1)
    if os.geteuid() != 0:
        raise SystemExit("bench.run needs root (it boots a systemd testbed in new namespaces)")
    if not shutil.which("hyperfine"):
        raise SystemExit("hyperfine is missing: apt-get install hyperfine")

    log("make wheels (a no-op when build/wheels is current)")
    make_wheels()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sdcontainer-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rootfs = build_busybox_rootfs(str(tmp / "rootfs"))
        tar = tmp / "busybox.tar"
        subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "-cf", str(tar), "."], check=True)
        log("booting the testbed")
        with Testbed(network=True) as tb:
            log(f"testbed up in {tb.boot_seconds:.2f} s; make install")
            tb.install_project()
            tb.copy_in(rootfs, ROOTFS)
            tb.write_file("/srv/www/index.html", "benchmark\n")
            podman_error = "left out (--no-podman)" if args.no_podman else prepare_podman(tb, tar)
            prepare_crun(tb)
            prepare_image(tb, tar)
            if podman_error:
                log(f"podman: {podman_error}")
            launcher = write_units(tb, podman_error is None)
            log(f"the units run the launcher as {shlex.join(launcher.argv)} ({launcher.python} {launcher.flags})")
            results["meta"] = meta(tb)
            results["start_stop"] = phase_start_stop(tb, cases.START_CASES, None, args.warmup, args.runs, "A/D")
            if not args.no_podman:
                results["start_stop_podman"] = phase_start_stop(
                    tb, cases.PODMAN_CASES, podman_error, args.warmup, args.runs, "A2"
                )
            podman_ok = "start_stop_podman" in results and results["start_stop_podman"]["podman_error"] is None
            results["run_to_end"] = phase_run_to_end(tb, podman_ok, args.warmup, args.runs)
            results["parallel"] = phase_parallel(tb, podman_ok, args.parallel_rounds)
            results["scaling"] = phase_scaling(tb, podman_ok)
            log("S: socket activation, time to first byte (bench/sockets.py)")
            results["sockets"] = sockets.run(tb, args.runs, warmup=args.warmup)
            results["density"] = phase_density(tb, podman_ok)
            results["generator"] = phase_generator(tb, tmp, args.warmup, args.runs)
            results["reload"] = phase_reload(tb, args.reload_runs)
            results["profile"] = phase_profile(tb, launcher, args.warmup, max(args.runs, 40), args.traces)
            results["meta"]["launcher"] = {"argv": launcher.argv, "python": launcher.python, "flags": launcher.flags}
    if args.image_runs:
        log(f"I: unpacking a 300 MB, 5-layer image: sdcontainer, tar -xzf, umoci; {args.image_runs} runs (on tmpfs)")
        work = tempfile.mkdtemp(prefix="sdcontainer-bench-unpack-", dir="/dev/shm")
        try:
            results["images"] = images.run(args.image_runs, work_dir=work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    markdown = report.render(results)
    results["targets"] = report.targets(results)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.md").write_text(markdown)
    (args.output / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    print(markdown, end="")
    if args.readme:
        readme = PROJECT_DIR / "README.md"
        readme.write_text(report.update_readme(readme.read_text(), results))
        log(f"updated {readme}")
    log(f"written {args.output / 'latest.md'} and {args.output / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
