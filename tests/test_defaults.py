"""Defaults at least as strict as podman's, against a real systemd: the pids limit, the
seccomp filter seen from inside a container (its init and an `sdcontainer exec` command),
the modes of what the launcher leaves under /run, `sdcontainer exec` by a user who is not
root.

The probe is tests/sysprobe.c, built static on the host and copied into the testbed's copy
of the busybox root file system: busybox cannot make raw syscalls.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers import ROOTFS, add_container, container, run_to_end, wait_for
from tests.helpers import CHECKOUT
from tests.testbed import Testbed

SYSPROBE = "/bin/sysprobe"


def build_sysprobe(out: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build tests/sysprobe.c (tools/setup installs it)")
    binary = out / "sysprobe"
    source = CHECKOUT / "tests" / "sysprobe.c"
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    # the testbed's own copy of the tree: adding a file to it changes nothing on the host
    installed_testbed.copy_in(build_sysprobe(tmp_path_factory.mktemp("sysprobe")), ROOTFS + SYSPROBE)
    return installed_testbed


def cgroup_file(bed: Testbed, unit: str, name: str) -> str:
    """A file of the unit's pids cgroup: the v1 controller of a hybrid testbed, or cgroup2."""
    cgroup = bed.show(unit, "ControlGroup")
    script = f"d=/sys/fs/cgroup/pids; [ -d $d ] || d=/sys/fs/cgroup; cat $d{cgroup}/{name}"
    return bed.run(["sh", "-c", script]).stdout.strip()


# --- the pids limit --------------------------------------------------------------------------


def test_a_fork_bomb_is_stopped_at_2048_tasks_by_default(bed: Testbed) -> None:
    """No PidsLimit= and no TasksMax=: podman's 2048, not systemd's DefaultTasksMax=. The
    probe (the container's init) forks until fork fails; the unit's cgroup refused it."""
    add_container(bed, "forker", container(f"{SYSPROBE} forks 2100"))
    bed.start_unit("forker.service")
    line = wait_for(lambda: [x for x in bed.journal("forker.service").splitlines() if x.startswith("forked=")])
    try:
        forked, _, errno = line[0].partition(" of 2100 errno=")
        assert errno == "EAGAIN", line
        assert bed.show("forker.service", "TasksMax") == "2048"
        # the init and its children, less what else shared the cgroup while it forked (the
        # launcher may still have been exiting): never more than the limit
        assert 2040 <= int(forked.removeprefix("forked=")) <= 2047, line
        assert cgroup_file(bed, "forker.service", "pids.max") == "2048"
        assert int(cgroup_file(bed, "forker.service", "pids.current")) <= 2048
        # the refusal was the cgroup's (not RLIMIT_NPROC, which fails with EAGAIN too)
        assert int(cgroup_file(bed, "forker.service", "pids.events").split()[1]) > 0
    finally:
        bed.systemctl("stop", "forker.service")


def test_pids_limit_key_and_the_units_own_tasks_max(bed: Testbed) -> None:
    add_container(bed, "hundred", container(f"{SYSPROBE} forks 150", "PidsLimit=100\n"), reload=False)
    # a [Service] TasksMax= of the file's own wins over the default; PidsLimit=-1: no limit
    add_container(bed, "own", container("/bin/sleep 1000", service="TasksMax=300"), reload=False)
    add_container(bed, "unlimited", container("/bin/sleep 1000", "PidsLimit=-1\n"))
    bed.start_unit("hundred.service")
    try:
        assert bed.show("hundred.service", "TasksMax") == "100"
        line = wait_for(lambda: [x for x in bed.journal("hundred.service").splitlines() if x.startswith("forked=")])
        assert line[0].endswith(" of 150 errno=EAGAIN"), line
        assert cgroup_file(bed, "hundred.service", "pids.max") == "100"
    finally:
        bed.systemctl("stop", "hundred.service")
    assert bed.show("own.service", "TasksMax") == "300"
    assert bed.show("unlimited.service", "TasksMax") == "infinity"


def test_sdcontainer_run_has_the_same_default(bed: Testbed) -> None:
    result = bed.run(["sdcontainer", "run", "-d", "--unit", "run-default", ROOTFS, "/bin/sleep", "1000"], check=False)
    assert result.returncode == 0, result.stderr
    try:
        assert bed.show("run-default.service", "TasksMax") == "2048"
    finally:
        bed.systemctl("stop", "run-default.service")


# --- seccomp -------------------------------------------------------------------------------

