"""`sdcontainer exec`, readiness (Notify=) and health checks against a real systemd.

Each container is a busybox rootfs in the module's testbed. What exec joins is probed from
inside (hostname, files, pid namespace, /proc/self/status, /proc/self/cgroup) and compared
with the container's own init; readiness and health are watched through systemd's own view
of the units (ActiveState, MainPID, StatusText) while the test flips a trigger file the
container sees through a volume, so nothing depends on timing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers import NOTIFIER_C, ROOTFS, add_container, container, proc_status, unit_processes, wait_for
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def notifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tools/setup installs it)")
    work = tmp_path_factory.mktemp("notifier")
    (work / "notify.c").write_text(NOTIFIER_C)
    subprocess.run([gcc, "-static", "-O2", "-o", str(work / "notify"), str(work / "notify.c")], check=True)
    return work / "notify"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, notifier: Path) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.copy_in(str(notifier), "/srv/bin/notify")
    installed_testbed.write_file("/srv/www/marker", "from the volume\n")
    installed_testbed.write_file("/srv/host-only", "the host's\n")
    return installed_testbed


def sdexec(bed: Testbed, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return bed.run(["sdcontainer", "exec", *args], check=False, input=input)


def active(bed: Testbed, unit: str) -> str:
    return bed.show(unit, "ActiveState")


# --- exec ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web(bed: Testbed) -> str:
    add_container(
        bed,
        "web",
        container("/bin/httpd -f -p 8080 -h /www", "HostName=webby\nVolume=/srv/www:/www:ro\nUser=app\n"),
    )
    bed.start_unit("web.service")
    return bed.show("web.service", "MainPID")


def test_exec_sees_the_container_not_the_host(bed: Testbed, web: str) -> None:
    assert sdexec(bed, "web", "hostname").stdout == "webby\n"
    assert sdexec(bed, "web", "cat", "/www/marker").stdout == "from the volume\n"
    gone = sdexec(bed, "web", "cat", "/srv/host-only")
    assert gone.returncode == 1 and "No such file" in gone.stderr
    # the container's pid namespace: its init is PID 1, exec's command is in there too
    ps = sdexec(bed, "web", "ps", "-o", "pid,comm").stdout.split("\n")
    rows = [line.split() for line in ps[1:] if line.strip()]
    assert ["1", "httpd"] in rows, ps
    assert all(int(pid) < 100 for pid, _ in rows), ps  # no host pids
    # by ContainerName= (the default: the unit name) and by unit name alike
    assert sdexec(bed, "web.service", "hostname").stdout == "webby\n"


def status_fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_exec_runs_as_the_containers_user_with_its_confinement(bed: Testbed, web: str) -> None:
    assert sdexec(bed, "web", "id", "-un").stdout == "app\n"
    inside = status_fields(sdexec(bed, "web", "cat", "/proc/self/status").stdout)
    init = proc_status(bed, web)
    host = status_fields(bed.run(["cat", "/proc/self/status"]).stdout)  # a root shell outside
    for field in ("CapBnd", "NoNewPrivs", "Seccomp", "Uid", "Gid"):
        assert inside[field] == init[field], field
    assert inside["CapBnd"] != host["CapBnd"]  # the container's bounding set, not the host's
    assert inside["NoNewPrivs"] == "1" and inside["Seccomp"] == "2"
    assert inside["CapEff"] == "0000000000000000"  # app is not root
    # as root (--user), the container's root: its capabilities, never more
    root = status_fields(sdexec(bed, "-u", "root", "web", "cat", "/proc/self/status").stdout)
    assert root["CapEff"] == root["CapBnd"] == init["CapBnd"]
    assert root["Seccomp"] == "2" and root["NoNewPrivs"] == "1"


def test_exec_is_in_the_units_cgroup(bed: Testbed, web: str) -> None:
    own = sdexec(bed, "web", "cat", "/proc/self/cgroup").stdout
    init = sdexec(bed, "web", "cat", "/proc/1/cgroup").stdout
    assert own == init and own.strip(), (own, init)
    # seen from the host: the command is one of the unit's processes while it runs
    sleeper = bed.popen(["sdcontainer", "exec", "web", "sleep", "1000"])
    try:

        def sleeping() -> list[str]:
            return [
                p for p in unit_processes(bed, "web.service") if bed.read_file(f"/proc/{p}/comm").strip() == "sleep"
            ]

        assert wait_for(sleeping)
    finally:
        sleeper.kill()
        sleeper.wait()
    for pid in sleeping():
        bed.run(["kill", pid], check=False)


def test_exec_exit_status_environment_and_options(bed: Testbed, web: str) -> None:
    assert sdexec(bed, "web", "sh", "-c", "exit 7").returncode == 7
    killed = sdexec(bed, "web", "sh", "-c", "kill -9 $$")
    assert killed.returncode == 137
    missing = sdexec(bed, "web", "no-such-program")
    assert missing.returncode == 127 and "no-such-program" in missing.stderr
    env = sdexec(bed, "-e", "EXTRA=1", "web", "env").stdout.splitlines()
    assert "HOSTNAME=webby" in env and "EXTRA=1" in env and "container=sdcontainer" in env
    assert sdexec(bed, "-w", "/www", "web", "pwd").stdout == "/www\n"
    assert sdexec(bed, "-i", "web", "cat", input="through stdin\n").stdout == "through stdin\n"
    assert sdexec(bed, "web", "cat", input="not without -i\n").stdout == ""
    # a terminal from the container's own /dev/pts
    tty = sdexec(bed, "-t", "web", "tty")
    assert tty.returncode == 0 and tty.stdout.startswith("/dev/pts/"), tty


def test_exec_into_a_missing_or_stopped_container_says_so(bed: Testbed) -> None:
    missing = sdexec(bed, "no-such-container", "true")
    assert missing.returncode == 125
    assert "no running container 'no-such-container'" in missing.stderr
    add_container(bed, "brief", container("/bin/sleep 1000"))
    bed.start_unit("brief.service")
    assert sdexec(bed, "brief", "true").returncode == 0
    bed.systemctl("stop", "brief.service")
    stopped = sdexec(bed, "brief", "true")
    assert stopped.returncode == 125 and "no running container 'brief'" in stopped.stderr


# --- readiness -----------------------------------------------------------------------------


def test_notify_yes_waits_for_the_containers_own_ready(bed: Testbed) -> None:
    bed.run(["mkdir", "-p", "/srv/trigger-late"])
    script = (
        "touch /trigger/started; while [ ! -e /trigger/go ]; do sleep 0.05; done; "
        "exec /opt/bin/notify READY=1 /bin/sleep 1000"
    )
    add_container(
        bed,
        "late",
        container(
            f"/bin/sh -c '{script}'",
            "Notify=yes\nVolume=/srv/trigger-late:/trigger\nVolume=/srv/bin:/opt/bin:ro\n",
        ),
    )
    assert bed.show("late.service", "NotifyAccess") == "all"
    bed.systemctl("start", "--no-block", "late.service")
    assert wait_for(lambda: bed.exists("/srv/trigger-late/started"))
    # the container runs, but has not said it is ready: the unit is still starting
    assert active(bed, "late.service") == "activating"
    main_pid = bed.show("late.service", "MainPID")
    assert proc_status(bed, main_pid)["NSpid"].split()[-1] == "1"  # the launcher told systemd MAINPID
    env = sdexec(bed, "late", "env").stdout.splitlines()
    assert "NOTIFY_SOCKET=/run/notify/notify.sock" in env
    bed.write_file("/srv/trigger-late/go", "")
    assert wait_for(lambda: active(bed, "late.service") == "active")
    assert bed.show("late.service", "MainPID") == main_pid
    bed.systemctl("stop", "late.service")


# --- health checks -------------------------------------------------------------------------


def health_state(bed: Testbed, unit: str) -> list[str]:
    path = f"/run/sdcontainer/containers/{unit}/health"
    return bed.read_file(path).split() if bed.exists(path) else []


def test_a_failing_health_check_restarts_the_unit(bed: Testbed) -> None:
    add_container(
        bed,
        "sick",
        container(
            "/bin/sh -c 'touch /tmp/ok; exec sleep 1000'",
            "HealthCmd=test -e /tmp/ok\nHealthInterval=1s\nHealthRetries=2\nHealthOnFailure=restart\n",
        ),
    )
    bed.start_unit("sick.service")
    first = bed.show("sick.service", "MainPID")
    assert active(bed, "sick-health.timer") == "active"
    # a check passed: the record is for this init, passed
    assert wait_for(lambda: health_state(bed, "sick.service")[:3] == [first, "0", "1"], timeout=30)
    assert bed.show("sick.service", "StatusText") == "healthy"
    assert sdexec(bed, "sick", "rm", "/tmp/ok").returncode == 0
    # two failures in a row, then systemctl restart: a new init, healthy again
    # active again: while it starts, MainPID is the launcher's until it names the new init
    assert wait_for(
        lambda: bed.show("sick.service", "MainPID") not in (first, "0") and active(bed, "sick.service") == "active",
        timeout=60,
    )
    second = bed.show("sick.service", "MainPID")
    assert wait_for(lambda: health_state(bed, "sick.service")[:3] == [second, "0", "1"], timeout=30)
    journal = bed.journal("sick-health.service")
    assert "check failed (2 of 2)" in journal and "sick.service is unhealthy; HealthOnFailure=restart" in journal
    bed.systemctl("stop", "sick.service")


def test_no_health_timer_is_left_after_stop_or_death(bed: Testbed) -> None:
    add_container(bed, "checked", container("/bin/sleep 1000", "HealthCmd=true\nHealthInterval=1s\n"))
    bed.start_unit("checked.service")
    assert active(bed, "checked-health.timer") == "active"
    bed.systemctl("stop", "checked.service")
    assert active(bed, "checked-health.timer") == "inactive"
    # podman#22884: the container ends by itself (here: killed), the timer must go too
    bed.start_unit("checked.service")
    assert active(bed, "checked-health.timer") == "active"
    bed.run(["kill", "-9", bed.show("checked.service", "MainPID")])
    assert wait_for(lambda: active(bed, "checked.service") in ("failed", "inactive"))
    assert wait_for(lambda: active(bed, "checked-health.timer") == "inactive")
    # and a restart brings it back
    bed.start_unit("checked.service")
    bed.systemctl("restart", "checked.service")
    assert active(bed, "checked-health.timer") == "active"
    bed.systemctl("stop", "checked.service")
    assert active(bed, "checked-health.timer") == "inactive"
    assert not bed.exists("/run/sdcontainer/containers/checked.service")


def test_notify_healthy_is_ready_after_the_first_passing_check(bed: Testbed) -> None:
    bed.run(["mkdir", "-p", "/srv/trigger-slow"])
    add_container(
        bed,
        "slow",
        container(
            "/bin/sleep 1000",
            "Notify=healthy\nHealthCmd=test -e /trigger/ok\nHealthInterval=1s\nHealthRetries=1000\n"
            "Volume=/srv/trigger-slow:/trigger\n",
        ),
    )
    bed.systemctl("start", "--no-block", "slow.service")
    # the checks run (and fail) while the unit is still starting
    assert wait_for(lambda: "check failed" in bed.journal("slow-health.service"), timeout=30)
    assert active(bed, "slow.service") == "activating"
    bed.write_file("/srv/trigger-slow/ok", "")
    assert wait_for(lambda: active(bed, "slow.service") == "active", timeout=30)
    assert bed.show("slow.service", "StatusText") == "healthy"
    bed.systemctl("stop", "slow.service")
    assert active(bed, "slow-health.timer") == "inactive"


@pytest.mark.parametrize(
    ("name", "check"), [("dshell", "CMD-SHELL test -d /tmp && test -e /bin/sh"), ("dcmd", "CMD /bin/test -d /tmp")]
)
def test_notify_healthy_with_dockers_text_forms(bed: Testbed, name: str, check: str) -> None:
    """HealthCmd=CMD-SHELL ... and CMD ... as podman reads them: the prefix is no program,
    so the first check passes and the unit gets ready."""
    add_container(bed, name, container("/bin/sleep 1000", f"Notify=healthy\nHealthCmd={check}\nHealthInterval=1s\n"))
    bed.systemctl("start", "--no-block", f"{name}.service")
    assert wait_for(lambda: active(bed, f"{name}.service") == "active", timeout=60), bed.journal(
        f"{name}-health.service"
    )
    assert bed.show(f"{name}.service", "StatusText") == "healthy"
    bed.systemctl("stop", f"{name}.service")


def test_health_on_failure_kill(bed: Testbed) -> None:
    add_container(
        bed,
        "doomed",
        container("/bin/sleep 1000", "HealthCmd=false\nHealthInterval=1s\nHealthRetries=1\nHealthOnFailure=kill\n"),
    )
    bed.start_unit("doomed.service")
    assert wait_for(lambda: active(bed, "doomed.service") == "failed", timeout=30)
    assert bed.show("doomed.service", "ExecMainStatus") == "9"
    assert wait_for(lambda: active(bed, "doomed-health.timer") == "inactive")


def test_failures_in_the_start_period_do_not_count(bed: Testbed) -> None:
    add_container(
        bed,
        "starting",
        container(
            "/bin/sleep 1000",
            "HealthCmd=false\nHealthInterval=1s\nHealthRetries=1\nHealthStartPeriod=1h\nHealthOnFailure=kill\n",
        ),
    )
    bed.start_unit("starting.service")
    main_pid = bed.show("starting.service", "MainPID")
    assert wait_for(lambda: bed.journal("starting-health.service").count("not counted") >= 2, timeout=30)
    assert active(bed, "starting.service") == "active"
    assert bed.show("starting.service", "MainPID") == main_pid
    assert bed.show("starting.service", "StatusText") == ""  # nothing counted: no verdict yet
    bed.systemctl("stop", "starting.service")


def test_exec_with_a_terminal_relays_both_ways(bed: Testbed, web: str) -> None:
    import os
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            bed.command(
                ["sdcontainer", "exec", "-ti", "web", "/bin/sh", "-c", 'read line; echo "got=$line term=$TERM"; tty; exit 3']
            ),
            stdin=slave, stdout=slave, stderr=slave, env=bed.env({"TERM": "xterm"}), close_fds=True,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        os.write(master, b"typed\n")
        output = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(timeout=30) == 3
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = output.decode(errors="replace")
    assert "got=typed term=xterm" in text, text
    assert "/dev/pts/" in text, text


def test_a_template_gets_health_units_per_instance(bed: Testbed) -> None:
    add_container(bed, "tpl@", container("/bin/sleep 1000", "HealthCmd=true\nHealthInterval=1s\nNetwork=host\n"))
    bed.start_unit("tpl@one.service")
    assert active(bed, "tpl-health@one.timer") == "active"
    assert wait_for(lambda: health_state(bed, "tpl@one.service")[2:3] == ["1"], timeout=30)
    # exec into a container that shares the host's network namespace works the same
    assert sdexec(bed, "tpl@one", "hostname").stdout == "tpl-one\n"
    bed.systemctl("stop", "tpl@one.service")
    assert active(bed, "tpl-health@one.timer") == "inactive"
    assert not bed.exists("/run/sdcontainer/containers/tpl@one.service")  # the instance's own directory


def test_exec_joins_the_cgroup_in_unified_mode(unified_testbed: Testbed, wheelhouse: Path, busybox_rootfs: str) -> None:
    """A pure cgroup v2 host: one hierarchy, one cgroup.procs to join."""
    bed = unified_testbed
    if bed.install_seconds is None:
        bed.install_project()
    bed.copy_in(busybox_rootfs, ROOTFS)
    add_container(bed, "uni", container("/bin/sleep 1000", "HealthCmd=true\nHealthInterval=1s\n"))
    bed.start_unit("uni.service")
    own = bed.run(["sdcontainer", "exec", "uni", "cat", "/proc/self/cgroup"]).stdout
    assert own == bed.run(["sdcontainer", "exec", "uni", "cat", "/proc/1/cgroup"]).stdout
    assert "0::/\n" in own
    # and seen from the host, in the unit's cgroup of the one hierarchy systemd uses
    sleeper = bed.popen(["sdcontainer", "exec", "uni", "sleep", "1000"])
    try:
        assert wait_for(
            lambda: [
                p for p in unit_processes(bed, "uni.service") if bed.read_file(f"/proc/{p}/comm").strip() == "sleep"
            ]
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    assert wait_for(lambda: health_state(bed, "uni.service")[2:3] == ["1"], timeout=30)
    bed.systemctl("stop", "uni.service")
    assert active(bed, "uni-health.timer") == "inactive"


def test_exec_finds_a_container_by_its_container_name(bed: Testbed) -> None:
    add_container(bed, "named", container("/bin/sleep 1000", "ContainerName=db1\n"))
    bed.start_unit("named.service")
    assert sdexec(bed, "db1", "hostname").stdout == "db1\n"
    assert sdexec(bed, "named", "hostname").stdout == "db1\n"
    bed.systemctl("stop", "named.service")


# --- ReloadCmd= ------------------------------------------------------------------------------

LAUNCHER = "/usr/local/lib/sdcontainer/venv/bin/sdcontainer-launcher"


def test_reload_cmd_runs_inside_the_container(bed: Testbed) -> None:
    """`systemctl reload` runs ReloadCmd= in the running container as `sdcontainer exec` runs
    it: the container's hostname, /tmp, user, cgroup and confinement; `$` reaches the
    container's shell unexpanded; the output lands in the unit's journal; the init is the
    same process afterwards. A command that fails fails the reload, not the container."""
    reload_cmd = (
        '/bin/sh -c "echo reloaded in $(hostname) as $(id -un) >> /tmp/reloads; '
        "cat /proc/self/status > /tmp/status; cat /proc/self/cgroup > /tmp/cgroup; "
        'echo reload output for the journal; test ! -e /tmp/fail"'
    )
    add_container(
        bed,
        "reloader",
        container(
            "/bin/sh -c \"trap 'exit 0' TERM; while :; do sleep 1; done\"",
            f"HostName=reloady\nUser=app\nTmpfs=/tmp:mode=1777\nReloadCmd={reload_cmd}\n",
        ),
    )
    bed.start_unit("reloader.service")
    main_pid = bed.show("reloader.service", "MainPID")
    exec_reload = bed.show("reloader.service", "ExecReload")
    assert f"path={LAUNCHER} " in exec_reload and " exec --unit reloader.service -- /bin/sh -c " in exec_reload

    bed.systemctl("reload", "reloader.service")
    assert sdexec(bed, "reloader", "cat", "/tmp/reloads").stdout == "reloaded in reloady as app\n"
    # the container's own /tmp: neither the testbed's nor the one in the rootfs has the file
    assert bed.run(["test", "-e", "/tmp/reloads", "-o", "-e", f"{ROOTFS}/tmp/reloads"], check=False).returncode == 1
    inside = status_fields(sdexec(bed, "reloader", "cat", "/tmp/status").stdout)
    init = proc_status(bed, main_pid)
    for field in ("CapBnd", "CapEff", "NoNewPrivs", "Seccomp", "Uid", "Gid"):
        assert inside[field] == init[field], field
    assert inside["NoNewPrivs"] == "1" and inside["Seccomp"] == "2" and inside["CapEff"] == "0000000000000000"
    cgroup = sdexec(bed, "reloader", "cat", "/tmp/cgroup").stdout
    assert cgroup.strip() and cgroup == sdexec(bed, "reloader", "cat", "/proc/1/cgroup").stdout
    assert wait_for(lambda: "reload output for the journal" in bed.journal("reloader.service"))
    assert bed.show("reloader.service", "MainPID") == main_pid
    assert active(bed, "reloader.service") == "active"

    # a failing command: systemctl reload fails, the container runs on, untouched
    sdexec(bed, "reloader", "touch", "/tmp/fail")
    failed = bed.systemctl("reload", "reloader.service", check=False)
    assert failed.returncode != 0 and "reloader.service" in failed.stderr, failed.stderr
    assert sdexec(bed, "reloader", "cat", "/tmp/reloads").stdout == "reloaded in reloady as app\n" * 2
    assert active(bed, "reloader.service") == "active"
    assert bed.show("reloader.service", "MainPID") == main_pid

    # no running container: the verb says so, with exec's 125
    bed.systemctl("stop", "reloader.service")
    gone = bed.run([LAUNCHER, "exec", "--unit", "reloader.service", "--", "/bin/true"], check=False)
    assert gone.returncode == 125
    assert gone.stderr == "sdcontainer-launcher exec: reloader.service is not running; nothing to run '/bin/true' in\n"


def test_a_killed_reload_leaves_no_command_behind(bed: Testbed) -> None:
    """systemd SIGKILLs only the control process of a reload that timed out: the launcher's
    `exec`. What it started in the container (the entered process, the command) dies with it
    instead of running on. The kill is sent by hand here (what the timeout sends)."""
    add_container(
        bed,
        "hung",
        container(
            "/bin/sh -c \"trap 'exit 0' TERM; while :; do sleep 1; done\"",
            "ReloadCmd=/bin/sleep 1000\n",
        ),
    )
    bed.start_unit("hung.service")
    main_pid = bed.show("hung.service", "MainPID")

    def commands() -> list[str]:
        found = []
        for pid in unit_processes(bed, "hung.service"):
            cmdline = bed.run(["cat", f"/proc/{pid}/cmdline"], check=False).stdout.replace("\0", " ")
            if "sleep 1000" in cmdline:
                found.append(pid)
        return found

    bed.systemctl("--no-block", "reload", "hung.service")
    # exec (the control process), the process it forked to enter the container, and sleep
    assert wait_for(lambda: len(commands()) == 3)
    control = bed.show("hung.service", "ControlPID")
    assert control not in ("0", main_pid)
    bed.systemctl("kill", "--kill-who=control", "--signal=SIGKILL", "hung.service")
    assert wait_for(lambda: not commands()), commands()
    assert wait_for(lambda: bed.show("hung.service", "ControlPID") == "0")
    assert active(bed, "hung.service") == "active" and bed.show("hung.service", "MainPID") == main_pid
    bed.systemctl("stop", "hung.service")
