"""Socket activation against the real systemd: the [Socket] section, a hand-written .socket,
Accept=yes through a template, the SocketProxy= proxy scaling to zero, ReloadSignal=.

The server is tests/fdserver.c, built static on the host and copied into the testbed's copy
of the busybox root file system (busybox has no server that takes a listening fd): it
answers every request with what it was given, as seen from inside the container:

    pid=1 listen_pid=1 listen_fds=2 names=web:admin nfds=2 fds=0,1,2,3,4 env=HOME,... fd=3
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers import ROOTFS, add_container, proc_status, wait_for
from tests.helpers import CHECKOUT
from tests.testbed import Testbed

SOURCE = CHECKOUT / "tests" / "fdserver.c"
FDSERVER = "/bin/fdserver"

# A client run with the testbed's python: connect (tcp HOST:PORT, unix PATH, udp HOST:PORT),
# send a request, print everything that comes back.
CLIENT = r"""
import socket, sys
kind, where = sys.argv[1], sys.argv[2]
if kind == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(where)
else:
    host, port = where.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect((host, int(port)))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
if kind == "udp":
    sys.stdout.write(s.recv(65536).decode()); sys.exit(0)
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.write(data.decode())
"""


def build_fdserver(out: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build tests/fdserver.c (tools/setup installs it)")
    binary = out / "fdserver"
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(binary), str(SOURCE)], check=True)
    return binary


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    # the testbed's own copy of the tree: adding a file to it changes nothing on the host
    installed_testbed.copy_in(build_fdserver(tmp_path_factory.mktemp("fdserver")), ROOTFS + FDSERVER)
    installed_testbed.write_file("/usr/local/lib/sockets-client.py", CLIENT)
    return installed_testbed


def ask(bed: Testbed, kind: str, where: str, check: bool = True) -> str:
    result = bed.run(["/usr/bin/python3", "/usr/local/lib/sockets-client.py", kind, where], check=check, timeout=60)
    return result.stdout


def report(answer: str) -> dict[str, str]:
    """The fdserver's line, as a dict: pid, listen_pid, listen_fds, names, fds, env, fd."""
    line = answer.strip().splitlines()[-1]
    return dict(item.split("=", 1) for item in line.split())


CONTAINER_ENV = {"HOME", "HOSTNAME", "PATH", "container"}