# What the probe gets with the default capabilities: podman's answers (personality only
# with its five harmless values, EPERM for its refused calls, ENOSYS for calls newer than
# its profile, EINVAL for an audit socket without CAP_AUDIT_WRITE), and modify_ldt refused
# where podman allows it (sdcontainer runs no 32-bit code; see security.py).
EXPECTED = {
    "personality_query": "ok",
    "personality_linux": "ok",
    "personality_linux32": "ok",
    "personality_read_implies_exec": "EPERM",
    "personality_addr_no_randomize": "EPERM",
    "personality_high_bits": "ok",
    "modify_ldt": "EPERM",
    "move_pages": "EPERM",
    "migrate_pages": "EPERM",
    "vmsplice": "EPERM",
    "io_pgetevents": "EPERM",
    "kcmp": "EPERM",
    "quotactl": "EPERM",
    "statmount": "ENOSYS",
    "socket_netlink_audit": "EINVAL",
    "socket_netlink_route": "ok",
    "getpid": "ok",
}


def probe_lines(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert "done" in lines, text
    return dict(line.split() for line in lines if line.count(" ") == 1 and line.split()[0] in EXPECTED)


def test_seccomp_refuses_what_podman_refuses(bed: Testbed) -> None:
    add_container(bed, "sysprobe", container(f"{SYSPROBE} seccomp"))
    run_to_end(bed, "sysprobe.service")
    journal = bed.journal("sysprobe.service")
    assert bed.show("sysprobe.service", "Result") == "success", journal
    assert probe_lines(journal) == EXPECTED


def test_seccomp_is_the_same_for_exec_and_follows_the_capabilities(bed: Testbed) -> None:
    """`sdcontainer exec` goes through the same confinement; a call podman allows only with
    a capability is allowed once the container has that capability."""
    add_container(bed, "box", container("/bin/sleep 1000"), reload=False)
    add_container(bed, "capable", container("/bin/sleep 1000", "AddCapability=CAP_SYS_PTRACE CAP_AUDIT_WRITE\n"))
    bed.start_unit("box.service")
    bed.start_unit("capable.service")
    try:
        result = bed.run(["sdcontainer", "exec", "box", SYSPROBE, "seccomp"], check=False)
        assert probe_lines(result.stdout) == EXPECTED, result.stderr
        result = bed.run(["sdcontainer", "exec", "capable", SYSPROBE, "seccomp"], check=False)
        assert probe_lines(result.stdout) == {**EXPECTED, "kcmp": "ok", "socket_netlink_audit": "ok"}, result.stderr
    finally:
        bed.systemctl("stop", "box.service", "capable.service")


# --- what the launcher leaves under /run -------------------------------------------------


def mode(bed: Testbed, path: str) -> str:
    return bed.run(["stat", "-c", "%a %U", path]).stdout.strip()


def test_the_record_and_health_count_are_root_only(bed: Testbed) -> None:
    add_container(bed, "private", container("/bin/sleep 1000", "HealthCmd=/bin/true\nHealthInterval=disable\n"))
    bed.start_unit("private.service")
    try:
        directory = "/run/sdcontainer/containers/private.service"
        # a check, run by hand (no timer), passed: its count is written beside the record
        bed.systemctl("start", "private-health.service")
        assert bed.exists(f"{directory}/health"), bed.journal("private-health.service")
        modes = [mode(bed, path) for path in (directory, f"{directory}/record.json", f"{directory}/health")]
        assert modes == ["700 root", "600 root", "600 root"]
    finally:
        bed.systemctl("stop", "private.service")
    result = bed.run(["sdcontainer", "run", "-d", "--unit", "private-run", ROOTFS, "/bin/sleep", "1000"], check=False)
    assert result.returncode == 0, result.stderr
    try:
        directory = "/run/sdcontainer/containers/private-run.service"
        assert [mode(bed, directory), mode(bed, f"{directory}/record.json")] == ["700 root", "600 root"]
    finally:
        bed.systemctl("stop", "private-run.service")


# --- a user who is not root -------------------------------------------------------------------


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def test_exec_as_a_user_says_root_is_needed_and_ps_shows_systemds_view(bed: Testbed) -> None:
    add_container(bed, "guarded", container("/bin/sleep 1000"))
    bed.start_unit("guarded.service")
    try:
        result = bed.run([*AS_NOBODY, "sdcontainer", "exec", "guarded", "/bin/true"], check=False)
        assert result.returncode == 125, result.stderr
        assert result.stderr == (
            "sdcontainer: exec needs root: containers run as root, and rootless mode does not exist yet\n"
        )
        # systemd's view is anyone's; the record (the init's command) is root's and left out
        result = bed.run([*AS_NOBODY, "sdcontainer", "ps"], check=False)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert re.search(
            rf"^guarded\s+guarded\.service\s+{ROOTFS}\s+Up \S+\s+-\s+/bin/sleep 1000$", result.stdout, re.M
        )
    finally:
        bed.systemctl("stop", "guarded.service")
