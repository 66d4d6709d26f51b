"""Socket activation's benchmark: time to first byte of a socket-activated server, cold
(its service not running) and warm, for the same static server (tests/fdserver.c, which
serves the fds systemd passes) run four ways behind the same kind of socket unit:

  plain        a plain unit: RootDirectory= the busybox tree, MountAPIVFS=, PrivateNetwork=
               (the floor bench.run uses for starts), the server takes fd 3 from systemd
  sdcontainer  a .container with a [Socket] section (Network=none): the container takes fd 3
  podman       `podman run` (4.3, runc, conmon) from a unit behind the same kind of socket:
               podman hands LISTEN_FDS on to the container itself
  proxy        sdcontainer with SocketProxy=: the server listens by itself inside, and
               systemd-socket-proxyd forwards to it (scale to zero for programs without
               socket activation); the price of that mode
  bare         (reference) the server from its host path, no sandbox at all
  pyfloor      (reference) the least any Python launcher costs: the launcher's interpreter
               and flags start, say READY=1 and exec the server (no namespaces, no mounts)

    /usr/bin/python3 -m bench.sockets [--runs 20] [--warmup 2] [--warm 10] [--quick]

Boots a testbed (or, from bench.run, takes its testbed: `run(tb, runs)`), and in ONE loop,
interleaved, per round and case: `systemctl stop` the service (the socket stays), then
connect, send a request and time until the first byte of the answer (cold: that includes
systemd starting the service and the server's start-up; files are in the page cache);
then --warm more requests to the running server (warm). The timing runs inside the testbed
(no nsenter in any interval). Report: stdout and bench/results/sockets.{md,json}.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

# --- inside the testbed: the timing loop (standard library only, runs with -I -S) ----------

REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/systemctl", "--no-pager", *args], capture_output=True, text=True)


def _state(unit: str) -> str:
    return _systemctl("show", "-P", "ActiveState", unit).stdout.strip()


def _request(address: tuple[str, int]) -> tuple[float, bytes]:
    """Milliseconds from connect() until the first byte of the answer, and the whole answer."""
    t0 = time.perf_counter_ns()
    with socket.create_connection(address, timeout=120) as s:
        s.sendall(REQUEST)
        first = s.recv(1)
        t1 = time.perf_counter_ns()
        data = [first]
        while chunk := s.recv(65536):
            data.append(chunk)
    return (t1 - t0) / 1e6, b"".join(data)


def measure(cases: list[dict[str, Any]], runs: int, warmup: int, warm: int, settle: float) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {c["key"]: {"cold": [], "warm": []} for c in cases}
    failures: dict[str, list[str]] = {c["key"]: [] for c in cases}
    answers: dict[str, str] = {}
    for case in cases:
        _systemctl("reset-failed", case["service"], case["socket"])
        _systemctl("start", case["socket"])
    for rnd in range(warmup + runs):
        k = rnd % len(cases)
        for case in cases[k:] + cases[:k]:
            key, address = case["key"], (case["host"], case["port"])
            _systemctl("stop", *case.get("stop", [case["service"]]))
            _systemctl("reset-failed", case["service"])
            if _state(case["service"]) not in ("inactive", "failed"):
                failures[key].append(f"round {rnd}: still {_state(case['service'])} after stop")
                continue
            time.sleep(settle)
            try:
                cold, answer = _request(address)
                warm_times = [_request(address)[0] for _ in range(warm)]
            except OSError as error:
                failures[key].append(f"round {rnd}: {error}")
                # a failed start can take the socket down with it: bring it back for the next round
                _systemctl("reset-failed", case["service"], case["socket"], *case.get("stop", []))
                _systemctl("start", case["socket"])
                continue
            if b"pid=" not in answer:
                failures[key].append(f"round {rnd}: unexpected answer {answer[-200:]!r}")
                continue
            answers[key] = answer.decode(errors="replace").strip().splitlines()[-1]
            if rnd >= warmup:
                samples[key]["cold"].append(cold)
                samples[key]["warm"].extend(warm_times)
    for case in cases:
        _systemctl("stop", *case.get("stop", [case["service"]]), case["socket"])
    return {"samples": samples, "failures": failures, "answers": answers}


# --- on the host: units, the testbed, the report -----------------------------------------

FDSERVER = "/bin/fdserver"  # in the busybox tree
PORTS = {"plain": 9101, "sdcontainer": 9102, "podman": 9103, "proxy": 9104, "bare": 9105, "pyfloor": 9106}
LABELS = {
    "plain": "plain unit (RootDirectory=, MountAPIVFS=, PrivateNetwork=; the server takes fd 3)",
    "sdcontainer": "sdcontainer ([Socket] in the .container, Network=none; the container takes fd 3)",
    "podman": "podman run from a unit behind the socket (podman 4.3 + runc, conmon; LISTEN_FDS passed on)",
    "proxy": "sdcontainer SocketProxy= (systemd-socket-proxyd in front; the server listens itself)",
    "bare": "(reference) bare unit: the server from its host path, no sandbox",
    "pyfloor": "(reference) Python floor: the launcher's interpreter and flags, READY=1, exec the server",
}
# What the pyfloor unit runs with the launcher's interpreter (-c, so no quotes inside).
PY_FLOOR = (
    "import _socket, os; s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM); "
    "s.connect(os.environ['NOTIFY_SOCKET']); s.send(b'READY=1'); s.close(); "
    "os.execv('{server}', ['fdserver'])"
)


def _units(rootfs: str) -> dict[str, list[tuple[str, str]]]:
    """Per case: (path in the testbed, text) of the units it needs."""
    from bench.cases import VENV_PYTHON

    socket_unit = "[Unit]\nDescription=benchmark socket\n[Socket]\nListenStream=127.0.0.1:{port}\n"
    no_limit = "[Unit]\nStartLimitIntervalSec=0\n"
    return {
        "plain": [
            ("/etc/systemd/system/bsock-plain.socket", socket_unit.format(port=PORTS["plain"])),
            (
                "/etc/systemd/system/bsock-plain.service",
                f"{no_limit}[Service]\nType=exec\nRootDirectory={rootfs}\nMountAPIVFS=yes\nPrivateNetwork=yes\n"
                f"ExecStart={FDSERVER}\n",
            ),
        ],
        "sdcontainer": [
            (
                "/etc/sdcontainer/bsock-sd.container",
                f"{no_limit}[Container]\nRootfs={rootfs}\nExec={FDSERVER}\nNetwork=none\n"
                f"[Socket]\nListenStream=127.0.0.1:{PORTS['sdcontainer']}\n",
            )
        ],
        "podman": [
            ("/etc/systemd/system/bsock-podman.socket", socket_unit.format(port=PORTS["podman"])),
            (
                "/etc/systemd/system/bsock-podman.service",
                f"{no_limit}[Service]\nType=notify\nNotifyAccess=all\nKillMode=mixed\nDelegate=yes\n"
                "SuccessExitStatus=137 143\nEnvironment=PODMAN_SYSTEMD_UNIT=%n\n"
                "ExecStart=/usr/bin/podman run --name bench-%N --replace --rm --cgroups=split --sdnotify=conmon -d "
                f"--runtime runc --network=none -v {rootfs}{FDSERVER}:/fdserver:ro localhost/busybox /fdserver\n"
                "ExecStop=/usr/bin/podman rm -f -i bench-%N\n",
            ),
        ],
        "bare": [
            ("/etc/systemd/system/bsock-bare.socket", socket_unit.format(port=PORTS["bare"])),
            (
                "/etc/systemd/system/bsock-bare.service",
                f"{no_limit}[Service]\nType=exec\nExecStart={rootfs}{FDSERVER}\n",
            ),
        ],
        "pyfloor": [
            ("/etc/systemd/system/bsock-pyfloor.socket", socket_unit.format(port=PORTS["pyfloor"])),
            (
                "/etc/systemd/system/bsock-pyfloor.service",
                f"{no_limit}[Service]\nType=notify\n"
                f'ExecStart={VENV_PYTHON} -IS -c "{PY_FLOOR.format(server=rootfs + FDSERVER)}"\n',
            ),
        ],
        "proxy": [
            (
                "/etc/sdcontainer/bsock-proxy.container",
                f"{no_limit}[Container]\nRootfs={rootfs}\nExec={FDSERVER} --port 8000\nSocketProxy=8000\n"
                f"SocketProxyExitIdleTime=infinity\n[Socket]\nListenStream=127.0.0.1:{PORTS['proxy']}\n",
            )
        ],
    }


CASES: dict[str, dict[str, Any]] = {
    "plain": {"service": "bsock-plain.service", "socket": "bsock-plain.socket"},
    "sdcontainer": {"service": "bsock-sd.service", "socket": "bsock-sd.socket"},
    "podman": {"service": "bsock-podman.service", "socket": "bsock-podman.socket"},
    "bare": {"service": "bsock-bare.service", "socket": "bsock-bare.socket"},
    "pyfloor": {"service": "bsock-pyfloor.service", "socket": "bsock-pyfloor.socket"},
    # the proxy is what the socket starts; stopping both makes the next connection cold
    "proxy": {
        "service": "bsock-proxy.service",
        "socket": "bsock-proxy.socket",
        "stop": ["bsock-proxy-proxy.service", "bsock-proxy.service"],
    },
}


def _log(message: str) -> None:
    print(f"[bench.sockets {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def install_fdserver(tb: Any, rootfs: str) -> None:
    """Build tests/fdserver.c static on the host and put it into the testbed's busybox tree."""
    import tempfile

    from tests.testbed import PROJECT_DIR

    with tempfile.TemporaryDirectory(prefix="bench-fdserver-") as tmp:
        binary = os.path.join(tmp, "fdserver")
        source = str(PROJECT_DIR / "tests" / "fdserver.c")
        subprocess.run(["gcc", "-static", "-O2", "-o", binary, source], check=True)
        tb.copy_in(binary, rootfs + FDSERVER)


