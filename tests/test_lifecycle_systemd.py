"""The lifecycle verbs and `run`'s podman flags against a real systemd: `make install` into
a testbed, a .container file and `sdcontainer run` containers, each verb run as a user would."""

from __future__ import annotations

import json
import re
import select
import subprocess

import pytest

from tests.containers import ROOTFS, add_container, container, wait_for
from tests.testbed import Testbed

FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.write_file("/srv/www/index.html", "hello from the volume\n")
    return installed_testbed


def sdc(bed: Testbed, *args: str, check: bool = True, **kwargs: object) -> str:
    result = bed.run(["sdcontainer", *args], check=False, **kwargs)  # type: ignore[arg-type]
    if check:
        assert result.returncode == 0, f"sdcontainer {' '.join(args)}: {result.returncode}\n{result.stderr}"
    return result.stdout


def fails(bed: Testbed, *args: str) -> tuple[int, str]:
    result = bed.run(["sdcontainer", *args], check=False)
    assert result.stdout == "", result.stdout
    return result.returncode, result.stderr


def get(bed: Testbed, url: str) -> str:
    return bed.run(["python3", "-I", "-c", FETCH, url], check=False).stdout


def ps_json(bed: Testbed, *args: str) -> dict[str, dict[str, object]]:
    return {entry["unit"]: entry for entry in json.loads(sdc(bed, "ps", "--format", "json", *args))}


WEB = container(
    "/bin/sh -c 'echo hello-log; echo second-line; exec httpd -f -p 80 -h /www'",
    "Volume=/srv/www:/www:ro\nPublishPort=8080:80\nRunInit=yes\n",
)


def test_a_container_files_life_through_the_verbs(bed: Testbed) -> None:
    add_container(bed, "web", WEB)
    assert sdc(bed, "start", "web") == "web.service\n"
    assert bed.show("web.service", "ActiveState") == "active"
    assert wait_for(lambda: get(bed, "http://127.0.0.1:8080/")) == "hello from the volume\n"
    pid = bed.show("web.service", "MainPID")

    # ps: the running container, with its image (here the Rootfs=), status and port
    lines = sdc(bed, "ps").splitlines()
    assert lines[0].split() == ["NAME", "UNIT", "IMAGE", "STATUS", "PORTS", "COMMAND"]
    row = next((line for line in lines if " web.service " in line), None)
    assert row is not None, (lines, sdc(bed, "inspect", "web"))
    assert re.match(
        rf"web\s+web\.service\s+{ROOTFS}\s+Up \d+s\s+0\.0\.0\.0:8080->80/tcp\s+/dev/init -- /bin/sh -c ", row
    ), row

    def uptime_blurred(text: str) -> str:
        return re.sub(r"Up \d+[smhd] ", "Up ? ", text)

    assert uptime_blurred(sdc(bed, "list")) == uptime_blurred(sdc(bed, "ps"))  # the alias
    listed = ps_json(bed)["web.service"]
    assert listed["pid"] == int(pid) and listed["state"] == "active" and listed["ports"] == ["0.0.0.0:8080->80/tcp"]
    assert listed["network"] == "sdcontainer" and listed["transient"] is False

    # inspect: the record, the spec, systemd's state
    inspected = json.loads(sdc(bed, "inspect", "web.service"))
    assert inspected["record"]["pid"] == int(pid) and inspected["record"]["unit"] == "web.service"
    assert inspected["spec"]["publish_ports"] == ["8080:80/tcp"] and inspected["spec"]["rootfs"] == ROOTFS
    assert inspected["systemd"]["ActiveState"] == "active" and inspected["systemd"]["MainPID"] == int(pid)

    # top: the processes of the unit's cgroup: the init (tini), PID 1 inside, and httpd
    top = [line.split(None, 4) for line in sdc(bed, "top", "web").splitlines()]
    assert top[0] == ["PID", "CPID", "UID", "TIME", "COMMAND"] and len(top) == 3, top
    assert top[1][:3] == [pid, "1", "0"] and top[1][4].startswith("/dev/init -- /bin/sh"), top
    assert top[2][1:3] == ["2", "0"] and top[2][4].startswith("httpd -f -p 80"), top

    # logs: the container's lines only, not systemd's about the unit
    bed.run(["journalctl", "--sync"])
    assert sdc(bed, "logs", "web") == "hello-log\nsecond-line\n"
    assert sdc(bed, "logs", "-n", "1", "web.service") == "second-line\n"
    assert sdc(bed, "logs", "--since", "-1h", "web") == "hello-log\nsecond-line\n"
    assert sdc(bed, "logs", "--since", "+1h", "web") == ""
    assert re.search(r"^\S+ \S+ web\[\d+\]: hello-log$", sdc(bed, "logs", "-t", "web"), re.M)

    # restart: a new container; stop: gone from ps, in ps -a; rm: refused, it is the file's
    assert sdc(bed, "restart", "web") == "web.service\n"
    assert bed.show("web.service", "MainPID") not in (pid, "0")
    assert sdc(bed, "stop", "web") == "web.service\n"
    assert bed.show("web.service", "ActiveState") == "inactive"
    assert "web.service" not in ps_json(bed)
    stopped = ps_json(bed, "-a")["web.service"]
    # (systemd unloads an unreferenced inactive unit; loaded again, it has no history)
    assert stopped["state"] == "inactive" and stopped["status"] in ("Stopped", "Exited (143)")
    assert json.loads(sdc(bed, "inspect", "web"))["record"] is None
    status, error = fails(bed, "top", "web")
    assert (status, error) == (1, "sdcontainer: web.service is not running (inactive)\n")
    status, error = fails(bed, "rm", "web")
    assert status == 1
    assert error == (
        "sdcontainer: web.service comes from /etc/sdcontainer/web.container: remove that file and run "
        "systemctl daemon-reload (rm removes what `sdcontainer run` made)\n"
    )


