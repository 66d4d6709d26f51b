"""tools/demo: install sdcontainer, run a web server container as a systemd service, show it."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.rootfs import build_busybox_rootfs
from tests.testbed import PROJECT_DIR, Testbed

ROOTFS = "/srv/sdcontainer-demo/rootfs"
WWW = "/srv/sdcontainer-demo/www"
UNIT = "/etc/sdcontainer/hello.container"
HELLO = f"""\
[Unit]
Description=Hello from sdcontainer

[Container]
Rootfs={ROOTFS}
Exec=/bin/httpd -f -p 8080 -h /www
Environment=GREETING=hi
Volume={WWW}:/www:ro
# the host's network: the server is on the host's 127.0.0.1:8080 (the default bridge network
# would need PublishPort=8080:8080 for that; socket activation is another way)
Network=host
# a minimal init as PID 1: forwards systemctl stop's SIGTERM, reaps zombies
RunInit=yes

[Service]
MemoryMax=64M

[Install]
WantedBy=multi-user.target
"""

Runner = Callable[[Sequence[str]], str]


def show(run: Runner, *argv: str) -> str:
    print(f"\n$ {shlex.join(argv)}", flush=True)
    out = run(argv)
    print(out.rstrip(), flush=True)
    return out


def demo(run: Runner, write: Callable[[str, str], None]) -> None:
    write(f"{WWW}/index.html", "hello from a container, served by a systemd service\n")
    write(UNIT, HELLO)
    print(f"\n# {UNIT}:\n{HELLO}")
    show(run, "systemctl", "daemon-reload")
    show(run, "systemctl", "start", "hello.service")
    show(run, "systemctl", "status", "--no-pager", "--lines=0", "hello.service")
    pid = show(run, "systemctl", "show", "-P", "MainPID", "hello.service").strip()
    show(run, "grep", "-E", "^(Name|NSpid|PPid|CapEff|NoNewPrivs|Seccomp):", f"/proc/{pid}/status")
    print("# NSpid: the main process is PID 1 of its own pid namespace; PPid 1: systemd's child")
    for _ in range(50):
        page = run(["busybox", "wget", "-qO-", "http://127.0.0.1:8080/"])
        if page:
            break
        time.sleep(0.1)
    show(run, "busybox", "wget", "-qO-", "http://127.0.0.1:8080/")
    show(run, "sdcontainer", "list")
    show(run, "systemctl", "stop", "hello.service")
    show(run, "journalctl", "-u", "hello.service", "--no-pager", "-o", "short-monotonic")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = build_busybox_rootfs(str(Path(tmp) / "rootfs"))
        if Path("/proc/1/comm").read_text().strip() == "systemd":
            print("# PID 1 is systemd: installing on this machine (make install, PREFIX=/usr/local)")
            subprocess.run(["make", "-C", str(PROJECT_DIR), "install", "PYTHON=/usr/bin/python3"], check=True)
            subprocess.run(["mkdir", "-p", ROOTFS], check=True)
            subprocess.run(["cp", "-a", f"{rootfs}/.", ROOTFS], check=True)

            def run(argv: Sequence[str]) -> str:
                return subprocess.run(list(argv), capture_output=True, text=True).stdout

            def write(path: str, text: str) -> None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)

            demo(run, write)
            return 0
        print("# PID 1 is not systemd here: booting a throwaway systemd testbed (tests/testbed.py)")
        with Testbed(network=True) as bed:
            seconds = bed.install_project()
            print(f"# make install inside the testbed took {seconds:.1f} s")
            bed.copy_in(rootfs, ROOTFS)
            demo(lambda argv: bed.run(list(argv), check=False).stdout, bed.write_file)
        print("\n# the testbed is gone; nothing was written to this machine's disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