def _podman_image(tb: Any, rootfs: str) -> str | None:
    """localhost/busybox in the testbed's store (bench.run imports it; standalone, we do)."""
    import shutil
    import tempfile
    from pathlib import Path

    if not shutil.which("podman"):
        return "podman is not installed (tools/setup --bench)"
    if tb.run(["podman", "image", "exists", "localhost/busybox"], check=False).returncode == 0:
        return None
    from bench.run import prepare_podman

    with tempfile.TemporaryDirectory(prefix="bench-sockets-") as tmp:
        tar = Path(tmp) / "busybox.tar"
        r = tb.run(["tar", "-C", rootfs, "--numeric-owner", "-cf", "/tmp/bench-busybox.tar", "."], check=False)
        if r.returncode != 0:
            return f"tar of the rootfs failed: {r.stderr[-300:]}"
        tar.write_bytes(tb.read_bytes("/tmp/bench-busybox.tar"))
        return prepare_podman(tb, tar)


def run(tb: Any, runs: int, *, warmup: int = 2, warm: int = 10, settle: float = 0.05) -> dict[str, Any]:
    """Measure on a booted testbed with sdcontainer installed and the busybox tree at
    bench.cases.ROOTFS (as bench.run prepares it). Returns samples, summaries and ratios."""
    from bench.cases import ROOTFS
    from bench.report import ratio, summarize
    from tests.testbed import HOST_PYTHON

    install_fdserver(tb, ROOTFS)
    errors: dict[str, str | None] = {key: None for key in CASES}
    errors["podman"] = _podman_image(tb, ROOTFS)
    for key, units in _units(ROOTFS).items():
        if errors[key] is None:
            for path, text in units:
                tb.write_file(path, text)
    tb.daemon_reload()
    live = [key for key in CASES if errors[key] is None]
    cases = [{"key": key, "host": "127.0.0.1", "port": PORTS[key], **CASES[key]} for key in live]
    _log(f"{warmup}+{runs} interleaved rounds of {', '.join(live)}, {warm} warm requests each")
    script = f"{tb.project_dir_inside}/bench/sockets.py"  # the checkout as the testbed shows it
    args = {"cases": cases, "runs": runs, "warmup": warmup, "warm": warm, "settle": settle}
    r = tb.run([HOST_PYTHON, "-I", "-S", script, "--inner", json.dumps(args)], check=False, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"bench.sockets inner loop failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    raw = json.loads(r.stdout)
    for key in live:
        if not raw["samples"][key]["cold"]:
            errors[key] = "; ".join(raw["failures"][key][-3:])[:500] or "no samples"
    summary = {key: {kind: summarize(v) for kind, v in raw["samples"][key].items()} for key in live}
    plain_cold = summary.get("plain", {}).get("cold", {}).get("median")
    plain_warm = summary.get("plain", {}).get("warm", {}).get("median")
    ratios = {
        key: {
            "cold_vs_plain": ratio(summary[key]["cold"]["median"], plain_cold),
            "warm_vs_plain": ratio(summary[key]["warm"]["median"], plain_warm),
        }
        for key in live
    }
    return {
        "config": {
            "runs": runs,
            "warmup": warmup,
            "warm_requests_per_round": warm,
            "settle_s": settle,
            "timing": "perf_counter_ns from connect() to the first byte of the answer, inside the testbed",
            "server": "tests/fdserver.c, gcc -static -O2, the same binary in every case",
        },
        "labels": {key: LABELS[key] for key in CASES},
        "units": {key: [text for _path, text in units] for key, units in _units(ROOTFS).items()},
        "errors": errors,
        "failures": raw["failures"],
        "answers": raw["answers"],
        "samples": raw["samples"],
        "summary": summary,
        "ratios": ratios,
        "target": {
            "cold_within_1.3x_of_plain": (ratios.get("sdcontainer", {}).get("cold_vs_plain") or 99) <= 1.3
            if "sdcontainer" in ratios and plain_cold
            else None
        },
    }


def render(results: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    lines = [
        "# Socket activation: time to first byte",
        "",
        f"{results['config']['runs']} cold requests per case (+{results['config']['warmup']} warm-up rounds), "
        f"{results['config']['warm_requests_per_round']} warm requests per round, interleaved; "
        "milliseconds from connect() to the first byte of the answer.",
        "",
        "| case | cold median | cold p90 | cold / plain | warm median | warm p90 | warm / plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in results["labels"].items():
        if key not in results["summary"]:
            lines.append(f"| {label} | failed: {results['errors'][key]} | | | | | |")
            continue
        cold, warm = results["summary"][key]["cold"], results["summary"][key]["warm"]
        r = results["ratios"][key]
        lines.append(
            f"| {label} | {ms(cold['median'])} | {ms(cold['p90'])} | {r['cold_vs_plain'] or 'n/a'}x "
            f"| {ms(warm['median'])} | {ms(warm['p90'])} | {r['warm_vs_plain'] or 'n/a'}x |"
        )
    target = results["target"]["cold_within_1.3x_of_plain"]
    failed = {key: f for key, f in results["failures"].items() if f}
    if failed:
        lines += ["", "Failed rounds (not in the samples):", ""]
        lines += [f"- {key}: {len(f)}, the last: {f[-1]}" for key, f in failed.items()]
    lines += [
        "",
        f"Target (sdcontainer cold within 1.3x of the plain unit): "
        f"{'met' if target else 'not met' if target is not None else 'n/a'}.",
        "",
        "What each server saw (its last answer):",
        "",
        *(f"- {key}: `{answer}`" for key, answer in results["answers"].items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--inner"]:  # inside the testbed
        print(json.dumps(measure(**json.loads(args[1]))))
        return 0
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python3 -m bench.sockets", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="cold requests per case (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up rounds (default 2)")
    ap.add_argument("--warm", type=int, default=10, help="warm requests per round (default 10)")
    ap.add_argument("--quick", action="store_true", help="3 runs, 1 warm-up: a smoke test")
    ap.add_argument("--output", type=Path, default=None, help="directory for sockets.md/json (bench/results)")
    opts = ap.parse_args(args)
    if opts.quick:
        opts.runs, opts.warmup = 3, 1
    if os.geteuid() != 0:
        raise SystemExit("bench.sockets needs root (it boots a systemd testbed in new namespaces)")
    import tempfile

    from bench.cases import ROOTFS
    from bench.run import make_wheels, meta
    from tests.rootfs import build_busybox_rootfs
    from tests.testbed import PROJECT_DIR, Testbed

    output = opts.output or PROJECT_DIR / "bench" / "results"
    make_wheels()
    with tempfile.TemporaryDirectory(prefix="sdcontainer-bench-sockets-") as tmp:
        rootfs = build_busybox_rootfs(os.path.join(tmp, "rootfs"))
        _log("booting the testbed")
        with Testbed(network=True) as tb:
            tb.install_project()
            tb.copy_in(rootfs, ROOTFS)
            results = run(tb, opts.runs, warmup=opts.warmup, warm=opts.warm)
            results["meta"] = meta(tb)
    markdown = render(results)
    output.mkdir(parents=True, exist_ok=True)
    (output / "sockets.md").write_text(markdown)
    (output / "sockets.json").write_text(json.dumps(results, indent=1) + "\n")
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