def test_listening_sockets_of_a_socket_section_and_a_hand_written_socket(bed: Testbed) -> None:
    """The issue's first case: nothing runs until the first connection; then the container
    gets every socket (TCP, UNIX, UDP from its own [Socket] section, and one from a
    hand-written .socket with Service=) as fds 3..6 with names, LISTEN_PID=1, nothing else
    open and none of systemd's service variables."""
    bed.add_unit(
        "web-admin.socket",
        "[Socket]\nListenStream=127.0.0.1:8082\nService=web.service\nFileDescriptorName=admin\n",
        reload=False,
    )
    add_container(
        bed,
        "web",
        f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\n"
        "[Socket]\nListenStream=127.0.0.1:8080\nListenStream=/run/web.sock\nListenDatagram=127.0.0.1:8081\n"
        "FileDescriptorName=web\n[Install]\nWantedBy=sockets.target\n",
    )
    # [Install] went to the socket: it is enabled (the generator's symlink), the service is not
    assert bed.exists("/run/systemd/generator/sockets.target.wants/web.socket")
    bed.systemctl("start", "web.socket", "web-admin.socket")
    assert bed.show("web.service", "ActiveState") == "inactive"

    first = report(ask(bed, "tcp", "127.0.0.1:8080"))
    assert bed.show("web.service", "ActiveState") == "active"
    assert first["pid"] == "1" and first["listen_pid"] == "1"
    assert first["listen_fds"] == "4"
    # socket units are collected in no fixed order; each fd has its socket's name
    assert sorted(first["names"].split(":")) == ["admin", "web", "web", "web"]
    assert first["fds"] == "0,1,2,3,4,5,6"  # stdio and the four sockets, nothing else
    assert set(first["env"].split(",")) == CONTAINER_ENV | {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
    names = first["names"].split(":")

    # every socket reaches the same container, each at the fd its name says
    for kind, where, name in (
        ("tcp", "127.0.0.1:8080", "web"),
        ("unix", "/run/web.sock", "web"),
        ("udp", "127.0.0.1:8081", "web"),
        ("tcp", "127.0.0.1:8082", "admin"),
    ):
        seen = report(ask(bed, kind, where))
        assert seen["pid"] == "1"
        assert names[int(seen["fd"]) - 3] == name, (kind, seen)
    assert "HTTP/1.0 200 OK" in ask(bed, "tcp", "127.0.0.1:8080")

    # the server is the unit's main process, PID 1 of its own pid namespace
    main_pid = bed.show("web.service", "MainPID")
    assert proc_status(bed, main_pid)["NSpid"].split() == [main_pid, "1"]
    bed.systemctl("stop", "web.service", "web.socket", "web-admin.socket")


def test_the_issues_example_a_hand_written_socket_beside_a_container(bed: Testbed) -> None:
    """web.socket written by hand, web.container without a [Socket] section: systemd pairs
    them by name, as for any service."""
    bed.add_unit("hand.socket", "[Socket]\nListenStream=127.0.0.1:8089\nFileDescriptorName=http\n", reload=False)
    add_container(bed, "hand", f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\nNetwork=none\n")
    assert not bed.exists("/run/systemd/generator/hand.socket")
    bed.systemctl("start", "hand.socket")
    assert bed.show("hand.service", "ActiveState") == "inactive"
    seen = report(ask(bed, "tcp", "127.0.0.1:8089"))
    assert (seen["pid"], seen["listen_pid"], seen["listen_fds"], seen["names"]) == ("1", "1", "1", "http")
    assert seen["fds"] == "0,1,2,3"
    bed.systemctl("stop", "hand.service", "hand.socket")


def test_starting_the_service_by_hand_still_passes_the_sockets(bed: Testbed) -> None:
    add_container(
        bed,
        "byhand",
        f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\n[Socket]\nListenStream=127.0.0.1:8084\n",
    )
    bed.start_unit("byhand.service")  # Requires= and After= the socket: it starts first
    assert bed.show("byhand.socket", "ActiveState") == "active"
    seen = report(ask(bed, "tcp", "127.0.0.1:8084"))
    assert seen["listen_fds"] == "1" and seen["names"] == "byhand.socket" and seen["fds"] == "0,1,2,3"
    bed.systemctl("stop", "byhand.service", "byhand.socket")
    # what the man page says for starting one at boot too (systemctl add-wants refuses a
    # generated unit): a drop-in for the target
    bed.write_file("/etc/systemd/system/multi-user.target.d/byhand.conf", "[Unit]\nWants=byhand.service\n")
    bed.daemon_reload()
    assert "byhand.service" in bed.show("multi-user.target", "Wants").split()
    bed.run(["rm", "/etc/systemd/system/multi-user.target.d/byhand.conf"])
    bed.daemon_reload()


def test_run_init_hands_the_sockets_to_the_command(bed: Testbed) -> None:
    """With RunInit=yes, tini is PID 1 and the command its first child, PID 2: LISTEN_PID
    names the command, which sd_listen_fds compares with its own pid."""
    add_container(
        bed,
        "tini",
        f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\nRunInit=yes\n[Socket]\nListenStream=127.0.0.1:8091\n",
    )
    bed.systemctl("start", "tini.socket")
    seen = report(ask(bed, "tcp", "127.0.0.1:8091"))
    assert (seen["pid"], seen["listen_pid"], seen["listen_fds"], seen["nfds"]) == ("2", "2", "1", "1"), seen
    assert seen["fds"] == "0,1,2,3"
    bed.systemctl("stop", "tini.service", "tini.socket")


def test_a_template_socket_per_instance(bed: Testbed) -> None:
    """tpl@.container without Accept=: the socket is a template too, each instance activating
    the service instance of its name (here the instance is the port)."""
    add_container(bed, "tpl@", f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\n[Socket]\nListenStream=127.0.0.1:%i\n")
    bed.systemctl("start", "tpl@8092.socket", "tpl@8093.socket")
    for port in ("8092", "8093"):
        seen = report(ask(bed, "tcp", f"127.0.0.1:{port}"))
        assert (seen["pid"], seen["names"], seen["fds"]) == ("1", f"tpl@{port}.socket", "0,1,2,3"), seen
        assert bed.show(f"tpl@{port}.service", "ActiveState") == "active"
    bed.systemctl("stop", "tpl@8092.service", "tpl@8093.service", "tpl@8092.socket", "tpl@8093.socket")


def test_accept_yes_starts_a_container_per_connection(bed: Testbed) -> None:
    """A template with Accept=yes: each connection gets its own container, which finds the
    connection (not a listening socket) at fd 3."""
    add_container(
        bed,
        "conn@",
        f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\n[Socket]\nListenStream=127.0.0.1:8085\nAccept=yes\n",
    )
    bed.systemctl("start", "conn.socket")
    for _ in range(2):
        seen = report(ask(bed, "tcp", "127.0.0.1:8085"))
        assert seen["pid"] == "1" and seen["listen_pid"] == "1" and seen["listen_fds"] == "1"
        assert seen["fds"] == "0,1,2,3", seen
        assert seen["env"].split(",") == sorted(CONTAINER_ENV | {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"})
    # two connections, two instances (named after the connection), each gone after it
    assert bed.show("conn.socket", "NAccepted") == "2"
    wait_for(lambda: "conn@" not in bed.systemctl("list-units", "--no-legend", "conn@*").stdout)
    bed.systemctl("stop", "conn.socket")


def test_accept_yes_with_an_inetd_style_program(bed: Testbed) -> None:
    """busybox httpd -i serves one request on standard input and output: the connection."""
    bed.write_file("/srv/inetd-www/index.html", "served by httpd -i\n")
    add_container(
        bed,
        "inetd@",
        f"[Container]\nRootfs={ROOTFS}\nExec=/bin/httpd -i -h /www\nVolume=/srv/inetd-www:/www:ro\n"
        "[Socket]\nListenStream=127.0.0.1:8086\nAccept=yes\n"
        "[Service]\nStandardInput=socket\nStandardError=journal\n",
    )
    bed.systemctl("start", "inetd.socket")
    answer = ask(bed, "tcp", "127.0.0.1:8086")
    assert answer.startswith("HTTP/1.") and answer.endswith("served by httpd -i\n"), answer
    bed.systemctl("stop", "inetd.socket")


def test_reload_signal_reaches_the_containers_pid_1(bed: Testbed) -> None:
    add_container(
        bed,
        "reload",
        f"[Container]\nRootfs={ROOTFS}\nExec={FDSERVER}\nReloadSignal=SIGHUP\n[Socket]\nListenStream=127.0.0.1:8087\n",
    )
    bed.systemctl("start", "reload.socket")
    ask(bed, "tcp", "127.0.0.1:8087")
    main_pid = bed.show("reload.service", "MainPID")
    bed.systemctl("reload", "reload.service")
    assert wait_for(lambda: "reloaded" in bed.journal("reload.service")), bed.journal("reload.service")
    # the same process, still serving: a reload is not a restart
    assert bed.show("reload.service", "MainPID") == main_pid
    assert report(ask(bed, "tcp", "127.0.0.1:8087"))["pid"] == "1"
    bed.systemctl("stop", "reload.service", "reload.socket")


def test_socket_proxy_scales_to_zero_and_back(bed: Testbed) -> None:
    """SocketProxy=: a server that listens by itself (no LISTEN_FDS) behind
    systemd-socket-proxyd; the container stops when the proxy has been idle, and the next
    connection starts it again. Its port is in a private network namespace, shared with the
    proxy only."""
    add_container(
        bed,
        "lazy",
        f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nRootfs={ROOTFS}\nExec={FDSERVER} --port 8000\n"
        "SocketProxy=8000\nSocketProxyExitIdleTime=1s\n[Socket]\nListenStream=127.0.0.1:8088\n",
    )
    bed.systemctl("start", "lazy.socket")
    assert bed.show("lazy.service", "ActiveState") == "inactive"
    for _ in range(2):
        seen = report(ask(bed, "tcp", "127.0.0.1:8088"))
        assert seen["pid"] == "1" and seen["listen_fds"] == "-" and seen["fds"] == "0,1,2", seen
        assert bed.show("lazy.service", "ActiveState") == "active"
        assert bed.show("lazy-proxy.service", "ActiveState") == "active"
        # the proxy faces the network unprivileged: a dynamic user, no capabilities
        proxy = proc_status(bed, bed.show("lazy-proxy.service", "MainPID"))
        assert proxy["Uid"].split()[0] != "0" and proxy["CapEff"] == "0000000000000000", proxy
        # the container's port is not the testbed's: the proxy's namespace is private
        assert ask(bed, "tcp", "127.0.0.1:8000", check=False) == ""
        # idle for a second: the proxy exits, and the container is stopped with it
        assert wait_for(lambda: bed.show("lazy.service", "ActiveState") == "inactive", timeout=30)
        assert bed.show("lazy.service", "Result") == "success"
        assert bed.show("lazy-proxy.service", "ActiveState") == "inactive"
        assert bed.show("lazy.socket", "ActiveState") == "active"
    bed.systemctl("stop", "lazy.socket")
