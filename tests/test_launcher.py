"""The real launcher, run as root on this host, against a busybox rootfs.

Every security claim is checked from inside a container, by a probe that runs there. The
launcher runs in its foreground mode (no $NOTIFY_SOCKET), except in the tests of the systemd
hand-off, which play the manager's side of the notify protocol on a socket of their own.

How the launcher is started: systemd runs `<python> -I -m sdcontainer.launcher`, but -I
ignores PYTHONPATH and the current directory, so it would import an installed sdcontainer
instead of this checkout's. The tests run `<python> -E -s -m sdcontainer.launcher` from the
checkout instead: -m puts the current directory first on sys.path, and -E/-s keep the
environment and user site-packages out, which is what -I is for.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sdcontainer import launcher, linux, security
from sdcontainer.keys import spec_from_argv, spec_to_argv
from sdcontainer.spec import BindMount, ContainerSpec, TmpfsMount
from sdcontainer.state import state_path
from tests.helpers import CHECKOUT

LAUNCHER = [sys.executable, "-E", "-s", "-m", "sdcontainer.launcher"]
HOST_PYTHON = "/usr/bin/python3"  # Debian's, used as a probe inside containers via /usr binds
PODMAN_CAPS = 0x00000000800405FB


def _namespaces_usable() -> str | None:
    """Why containers cannot run here, or None. Found by trying, in a throwaway child."""
    if os.geteuid() != 0:
        return "needs root"
    pid = os.fork()
    if pid == 0:
        try:
            linux.unshare(
                linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWNET | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
            )
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            linux.mount("tmpfs", "/mnt", "tmpfs", 0)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return "namespaces or mounts are not available here"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "no overlayfs in this kernel"
    return None


_WHY_NOT = _namespaces_usable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def _host_bounding_set() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise AssertionError("no CapBnd")


EXPECTED_CAPS = PODMAN_CAPS & _host_bounding_set()


def launch(
    rootfs: str,
    *command: str,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    timeout: float = 60,
    prefix: list[str] | None = None,
    **fields: Any,
) -> subprocess.CompletedProcess[str]:
    """Run one container in the foreground and collect its output. The options are made by
    the real spec_to_argv, so the launcher sees what a generated unit would give it."""
    fields.setdefault("name", "probe")
    spec = ContainerSpec(unit="probe.service", rootfs=rootfs, exec=command, **fields)
    argv = [*(prefix or []), *LAUNCHER, "start", *spec_to_argv(spec)]
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        argv,
        cwd=CHECKOUT,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        pass_fds=pass_fds,
    )


def sh(rootfs: str, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return launch(rootfs, "/bin/sh", "-c", script, **kw)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\nstdout={result.stdout}\nstderr={result.stderr}"
    return result.stdout


def status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def mountinfo_of(text: str) -> dict[str, str]:
    """mount point -> per-mount options, from a /proc/<pid>/mountinfo dump (last mount wins)."""
    result = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 5:
            result[parts[4]] = parts[5]
    return result


def snapshot(root: str) -> dict[str, tuple[object, ...]]:
    tree: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            extra: object = None
            if os.path.islink(path):
                extra = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            tree[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, extra)
    return tree


# --- identity, namespaces, privileges -------------------------------------------------------


def test_pid1_hostname_and_namespaces(busybox_rootfs: str) -> None:
    out = ok(
        sh(
            busybox_rootfs,
            "echo $$; hostname; cat /etc/hostname; ls -l /proc/self/ns/ | "
            "sed -n 's/.* \\([a-z_]*\\) -> \\(.*\\)/\\1 \\2/p'",
        )
    )
    lines = out.splitlines()
    assert lines[0] == "1"
    assert lines[1] == "probe" and lines[2] == "probe"
    inside = dict(line.split() for line in lines[3:])
    for ns in ("mnt", "pid", "uts", "ipc", "net", "cgroup"):
        assert inside[ns] != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert inside["user"] == os.readlink("/proc/self/ns/user")


def test_hostname_option_and_sanitized_name(busybox_rootfs: str) -> None:
    assert ok(sh(busybox_rootfs, "hostname", hostname="box1")).strip() == "box1"
    assert ok(sh(busybox_rootfs, "hostname", name="web@2_x:y")).strip() == "web-2-x-y"


def test_default_capabilities_nnp_and_seccomp(busybox_rootfs: str) -> None:
    status = status_fields(ok(sh(busybox_rootfs, "cat /proc/self/status")))
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == EXPECTED_CAPS, field
    assert int(status["CapInh"], 16) == 0
    assert int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_capability_add_drop_and_all(busybox_rootfs: str) -> None:
    status = status_fields(
        ok(
            sh(
                busybox_rootfs,
                "cat /proc/self/status",
                add_capabilities=("CAP_NET_RAW",),
                drop_capabilities=("CAP_CHOWN", "CAP_KILL"),
            )
        )
    )
    expected = (EXPECTED_CAPS | (1 << 13)) & ~((1 << 0) | (1 << 5)) & _host_bounding_set()
    assert int(status["CapEff"], 16) == expected
    assert int(status["CapBnd"], 16) == expected
    status = status_fields(ok(sh(busybox_rootfs, "cat /proc/self/status", drop_capabilities=("CAP_ALL",))))
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0


def test_unknown_capability_is_a_usage_error(busybox_rootfs: str) -> None:
    result = launch(busybox_rootfs, "/bin/true", add_capabilities=("CAP_NOPE",))
    assert result.returncode == 2
    assert result.stderr.strip() == "sdcontainer-launcher: unknown capability CAP_NOPE"


def test_no_new_privileges_off_keeps_seccomp(busybox_rootfs: str) -> None:
    status = status_fields(ok(sh(busybox_rootfs, "cat /proc/self/status", no_new_privileges=False)))
    assert status["NoNewPrivs"] == "0"
    assert status["Seccomp"] == "2"
    assert int(status["CapEff"], 16) == EXPECTED_CAPS


def test_user_namespaces_and_mounts_refused(busybox_rootfs: str) -> None:
    result = sh(
        busybox_rootfs,
        "unshare -U true; echo userns=$?; unshare -m true; echo mntns=$?; "
        "mount -t tmpfs none /mnt; echo mount=$?; sethostname() { hostname evil; }; sethostname; "
        "echo sethostname=$?; mknod /tmp/sda b 8 0; echo mknod=$?",
    )
    out = result.stdout
    for probe in ("userns", "mntns", "mount", "sethostname", "mknod"):
        assert f"{probe}=0" not in out, (probe, out, result.stderr)
    assert "unshare(0x10000000): Operation not permitted" in result.stderr


SYSCALL_PROBE = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def probe(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    print(name, "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()])
probe("keyctl", 250, 0, -1, 0)
probe("add_key", 248, 0, 0, 0, 0, 0)
probe("io_uring_setup", 425, 1, 0)
probe("bpf", 321, 0, 0, 0)
probe("perf_event_open", 298, 0, 0, -1, -1, 0)
probe("userfaultfd", 323, 0)
probe("clone3", 435, 0, 0)
probe("unshare_user", 272, 0x10000000)
probe("unshare_mnt", 272, 0x20000)
probe("x32_getpid", 0x40000000 | 39)
probe("getpid", 39)
"""

