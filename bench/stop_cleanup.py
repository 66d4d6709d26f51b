"""What the container's stop costs, with and without an ExecStopPost= process (as root):

    /usr/bin/python3 -m bench.stop_cleanup [--runs 30] [--warmup 3]

Boots one testbed, `make install`s this checkout into it, and measures, interleaved (bench/
inner.py: perf_counter_ns around `systemctl start`/`stop` inside the testbed):

  generated  the unit the generator writes for a .container file (RuntimeDirectory= since
             the record moved there; ExecStopPost= cleanup before)
  legacy     the same unit with RuntimeDirectory= dropped and ExecStopPost=<launcher>
             cleanup --unit %n added: what the generator wrote before (only when the
             generated unit has no ExecStopPost= of its own)
  plain      a plain unit running /bin/sleep: the floor

and `sdcontainer run ROOTFS /bin/true` to completion. Run it from an older checkout too
(its tests/ and bench/inner.py are all it needs) for a before/after of the same numbers.
"""

from __future__ import annotations

import argparse
import json

from bench import report
from bench.run import inner, log, make_wheels
from tests.rootfs import build_busybox_rootfs
from tests.testbed import Testbed

ROOTFS = "/srv/rootfs/busybox"
CONTAINER = f"[Container]\nRootfs={ROOTFS}\nExec=/bin/sleep 1000\nRunInit=yes\n"


def legacy_text(text: str, launcher: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(("#", "RuntimeDirectory=", "SourcePath="))]
    return "\n".join(lines) + f"\nExecStopPost={launcher} cleanup --unit %n\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    make_wheels()
    tb = Testbed(network=True)
    tb.start()
    try:
        tb.wait_running(timeout=60)
        log("make install")
        tb.install_project()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tb.copy_in(build_busybox_rootfs(f"{tmp}/root"), ROOTFS)
        tb.write_file("/etc/sdcontainer/stopbench.container", CONTAINER)
        tb.add_unit("plain-sleep.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        text = tb.run(["systemctl", "cat", "stopbench.service"]).stdout
        units = {"generated": "stopbench.service", "plain": "plain-sleep.service"}
        if "ExecStopPost=" not in text:
            start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
            tb.add_unit("stopbench-legacy.service", legacy_text(text, start.split()[0][len("ExecStart=") :]))
            units["legacy"] = "stopbench-legacy.service"
        log(f"{args.warmup}+{args.runs} interleaved start/stop rounds of {', '.join(units)}")
        raw = inner(tb, "start_stop", units=list(units.values()), warmup=args.warmup, runs=args.runs, settle=0.05)
        run = ["sdcontainer", "run", "--network", "none", ROOTFS, "/bin/true"]  # as before run's bridge default
        log(f"{args.warmup}+{args.runs} runs of {' '.join(run)}")
        spawned = inner(tb, "spawn_times", commands={"run": run}, warmup=args.warmup, runs=args.runs)
        left = tb.run(["sh", "-c", "ls -A /run/sdcontainer/containers 2>/dev/null | wc -l"]).stdout.strip()
    finally:
        tb.close()
    result: dict[str, object] = {
        key: {
            "start": report.summarize(raw["samples"][unit]["start"]),
            "stop": report.summarize(raw["samples"][unit]["stop"]),
            "failures": raw["failures"][unit],
        }
        for key, unit in units.items()
    }
    result["sdcontainer run /bin/true"] = {
        "run": report.summarize(spawned["samples"]["run"]),
        "failures": spawned["failures"]["run"],
    }
    result["entries left in /run/sdcontainer/containers"] = int(left)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
