"""What Notify=yes costs at start, beside Notify=no, and what its relay costs (as root):

    .venv/bin/python -m bench.notify_start [--runs 20] [--warmup 3]

Boots one testbed, `make install`s this checkout into it, builds the static sd_notify client
of tests/test_notify_relay.py into it, and measures, interleaved (bench/inner.py:
perf_counter_ns around `systemctl start`/`stop` inside the testbed; `start` of a Type=notify
unit returns once it is active):

  notify-yes  Notify=yes: the container says READY=1 itself (/opt/bin/notify READY=1, then
              exec sleep)
  notify-no   Notify=no, the same rootfs and volumes, /bin/sleep: the launcher says READY=1

Then, if the checkout has a relay, the resident memory of the one a WatchdogSec= container
keeps (VmRSS of the unit's python3 process). Run it from an older checkout too (tests/ and
bench/ are all it needs) for a before/after of the same numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile

from bench import report
from bench.run import inner, log, make_wheels
from tests.containers import NOTIFIER_C, ROOTFS, container, unit_processes, wait_for
from tests.rootfs import build_busybox_rootfs
from tests.testbed import Testbed

VOLUMES = "Volume=/srv/bin:/opt/bin:ro\nRunInit=yes\n"  # tini: SIGTERM ends sleep
CASES = {
    "notify-yes": container("/opt/bin/notify READY=1 /bin/sleep 1000", "Notify=yes\n" + VOLUMES),
    "notify-no": container("/bin/sleep 1000", VOLUMES),
}
WATCHDOG = container(
    "/bin/sh -c '/opt/bin/notify READY=1 /bin/true; while :; do /opt/bin/notify WATCHDOG=1 /bin/true; sleep 1; done'",
    "Notify=yes\n" + VOLUMES,
    "WatchdogSec=10s",
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    make_wheels()
    tb = Testbed(network=True)
    tb.start()
    try:
        tb.wait_running(timeout=60)
        log("make install")
        tb.install_project()
        with tempfile.TemporaryDirectory() as tmp:
            tb.copy_in(build_busybox_rootfs(f"{tmp}/root"), ROOTFS)
            with open(f"{tmp}/notify.c", "w", encoding="utf-8") as f:
                f.write(NOTIFIER_C)
            subprocess.run(["gcc", "-static", "-O2", "-o", f"{tmp}/notify", f"{tmp}/notify.c"], check=True)
            tb.copy_in(f"{tmp}/notify", "/srv/bin/notify")
        for name, text in CASES.items():
            tb.write_file(f"/etc/sdcontainer/{name}.container", text)
        tb.write_file("/etc/sdcontainer/notify-dog.container", WATCHDOG)
        tb.daemon_reload()
        units = [f"{name}.service" for name in CASES]
        log(f"{args.warmup}+{args.runs} interleaved start/stop rounds of {', '.join(units)}")
        raw = inner(tb, "start_stop", units=units, warmup=args.warmup, runs=args.runs, settle=0.05)
        tb.start_unit("notify-dog.service")
        wait_for(lambda: len(unit_processes(tb, "notify-dog.service")) >= 2)
        resident = {}
        for pid in unit_processes(tb, "notify-dog.service"):
            status = tb.read_file(f"/proc/{pid}/status") if tb.exists(f"/proc/{pid}/status") else ""
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            resident[f"{fields.get('Name', '?').strip()} ({pid})"] = fields.get("VmRSS", "?").strip()
        tb.systemctl("stop", "notify-dog.service")
    finally:
        tb.close()
    result: dict[str, object] = {
        name: {
            "start": report.summarize(raw["samples"][f"{name}.service"]["start"]),
            "stop": report.summarize(raw["samples"][f"{name}.service"]["stop"]),
            "failures": raw["failures"][f"{name}.service"],
        }
        for name in CASES
    }
    result["WatchdogSec= container: its unit's processes, VmRSS"] = resident
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