HOST_USR = (
    BindMount("/usr", "/usr", True),
    BindMount("/usr/lib", "/lib", True),
    BindMount("/usr/lib64", "/lib64", True),
)


@pytest.mark.skipif(not os.access(HOST_PYTHON, os.X_OK), reason="needs Debian's python3 as a probe")
def test_seccomp_filter_from_inside(busybox_rootfs: str) -> None:
    """The host's python (its /usr bound in read-only) makes the raw syscalls busybox cannot."""
    out = ok(launch(busybox_rootfs, HOST_PYTHON, "-I", "-S", "-c", SYSCALL_PROBE, volumes=HOST_USR))
    got = dict(line.split() for line in out.splitlines())
    assert got == {
        "keyctl": "EPERM", "add_key": "EPERM", "io_uring_setup": "EPERM", "bpf": "EPERM",
        "perf_event_open": "EPERM", "userfaultfd": "EPERM", "clone3": "ENOSYS",
        "unshare_user": "EPERM", "unshare_mnt": "EPERM", "x32_getpid": "EPERM", "getpid": "ok",
    }  # fmt: skip
    # With every capability, the kernel would allow unshare(CLONE_NEWNS); only the filter
    # still stands between the container and a user namespace.
    out = ok(
        launch(
            busybox_rootfs,
            HOST_PYTHON,
            "-I",
            "-S",
            "-c",
            SYSCALL_PROBE,
            volumes=HOST_USR,
            add_capabilities=("CAP_ALL",),
        )
    )
    got = dict(line.split() for line in out.splitlines())
    assert got["unshare_mnt"] == "ok"
    assert got["unshare_user"] == "EPERM" and got["keyctl"] == "EPERM"


I386_PROBE = r"""
import ctypes, mmap
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(b"\xb8\x14\x00\x00\x00\xcd\x80\xc3")  # mov eax, 20 (i386 getpid); int 0x80; ret
print("i386_getpid", ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))())
"""


@pytest.mark.skipif(not os.access(HOST_PYTHON, os.X_OK), reason="needs Debian's python3 as a probe")
def test_seccomp_kills_foreign_arch_syscalls(busybox_rootfs: str) -> None:
    """An i386 syscall (int 0x80) from a 64-bit process: outside, it works; inside, the
    filter kills the process (SIGSYS, 128+31) rather than letting an unfiltered ABI through."""
    host = subprocess.run([HOST_PYTHON, "-I", "-S", "-c", I386_PROBE], capture_output=True, text=True)
    if host.returncode != 0:
        pytest.skip("this kernel has no i386 emulation")
    result = launch(busybox_rootfs, HOST_PYTHON, "-I", "-S", "-c", I386_PROBE, volumes=HOST_USR)
    assert result.returncode == 128 + signal.SIGSYS
    assert "i386_getpid" not in result.stdout


def test_user_app_has_its_groups_and_no_caps(busybox_rootfs: str) -> None:
    out = ok(sh(busybox_rootfs, "id -u; id -g; id -G; echo $HOME; cat /proc/self/status", user="app"))
    lines = out.splitlines()
    assert lines[:4] == ["1000", "1000", "1000 50 63", "/home/app"]
    status = status_fields("\n".join(lines[4:]))
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert int(status["CapBnd"], 16) == EXPECTED_CAPS
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_a_user_gets_exactly_the_added_capabilities_ambient_included(busybox_rootfs: str) -> None:
    """As podman: a non-root user gets AddCapability='s capabilities (minus DropCapability=)
    in every set, so a program it execs keeps them; never the default set."""
    script = "cat /proc/self/status"  # cat is exec'd by the user's shell: ambient carried it
    added = ("CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_TIME")
    status = status_fields(
        ok(sh(busybox_rootfs, script, user="app", add_capabilities=added, drop_capabilities=("CAP_SYS_TIME",)))
    )
    expected = ((1 << 10) | (1 << 13)) & _host_bounding_set()
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[field], 16) == expected, field
    assert status["NoNewPrivs"] == "1"
    root = status_fields(ok(sh(busybox_rootfs, script, add_capabilities=added)))
    assert int(root["CapInh"], 16) == 0 and int(root["CapAmb"], 16) == 0


def test_group_and_numeric_user(busybox_rootfs: str) -> None:
    assert ok(sh(busybox_rootfs, "id -u; id -g", user="app", group="staff")).split() == ["1000", "50"]
    assert ok(sh(busybox_rootfs, "id -u; id -g; echo $HOME", user="4321")).split() == ["4321", "0", "/"]


def test_group_add_adds_supplementary_groups(busybox_rootfs: str) -> None:
    out = ok(sh(busybox_rootfs, "id -u; id -g; id -G", user="app", group_add=("nogroup", "4242", "tty", "staff")))
    assert out.splitlines() == ["1000", "1000", "1000 5 50 63 4242 65534"]  # the kernel sorts them
    assert ok(sh(busybox_rootfs, "id -G", group_add=("audio",))).split() == ["0", "63"]
    result = launch(busybox_rootfs, "/bin/true", group_add=("wheel",))
    assert result.returncode == 4
    assert result.stderr == "sdcontainer-launcher: GroupAdd=wheel: group not found in the container's /etc/group\n"


