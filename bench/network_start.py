"""What the default bridge network costs at start and stop, beside Network=none, and what
podman's default network costs beside its --network=none (as root):

    .venv/bin/python -m bench.network_start [--runs 15] [--warmup 3] [--no-podman]

Boots one testbed (its own network namespace), `make install`s this checkout into it and
measures, interleaved (bench/inner.py: perf_counter_ns around `systemctl start`/`stop`
inside the testbed; `start` of a Type=notify unit returns once it is active):

  net-none       Network=none: loopback only
  net-bridge     no Network=: the default bridge network (lease, veth, masquerade element)
  net-publish    the same with PublishPort=8080:80 (one map element, hairpin on the port)
  net-random     the same with PublishPort=80 (a free host port chosen at start)
  net-named      Network=bench.network: a named network (its definition read, the names list and
                 the hosts files of the network's members written; a second container, named-peer,
                 runs on it throughout, so each start rewrites its hosts file too)

and then, in a second interleaved run (podman's background work slows whatever follows it,
so it is kept apart, as bench.run keeps its A2 apart), the Quadlet-style podman unit of
bench.cases (podman 4.3.1 + runc, conmon, --sdnotify=conmon) with:

  podman-none    --network=none
  podman-bridge  podman's default network for root (`podman` on cni-podman0: this Debian's
                 podman uses the CNI plugins, not netavark, which is not packaged here)

plus net-none again as the bridge between the two runs. The stop of the bridge cases
includes their ExecStopPost= (`launcher release`); podman's includes `podman rm -f`.
Medians in ms; ratios are to the none case of the same tool.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import cases, report
from bench.run import inner, log, make_wheels, prepare_podman
from tests.containers import ROOTFS, container
from tests.rootfs import build_busybox_rootfs
from tests.testbed import Testbed

INIT = "RunInit=yes\n"  # tini: SIGTERM ends sleep
CASES = {
    "net-none": container("/bin/sleep 1000", INIT + "Network=none\n"),
    "net-bridge": container("/bin/sleep 1000", INIT),
    "net-publish": container("/bin/sleep 1000", INIT + "PublishPort=8080:80\n"),
    "net-random": container("/bin/sleep 1000", INIT + "PublishPort=80\n"),
    "net-named": container("/bin/sleep 1000", INIT + "Network=bench.network\n"),
}
NETWORK = "[Network]\nSubnet=10.95.0.0/24\n"
PODMAN_CASES = {
    "podman-none": cases.podman_unit(),
    "podman-bridge": cases.podman_unit().replace(" --network=none", ""),
}


def _summary(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {
        name: {
            "start": report.summarize(raw["samples"][f"{name}.service"]["start"]),
            "stop": report.summarize(raw["samples"][f"{name}.service"]["stop"]),
            "failures": raw["failures"][f"{name}.service"],
        }
        for name in names
    }


def _median(result: dict[str, Any], name: str, what: str) -> float | None:
    value = result.get(name, {}).get(what, {}).get("median")
    return float(value) if isinstance(value, int | float) else None


def table(result: dict[str, Any]) -> str:
    """Markdown: medians and the ratio to the same tool's none case."""
    lines = ["| case | start median ms | x none | stop median ms | x none |", "|---|---|---|---|---|"]
    for name in result:
        base = "podman-none" if name.startswith("podman") else "net-none"
        cells = [name]
        for what in ("start", "stop"):
            value, none = _median(result, name, what), _median(result, base, what)
            cells.append("n/a" if value is None else f"{value:.1f}")
            cells.append("n/a" if value is None or not none else f"{value / none:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-podman", action="store_true")
    args = parser.parse_args()
    make_wheels()
    tb = Testbed(network=True)
    tb.start()
    result: dict[str, Any] = {}
    try:
        tb.wait_running(timeout=60)
        log("make install")
        tb.install_project()
        with tempfile.TemporaryDirectory() as tmp:
            rootfs = build_busybox_rootfs(f"{tmp}/root")
            tb.copy_in(rootfs, ROOTFS)
            tar = Path(tmp) / "busybox.tar"
            subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "-cf", str(tar), "."], check=True)
            podman_error = "left out (--no-podman)" if args.no_podman else prepare_podman(tb, tar)
        for name, text in CASES.items():
            tb.write_file(f"/etc/sdcontainer/{name}.container", text)
        if podman_error is None:
            for name, text in PODMAN_CASES.items():
                tb.add_unit(f"{name}.service", text, reload=False)
        tb.write_file("/etc/sdcontainer/bench.network", NETWORK)
        tb.write_file("/etc/sdcontainer/named-peer.container", CASES["net-named"])
        tb.daemon_reload()
        tb.systemctl("start", "named-peer.service")
        units = [f"{name}.service" for name in CASES]
        log(f"{args.warmup}+{args.runs} interleaved start/stop rounds of {', '.join(units)}")
        raw = inner(tb, "start_stop", units=units, warmup=args.warmup, runs=args.runs, settle=0.05)
        result.update(_summary(raw, list(CASES)))
        if podman_error is None:
            names = ["net-none", *PODMAN_CASES]
            units = [f"{name}.service" for name in names]
            log(f"{args.warmup}+{args.runs} interleaved start/stop rounds of {', '.join(units)}")
            raw = inner(tb, "start_stop", units=units, warmup=args.warmup, runs=args.runs, settle=0.05)
            second = _summary(raw, names)
            result["net-none (podman run)"] = second.pop("net-none")
            result.update(second)
        else:
            log(f"podman: {podman_error}")
    finally:
        tb.close()
    print(json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
