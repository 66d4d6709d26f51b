"""The whole path against a real systemd: `make install` into a testbed, a .container file,
daemon-reload, systemctl start. Each test proves one promise of the foundation issue."""

from __future__ import annotations

import json
import re

import pytest

from tests.containers import ROOTFS, UNITS, add_container, container, proc_status, run_to_end, unit_processes, wait_for
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.write_file("/srv/www/index.html", "hello from the volume\n")
    return installed_testbed


def test_the_issue_example_runs_as_a_service(bed: Testbed) -> None:
    add_container(
        bed,
        "hello",
        (
            "[Unit]\nDescription=Hello\n[Container]\n"
            f"Rootfs={ROOTFS}\nExec=/bin/httpd -f -p 8080 -h /www\nEnvironment=GREETING=hi\n"
            "Volume=/srv/www:/www:ro\nNetwork=host\nRunInit=yes\n"
            "[Service]\nMemoryMax=64M\n[Install]\nWantedBy=multi-user.target\n"
        ),
    )
    bed.start_unit("hello.service")
    assert bed.show("hello.service", "ActiveState") == "active"
    page = wait_for(lambda: bed.run(["busybox", "wget", "-qO-", "http://127.0.0.1:8080/"], check=False).stdout)
    assert page == "hello from the volume\n"

    main_pid = bed.show("hello.service", "MainPID")
    status = proc_status(bed, main_pid)
    # the init is PID 1 of its own pid namespace and a direct child of systemd
    assert status["NSpid"].split() == [main_pid, "1"]
    assert status["PPid"] == "1"
    # nothing of ours stays: the unit's cgroup holds the init (tini) and httpd only
    procs = unit_processes(bed, "hello.service")
    names = sorted(bed.read_file(f"/proc/{p}/comm").strip() for p in procs)
    assert names == ["httpd", "init"], names
    # MemoryMax= reached the container: it lives in the unit's memory cgroup
    cgroup = bed.show("hello.service", "ControlGroup")
    # (read from inside: the cgroup paths are relative to the testbed's cgroup namespace)
    assert f"memory:{cgroup}\n" in bed.run(["cat", f"/proc/{main_pid}/cgroup"]).stdout
    limit = bed.run(["cat", f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes"]).stdout.strip()
    assert int(limit) == 64 * 1024 * 1024

    listed = bed.run(["sdcontainer", "ps"]).stdout
    assert re.search(rf"^hello\s+hello\.service\s+{ROOTFS}\s+Up ", listed, re.M), listed
    (entry,) = [
        e for e in json.loads(bed.run(["sdcontainer", "ps", "--format", "json"]).stdout) if e["name"] == "hello"
    ]
    assert entry["pid"] == int(main_pid)

    bed.systemctl("stop", "hello.service")
    assert bed.show("hello.service", "ActiveState") == "inactive"
    assert bed.show("hello.service", "Result") == "success"
    assert not bed.exists("/run/sdcontainer/containers/hello.service")
    listed = json.loads(bed.run(["sdcontainer", "list", "--format", "json"]).stdout)
    assert "hello.service" not in [record["unit"] for record in listed]


def test_exit_status_and_journal(bed: Testbed) -> None:
    add_container(bed, "seven", container("/bin/sh -c 'echo out-line; echo err-line >&2; exit 7'"))
    run_to_end(bed, "seven.service")
    assert bed.show("seven.service", "ExecMainStatus") == "7"
    assert bed.show("seven.service", "Result") == "exit-code"
    journal = bed.journal("seven.service")
    assert "out-line" in journal and "err-line" in journal
    # the journal knows the lines by the unit's syslog identifier
    tagged = bed.run(["journalctl", "-u", "seven.service", "-o", "short", "--no-pager"]).stdout
    assert re.search(r"seven\[\d+\]: out-line", tagged), tagged
    # the launcher was gone before the payload ended: systemd had nothing of ours to kill
    assert "Killing process" not in journal, journal


def test_a_program_that_is_not_there(bed: Testbed) -> None:
    add_container(bed, "missing", container("/bin/no-such-program"))
    run_to_end(bed, "missing.service")
    assert bed.show("missing.service", "ExecMainStatus") == "127"
    assert "/bin/no-such-program" in bed.journal("missing.service")
    bed.systemctl("reset-failed", "missing.service", check=False)


def test_pid_1_inside_and_environment(bed: Testbed) -> None:
    add_container(
        bed,
        "env",
        container(
            # $$$$: systemd makes each $$ of a unit file's value a $ (Quadlet's meaning), the shell
            # then sees $$, its own pid
            "/bin/sh -c 'echo pid=$$$$ greeting=$GREETING host=$(hostname); env | sort'",
            "Environment=GREETING=hi\n",
        ),
    )
    bed.systemctl("start", "env.service", check=False)
    wait_for(lambda: bed.show("env.service", "ActiveState") == "inactive")
    journal = bed.journal("env.service")
    assert "pid=1 greeting=hi host=env" in journal
    assert "NOTIFY_SOCKET" not in journal and "INVOCATION_ID" not in journal
    assert "container=sdcontainer" in journal


def test_device_cgroup_refuses_nodes_the_container_makes(bed: Testbed) -> None:
    """Even with CAP_MKNOD, a container cannot make a node for a host device (here /dev/kmsg,
    char 1:11): the unit's device policy allows only the nodes of its own /dev."""
    add_container(
        bed,
        "mknod",
        container(
            "/bin/sh -c 'echo ok > /dev/null && echo null-ok;"
            " mknod /dev/k c 1 11 && echo MADE || echo mknod-refused; [ -c /dev/k ] && echo NODE'",
            "AddCapability=CAP_MKNOD\n",
        ),
    )
    run_to_end(bed, "mknod.service")
    journal = bed.journal("mknod.service")
    assert "null-ok" in journal, journal
    assert "mknod: /dev/k: Operation not permitted" in journal and "mknod-refused" in journal, journal
    assert "MADE" not in journal and "NODE" not in journal, journal
    bed.systemctl("reset-failed", "mknod.service", check=False)


def test_restart_gives_a_new_container(bed: Testbed) -> None:
    add_container(bed, "sleeper", container("/bin/sleep 1000", "RunInit=yes\n"))
    bed.start_unit("sleeper.service")
    first = bed.show("sleeper.service", "MainPID")
    bed.systemctl("restart", "sleeper.service")
    second = bed.show("sleeper.service", "MainPID")
    assert first != second and second != "0"
    assert not bed.exists(f"/proc/{first}")
    bed.systemctl("stop", "sleeper.service")


def test_stop_without_an_init_waits_for_the_stop_timeout(bed: Testbed) -> None:
    """A PID 1 ignores SIGTERM it has no handler for: `sleep` as the init is killed only
    after StopTimeout= (documented in sdcontainer.container(5))."""
    add_container(bed, "stubborn", container("/bin/sleep 1000", "StopTimeout=1\n"))
    bed.start_unit("stubborn.service")
    bed.systemctl("stop", "stubborn.service", check=False)
    assert bed.show("stubborn.service", "ActiveState") in ("inactive", "failed")
    # it really waited out the timeout rather than dying of SIGTERM
    assert bed.show("stubborn.service", "Result") == "timeout"
    assert "timed out. Killing." in bed.journal("stubborn.service")
    bed.systemctl("reset-failed", "stubborn.service", check=False)


def test_stop_signal_reaches_the_init(bed: Testbed) -> None:
    add_container(
        bed,
        "trapper",
        container("/bin/sh -c 'trap \"echo got-INT; exit 0\" INT; while :; do sleep 0.1; done'", "StopSignal=SIGINT\n"),
    )
    bed.start_unit("trapper.service")
    bed.systemctl("stop", "trapper.service")
    assert "got-INT" in bed.journal("trapper.service")
    assert bed.show("trapper.service", "Result") == "success"


def test_memory_max_kills_a_container_that_exceeds_it(bed: Testbed) -> None:
    # tmpfs pages are charged to the writer's memory cgroup
    add_container(
        bed,
        "hog",
        container("/bin/dd if=/dev/zero of=/big/fill bs=1M count=200", "Tmpfs=/big:size=300m\n", "MemoryMax=32M"),
    )
    run_to_end(bed, "hog.service", timeout=30)
    assert bed.show("hog.service", "Result") in ("oom-kill", "signal"), bed.journal("hog.service")
    bed.systemctl("reset-failed", "hog.service", check=False)


def test_memory_pids_limit_and_ulimit_become_the_units_limits(bed: Testbed) -> None:
    add_container(
        bed,
        "limited",
        container(
            "/bin/sh -c 'echo limits nofile=$(ulimit -Sn):$(ulimit -Hn) core=$(ulimit -Hc); exec sleep 1000'",
            "RunInit=yes\nMemory=48m\nPidsLimit=50\nUlimit=nofile=1000:2000\nUlimit=core=0\n",
        ),
    )
    unit = bed.read_file("/run/systemd/generator/limited.service")
    assert "MemoryMax=48M\nTasksMax=50\nLimitNOFILE=1000:2000\nLimitCORE=0\n" in unit, unit
    bed.start_unit("limited.service")
    assert bed.show("limited.service", "MemoryMax") == str(48 << 20)
    assert bed.show("limited.service", "TasksMax") == "50"
    assert bed.show("limited.service", "LimitNOFILE") == "2000"
    assert bed.show("limited.service", "LimitNOFILESoft") == "1000"
    assert bed.show("limited.service", "LimitCORE") == "0"
    # seen from inside the container, and in the cgroup it runs in
    line = wait_for(lambda: re.search(r"limits .*", bed.journal("limited.service")))
    assert line and line.group() == "limits nofile=1000:2000 core=0", bed.journal("limited.service")
    main_pid = bed.show("limited.service", "MainPID")
    limits = bed.read_file(f"/proc/{main_pid}/limits")
    assert re.search(r"^Max open files\s+1000\s+2000\s", limits, re.M), limits
    cgroup = bed.show("limited.service", "ControlGroup")
    assert bed.run(["cat", f"/sys/fs/cgroup/pids{cgroup}/pids.max"]).stdout.strip() == "50"
    limit = bed.run(["cat", f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes"]).stdout.strip()
    assert int(limit) == 48 << 20
    bed.systemctl("stop", "limited.service")


def test_launcher_keys_reach_the_container_through_systemd(bed: Testbed) -> None:
    """The new launcher keys, quoted by the generator and unquoted by systemd (';' in
    AddHost=, '*' in Unmask=, spaces in Sysctl=), probed from inside the container."""
    probe = (
        "echo env=$FROM_UNIT notify=${NOTIFY_SOCKET:-unset} invocation=${INVOCATION_ID:-unset}; "
        "grep db /etc/hosts; cat /etc/resolv.conf; echo groups=$(id -G); cat /proc/sys/kernel/sem; "
        "sha256sum /etc/localtime; df -k /dev/shm | tail -1; echo os-release=$(wc -c < /etc/os-release); "
        "echo timer_list=$(grep -c /proc/timer_list /proc/self/mountinfo)"
    )
    add_container(
        bed,
        "tuned",
        container(
            f'/bin/sh -c "{probe}"',
            "EnvironmentHost=yes\nAddHost=db;db.internal:192.0.2.10\nDNS=192.0.2.53\nDNSSearch=example.com\n"
            'GroupAdd=audio,4242\nSysctl="kernel.sem=250 32000 32 128"\nTimezone=Asia/Tokyo\nShmSize=1g\n'
            "Mask=/etc/os-release\nUnmask=/proc/timer_*\n",
            "Environment=FROM_UNIT=hello",
        ),
    )
    run_to_end(bed, "tuned.service")
    journal = bed.journal("tuned.service")
    assert bed.show("tuned.service", "Result") == "success", journal
    lines = journal.splitlines()
    assert "env=hello notify=unset invocation=unset" in lines
    assert "192.0.2.10\tdb db.internal" in lines
    assert "search example.com" in lines and "nameserver 192.0.2.53" in lines
    assert "groups=0 63 4242" in lines
    assert "250\t32000\t32\t128" in lines
    tokyo = bed.run(["sha256sum", "/usr/share/zoneinfo/Asia/Tokyo"]).stdout.split()[0]
    assert f"{tokyo}  /etc/localtime" in lines
    assert any(line.split()[1:2] == ["1048576"] for line in lines), journal
    assert "os-release=0" in lines
    assert "timer_list=0" in lines


def test_kill_9_of_the_container_leaves_nothing_and_it_starts_again(bed: Testbed) -> None:
    add_container(bed, "victim", container("/bin/sleep 1000", "RunInit=yes\n"))
    bed.start_unit("victim.service")
    pid = bed.show("victim.service", "MainPID")
    assert bed.exists("/run/sdcontainer/containers/victim.service/record.json")
    bed.run(["kill", "-9", pid])
    wait_for(lambda: bed.show("victim.service", "ActiveState") == "failed")
    assert not bed.exists("/run/sdcontainer/containers/victim.service")  # systemd removed its RuntimeDirectory=
    assert unit_processes(bed, "victim.service") == []
    bed.start_unit("victim.service")
    assert bed.show("victim.service", "ActiveState") == "active"
    bed.systemctl("stop", "victim.service")


def test_kill_9_of_the_launcher_during_start_leaves_nothing(bed: Testbed) -> None:
    """The launcher blocks reading an environment file that is a FIFO: a start caught in the
    middle, where `kill -9` of the launcher (the main process until the hand-off) must
    leave no process, no record and nothing mounted, and the next start must work."""
    bed.run(["rm", "-f", "/srv/stuck.env"])
    bed.run(["mkfifo", "/srv/stuck.env"])
    add_container(bed, "stuck", container("/bin/sleep 1000", "RunInit=yes\nEnvironmentFile=/srv/stuck.env\n"))
    mounts_before = bed.run(["cat", "/proc/self/mountinfo"]).stdout.count("\n")
    bed.run(["systemctl", "start", "--no-block", "stuck.service"])
    launcher = wait_for(
        lambda: bed.show("stuck.service", "MainPID") not in ("", "0") and bed.show("stuck.service", "MainPID")
    )
    assert launcher, bed.journal("stuck.service")
    assert "sdcontainer-launcher" in bed.read_file(f"/proc/{launcher}/cmdline").replace("\0", " ")
    bed.run(["kill", "-9", launcher])
    assert wait_for(lambda: bed.show("stuck.service", "ActiveState") == "failed")
    assert unit_processes(bed, "stuck.service") == []
    assert not bed.exists("/run/sdcontainer/containers/stuck.service")
    assert bed.run(["cat", "/proc/self/mountinfo"]).stdout.count("\n") == mounts_before
    bed.run(["rm", "/srv/stuck.env"])
    bed.write_file("/srv/stuck.env", "A=1\n")
    bed.start_unit("stuck.service")
    assert bed.show("stuck.service", "ActiveState") == "active"
    bed.systemctl("stop", "stuck.service")


def test_a_failing_start_says_why_in_the_journal(bed: Testbed) -> None:
    add_container(bed, "norootfs", "[Container]\nRootfs=/srv/does-not-exist\nExec=/bin/true\n")
    result = bed.systemctl("start", "norootfs.service", check=False)
    assert result.returncode != 0
    journal = bed.journal("norootfs.service")
    assert "/srv/does-not-exist" in journal, journal
    bed.systemctl("reset-failed", "norootfs.service", check=False)


def test_broken_file_beside_good_ones(bed: Testbed) -> None:
    add_container(bed, "good-a", container("/bin/true"), reload=False)
    add_container(bed, "good-b", container("/bin/true"), reload=False)
    add_container(bed, "broken", "[Container]\nRootfs=/srv/x\nExec=/bin/true\nNoSuchKey=1\n", reload=False)
    bed.daemon_reload()
    assert bed.show("good-a.service", "LoadState") == "loaded"
    assert bed.show("good-b.service", "LoadState") == "loaded"
    # broken.service stands in for the refused file (tests/test_generator_refused_systemd.py)
    assert bed.show("broken.service", "LoadState") == "loaded"
    bed.run(["journalctl", "--sync"])
    log = bed.run(["journalctl", "-b", "-t", "sdcontainer-generator", "-p", "err", "-o", "cat", "--no-pager"]).stdout
    assert f"{UNITS}/broken.container:4: unknown key NoSuchKey= in [Container]" in log
    bed.run(["rm", f"{UNITS}/broken.container"])
    bed.daemon_reload()


def test_install_section_enables_the_unit(bed: Testbed) -> None:
    add_container(
        bed, "atboot", container("/bin/sleep 1000", "RunInit=yes\n") + "[Install]\nWantedBy=multi-user.target\n"
    )
    assert bed.exists("/run/systemd/generator/multi-user.target.wants/atboot.service")
    assert bed.run(["systemctl", "is-enabled", "atboot.service"], check=False).stdout.strip() == "generated"
    bed.systemctl("start", "multi-user.target")
    assert wait_for(lambda: bed.show("atboot.service", "ActiveState") == "active")
    bed.systemctl("stop", "atboot.service")


def test_systemd_analyze_verify_on_the_installed_units(bed: Testbed) -> None:
    add_container(bed, "verified", container("/bin/true") + "[Install]\nWantedBy=multi-user.target\n")
    result = bed.run(["systemd-analyze", "verify", "/run/systemd/generator/verified.service"], check=False)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # the installed launcher script, run by the venv's own interpreter
    exec_start = bed.show("verified.service", "ExecStart")
    assert "path=/usr/local/lib/sdcontainer/venv/bin/sdcontainer-launcher " in exec_start, exec_start
    shebang = bed.read_file("/usr/local/lib/sdcontainer/venv/bin/sdcontainer-launcher").splitlines()[0]
    assert shebang == "#!/usr/local/lib/sdcontainer/venv/bin/python3 -IS"


def test_transient_run(bed: Testbed) -> None:
    result = bed.run(["sdcontainer", "run", ROOTFS, "/bin/sh", "-c", "echo pid=$$; exit 3"], check=False)
    assert result.returncode == 3, result.stderr
    assert "pid=1" in result.stdout
    units = bed.systemctl("list-units", "--all", "--plain", "--no-legend", "sdcontainer-run-*").stdout
    assert units.strip() == ""  # collected after it ran


def test_transient_run_with_limits(bed: Testbed) -> None:
    # (lower than the testbed's own limits: raising a hard limit needs CAP_SYS_RESOURCE,
    # which the host running the tests may not have)
    result = bed.run(
        ["sdcontainer", "run", "-d", "--unit", "limited-run", "--memory", "40m", "--pids-limit", "30",
         "--ulimit", "nofile=100:200,nproc=500", "--init", ROOTFS, "/bin/sleep", "1000"],
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert bed.show("limited-run.service", "MemoryMax") == str(40 << 20)
    assert bed.show("limited-run.service", "TasksMax") == "30"
    main_pid = bed.show("limited-run.service", "MainPID")
    limits = bed.read_file(f"/proc/{main_pid}/limits")
    assert re.search(r"^Max open files\s+100\s+200\s", limits, re.M), limits
    assert re.search(r"^Max processes\s+500\s+500\s", limits, re.M), limits
    bed.systemctl("stop", "limited-run.service")


def test_transient_run_failures(bed: Testbed) -> None:
    """A container that cannot start: the launcher's error and status attached, 125 and a
    pointer to the journal detached; a command not found: 127; a container killed by a
    signal: 128 + the signal; nothing left loaded afterwards."""
    argv = ["sdcontainer", "run", "--unit", "broken", "/srv/no-such-root", "/bin/true"]
    result = bed.run(argv, check=False)
    assert result.returncode == 4, result.stderr
    assert "rootfs /srv/no-such-root: No such file or directory" in result.stderr
    result = bed.run([*argv[:2], "-d", *argv[2:]], check=False)
    assert result.returncode == 125, result.stderr
    assert "see journalctl -u broken.service" in result.stderr
    bed.systemctl("reset-failed", "broken.service", check=False)
    result = bed.run(["sdcontainer", "run", ROOTFS, "/bin/no-such-command"], check=False)
    assert result.returncode == 127, result.stderr
    # killed from outside (PID 1 of its namespace: only SIGKILL gets through without a handler)
    attached = bed.popen(["sdcontainer", "run", "--unit", "killed", ROOTFS, "/bin/sleep", "60"])
    assert wait_for(lambda: bed.show("killed.service", "ActiveState") == "active")
    bed.systemctl("kill", "--signal=SIGKILL", "killed.service")
    assert attached.wait(timeout=30) == 128 + 9
    units = bed.systemctl(
        "list-units", "--all", "--plain", "--no-legend", "sdcontainer-run-*", "broken*", "killed*"
    ).stdout
    assert units.strip() == ""
