"""tools/shell: try sdcontainer in a throwaway systemd, where PID 1 is not systemd.

Boots the testbed the tests use (tests/testbed.py: systemd as PID 1 of throwaway namespaces
on an overlay of this machine's root; never the host's /sys, cgroup tree or /dev), installs
this checkout into it with ``make install``, makes the README's example root and page
(``examples/make-rootfs``), puts the given .container files into /etc/sdcontainer, runs
``systemctl daemon-reload`` and opens a shell there, in the checkout, or runs ``-- COMMAND``.
Everything written inside is gone when the shell exits.

It lives in tools/ beside the demo and the benchmark, not in the package: it installs *this
checkout*, so it needs one, and the testbed is test code that an installed sdcontainer
does not ship (``sdcontainer try`` runs this from a checkout).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.testbed import PROJECT_DIR, Testbed, TestbedError

UNIT_DIR = "/etc/sdcontainer"
EXAMPLE_ROOT = "/srv/rootfs/busybox"
EXAMPLE_WWW = "/srv/www"
EXAMPLE_PAGE = "hello from a container, served by a systemd service\n"
BANNER = (
    "sdcontainer try: a throwaway systemd (PID 1 of private namespaces) with this checkout "
    "installed; everything in it is thrown away on exit"
)
PS1 = r"[sdcontainer-try \W]# "
#: What --keep keeps: the files, the roots and pages beside them, the image store. Not the
#: rest (the journal, /run, the installed checkout: installed afresh each time).
KEPT = ("/etc/sdcontainer", "/srv", "/var/lib/sdcontainer")
# the read-only mount point of a checkout under /tmp (tests.testbed.CHECKOUT_FALLBACK): even
# --one-file-system archives the directory itself, which cannot be restored onto the mount
CHECKOUT_MOUNT = "srv/sdcontainer-checkout"


def restore(bed: Testbed, keep: Path) -> bool:
    archive = keep / "state.tar"
    if not archive.exists():
        return False
    with archive.open("rb") as f:
        r = subprocess.run(
            bed.command(["tar", "-C", "/", "--numeric-owner", f"--exclude={CHECKOUT_MOUNT}", "-xpf", "-"]),
            stdin=f, capture_output=True, text=True, env=bed.env(),
        )  # fmt: skip
    if r.returncode != 0:
        raise TestbedError(f"restoring {archive}: {r.stderr.strip()}")
    return True


def save(bed: Testbed, keep: Path) -> None:
    """Into keep/state.tar, replaced only once the new one is complete. --one-file-system:
    not the checkout, which shows under /srv when it lives under /tmp."""
    keep.mkdir(parents=True, exist_ok=True)
    paths = [p.lstrip("/") for p in KEPT if bed.exists(p)]
    tmp = keep / "state.tar.tmp"
    with tmp.open("wb") as f:
        r = subprocess.run(
            bed.command(["tar", "-C", "/", "--one-file-system", "--numeric-owner", f"--exclude={CHECKOUT_MOUNT}"]
                        + ["-cf", "-", *paths]),
            stdout=f, stderr=subprocess.PIPE, text=True, env=bed.env(),
        )  # fmt: skip
    if r.returncode != 0:
        tmp.unlink()
        raise TestbedError(f"saving into {keep}: {r.stderr.strip()}")
    os.replace(tmp, keep / "state.tar")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/shell",
        description="A shell in a throwaway systemd with this checkout installed (sdcontainer on PATH, "
        "systemctl, journalctl), the README's example root in /srv/rootfs/busybox and FILEs in "
        "/etc/sdcontainer. Nothing is kept unless --keep says where.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help=".container files to put in place (default: examples/*.container)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no banner and no setup lines")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help=f"keep {', '.join(KEPT)} between sessions, in DIR/state.tar (saved at exit, restored at start); "
        "everything else is thrown away all the same",
    )
    if "--" in argv:
        at = argv.index("--")
        args = parser.parse_args(argv[:at])
        args.command = argv[at + 1 :]
        if not args.command:
            parser.error("nothing after --")
    else:
        args = parser.parse_args(argv)
        args.command = []
    for file in args.files:
        if not Path(file).is_file():
            parser.error(f"{file}: no such file")
    return args


def prepare(bed: Testbed, files: list[str], say: Callable[[str], None]) -> None:
    """What the README's examples expect, made the way the README says to make it."""
    t0 = time.monotonic()
    bed.install_project()
    say(f"make install: {time.monotonic() - t0:.1f} s")
    inside = bed.project_dir_inside
    bed.run([f"{inside}/examples/make-rootfs", EXAMPLE_ROOT])
    bed.write_file(f"{EXAMPLE_WWW}/index.html", EXAMPLE_PAGE)
    bed.run(["mkdir", "-p", UNIT_DIR])
    for file in files or sorted(str(p) for p in (PROJECT_DIR / "examples").glob("*.container")):
        bed.copy_in(Path(file).resolve(), f"{UNIT_DIR}/{Path(file).name}")
    bed.daemon_reload()


def interactive_env() -> dict[str, str]:
    env = {"PS1": PS1, "TERM": os.environ.get("TERM", "dumb"), "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    if sys.stdout.isatty():  # a pager and colours as on any host
        env.pop("SYSTEMD_PAGER")
        env["SYSTEMD_COLORS"] = "1"
        env["SYSTEMD_LESS"] = "FRXMK"
    return env


def run_inside(bed: Testbed, argv: list[str], env: dict[str, str]) -> int:
    """Run argv in the testbed with this terminal (or these pipes) as its stdio."""
    # ^C belongs to the shell inside; this process must outlive it to tear the testbed down
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if sys.stdin.isatty():
            # a terminal of the testbed's own devpts (script(1) relays this one to it): this
            # one is not visible in there, and `sdcontainer run` binds its terminal into the
            # container, which a terminal it cannot see makes fail
            argv = ["script", "-qefc", shlex.join(argv), "/dev/null"]
        # env -C, not popen's cwd=: nsenter opens its --wd in this mount namespace, not the testbed's
        proc = bed.popen(["env", "-C", bed.project_dir_inside, *argv], env=env, stdin=None)
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def say(text: str) -> None:
        if not args.quiet:
            print(f"try: {text}", file=sys.stderr, flush=True)

    if not args.quiet:
        banner = BANNER if not args.keep else BANNER.replace("everything in it", f"all but {', '.join(KEPT)}")
        print(banner, file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        with Testbed(network=True) as bed:
            say(f"systemd booted: {bed.boot_seconds or 0:.1f} s")
            keep = Path(args.keep).resolve() if args.keep else None
            if keep is not None and restore(bed, keep):
                say(f"restored {', '.join(KEPT)} from {keep}/state.tar")
            prepare(bed, args.files, say)
            say(f"ready in {time.monotonic() - t0:.1f} s; {EXAMPLE_ROOT} and {UNIT_DIR} are in place")
            argv = args.command or ["/bin/bash", "--norc", "-i"]
            status = run_inside(bed, argv, interactive_env())
            if keep is not None:
                save(bed, keep)
                say(f"kept {', '.join(KEPT)} in {keep}/state.tar")
            return status
    except TestbedError as error:
        print(f"tools/shell: cannot boot the throwaway systemd: {error}", file=sys.stderr)
        return 1
    finally:
        say("the throwaway system is gone")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("tools/shell: needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        sys.exit(1)
    os.chdir(PROJECT_DIR)
    sys.exit(main())