def test_unknown_user_is_one_clear_line(busybox_rootfs: str) -> None:
    result = launch(busybox_rootfs, "/bin/true", user="nosuchuser")
    assert result.returncode == 4
    assert result.stderr == ("sdcontainer-launcher: user 'nosuchuser' not found in the container's /etc/passwd\n")


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
def test_a_hostile_etc_passwd_fails_cleanly(busybox_rootfs: str, tmp_path: Path, kind: str) -> None:
    """/etc/passwd is read by the container's init as root: a FIFO there would block the start
    for ever, a link to /dev/zero would read until memory runs out (here: until the address
    space limit the test sets). Either must be one line and exit 4."""
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    (image / "etc" / "group").unlink()
    if kind == "fifo":
        os.mkfifo(image / "etc" / "group")
    elif kind == "zero":
        (image / "etc" / "group").symlink_to("/dev/zero")
    else:
        with open(image / "etc" / "group", "wb") as f:
            f.truncate(256 << 20)  # sparse
    result = launch(str(image), "/bin/true", user="app", prefix=["prlimit", f"--as={2 << 30}", "--"], timeout=30)
    assert result.returncode == 4, result
    assert result.stderr.startswith("sdcontainer-launcher: /etc/group: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# --- file systems ---------------------------------------------------------------------------


def test_masked_paths(busybox_rootfs: str) -> None:
    present = [p for p in security.MASKED_PATHS if os.path.exists(p)]
    assert present, "the host has none of the masked paths"
    script = "; ".join(
        f"if [ -d {p} ]; then echo {p} dir $(ls -A {p} | wc -l); "
        f"elif [ -e {p} ]; then echo {p} file $(cat {p} | wc -c); else echo {p} absent; fi"
        for p in security.MASKED_PATHS
    )
    out = ok(sh(busybox_rootfs, script))
    for line in out.splitlines():
        path, kind, *count = line.split()
        if kind != "absent":
            assert count == ["0"], line
        if path in present:
            assert kind != "absent", line
    assert "/proc/kcore" not in out or "/proc/kcore absent" in out or "/proc/kcore file 0" in out


def test_proc_sys_and_sys_are_read_only(busybox_rootfs: str) -> None:
    result = sh(
        busybox_rootfs,
        "cat /proc/self/mountinfo; echo x > /proc/sys/kernel/domainname; echo rc=$?; "
        "echo 1 > /sys/kernel/profiling; echo rc=$?",
    )
    mounts = mountinfo_of(result.stdout)
    for path in ("/sys", "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"):
        if path in mounts or os.path.exists(path):
            assert mounts[path].split(",")[0] == "ro", path
    assert mounts["/proc"].split(",")[:4] == ["rw", "nosuid", "nodev", "noexec"]
    assert "rc=0" not in result.stdout
    assert result.stderr.count("Read-only file system") == 2


def test_dev_has_exactly_the_expected_nodes(busybox_rootfs: str) -> None:
    out = ok(sh(busybox_rootfs, "ls -A /dev; echo --; ls -ln /dev | grep '^c'; echo --; cat /proc/self/mountinfo"))
    names, nodes, mounts = out.split("--\n")
    assert names.split() == sorted(
        [
            "fd",
            "full",
            "mqueue",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "urandom",
            "zero",
        ]
    )
    majors = {line.split()[-1]: line.split()[4:6] for line in nodes.splitlines()}
    assert majors == {
        "null": ["1,", "3"],
        "zero": ["1,", "5"],
        "full": ["1,", "7"],
        "random": ["1,", "8"],
        "urandom": ["1,", "9"],
        "tty": ["5,", "0"],
    }
    assert all(line.startswith("crw-rw-rw-") for line in nodes.splitlines())
    info = mountinfo_of(mounts)
    assert info["/dev"].startswith("rw,nosuid")
    assert info["/dev/shm"].split(",")[:4] == ["rw", "nosuid", "nodev", "noexec"]
    assert info["/dev/mqueue"].split(",")[:4] == ["rw", "nosuid", "nodev", "noexec"]
    assert "/dev/pts" in info


def test_mask_hides_paths_of_the_image_and_of_proc(busybox_rootfs: str) -> None:
    before = snapshot(busybox_rootfs)
    result = sh(
        busybox_rootfs,
        "cat /etc/os-release | wc -c; ls -A /www | wc -l; cat /proc/cpuinfo | wc -c; "
        "touch /www/x; echo touch=$?; echo /etc/os-release:$(grep -c ' /etc/os-release ' /proc/self/mountinfo)",
        masks=("/etc/os-release", "/www", "/proc/cpuinfo", "/no/such/path"),
    )
    assert result.stdout.split() == ["0", "0", "0", "touch=1", "/etc/os-release:1"], result
    assert snapshot(busybox_rootfs) == before


def test_a_mask_through_an_image_symlink_stays_inside(busybox_rootfs: str, tmp_path: Path) -> None:
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    secret = tmp_path / "host-secret"
    secret.write_text("host data\n")
    os.symlink(str(secret), image / "link")  # inside the container this points at nothing
    (image / "etc" / "inner").write_text("inner\n")
    os.symlink("/etc/inner", image / "etc" / "alias")
    out = ok(
        sh(
            str(image),
            "cat /etc/inner | wc -c; grep -c host-secret /proc/self/mountinfo; true",
            masks=("/link", "/etc/alias"),
        )
    )
    # the relative link's target inside the root was masked; the absolute one, resolved inside
    # the root, points at nothing there and was skipped rather than followed to the host's file
    assert out.split() == ["0", "0"]


def test_unmask_takes_paths_out_of_the_defaults(busybox_rootfs: str) -> None:
    script = "wc -c < /proc/interrupts; grep -E ' /proc/(interrupts|keys|timer_list|sys|acpi) ' /proc/self/mountinfo"
    # /proc/interrupts exists on every host with interrupts; the probe needs it to say anything
    assert os.path.exists("/proc/interrupts")
    result = sh(busybox_rootfs, script, unmasks=("/proc/interrupts",))
    lines = result.stdout.splitlines()
    assert int(lines[0]) > 0
    mounted = {line.split()[4] for line in lines[1:]}
    assert "/proc/interrupts" not in mounted
    assert "/proc/sys" in mounted  # the others stay
    result = sh(busybox_rootfs, script, unmasks=("/proc/[ik]*", "/proc/sys"))
    mounted = {line.split()[4] for line in result.stdout.splitlines()[1:]}
    assert not mounted & {"/proc/interrupts", "/proc/keys", "/proc/sys"}, result.stdout
    if os.path.exists("/proc/timer_list"):
        assert "/proc/timer_list" in mounted
    result = sh(
        busybox_rootfs, "grep -cE ' /(proc|sys)/' /proc/self/mountinfo; touch /proc/sys/kernel/x 2>&1", unmasks=("ALL",)
    )
    assert result.stdout.splitlines()[0] == "0", result.stdout
    assert "Read-only file system" not in result.stdout  # /proc/sys is writable now (the file cannot exist)
    # a Mask= path is masked whatever Unmask= says, as in podman
    out = ok(sh(busybox_rootfs, "wc -c < /proc/interrupts", masks=("/proc/interrupts",), unmasks=("ALL",)))
    assert out.strip() == "0"


def test_shm_size(busybox_rootfs: str) -> None:
    out = ok(sh(busybox_rootfs, "grep ' /dev/shm ' /proc/self/mountinfo; df -k /dev/shm | tail -1"))
    assert "size=65536k" in out and out.split()[-5] == "65536"
    out = ok(sh(busybox_rootfs, "grep ' /dev/shm ' /proc/self/mountinfo; df -k /dev/shm | tail -1", shm_size="128M"))
    assert "size=131072k" in out and out.split()[-5] == "131072"
    out = ok(sh(busybox_rootfs, "grep ' /dev/shm ' /proc/self/mountinfo", shm_size="0"))
    assert ",size=0k" in out  # tmpfs for "no limit" (but the service's memory)


def test_sysctls_are_the_containers_own(busybox_rootfs: str) -> None:
    with open("/proc/sys/kernel/shmmax") as f:
        host_shmmax = f.read()
    out = ok(
        sh(
            busybox_rootfs,
            "cat /proc/sys/kernel/shmmax /proc/sys/kernel/sem /proc/sys/fs/mqueue/msg_max "
            "/proc/sys/net/ipv4/ip_unprivileged_port_start; echo 1 > /proc/sys/kernel/shmmni; echo rc=$?",
            sysctls=(
                "kernel.shmmax=123456789",
                "kernel.sem=250 32000 32 200",
                "fs.mqueue.msg_max=20",
                "net.ipv4.ip_unprivileged_port_start=80",
            ),
        )
    )
    lines = out.split("\n")
    assert lines[0] == "123456789"
    assert lines[1].split() == ["250", "32000", "32", "200"]
    assert lines[2:4] == ["20", "80"]
    assert lines[4] != "rc=0"  # /proc/sys is read-only again for the container's command
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read() == host_shmmax


def test_a_sysctl_the_kernel_does_not_have_is_one_clear_line(busybox_rootfs: str) -> None:
    result = launch(busybox_rootfs, "/bin/true", sysctls=("net.ipv4.conf.eth9.rp_filter=1",))
    assert result.returncode == 4
    assert result.stderr == ("sdcontainer-launcher: sysctl net.ipv4.conf.eth9.rp_filter=1: No such file or directory\n")


def test_overlay_leaves_the_rootfs_untouched(busybox_rootfs: str) -> None:
    before = snapshot(busybox_rootfs)
    ok(
        sh(
            busybox_rootfs,
            "echo changed > /www/index.html && rm /etc/os-release && mkdir -p /new/dir && "
            "echo x > /new/dir/f && chmod 700 /bin && echo evil >> /etc/passwd && echo hi > /etc/hosts",
        )
    )
    assert snapshot(busybox_rootfs) == before


def test_etc_files_are_generated(busybox_rootfs: str) -> None:
    out = ok(
        sh(
            busybox_rootfs,
            "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf",
            hostname="etcbox",
        )
    )
    hostname, hosts, resolv = out.split("--\n")
    assert hostname == "etcbox\n"
    assert "127.0.0.1\tlocalhost" in hosts and "etcbox" in hosts
    assert "nameserver" not in resolv and resolv.startswith("#")
    out = ok(sh(busybox_rootfs, "cat /etc/resolv.conf", network="host"))
    with open("/etc/resolv.conf") as f:
        host = f.read()
    if "127.0.0.53" not in host:
        assert out == host


def test_add_host_lines_come_first_in_etc_hosts(busybox_rootfs: str) -> None:
    hosts = ok(
        sh(busybox_rootfs, "cat /etc/hosts", hostname="hbox", add_hosts=("db;db.local:192.0.2.10", "v6:2001:db8::33"))
    )
    assert hosts == (
        "192.0.2.10\tdb db.local\n2001:db8::33\tv6\n127.0.0.1\tlocalhost localhost.localdomain\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\thbox\n"
    )


def test_dns_keys_write_resolv_conf(busybox_rootfs: str) -> None:
    out = ok(
        sh(
            busybox_rootfs,
            "cat /etc/resolv.conf",
            dns_servers=("192.0.2.53", "2001:db8::53"),
            dns_search=("example.com", "corp.example"),
            dns_options=("ndots:2", "edns0"),
        )
    )
    assert out == (
        "search example.com corp.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2 edns0\n"
    )
    # With the host's network, what is not given comes from the host's file.
    out = ok(sh(busybox_rootfs, "cat /etc/resolv.conf", network="host", dns_search=("example.com",)))
    host = launcher.etc_resolv_conf(ContainerSpec(network="host")) or ""
    host_servers = [line for line in host.splitlines() if line.split()[:1] == ["nameserver"]]
    assert out.startswith("search example.com\n")
    assert [line for line in out.splitlines() if line.startswith("nameserver ")] == host_servers
    # DNSSearch=. : no search domains at all
    out = ok(sh(busybox_rootfs, "cat /etc/resolv.conf", dns_servers=("192.0.2.53",), dns_search=(".",)))
    assert out == "nameserver 192.0.2.53\n"


def test_dns_none_leaves_the_images_resolv_conf(busybox_rootfs: str, tmp_path: Path) -> None:
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    (image / "etc" / "resolv.conf").write_text("nameserver 198.51.100.1\n")
    out = ok(
        sh(
            str(image),
            "cat /etc/resolv.conf; grep -c ' /etc/resolv.conf ' /proc/self/mountinfo; true",
            dns_servers=("none",),
        )
    )
    assert out == "nameserver 198.51.100.1\n0\n"
    out = ok(sh(busybox_rootfs, "ls /etc/resolv.conf 2>/dev/null; echo rc=$?", dns_servers=("none",)))
    assert out == "rc=1\n"


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.skipif(not os.path.exists("/usr/share/zoneinfo/Asia/Tokyo"), reason="needs the host's tzdata")
def test_timezone_binds_the_hosts_zone_file(busybox_rootfs: str, tmp_path: Path) -> None:
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    os.symlink("/usr/share/zoneinfo/Etc/UTC", image / "etc" / "localtime")  # dangling inside: no tzdata there
    probe = "sha256sum /etc/localtime; date +%Z; grep ' /etc/localtime ' /proc/self/mountinfo"
    out = ok(sh(str(image), probe, timezone="Asia/Tokyo"))
    digest, zone, mount = out.splitlines()
    assert digest.split()[0] == _sha256("/usr/share/zoneinfo/Asia/Tokyo")
    assert zone == "JST"
    assert mount.split()[5].split(",")[:4] == ["ro", "nosuid", "nodev", "noexec"]
    assert os.readlink(image / "etc" / "localtime") == "/usr/share/zoneinfo/Etc/UTC"  # the image is untouched
    out = ok(sh(busybox_rootfs, "sha256sum /etc/localtime", timezone="local"))
    assert out.split()[0] == _sha256("/etc/localtime")
    result = launch(busybox_rootfs, "/bin/true", timezone="Nowhere/Land")
    assert result.returncode == 4
    assert result.stderr == (
        "sdcontainer-launcher: Timezone=Nowhere/Land: /usr/share/zoneinfo/Nowhere/Land does not "
        "exist on the host (is tzdata installed?)\n"
    )
    result = launch(busybox_rootfs, "/bin/true", timezone="zone1970.tab")
    assert result.returncode == 4 and "is not a time zone file" in result.stderr


def test_read_only_root_with_writable_tmp(busybox_rootfs: str) -> None:
    result = sh(
        busybox_rootfs,
        "touch /x; echo root=$?; for d in /tmp /var/tmp /run; do touch $d/x; echo $d=$?; done",
        read_only=True,
    )
    assert result.stdout.split() == ["root=1", "/tmp=0", "/var/tmp=0", "/run=0"]
    assert "Read-only file system" in result.stderr
    result = sh(busybox_rootfs, "touch /tmp/x; echo tmp=$?", read_only=True, read_only_tmpfs=False)
    assert result.stdout.split() == ["tmp=1"]


def test_volumes_ro_rw_and_created_targets(busybox_rootfs: str, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "seen").write_text("from host\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    before = snapshot(busybox_rootfs)
    result = sh(
        busybox_rootfs,
        "cat /data/ro/seen; touch /data/ro/new; echo ro=$?; echo written > /deep/down/rw/out; echo rw=$?; "
        "cat /etc/single.txt; grep -E ' /data/ro | /deep/down/rw ' /proc/self/mountinfo",
        volumes=(
            BindMount(str(ro), "/data/ro", True, ("nosuid", "nodev", "noexec")),
            BindMount(str(rw), "/deep/down/rw"),
            BindMount(str(single), "/etc/single.txt", True),
        ),
    )
    lines = result.stdout.splitlines()
    assert lines[:4] == ["from host", "ro=1", "rw=0", "one file"], result
    assert "Read-only file system" in result.stderr
    assert (rw / "out").read_text() == "written\n"
    assert not (ro / "new").exists()
    info = mountinfo_of("\n".join(lines[4:]))
    assert info["/data/ro"].split(",")[:4] == ["ro", "nosuid", "nodev", "noexec"]
    assert info["/deep/down/rw"].startswith("rw")
    assert snapshot(busybox_rootfs) == before  # the targets were made in the overlay


def test_volume_target_symlink_stays_inside(busybox_rootfs: str, tmp_path: Path) -> None:
    """An image symlink pointing at a host path must resolve inside the container's root."""
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    os.symlink(str(tmp_path / "host-target"), image / "link")
    (tmp_path / "host-target").mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("m\n")
    out = ok(sh(str(image), "cat /link/marker", volumes=(BindMount(str(src), "/link"),)))
    assert out == "m\n"
    assert not any((tmp_path / "host-target").iterdir())
    # and the dangling link's target was created inside the container's root, not on the host
    assert not os.path.exists(image / str(tmp_path / "host-target").lstrip("/"))


def test_image_with_dev_symlink_is_refused(busybox_rootfs: str, tmp_path: Path) -> None:
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    os.rmdir(image / "dev")
    os.symlink("/tmp", image / "dev")
    result = launch(str(image), "/bin/true")
    assert result.returncode == 4
    assert result.stderr == "sdcontainer-launcher: the image's /dev is a symlink; refusing to follow it\n"


def test_device_nodes_in_the_image_do_not_work(busybox_rootfs: str, tmp_path: Path) -> None:
    """A device node shipped in the image (here: a block device for a loop device backed by a
    host file; it could as well be the host's disk) must not open: only the fresh /dev has
    devices. Without nodev on the root, the container's root writes the host's block device."""
    backing = tmp_path / "disk"
    backing.write_bytes(b"\0" * (1 << 20))
    attach = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    loop = attach.stdout.strip()
    try:
        image = tmp_path / "image"
        subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
        os.mknod(image / "disk", 0o600 | 0o060000, os.stat(loop).st_rdev)  # S_IFBLK
        os.mknod(image / "kmsg", 0o600 | 0o020000, os.makedev(1, 11))  # S_IFCHR: the host's kernel log
        result = sh(
            str(image),
            "printf ESCAPED > /disk; echo disk=$?; printf '<3>sdcontainer-test-escape' > /kmsg; echo kmsg=$?; sync",
        )
        with open(loop, "rb") as f:
            assert f.read(7) != b"ESCAPED", result
        assert result.stdout.split() == ["disk=1", "kmsg=1"], result
        assert "Permission denied" in result.stderr
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_console_only_with_a_terminal(busybox_rootfs: str) -> None:
    spec = ContainerSpec(name="tty", unit="tty.service", rootfs=busybox_rootfs, exec=("/bin/ls", "/dev"))
    primary, secondary = os.openpty()
    try:
        result = subprocess.run(
            [*LAUNCHER, "start", *spec_to_argv(spec)],
            cwd=CHECKOUT,
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ["PATH"]},
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert "console" in ok(result).split()


def test_tmpfs_options(busybox_rootfs: str) -> None:
    out = ok(
        sh(
            busybox_rootfs,
            "cat /proc/self/mountinfo",
            tmpfs=(TmpfsMount("/scratch", ("size=1m", "mode=700")), TmpfsMount("/fast", ("exec",))),
        )
    )
    info = mountinfo_of(out)
    assert info["/scratch"].split(",")[:4] == ["rw", "nosuid", "nodev", "noexec"]
    assert "noexec" not in info["/fast"] and "nosuid" in info["/fast"]
    assert " /scratch " in out and "size=1024k,mode=700" in out


def test_working_dir(busybox_rootfs: str) -> None:
    assert ok(launch(busybox_rootfs, "pwd", working_dir="/www")) == "/www\n"


# --- fds, environment ---------------------------------------------------------------------


def test_only_stdio_reaches_the_container(busybox_rootfs: str, tmp_path: Path) -> None:
    leak_file = open(tmp_path / "leak", "w")  # noqa: SIM115 - held open across the run
    leak_r, leak_w = os.pipe()
    fds = (leak_file.fileno(), leak_r, leak_w, os.open("/", os.O_RDONLY | os.O_DIRECTORY))
    try:
        out = ok(sh(busybox_rootfs, "ls /proc/self/fd", pass_fds=fds))
    finally:
        leak_file.close()
        for fd in fds[1:]:
            os.close(fd)
    assert out.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory fd


def test_socket_activation_keeps_listen_fds(busybox_rootfs: str) -> None:
    """LISTEN_FDS sockets survive at 3.., LISTEN_PID becomes 1, other fds are closed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    extra = os.open("/dev/null", os.O_RDONLY)
    # Put the socket at fd 3 and set LISTEN_PID to the launcher's pid, as systemd does.
    shim = (
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='web'); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    try:
        out = ok(
            sh(
                busybox_rootfs,
                "ls /proc/self/fd; echo --; ls -l /proc/self/fd/3; echo --; env | sort",
                prefix=[sys.executable, "-c", shim, str(listener.fileno())],
                pass_fds=(listener.fileno(), extra),
            )
        )
    finally:
        listener.close()
        os.close(extra)
    fds, link, env = out.split("--\n")
    assert fds.split() == ["0", "1", "2", "3", "4"]  # 4 is ls's
    assert "socket:[" in link
    assert {"LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web"} <= set(env.split())


# Sets the LISTEN_* variables as systemd would for the process it execs next, with the
# socket given as argv[1] moved to fd 3; argv[2] is LISTEN_PID ("self": the launcher's pid),
# argv[3] LISTEN_FDNAMES ("" for none).
LISTEN_SHIM = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()) if sys.argv[2] == 'self' else sys.argv[2], LISTEN_FDS='1'); "
    "sys.argv[3] and os.environ.update(LISTEN_FDNAMES=sys.argv[3]); "
    "os.execv(sys.argv[4], sys.argv[4:])"
)


def _activated(rootfs: str, script: str, listen_pid: str, names: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        return sh(
            rootfs,
            script,
            prefix=[sys.executable, "-c", LISTEN_SHIM, str(listener.fileno()), listen_pid, names],
            pass_fds=(listener.fileno(),),
            **kw,
        )
    finally:
        listener.close()


def test_listen_fds_of_another_process_are_not_passed(busybox_rootfs: str) -> None:
    """LISTEN_PID naming another process (variables inherited from an activated parent): fd 3
    is not ours to pass, so it is closed and no LISTEN_* variable reaches the container, not
    even when Environment= names one."""
    out = ok(_activated(busybox_rootfs, "ls /proc/self/fd; echo --; env | sort", "1", "web",
                        environment=("LISTEN_FDS", "LISTEN_PID")))  # fmt: skip
    fds, env = out.split("--\n")
    assert fds.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory fd
    assert "LISTEN_" not in env, env


def test_listen_fdnames_must_name_every_fd(busybox_rootfs: str) -> None:
    result = _activated(busybox_rootfs, "true", "self", "web:admin")
    assert result.returncode == 4
    assert result.stderr == "sdcontainer-launcher: LISTEN_FDNAMES='web:admin' does not name LISTEN_FDS=1 fds\n"


def test_listen_fds_without_names(busybox_rootfs: str) -> None:
    """LISTEN_FDNAMES is optional (sd_listen_fds_with_names says "unknown" then)."""
    env = ok(_activated(busybox_rootfs, "ls -l /proc/self/fd/3; env | sort", "self", ""))
    assert "socket:[" in env
    assert "LISTEN_FDS=1" in env.split() and "LISTEN_PID=1" in env.split()
    assert "LISTEN_FDNAMES" not in env


def test_environment_is_fresh(busybox_rootfs: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\n\nFROM_FILE=plain\nQUOTED=\"with spaces\"\nOVERRIDDEN=file\nSINGLE='x y'\n")
    host_env = {
        "INVOCATION_ID": "0123",
        "JOURNAL_STREAM": "8:1",
        "SECRET_HOST": "no",
        "PASSED": "from-launcher",
        "TERM": "vt100",
        "SYSTEMD_EXEC_PID": "1",
    }
    out = ok(
        launch(
            busybox_rootfs,
            "/bin/env",
            env=host_env,
            environment_files=(str(env_file),),
            environment=("OVERRIDDEN=spec", "PASSED", "MISSING_BARE", "EMPTY="),
        )
    )
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env == {
        "PATH": launcher.DEFAULT_PATH, "container": "sdcontainer", "HOSTNAME": "probe", "HOME": "/root",
        "TERM": "vt100", "FROM_FILE": "plain", "QUOTED": "with spaces", "SINGLE": "x y",
        "OVERRIDDEN": "spec", "PASSED": "from-launcher", "EMPTY": "",
    }  # fmt: skip


SYSTEMD_SERVICE_ENV = {
    "INVOCATION_ID": "0123", "JOURNAL_STREAM": "8:1", "SYSTEMD_EXEC_PID": "1", "MANAGERPID": "1", "MAINPID": "2",
    "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "3",
    "SDCONTAINER_DEBUG": "0", "RUNTIME_DIRECTORY": "/run/x", "CREDENTIALS_DIRECTORY": "/run/credentials/x",
    "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5", "MONITOR_SERVICE_RESULT": "exit-code",
    "TRIGGER_UNIT": "x.path", "PIDFILE": "/run/x.pid", "LOG_NAMESPACE": "x",
}  # fmt: skip


def test_environment_host_passes_all_but_systemds_service_variables(busybox_rootfs: str) -> None:
    host_env = {**SYSTEMD_SERVICE_ENV, "FROM_HOST": "yes", "PATH": "/usr/bin:/bin", "TERM": "vt100"}
    out = ok(launch(busybox_rootfs, "/bin/env", env=host_env, env_host=True, environment=("FROM_HOST=spec",)))
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env == {
        "PATH": "/usr/bin:/bin", "container": "sdcontainer", "HOSTNAME": "probe", "HOME": "/root", "LANG": "C.UTF-8",
        "TERM": "vt100", "FROM_HOST": "spec",
    }  # fmt: skip


def test_missing_environment_file(busybox_rootfs: str, tmp_path: Path) -> None:
    result = launch(busybox_rootfs, "/bin/true", environment_files=(str(tmp_path / "nope"),))
    assert result.returncode == 4
    assert result.stderr == (f"sdcontainer-launcher: environment file {tmp_path}/nope: No such file or directory\n")


def test_a_nul_in_an_environment_file_is_its_line(busybox_rootfs: str, tmp_path: Path) -> None:
    """No environment variable can hold a NUL; the file's line says so, before the start,
    rather than an "internal error" from execve after the hand-off to systemd."""
    env_file = tmp_path / "env"
    env_file.write_bytes(b"GOOD=1\nBAD=x\0y\n")
    result = launch(busybox_rootfs, "/bin/true", environment_files=(str(env_file),))
    assert result.returncode == 4
    assert result.stderr == f"sdcontainer-launcher: {env_file}:2: a value cannot hold a NUL byte\n"


# --- network --------------------------------------------------------------------------------


def test_network_none_has_loopback_up(busybox_rootfs: str) -> None:
    out = ok(
        sh(
            busybox_rootfs,
            "ls /sys/class/net; cat /sys/class/net/lo/flags; "
            "nc -l -p 8080 -e echo pong & sleep 0.2; echo ping | nc 127.0.0.1 8080",
        )
    )
    lines = out.split()
    assert lines[0] == "lo" and lines[1] in ("0x9", "0x49")  # IFF_UP|IFF_LOOPBACK[|IFF_RUNNING]
    assert lines[2] == "pong"


def test_network_host_sees_host_interfaces(busybox_rootfs: str) -> None:
    out = ok(sh(busybox_rootfs, "ls /sys/class/net; cat /proc/self/mountinfo", network="host"))
    assert set(os.listdir("/sys/class/net")) <= set(out.split())
    assert mountinfo_of(out)["/sys"].startswith("ro")


# --- command, exit codes and errors -------------------------------------------------------


def test_exit_status_propagates(busybox_rootfs: str) -> None:
    assert sh(busybox_rootfs, "exit 7").returncode == 7
    assert launch(busybox_rootfs, "/bin/false").returncode == 1


def test_sigterm_is_forwarded(busybox_rootfs: str) -> None:
    proc = subprocess.Popen(
        [
            *LAUNCHER,
            "start",
            *spec_to_argv(
                ContainerSpec(
                    name="sig",
                    unit="sig.service",
                    rootfs=busybox_rootfs,
                    exec=("/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"),
                )
            ),
        ],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 42
    finally:
        proc.kill()
        proc.wait()


def test_killed_container_gives_128_plus_signal(busybox_rootfs: str) -> None:
    # PID 1 cannot be killed by its own namespace; a child of it that dies by signal is what
    # the shell reports as 128+N, and the launcher maps a signalled PID 1 the same way.
    assert sh(busybox_rootfs, "sh -c 'kill -9 $$'; exit $?").returncode == 137


@pytest.mark.parametrize(
    ("fields", "command", "rc", "message"),
    [
        ({"rootfs": "/nonexistent/rootfs"}, ("/bin/true",), 4, "rootfs /nonexistent/rootfs: No such file or directory"),
        ({}, ("/bin/nope",), 127, "exec /bin/nope: No such file or directory"),
        ({}, ("nope",), 127, "exec nope: No such file or directory (not found in PATH="),
        ({}, ("/www/index.html",), 126, "exec /www/index.html: Permission denied"),
        ({}, ("/proc/self/exe",), 126, "exec /proc/self/exe: refusing a symlink loop or /proc magic link"),
        (
            {"volumes": (BindMount("/nonexistent/src", "/x"),)},
            ("/bin/true",),
            4,
            "volume source /nonexistent/src: No such file or directory",
        ),
        ({"working_dir": "/nope"}, ("/bin/true",), 4, "working directory /nope: No such file or directory"),
    ],
)
def test_failures_are_one_line(
    busybox_rootfs: str, fields: dict[str, Any], command: tuple[str, ...], rc: int, message: str
) -> None:
    result = launch(fields.pop("rootfs", busybox_rootfs), *command, **fields)
    assert result.returncode == rc, result
    assert result.stderr.startswith(f"sdcontainer-launcher: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _dynamic_elf_with_interpreter(path: Path, interpreter: bytes) -> None:
    """A copy of the host's dynamically linked /bin/true whose PT_INTERP names `interpreter`."""
    data = bytearray(Path("/bin/true").read_bytes())
    phoff, phentsize, phnum = int.from_bytes(data[0x20:0x28], "little"), data[0x36], data[0x38]
    for i in range(phnum):
        header = phoff + i * phentsize
        if int.from_bytes(data[header : header + 4], "little") == 3:  # PT_INTERP
            offset = int.from_bytes(data[header + 8 : header + 16], "little")
            size = int.from_bytes(data[header + 32 : header + 40], "little")
            assert len(interpreter) < size
            data[offset : offset + size] = interpreter.ljust(size, b"\0")
            break
    else:
        pytest.skip("the host's /bin/true has no PT_INTERP")
    path.write_bytes(bytes(data))
    path.chmod(0o755)


@pytest.mark.skipif(not os.access(HOST_PYTHON, os.X_OK), reason="needs Debian's python3 as a probe")
def test_an_interpreter_that_is_a_proc_magic_link_is_refused(busybox_rootfs: str, tmp_path: Path) -> None:
    """CVE-2019-5736 through the back door: the first execve is made by the launcher's own
    process, whose /proc/self/exe is the host's python. A script whose #! line (or an ELF whose
    PT_INTERP) names /proc/self/exe would run the host's interpreter as the container's PID 1,
    which can then open that host file through the magic link and, once it is not running,
    overwrite it. The program itself is checked already; its interpreters must be too."""
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", busybox_rootfs, str(image)], check=True)
    script = image / "evil"
    script.write_text("#!/proc/self/exe -I\nimport os\nprint('ran as', os.readlink('/proc/self/exe'))\n")
    script.chmod(0o755)
    (image / "chain").write_text("#!/evil\n")
    (image / "chain").chmod(0o755)
    (image / "bin" / "py").symlink_to("/proc/1/exe")
    (image / "viasymlink").write_text("#! /bin/py\nimport os\nprint('ran as', os.readlink('/proc/self/exe'))\n")
    (image / "viasymlink").chmod(0o755)
    _dynamic_elf_with_interpreter(image / "elf", b"/proc/self/exe")
    for program in ("/evil", "/chain", "/viasymlink", "/elf"):
        result = launch(str(image), program, volumes=HOST_USR)
        assert result.returncode == 126, (program, result)
        assert "ran as" not in result.stdout
        assert result.stderr.startswith(f"sdcontainer-launcher: exec {program}: "), result.stderr
        assert "/proc magic link" in result.stderr, result.stderr
    # an interpreter that is a FIFO is opened without blocking, and execve refuses it
    os.mkfifo(image / "fifo")
    (image / "viafifo").write_text("#!/fifo\n")
    (image / "viafifo").chmod(0o755)
    result = launch(str(image), "/viafifo", timeout=30)
    assert result.returncode == 126 and result.stderr.startswith("sdcontainer-launcher: exec /viafifo: "), result
    # ordinary scripts and dynamically linked programs still run
    (image / "fine").write_text("#!/bin/sh\necho fine\n")
    (image / "fine").chmod(0o755)
    assert ok(launch(str(image), "/fine")) == "fine\n"
    assert ok(launch(str(image), "/usr/bin/true", volumes=HOST_USR)) == ""


def test_run_init_puts_tini_first(busybox_rootfs: str) -> None:
    if not os.access(launcher.TINI, os.X_OK):
        pytest.skip("tini is not installed")
    out = ok(sh(busybox_rootfs, "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$", run_init=True))
    first, payload_pid = out.splitlines()
    assert first.startswith("/dev/init -- /bin/sh -c")
    assert payload_pid != "1"
    assert sh(busybox_rootfs, "exit 3", run_init=True).returncode == 3


def test_nothing_left_mounted_on_the_host(busybox_rootfs: str, tmp_path: Path) -> None:
    def ours() -> set[str]:
        with open("/proc/self/mountinfo") as f:
            return {line for line in f if "sdcontainer" in line or busybox_rootfs in line or str(tmp_path) in line}

    before = ours()
    (tmp_path / "vol").mkdir()
    ok(
        sh(
            busybox_rootfs,
            "true",
            volumes=(BindMount(str(tmp_path / "vol"), "/vol"),),
            read_only=True,
            tmpfs=(TmpfsMount("/t"),),
        )
    )
    assert launch(busybox_rootfs, "/bin/nope").returncode == 127
    assert ours() == before


# --- the systemd hand-off -------------------------------------------------------------------


class FakeManager:
    """The manager's side of sd_notify on a socket of our own: records datagrams and closes
    every fd it receives (which is how systemd answers BARRIER=1)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(4 * 16))
            except OSError:
                return
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for i in range(0, len(payload) - len(payload) % 4, 4):
                        os.close(int.from_bytes(payload[i : i + 4], "little"))
            self.messages.append(data.decode())

    def close(self) -> None:
        self.sock.close()


def start_in_systemd_mode(
    spec: ContainerSpec, notify_socket: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The launcher as a unit runs it ($NOTIFY_SOCKET set), the container's stdout on a pipe:
    the launcher's result, and what the container printed by the time it ended."""
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [*LAUNCHER, "start", *spec_to_argv(spec)],
            cwd=CHECKOUT,
            stdout=write_end,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            env={**env, "PATH": os.environ["PATH"], "NOTIFY_SOCKET": notify_socket},
        )
    finally:
        os.close(write_end)
    # The launcher has exited; the container runs on (reparented) and finishes by itself.
    with os.fdopen(read_end) as container_out:
        return result, container_out.read()


def test_systemd_mode_hands_over_and_exits(busybox_rootfs: str, tmp_path: Path) -> None:
    manager = FakeManager(str(tmp_path / "notify"))
    unit = f"sdct-{os.getpid()}.service"
    spec = ContainerSpec(
        name="handoff",
        unit=unit,
        rootfs=busybox_rootfs,
        labels=("app=web",),
        exec=("/bin/sh", "-c", "sleep 0.3; echo pid=$$; env"),
    )
    try:
        result, output = start_in_systemd_mode(spec, str(tmp_path / "notify"), {"INVOCATION_ID": "x"})
        assert result.returncode == 0, result.stderr
        with open(state_path(unit)) as f:
            state = json.load(f)
    finally:
        manager.close()
    pid = state["pid"]
    assert manager.messages[0] == f"MAINPID={pid}\nREADY=1"
    assert manager.messages[1] == "BARRIER=1"
    assert state["name"] == "handoff" and state["unit"] == unit and state["labels"] == {"app": "web"}
    assert state["rootfs"] == busybox_rootfs
    started = calendar.timegm(time.strptime(state["started"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(started - time.time()) < 60
    assert "pid=1" in output.splitlines()
    assert "NOTIFY_SOCKET" not in output and "INVOCATION_ID" not in output
    cleanup = [*LAUNCHER, "cleanup", "--unit", unit]
    assert subprocess.run(cleanup, cwd=CHECKOUT).returncode == 0
    assert not os.path.exists(state_path(unit))
    assert not os.path.exists(os.path.dirname(state_path(unit)))  # the directory too
    assert subprocess.run(cleanup, cwd=CHECKOUT).returncode == 0  # idempotent


def test_environment_host_under_systemd_leaves_notify_socket_out(busybox_rootfs: str, tmp_path: Path) -> None:
    manager = FakeManager(str(tmp_path / "notify"))
    unit = f"sdct-envhost-{os.getpid()}.service"
    spec = ContainerSpec(name="envhost", unit=unit, rootfs=busybox_rootfs, env_host=True, exec=("/bin/env",))
    try:
        result, output = start_in_systemd_mode(
            spec, str(tmp_path / "notify"), {**SYSTEMD_SERVICE_ENV, "UNIT_SETTING": "from Environment="}
        )
        assert result.returncode == 0, result.stderr
        env = dict(line.split("=", 1) for line in output.splitlines())
    finally:
        manager.close()
        subprocess.run([*LAUNCHER, "cleanup", "--unit", unit], cwd=CHECKOUT)
    assert env["UNIT_SETTING"] == "from Environment="
    assert not set(env) & {"NOTIFY_SOCKET", *SYSTEMD_SERVICE_ENV}, env


def test_notify_abstract_socket() -> None:
    from sdcontainer import notify

    name = f"sdcontainer-test-{os.getpid()}-{time.monotonic_ns()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    try:
        assert notify.notify("READY=1", socket_path="@" + name)
        assert server.recv(100) == b"READY=1"
    finally:
        server.close()
    assert notify.notify("READY=1", socket_path="") is False


# --- pure pieces ----------------------------------------------------------------------------


def test_argv_round_trip_reaches_the_launcher(busybox_rootfs: str) -> None:
    spec = ContainerSpec(
        name="rt",
        unit="rt.service",
        rootfs=busybox_rootfs,
        exec=("true",),
        user="app",
        volumes=(BindMount("/tmp", "/t", True),),
        read_only=True,
    )
    assert spec_from_argv(spec_to_argv(spec)) == spec


def test_default_name_comes_from_the_unit(busybox_rootfs: str) -> None:
    """%N unexpanded (a command line not run by systemd) still names the container."""
    spec = ContainerSpec(unit="web@blue.service", rootfs=busybox_rootfs, exec=("hostname",))
    assert launcher.container_name(spec_from_argv(spec_to_argv(spec))) == "web@blue"
    result = subprocess.run(
        [*LAUNCHER, "start", *spec_to_argv(spec)],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
    )
    assert ok(result) == "web-blue\n"


def test_sanitize_hostname() -> None:
    assert launcher.sanitize_hostname("web@1.service") == "web-1.service"
    assert launcher.sanitize_hostname("-x_") == "x"
    assert launcher.sanitize_hostname("@@@") == "sdcontainer"
    assert len(launcher.sanitize_hostname("a" * 100)) == 63


def test_seccomp_program_shape() -> None:
    prog = security.seccomp_program(PODMAN_CAPS)
    assert prog[0] == (linux.BPF_LD | linux.BPF_W | linux.BPF_ABS, 0, 0, linux.SECCOMP_DATA_ARCH)
    assert prog[-1] == (linux.BPF_RET, 0, 0, linux.SECCOMP_RET_ALLOW)
    assert len(prog) < 256  # jump offsets are 8 bits
