"""The runc CVE-2019-5736 route against `sdcontainer exec` and health checks, in a real systemd.

A container that can write its own /bin swaps the command exec runs (renameat2
RENAME_EXCHANGE) between our lookup and the execve for a script whose #! line is
/proc/self/exe: were the process that execs it still the host's python, the kernel would
run that python inside the container, and the container could open it through
/proc/PID/exe and, once it has ended, append to the host's interpreter. tests/exec_race.c
is the attacker; for 30 s one container races its health check (every second) and another
races `sdcontainer exec` in a loop, both at once. Afterwards the host's interpreter is
unchanged, no attempt to write through an exe link succeeded, and every exe the attacker
could open from outside its own tree was sdcontainer's sealed trampoline (a memfd), never
a host binary.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest

from tests.containers import ROOTFS, add_container, container, wait_for
from tests.testbed import Testbed

SOURCE = Path(__file__).with_name("exec_race.c")
RACE_SECONDS = 30
HOST_PYTHON = "/usr/bin/python3"
VENV_PYTHON = "/usr/local/lib/sdcontainer/venv/bin/python3"


@pytest.fixture(scope="module")
def racer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tools/setup installs it)")
    binary = tmp_path_factory.mktemp("exec_race") / "exec_race"
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(binary), str(SOURCE)], check=True)
    return binary


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, racer: Path) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.copy_in(str(racer), f"{ROOTFS}/bin/exec_race")
    # what an image based on a glibc distribution has: the dynamic loader and the libraries
    # the host's python needs, so that the kernel could really run that python in there
    for library in shared_libraries(HOST_PYTHON):  # as files at the names ld.so looks up
        installed_testbed.write_file(f"{ROOTFS}{library}", Path(library).read_bytes(), mode=0o755)
    return installed_testbed


def shared_libraries(program: str) -> list[str]:
    lines = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout.splitlines()
    return [word for line in lines for word in line.split() if word.startswith("/")]


def race_log(bed: Testbed, name: str) -> str:
    return bed.run(["cat", f"/srv/race-{name}/log"], check=False).stdout


def finished_log(bed: Testbed, name: str) -> str:
    log = race_log(bed, name)
    return log if "DONE" in log else ""


def sha256(bed: Testbed, path: str) -> str:
    return bed.run(["sha256sum", path]).stdout.split()[0]


def test_exec_and_health_checks_never_run_the_hosts_binary_in_the_container(bed: Testbed) -> None:
    interpreter = bed.run(["readlink", "-f", VENV_PYTHON]).stdout.strip()
    before = sha256(bed, interpreter)
    run = f"/bin/sh -c 'exec_race {RACE_SECONDS} /race/log; sleep 1000'"
    for name, extra in (("checked", "HealthCmd=/bin/hc\nHealthInterval=1s\nHealthRetries=100000\n"), ("entered", "")):
        bed.run(["mkdir", "-p", f"/srv/race-{name}"])
        add_container(bed, name, container(run, f"Volume=/srv/race-{name}:/race\n{extra}"), reload=False)
    bed.daemon_reload()
    for name in ("checked", "entered"):
        bed.start_unit(f"{name}.service")
    for name in ("checked", "entered"):
        assert wait_for(partial(race_log, bed, name)).startswith("START"), name
    deadline = time.monotonic() + RACE_SECONDS
    execs = results = 0
    while time.monotonic() < deadline:
        r = bed.run(["sdcontainer", "exec", "entered", "/bin/hc"], check=False)
        execs += 1
        results += r.returncode == 0
    logs = {name: wait_for(partial(finished_log, bed, name), 20) for name in ("checked", "entered")}
    assert all(logs.values()), f"a racer did not finish: {logs}"
    journal = bed.run(["journalctl", "-u", "checked-health.service", "-o", "cat"]).stdout
    checks = sum(line.startswith("Finished") or "Failed" in line for line in journal.splitlines())
    print(f"execs: {execs} ({results} ran /bin/hc), health checks: {checks}")
    for name, log in logs.items():
        print(name, [line for line in log.splitlines() if not line.startswith("FOREIGN")][-4:])
    assert checks >= 10  # the health-check side of the race really ran
    assert execs > 20 and results > 0  # the exec side of the race really ran
    assert sha256(bed, interpreter) == before, "the host's interpreter was rewritten from inside a container"
    reached = 0
    for name, log in logs.items():
        assert "WROTE" not in log, f"{name}: {log}"
        foreign = [line.split(" ", 2)[2] for line in log.splitlines() if line.startswith("FOREIGN ")]
        assert all(exe.startswith("/memfd:sdcontainer-exec") for exe in foreign), (name, set(foreign))
        reached += len(foreign)
    # the swap did land between lookup and execve: the kernel ran /proc/self/exe, the trampoline
    assert reached > 0, "the race was never won: this run proves nothing"
    for name in ("checked", "entered"):
        bed.run(["systemctl", "stop", f"{name}.service"])
