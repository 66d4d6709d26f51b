"""What the default bridge network costs at start, beside Network=none (as root):

    .venv/bin/python -m bench.network_start [--runs 20] [--warmup 3]

Boots one testbed (its own network namespace), `make install`s this checkout into it and
measures, interleaved (bench/inner.py: perf_counter_ns around `systemctl start`/`stop`
inside the testbed; `start` of a Type=notify unit returns once it is active):

  none     Network=none: loopback only
  bridge   no Network=: the default bridge network (lease, veth, masquerade element)
  publish  the same with PublishPort=8080:80 (one map element, hairpin on the port)
  named    Network=bench.network: a named network (its definition read, the names list and
           the hosts files of the network's members written; a second container, named-peer,
           runs on it throughout, so each start rewrites its hosts file too)

The stop of the two bridge cases includes their ExecStopPost= (`launcher release`).
"""

from __future__ import annotations

import argparse
import json
import tempfile

from bench import report
from bench.run import inner, log, make_wheels
from tests.containers import ROOTFS, container
from tests.rootfs import build_busybox_rootfs
from tests.testbed import Testbed

INIT = "RunInit=yes\n"  # tini: SIGTERM ends sleep
CASES = {
    "net-none": container("/bin/sleep 1000", INIT + "Network=none\n"),
    "net-bridge": container("/bin/sleep 1000", INIT),
    "net-publish": container("/bin/sleep 1000", INIT + "PublishPort=8080:80\n"),
    "net-named": container("/bin/sleep 1000", INIT + "Network=bench.network\n"),
}
NETWORK = "[Network]\nSubnet=10.95.0.0/24\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    make_wheels()
    tb = Testbed(network=True)
    tb.start()
    try:
        tb.wait_running(timeout=60)
        log("make install")
        tb.install_project()
        with tempfile.TemporaryDirectory() as tmp:
            tb.copy_in(build_busybox_rootfs(f"{tmp}/root"), ROOTFS)
        for name, text in CASES.items():
            tb.write_file(f"/etc/sdcontainer/{name}.container", text)
        tb.write_file("/etc/sdcontainer/bench.network", NETWORK)
        tb.write_file("/etc/sdcontainer/named-peer.container", CASES["net-named"])
        tb.daemon_reload()
        tb.systemctl("start", "named-peer.service")
        units = [f"{name}.service" for name in CASES]
        log(f"{args.warmup}+{args.runs} interleaved start/stop rounds of {', '.join(units)}")
        raw = inner(tb, "start_stop", units=units, warmup=args.warmup, runs=args.runs, settle=0.05)
    finally:
        tb.close()
    result = {
        name: {
            "start": report.summarize(raw["samples"][f"{name}.service"]["start"]),
            "stop": report.summarize(raw["samples"][f"{name}.service"]["stop"]),
            "failures": raw["failures"][f"{name}.service"],
        }
        for name in CASES
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
