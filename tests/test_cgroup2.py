"""The launcher against a systemd in unified mode (pure cgroup v2), as most hosts run today.

The testbed's /sys/fs/cgroup is a single cgroup2 mount (``Testbed(cgroup="unified")``), even
though this host is hybrid. Its controllers are those of the host's v2 hierarchy: on a hybrid
host the v1 hierarchies hold memory, cpu, pids..., so the tests that need the memory controller
say so and skip; everything else (the cgroup the container lands in, its namespace, exit
status, stop, journal) is proven for real.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.containers import ROOTFS, add_container, container, proc_status, run_to_end, unit_processes, wait_for
from tests.testbed import CGROUP_PREFIX, Testbed, _cgroup2_dir, _cgroup_dirs


@pytest.fixture(scope="module")
def bed(unified_testbed: Testbed, wheelhouse: Path, busybox_rootfs: str) -> Testbed:
    """The module's unified-mode testbed (conftest: ``Testbed(cgroup="unified", network=True)``)
    after `make install`, with a busybox rootfs and a page to serve."""
    if unified_testbed.install_seconds is None:
        unified_testbed.install_project()
        unified_testbed.copy_in(busybox_rootfs, ROOTFS)
        unified_testbed.write_file("/srv/www/index.html", "hello from the volume\n")
    return unified_testbed


def v2_line(bed: Testbed, pid: str) -> str:
    """The ``0::`` line of /proc/PID/cgroup, read from inside (the testbed's cgroup namespace)."""
    lines = bed.run(["cat", f"/proc/{pid}/cgroup"]).stdout.splitlines()
    return next(ln for ln in lines if ln.startswith("0::"))


def need_memory_controller(bed: Testbed) -> None:
    controllers = bed.cgroup_controllers()
    if "memory" not in controllers:
        pytest.skip(
            "the memory controller is not available in this host's cgroup2 hierarchy (the "
            f"testbed's root cgroup.controllers: {' '.join(sorted(controllers)) or 'empty'}): "
            "the host is hybrid and its v1 memory hierarchy holds it, so systemd in unified mode "
            "cannot enforce MemoryMax= here"
        )


# --- the testbed itself ---------------------------------------------------------------------


def test_systemd_runs_in_unified_mode(unified_testbed: Testbed) -> None:
    tb = unified_testbed
    assert tb.run(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip() == "cgroup2fs"
    mounts = tb.run(["findmnt", "-rn", "-o", "TARGET,FSTYPE", "-t", "cgroup,cgroup2"]).stdout.split("\n")
    assert [m for m in mounts if m] == ["/sys/fs/cgroup cgroup2"]
    # systemd's own verdict: a hybrid or legacy systemd 252 (Debian) is tainted "cgroupsv1", and
    # turns CPU accounting on by default only on the unified hierarchy (cpu.stat for free)
    tainted = tb.run(["systemctl", "show", "-P", "Tainted"]).stdout.strip()
    assert "cgroupsv1" not in tainted.split(":"), tainted
    assert tb.run(["systemctl", "show", "-P", "DefaultCPUAccounting"]).stdout.strip() == "yes"
    # it built its tree at the root of the testbed's v2 hierarchy
    assert "0::/init.scope" in tb.run(["cat", "/proc/1/cgroup"]).stdout.splitlines()
    assert tb.run(["test", "-d", "/sys/fs/cgroup/system.slice"]).returncode == 0
    # and on the host side, the testbed has a cgroup in the v2 hierarchy only
    v2 = _cgroup2_dir()
    assert v2 is not None and tb.cgroups == [v2 / tb.cgroups[0].name]
    assert (tb.cgroups[0] / "init.scope" / "cgroup.procs").read_text().split() == [str(tb.pid)]
    for parent in _cgroup_dirs():
        if parent != v2:
            assert not (parent / tb.cgroups[0].name).exists(), parent


def test_nothing_is_left_behind_in_unified_mode(make_testbed: Callable[..., Testbed]) -> None:
    """As tests/test_testbed.py checks for the host's layout: after close(), no cgroup of the
    testbed's (nor anything its systemd made) is left in any hierarchy."""
    parents = _cgroup_dirs()

    def listing(parent: Path, ours: str = "") -> list[str]:
        # other testbeds (concurrent sessions on this host) come and go beside ours
        return sorted(n for n in os.listdir(parent) if n == ours or not n.startswith(CGROUP_PREFIX))

    before = {p: listing(p) for p in parents}
    tb = make_testbed(network=False, cgroup="unified")
    cgroups = tb.cgroups
    name = cgroups[0].name
    assert len(cgroups) == 1 and (cgroups[0] / "init.scope").is_dir()
    tb.run(["systemd-run", "--wait", "-q", "-p", "Delegate=yes", "/bin/true"])
    for parent in parents:
        expected = [*before[parent], name] if parent == cgroups[0].parent else before[parent]
        assert listing(parent, name) == sorted(expected), parent
    tb.close()
    assert tb.pid is None and not cgroups[0].exists()
    assert {p: listing(p, name) for p in parents} == before


# --- the launcher under a unified-mode systemd ----------------------------------------------


def test_container_is_the_main_process_in_the_units_v2_cgroup(bed: Testbed) -> None:
    add_container(bed, "u2-sleeper", container("/bin/sleep 1000", "RunInit=yes\n"))
    bed.start_unit("u2-sleeper.service")
    assert bed.show("u2-sleeper.service", "ActiveState") == "active"
    main_pid = bed.show("u2-sleeper.service", "MainPID")
    status = proc_status(bed, main_pid)
    # the init is PID 1 of its own pid namespace and a direct child of systemd
    assert status["NSpid"].split() == [main_pid, "1"]
    assert status["PPid"] == "1"
    # it sits in the unit's cgroup of the v2 hierarchy, which holds the init and sleep only
    assert bed.show("u2-sleeper.service", "ControlGroup") == "/sdcontainer.slice/u2-sleeper.service"
    assert v2_line(bed, main_pid) == "0::/sdcontainer.slice/u2-sleeper.service"
    procs = unit_processes(bed, "u2-sleeper.service")
    assert main_pid in procs
    names = sorted(bed.read_file(f"/proc/{p}/comm").strip() for p in procs)
    assert names == ["init", "sleep"], names
    # stop with RunInit=yes: the init passes SIGTERM on and exits cleanly
    bed.systemctl("stop", "u2-sleeper.service")
    assert bed.show("u2-sleeper.service", "ActiveState") == "inactive"
    assert bed.show("u2-sleeper.service", "Result") == "success"
    assert bed.run(["test", "-e", "/sys/fs/cgroup/sdcontainer.slice/u2-sleeper.service"], check=False).returncode != 0
    assert not bed.exists("/run/sdcontainer/containers/u2-sleeper.service")


def test_container_has_a_cgroup_namespace_rooted_at_its_unit(bed: Testbed) -> None:
    add_container(bed, "u2-cgns", container("/bin/cat /proc/self/cgroup"))
    run_to_end(bed, "u2-cgns.service")
    assert bed.show("u2-cgns.service", "Result") == "success"
    assert "0::/" in bed.journal("u2-cgns.service").splitlines()


def test_exit_status_and_journal(bed: Testbed) -> None:
    add_container(bed, "u2-seven", container("/bin/sh -c 'echo out-line; echo err-line >&2; exit 7'"))
    run_to_end(bed, "u2-seven.service")
    assert bed.show("u2-seven.service", "ExecMainStatus") == "7"
    assert bed.show("u2-seven.service", "Result") == "exit-code"
    journal = bed.journal("u2-seven.service")
    assert "out-line" in journal and "err-line" in journal
    tagged = bed.run(["journalctl", "-u", "u2-seven.service", "-o", "short", "--no-pager"]).stdout
    assert re.search(r"u2-seven\[\d+\]: out-line", tagged), tagged
    bed.systemctl("reset-failed", "u2-seven.service", check=False)


def test_the_issue_example_runs_with_the_host_network(bed: Testbed) -> None:
    """Network=host binds the testbed's /sys (and its cgroup2 mount) read-only into the
    container; MemoryMax= is accepted whether or not the memory controller exists."""
    add_container(
        bed,
        "u2-hello",
        (
            "[Unit]\nDescription=Hello\nStartLimitIntervalSec=0\n[Container]\n"
            f"Rootfs={ROOTFS}\nExec=/bin/httpd -f -p 8081 -h /www\nEnvironment=GREETING=hi\n"
            "Volume=/srv/www:/www:ro\nNetwork=host\nRunInit=yes\n[Service]\nMemoryMax=64M\n"
        ),
    )
    bed.start_unit("u2-hello.service")
    try:
        page = wait_for(lambda: bed.run(["busybox", "wget", "-qO-", "http://127.0.0.1:8081/"], check=False).stdout)
        assert page == "hello from the volume\n"
        main_pid = bed.show("u2-hello.service", "MainPID")
        assert v2_line(bed, main_pid) == "0::/sdcontainer.slice/u2-hello.service"
        names = sorted(bed.read_file(f"/proc/{p}/comm").strip() for p in unit_processes(bed, "u2-hello.service"))
        assert names == ["httpd", "init"], names
        listed = bed.run(["sdcontainer", "top", "u2-hello"]).stdout
        assert re.search(rf"^\s*{main_pid}\s+1\s+0\s", listed, re.M), listed  # top reads the cgroup2 tree
    finally:
        bed.systemctl("stop", "u2-hello.service")
    assert bed.show("u2-hello.service", "Result") == "success"


def test_kill_9_of_the_container_leaves_nothing_and_it_starts_again(bed: Testbed) -> None:
    add_container(bed, "u2-victim", container("/bin/sleep 1000", "RunInit=yes\n"))
    bed.start_unit("u2-victim.service")
    pid = bed.show("u2-victim.service", "MainPID")
    bed.run(["kill", "-9", pid])
    assert wait_for(lambda: bed.show("u2-victim.service", "ActiveState") == "failed")
    assert not bed.exists("/run/sdcontainer/containers/u2-victim.service")  # systemd removed its RuntimeDirectory=
    assert unit_processes(bed, "u2-victim.service") == []
    bed.start_unit("u2-victim.service")
    assert bed.show("u2-victim.service", "ActiveState") == "active"
    bed.systemctl("stop", "u2-victim.service")
    assert bed.show("u2-victim.service", "Result") == "success"


def test_transient_run(bed: Testbed) -> None:
    result = bed.run(["sdcontainer", "run", ROOTFS, "/bin/sh", "-c", "echo pid=$$; exit 3"], check=False)
    assert result.returncode == 3, result.stderr
    assert "pid=1" in result.stdout
    units = bed.systemctl("list-units", "--all", "--plain", "--no-legend", "sdcontainer-run-*").stdout
    assert units.strip() == ""


# --- what needs the memory controller in v2 -------------------------------------------------


def test_memory_max_is_the_units_memory_max(bed: Testbed) -> None:
    need_memory_controller(bed)
    add_container(bed, "u2-limited", container("/bin/sleep 1000", "RunInit=yes\n", "MemoryMax=64M"))
    bed.start_unit("u2-limited.service")
    try:
        cgroup = bed.show("u2-limited.service", "ControlGroup")
        limit = bed.run(["cat", f"/sys/fs/cgroup{cgroup}/memory.max"]).stdout.strip()
        assert int(limit) == 64 * 1024 * 1024
        main_pid = bed.show("u2-limited.service", "MainPID")
        assert v2_line(bed, main_pid) == f"0::{cgroup}"
    finally:
        bed.systemctl("stop", "u2-limited.service")


def test_memory_max_kills_a_container_that_exceeds_it(bed: Testbed) -> None:
    need_memory_controller(bed)
    add_container(
        bed,
        "u2-hog",
        container("/bin/dd if=/dev/zero of=/big/fill bs=1M count=200", "Tmpfs=/big:size=300m\n", "MemoryMax=32M"),
    )
    run_to_end(bed, "u2-hog.service", timeout=30)
    assert bed.show("u2-hog.service", "Result") in ("oom-kill", "signal"), bed.journal("u2-hog.service")
    bed.systemctl("reset-failed", "u2-hog.service", check=False)
