"""What a container's network setup costs: our rtnetlink module against pyroute2 (issue 12).

    .venv/bin/python -m bench.netlink_setup [--runs 50] [--import-runs 25]

Imports: each module imported by a fresh `python -I -S` (wall clock, minus `-c pass`),
interleaved, medians; plus `-X importtime`'s cumulative figure for the module.

Per container, in a throwaway network namespace (unshare(CLONE_NEWNET) of this process: never
the host's): a bridge exists; then, timed, for one container netns made beforehand (untimed):
open the host socket, veth pair + MTU + MAC + address + lo up + eth0 up + default route
(sdcontainer.netlink.attach, or tests/pyroute2_net.attach through pyroute2's IPRoute loaded
without its package __init__), and one published port (sdcontainer.firewall.publish), and
separately the IPAM lease. The two netlink variants alternate, run by run. Teardown is not
timed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKOUT = str(Path(__file__).resolve().parent.parent)
SITE = next(p for p in sys.path if p.endswith("site-packages"))

IMPORTS = {
    "pass": "pass",
    "sdcontainer.inet": "import sdcontainer.inet",
    "sdcontainer.netlink": "import sdcontainer.netlink",
    "sdcontainer.ipam": "import sdcontainer.ipam",
    "sdcontainer.firewall": "import sdcontainer.firewall",
    "all three": "import sdcontainer.netlink, sdcontainer.ipam, sdcontainer.firewall",
    "sdcontainer.launcher (today's start path)": "import sdcontainer.launcher",
    "launcher + all three": "import sdcontainer.launcher, sdcontainer.netlink, sdcontainer.ipam, sdcontainer.firewall",
    "pyroute2 (from pyroute2 import IPRoute)": "from pyroute2 import IPRoute",
    "pyroute2 without __init__ (iproute.linux)": "from tests.pyroute2_net import load_iproute; load_iproute(stub=True)",
}


def _argv(code: str, importtime: bool = False) -> list[str]:
    prelude = f"import sys; sys.path[:0] = [{CHECKOUT!r}, {SITE!r}]; "
    return [sys.executable, "-I", "-S", *(["-X", "importtime"] if importtime else []), "-c", prelude + code]


def imports(runs: int) -> list[tuple[str, float, float, str]]:
    times: dict[str, list[float]] = {k: [] for k in IMPORTS}
    for _ in range(runs):
        for name, code in IMPORTS.items():
            t = time.perf_counter()
            subprocess.run(_argv(code), check=True)
            times[name].append((time.perf_counter() - t) * 1000)
    base = statistics.median(times["pass"])
    rows = []
    for name, code in IMPORTS.items():
        if name == "pass":
            continue
        out = subprocess.run(_argv(code, importtime=True), capture_output=True, text=True, check=True).stderr
        lines = [ln for ln in out.splitlines() if ln.startswith("import time:") and "|" in ln]
        module = name.split()[0] if name.startswith("sdcontainer.") else ""
        cumulative = [int(ln.split("|")[1]) for ln in lines if ln.split("|")[2].strip() == module]
        n = subprocess.run(_argv(code + "; print(len(sys.modules))"), capture_output=True, text=True).stdout.strip()
        rows.append((name, statistics.median(times[name]) - base, (cumulative[0] / 1000) if cumulative else 0.0, n))
    return rows


def per_container(runs: int) -> dict[str, list[float]]:
    sys.path[:0] = [CHECKOUT]
    from sdcontainer import linux, netlink
    from sdcontainer.firewall import Firewall, PortMapping
    from sdcontainer.ipam import Ipam
    from tests import pyroute2_net
    from tests.netns import new_netns

    IPRoute = pyroute2_net.load_iproute(stub=True)
    linux.unshare(linux.CLONE_NEWNET)  # this process's own throwaway "host"
    linux.interface_up("lo")
    tmp = tempfile.mkdtemp(prefix="bench-net-")
    ipam = Ipam.for_subnets("bench", ["10.90.0.0/16"], state_dir=tmp)
    netlink.ensure_bridge("sdbench", ["10.90.0.1/16"])
    fw = Firewall(lock_path=f"{tmp}/fw.lock")
    fw.add_network("bench", ["10.90.0.0/16"])
    port = [PortMapping.parse("8080:80")]
    results: dict[str, list[float]] = {
        k: []
        for k in ("own: attach", "pyroute2: attach", "publish (libnftables)", "lease", "own: total", "pyroute2: total")
    }

    def elapsed(key: str, since: float) -> float:
        ms = (time.perf_counter() - since) * 1000
        results[key].append(ms)
        return ms

    for i in range(runs * 2 + 4):
        backend = "own" if i % 2 == 0 else "pyroute2"
        unit = f"c{i}.service"
        netns = new_netns()
        try:
            t = time.perf_counter()
            ipam.lease(unit)
            lease_ms = elapsed("lease", t)
            (address,) = ipam.lease(unit)
            kwargs: dict[str, Any] = {
                "bridge": "sdbench",
                "host_ifname": netlink.host_ifname(unit),
                "addresses": [address],
                "gateways": ["10.90.0.1"],
                "mtu": 1500,
                "mac": "02:00:00:00:00:0a",
            }
            t = time.perf_counter()
            if backend == "own":
                netlink.attach(netns, **kwargs)
            else:
                pyroute2_net.attach(IPRoute, netns, **kwargs)
            attach_ms = elapsed(f"{backend}: attach", t)
            t = time.perf_counter()
            fw.publish(unit, port, ipv4=address.split("/")[0])
            publish_ms = elapsed("publish (libnftables)", t)
            results[f"{backend}: total"].append(lease_ms + attach_ms + publish_ms)
        finally:
            fw.release(unit)
            ipam.release(unit)
            netlink.detach(netlink.host_ifname(unit))
            os.close(netns)
    for values in results.values():
        del values[:2]  # warm-up
    fw.delete_table()
    shutil.rmtree(tmp)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--import-runs", type=int, default=25)
    args = ap.parse_args()
    print(f"## Imports (python -I -S, median of {args.import_runs}, minus `-c pass`)\n")
    print("| import | wall ms | -X importtime cumulative ms | modules loaded |\n|---|---|---|---|")
    for name, wall, cumulative, n in imports(args.import_runs):
        shown = f"{cumulative:.1f}" if cumulative else "-"
        print(f"| {name} | {wall:.1f} | {shown} | {n} |")
    # the per-container loop runs in a child: its unshare() must not outlive it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            res = per_container(args.runs)
            os.write(w, json.dumps(res).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    results = json.loads(data)
    print(f"\n## Per container, bridge exists (median of {args.runs}; min, max)\n")
    print("| step | median ms | min | max |\n|---|---|---|---|")
    for key, values in results.items():
        print(f"| {key} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