def test_a_unit_file_never_started_is_in_ps_all(bed: Testbed) -> None:
    add_container(bed, "idle", container("/bin/true"))
    assert ps_json(bed, "-a")["idle.service"]["status"] == "Stopped"
    assert "idle.service" not in ps_json(bed)


def test_errors_name_the_unit(bed: Testbed) -> None:
    message = (
        "sdcontainer: no container 'nosuch': there is no unit nosuch.service (a unit of `sdcontainer run` is gone "
        "once it stopped; for a .container file, run systemctl daemon-reload)\n"
    )
    for verb in ("start", "stop", "restart", "inspect", "top", "rm"):
        assert fails(bed, verb, "nosuch") == (1, message), verb
    assert fails(bed, "logs", "nosuch") == (
        1,
        "sdcontainer: no container 'nosuch': no unit nosuch.service, and nothing of it in the journal\n",
    )
    assert fails(bed, "stop", "../x") == (2, "sdcontainer: '../x' is not a container name (web, or web.service)\n")
    # a unit that is not a container: left to systemctl
    bed.add_unit("plain.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    for verb in ("stop", "logs", "rm"):
        assert fails(bed, verb, "plain") == (
            1,
            "sdcontainer: plain.service is not a container of sdcontainer's; see systemctl status plain.service\n",
        ), verb
    # a start that fails says so, with where to look
    add_container(bed, "broken", container("/bin/no-such-program"))
    status, error = fails(bed, "start", "broken")
    assert status == 5
    assert error == (
        "sdcontainer: start of broken.service failed; see systemctl status broken.service and "
        "journalctl -u broken.service\n"
    )
    assert ps_json(bed, "-a")["broken.service"]["status"].startswith("Failed (127)")  # type: ignore[union-attr]
    bed.systemctl("reset-failed", "broken.service", check=False)


def test_run_speaks_podman(bed: Testbed) -> None:
    """-e (with a bare KEY from the caller), -v, -w, -u USER:GROUP, -p on the default bridge
    network, --name naming the unit, -d; then rm refused while it runs, rm -f."""
    script = "echo A=$A B=$B pwd=$(pwd) id=$(id -u):$(id -g); exec httpd -f -p 8000 -h /www"
    out = sdc(
        bed, "run", "-d", "--name", "box", "-e", "A=1", "-e", "B", "-v", "/srv/www:/www:ro", "-w", "/www",
        "-u", "65534:65534", "-p", "8081:8000", ROOTFS, "/bin/sh", "-c", script,
        env={"B": "from-caller"},
    )  # fmt: skip
    assert out == ""
    assert wait_for(lambda: get(bed, "http://127.0.0.1:8081/")) == "hello from the volume\n"
    bed.run(["journalctl", "--sync"])
    assert sdc(bed, "logs", "box") == "A=1 B=from-caller pwd=/www id=65534:65534\n"
    listed = ps_json(bed)["box.service"]
    assert listed["name"] == "box" and listed["ports"] == ["0.0.0.0:8081->8000/tcp"] and listed["transient"] is True
    assert listed["network"] == "sdcontainer" and listed["image"] == ROOTFS

    assert fails(bed, "rm", "box") == (
        1,
        "sdcontainer: box.service is running: stop it first (sdcontainer stop box), or rm -f\n",
    )
    assert sdc(bed, "rm", "-f", "box") == "box.service\n"
    assert bed.show("box.service", "LoadState") == "not-found"
    assert "box.service" not in ps_json(bed, "-a")
    assert get(bed, "http://127.0.0.1:8081/") == ""
    # its lines outlive it
    assert sdc(bed, "logs", "box") == "A=1 B=from-caller pwd=/www id=65534:65534\n"


def test_run_defaults_to_the_bridge_network(bed: Testbed) -> None:
    devices = sdc(bed, "run", ROOTFS, "/bin/cat", "/proc/net/dev")
    assert re.search(r"^\s*eth0:", devices, re.M) and re.search(r"^\s*lo:", devices, re.M), devices
    devices = sdc(bed, "run", "--network", "none", ROOTFS, "/bin/cat", "/proc/net/dev")
    assert not re.search(r"^\s*eth0:", devices, re.M), devices


def test_run_stdin_only_with_i(bed: Testbed) -> None:
    assert sdc(bed, "run", "-i", ROOTFS, "/bin/cat", input="piped\n") == "piped\n"
    assert sdc(bed, "run", "-it", ROOTFS, "/bin/cat", input="piped\n") == "piped\n"
    assert sdc(bed, "run", ROOTFS, "/bin/cat", input="piped\n") == ""  # podman's: /dev/null without -i
    assert sdc(bed, "run", "--rm", ROOTFS, "/bin/echo", "removed") == "removed\n"  # the default, accepted


def test_a_failed_detached_run_stays_until_rm_unless_rm(bed: Testbed) -> None:
    sdc(bed, "run", "-d", "--name", "failing", ROOTFS, "/bin/sh", "-c", "echo bye; exit 3", check=False)
    wait_for(lambda: bed.show("failing.service", "ActiveState") == "failed")
    assert ps_json(bed, "-a")["failing.service"]["status"].startswith("Failed (3)")  # type: ignore[union-attr]
    bed.run(["journalctl", "--sync"])
    assert sdc(bed, "logs", "failing") == "bye\n"
    # it stays loaded, so it can be started again (a new invocation, with the same unit)
    first = bed.show("failing.service", "InvocationID")
    assert sdc(bed, "start", "failing") == "failing.service\n"
    wait_for(lambda: bed.show("failing.service", "InvocationID") != first)
    wait_for(lambda: bed.show("failing.service", "ActiveState") == "failed")
    bed.run(["journalctl", "--sync"])
    assert sdc(bed, "logs", "failing") == "bye\nbye\n"
    assert sdc(bed, "rm", "failing") == "failing.service\n"
    assert bed.show("failing.service", "LoadState") == "not-found"

    sdc(bed, "run", "-d", "--rm", "--name", "gone", ROOTFS, "/bin/sh", "-c", "sleep 0.2; exit 3", check=False)
    assert wait_for(lambda: bed.show("gone.service", "LoadState") == "not-found")


def test_logs_follow(bed: Testbed) -> None:
    script = "echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo two; exec sleep 1000"
    sdc(bed, "run", "-d", "--init", "--name", "ticker", "--network", "none", ROOTFS, "/bin/sh", "-c", script)
    follow = bed.popen(["sdcontainer", "logs", "-f", "ticker"], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert select.select([follow.stdout], [], [], 30)[0]
        assert follow.stdout.readline() == "one\n"
        sdc(bed, "exec", "ticker", "/bin/touch", "/tmp/go")  # "two" comes only now
        assert select.select([follow.stdout], [], [], 30)[0]
        assert follow.stdout.readline() == "two\n"
    finally:
        follow.kill()
        follow.wait()
        sdc(bed, "rm", "-f", "ticker")
