"""[Service] Type= as Quadlet files use it, and PodmanArgs=, in a real systemd
(tests/testbed.py; issue 13)."""

from __future__ import annotations

import pytest

from tests.containers import ROOTFS, add_container, container, run_to_end, wait_for
from tests.testbed import Testbed


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def test_a_oneshot_container_runs_to_completion(bed: Testbed) -> None:
    add_container(
        bed,
        "job",
        container("/bin/sh -c 'sleep 1; echo job-done'", service="Type=oneshot\nRemainAfterExit=yes"),
    )
    # systemctl start returns once the container has ended, as for any oneshot service
    bed.systemctl("start", "job.service")
    assert "job-done" in bed.journal("job.service").splitlines()
    assert bed.show("job.service", "ActiveState") == "active"  # RemainAfterExit=yes
    assert bed.show("job.service", "Result") == "success"
    bed.systemctl("stop", "job.service")
    add_container(bed, "badjob", container("/bin/sh -c 'exit 3'", service="Type=oneshot"))
    start = bed.systemctl("start", "badjob.service", check=False)
    assert start.returncode != 0
    assert bed.show("badjob.service", "ExecMainStatus") == "3"
    assert bed.show("badjob.service", "Result") == "exit-code"


@pytest.mark.parametrize("kind", ["simple", "exec"])
def test_type_simple_and_exec_are_the_container_as_main_process(bed: Testbed, kind: str) -> None:
    add_container(bed, kind, container("/bin/sleep 1000", service=f"Type={kind}"))
    bed.systemctl("start", f"{kind}.service")
    try:
        assert bed.show(f"{kind}.service", "Type") == "notify"
        main = wait_for(lambda: bed.show(f"{kind}.service", "MainPID"))
        assert bed.read_bytes(f"/proc/{main}/cmdline").split(b"\0")[0] == b"/bin/sleep"
    finally:
        bed.systemctl("stop", f"{kind}.service")


def test_podman_args_mean_their_keys(bed: Testbed) -> None:
    add_container(
        bed,
        "pa",
        container(
            "/bin/sh -c 'echo A=$A; hostname; cat /sys/fs/cgroup/memory.max 2>/dev/null || true'",
            "PodmanArgs=--env A=1 --memory 64m -h podbox --read-only\n",
        ),
    )
    run_to_end(bed, "pa.service")
    assert bed.show("pa.service", "Result") == "success", bed.journal("pa.service")
    lines = bed.journal("pa.service").splitlines()
    assert "A=1" in lines and "podbox" in lines, lines
    assert bed.show("pa.service", "MemoryMax") == str(64 * 1024 * 1024)


def test_a_container_name_in_use_fails_the_second_start(bed: Testbed) -> None:
    add_container(bed, "first", container("/bin/sleep 1000", "ContainerName=shared\n"))
    add_container(bed, "second", container("/bin/sleep 1000", "ContainerName=shared\n"))
    bed.systemctl("start", "first.service")
    try:
        assert bed.systemctl("start", "second.service", check=False).returncode != 0
        assert "ContainerName=shared is in use by the running container of first.service" in bed.journal(
            "second.service"
        )
        assert bed.show("first.service", "ActiveState") == "active"  # untouched, unlike podman's --replace
    finally:
        bed.systemctl("stop", "first.service")
    bed.systemctl("reset-failed", "second.service", check=False)
    bed.systemctl("start", "second.service")  # free again
    bed.systemctl("stop", "second.service")


def test_a_startup_check_gates_the_health_check(bed: Testbed) -> None:
    add_container(
        bed,
        "slow",
        container(
            "/bin/sh -c 'sleep 3; touch /tmp/up; exec sleep 1000'",
            "HealthCmd=true\nHealthInterval=1s\nHealthStartupCmd=test -e /tmp/up\n"
            "HealthStartupInterval=1s\nHealthStartupSuccess=2\n",
        ),
    )
    bed.systemctl("start", "slow.service")
    try:
        assert bed.show("slow-health-startup.timer", "ActiveState") == "active"
        assert bed.show("slow-health.timer", "ActiveState") == "inactive"  # not before the startup check passed
        assert wait_for(lambda: bed.show("slow-health.timer", "ActiveState") == "active", timeout=30)
        assert wait_for(lambda: bed.show("slow-health-startup.timer", "ActiveState") == "inactive")
        journal = bed.journal("slow-health-startup.service")
        assert "startup check failed (1)" in journal and "startup check passed; the health check begins" in journal
    finally:
        bed.systemctl("stop", "slow.service")
    assert bed.show("slow-health.timer", "ActiveState") == "inactive"  # bound to the service


def test_failing_startup_checks_restart_the_service(bed: Testbed) -> None:
    add_container(
        bed,
        "never",
        container(
            "/bin/sleep 1000",
            "HealthCmd=true\nHealthStartupCmd=false\nHealthStartupInterval=1s\nHealthStartupRetries=2\n",
        ),
    )
    bed.systemctl("start", "never.service")
    try:
        first = bed.show("never.service", "MainPID")
        assert wait_for(lambda: bed.show("never.service", "MainPID") not in (first, "0"), timeout=30)
        assert "startup checks failed; restarting it" in bed.journal("never-health-startup.service")
        assert bed.show("never-health.timer", "ActiveState") == "inactive"
    finally:
        bed.systemctl("stop", "never.service")
