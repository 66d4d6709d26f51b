"""A tiny root file system for real containers in tests: Debian's static busybox and little else.

Built from what the host already has (package busybox-static), so tests need no registry or
network. The tree is owned by root and meant to be used read-only as a container's Rootfs=.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
tty:x:5:
staff:x:50:app
app:x:1000:
audio:x:63:app
nogroup:x:65534:
"""

INDEX_HTML = "<html><body>hello from busybox</body></html>\n"


def build_busybox_rootfs(path: str) -> str:
    """Create a busybox rootfs at `path` (which must not exist or be empty); returns it."""
    if not os.access(BUSYBOX, os.X_OK):
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static")
    os.makedirs(path, exist_ok=True)
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "home/app",
        "www",
        "tmp",
        "var/tmp",
        "run",
        "proc",
        "sys",
        "dev",
    ):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    os.chmod(os.path.join(path, "var/tmp"), 0o1777)
    os.chmod(os.path.join(path, "root"), 0o700)
    if os.geteuid() == 0:
        os.chown(os.path.join(path, "home/app"), 1000, 1000)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet == "busybox":
            continue
        link = os.path.join(path, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    files = {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "www/index.html": INDEX_HTML,
        "etc/os-release": "ID=busybox\nNAME=busybox\n",
    }
    for name, text in files.items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as f:
            f.write(text)
    return path
