"""How long one health check takes, beside `sdcontainer exec` and the interpreter alone.

    .venv/bin/python -m bench.health_latency [RUNS]

Boots a testbed (tests/testbed.py), installs sdcontainer, starts a busybox container with
HealthCmd= and HealthInterval=disable (so no timer runs beside the measurement), and runs
hyperfine (-N, no shell) on the commands below, each entered into the testbed with nsenter.
Prints hyperfine's report, then median, mean, min and max per command, in milliseconds.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile

from tests.containers import ROOTFS, add_container, container
from tests.rootfs import build_busybox_rootfs
from tests.testbed import Testbed

VENV = "/usr/local/lib/sdcontainer/venv"
LAUNCHER = f"{VENV}/bin/sdcontainer-launcher"


def main() -> None:
    runs = sys.argv[1] if len(sys.argv) > 1 else "100"
    work = tempfile.mkdtemp(prefix="health-latency-")
    rootfs = build_busybox_rootfs(f"{work}/root")
    with Testbed(network=True) as bed:
        bed.install_project()
        bed.copy_in(rootfs, ROOTFS)
        add_container(bed, "web", container("/bin/httpd -f -p 8080 -h /", "HealthCmd=true\nHealthInterval=disable\n"))
        bed.start_unit("web.service")
        commands = {
            "health check (/bin/true)": [LAUNCHER, "health", "--unit", "web.service", "--", "/bin/true"],
            "health check (sh -c true)": [LAUNCHER, "health", "--unit", "web.service", "--", "/bin/sh", "-c", "true"],
            "sdcontainer exec web true": ["sdcontainer", "exec", "web", "/bin/true"],
            "systemctl start web-health": ["systemctl", "start", "web-health.service"],
            "interpreter alone": [f"{VENV}/bin/python3", "-IS", "-c", "pass"],
        }
        export = f"{work}/hyperfine.json"
        argv = ["hyperfine", "-N", "--warmup", "10", "--runs", runs, "--export-json", export]
        for name, command in commands.items():
            argv += ["-n", name, shlex.join(bed.command(command))]
        subprocess.run(argv, check=True)
        with open(export, encoding="utf-8") as f:
            results = json.load(f)["results"]
    for result in results:
        ms = {k: result[k] * 1000 for k in ("median", "mean", "min", "max")}
        print(
            f"{result['command']:<28} median {ms['median']:6.1f}  mean {ms['mean']:6.1f}  "
            f"min {ms['min']:6.1f}  max {ms['max']:6.1f} ms"
        )


if __name__ == "__main__":
    main()
