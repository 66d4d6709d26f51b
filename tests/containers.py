"""What the real-systemd tests share: writing .container units into a testbed and looking at
the processes systemd runs for them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tests.testbed import Testbed

ROOTFS = "/srv/rootfs/busybox"
UNITS = "/etc/sdcontainer"

T = TypeVar("T")


def add_container(bed: Testbed, name: str, body: str, *, reload: bool = True) -> None:
    bed.write_file(f"{UNITS}/{name}.container", body)
    if reload:
        bed.daemon_reload()


def container(exec_line: str, extra: str = "", service: str = "") -> str:
    text = f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nRootfs={ROOTFS}\nExec={exec_line}\n{extra}"
    if service:
        text += f"[Service]\n{service}\n"
    return text


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll until `predicate` returns something true, or the timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def proc_status(bed: Testbed, pid: str) -> dict[str, str]:
    text = bed.read_file(f"/proc/{pid}/status")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def unit_processes(bed: Testbed, unit: str) -> list[str]:
    """Every process in the unit's cgroup and below it: in the name=systemd hierarchy of a
    hybrid testbed, in the only one of a unified testbed."""
    cgroup = bed.show(unit, "ControlGroup")
    if not cgroup:
        return []  # no cgroup: the unit has no processes
    script = (
        "top=/sys/fs/cgroup; [ -d $top/systemd ] && top=$top/systemd; "
        f'find "$top{cgroup}" -name cgroup.procs -exec cat {{}} + 2>/dev/null'
    )
    out = bed.run(["sh", "-c", script], check=False).stdout
    return sorted(set(out.split()), key=int)


def run_to_end(bed: Testbed, unit: str, timeout: float = 15.0) -> None:
    """Start a unit whose container ends by itself, and wait until it has (a failed start is
    fine: the tests look at how it ended)."""
    bed.systemctl("start", unit, check=False)
    wait_for(lambda: bed.show(unit, "ActiveState") in ("failed", "inactive"), timeout=timeout)


# sd_notify from a shell: `notify [-f] MESSAGE PROGRAM [ARG...]` sends MESSAGE (with -f, an fd
# of /dev/null too, SCM_RIGHTS, as sd_pid_notify_with_fds does) to $NOTIFY_SOCKET, then execs
# PROGRAM in the same process. Exit status 3: connect() failed, 4: sendmsg() failed.
NOTIFIER_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int with_fd = argc > 1 && strcmp(argv[1], "-f") == 0;
    argv += with_fd;
    argc -= with_fd;
    const char *path = getenv("NOTIFY_SOCKET");
    if (argc < 3 || path == NULL) return 2;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) return 3;
    struct iovec iov = {.iov_base = argv[1], .iov_len = strlen(argv[1])};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (with_fd) {
        int passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &passed, sizeof(int));
    }
    if (sendmsg(fd, &msg, 0) < 0) return 4;
    close(fd);
    execv(argv[2], argv + 2);
    return 127;
}
"""
