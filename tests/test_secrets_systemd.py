"""Secret= in a real systemd (tests/testbed.py): `sdcontainer secret create` stores the value
root-only, the unit loads it as a credential, the container gets it as a file (owner, mode)
or a variable, and the value is nowhere else: not in the unit, `systemctl show`, the
launcher's command line or environment, nor in another container (issue 13)."""

from __future__ import annotations

import pytest

from tests.containers import ROOTFS, add_container, container, run_to_end, unit_processes, wait_for
from tests.testbed import Testbed

VALUE = "s3cr3t-value-42"
STORE = "/var/lib/sdcontainer/secrets"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    # systemd makes / shared at boot on a host, not in a container (mount-setup.c), and the
    # testbed's is private: credentials, set up in a namespace of their own and moved into
    # place, would not show (an empty $CREDENTIALS_DIRECTORY). As on a host:
    installed_testbed.run(["mount", "--make-rshared", "/"])
    installed_testbed.run(["sdcontainer", "secret", "create", "db-pw", "-"], input=VALUE)
    return installed_testbed


def test_the_store_is_root_only(bed: Testbed) -> None:
    assert bed.run(["stat", "-c", "%a %U", STORE]).stdout.split() == ["700", "root"]
    assert bed.run(["stat", "-c", "%a %U", f"{STORE}/db-pw"]).stdout.split() == ["600", "root"]
    assert bed.run(["sdcontainer", "secret", "ls"]).stdout.split() == ["db-pw"]
    inspect = bed.run(["sdcontainer", "secret", "inspect", "db-pw"]).stdout
    assert '"Size": 15' in inspect and VALUE not in inspect
    again = bed.run(["sdcontainer", "secret", "create", "db-pw", "-"], input="x", check=False)
    assert again.returncode != 0 and "exists already" in again.stderr
    assert bed.read_file(f"{STORE}/db-pw") == VALUE


def test_a_secret_as_a_file_and_as_a_variable(bed: Testbed) -> None:
    script = "ls -ln /run/secrets/db-pw /etc/pw; cat /run/secrets/db-pw; echo; cat /etc/pw; echo; echo env=$PW"
    add_container(
        bed,
        "sec",
        container(
            f"/bin/sh -c '{script}'",
            "Secret=db-pw,uid=1000,gid=1001,mode=0440\n"
            "Secret=source=db-pw,target=/etc/pw\n"
            "Secret=db-pw,type=env,target=PW\n",
        ),
    )
    run_to_end(bed, "sec.service")
    assert bed.show("sec.service", "Result") == "success", bed.journal("sec.service")
    lines = bed.journal("sec.service").splitlines()
    listing = [line.split() for line in lines if line.startswith("-r")]
    assert [(f[0], f[2], f[3], f[-1]) for f in listing] == [
        ("-r--r--r--", "0", "0", "/etc/pw"),  # podman's defaults: root's, 0444
        ("-r--r-----", "1000", "1001", "/run/secrets/db-pw"),
    ], lines
    assert lines.count(VALUE) == 2 and f"env={VALUE}" in lines, lines


def test_the_value_is_nowhere_but_in_the_container(bed: Testbed) -> None:
    # Notify=yes keeps the launcher running (it relays until READY=1, which never comes)
    add_container(
        bed,
        "holder",
        container("/bin/sleep 1000", "Secret=db-pw\nNotify=yes\n", service="TimeoutStartSec=90"),
    )
    bed.systemctl("start", "--no-block", "holder.service")
    try:
        processes = wait_for(
            lambda: len(unit_processes(bed, "holder.service")) >= 2 and unit_processes(bed, "holder.service")
        )
        assert processes, bed.journal("holder.service")
        launcher = [
            p for p in processes if "sdcontainer" in bed.read_bytes(f"/proc/{p}/cmdline").decode(errors="replace")
        ]
        assert launcher, processes
        for pid in processes:  # the launcher and the container's init: argv and environment
            for what in ("cmdline", "environ"):
                assert VALUE.encode() not in bed.read_bytes(f"/proc/{pid}/{what}"), (pid, what)
        show = bed.run(["systemctl", "show", "--all", "holder.service"]).stdout
        assert "InvocationID=" in show and VALUE not in show
        assert VALUE not in bed.systemctl("cat", "holder.service").stdout
        # another container, started beside it, finds the value nowhere it can look
        probe = "cat /run/secrets/db-pw /run/credentials/*/* /var/lib/sdcontainer/secrets/db-pw 2>&1; ls /run"
        add_container(bed, "other", container(f"/bin/sh -c '{probe}'"))
        run_to_end(bed, "other.service")
        journal = bed.journal("other.service")
        assert "No such file" in journal and VALUE not in journal, journal
    finally:
        bed.systemctl("stop", "holder.service", check=False)


def test_a_missing_secret_fails_the_start_naming_it(bed: Testbed) -> None:
    add_container(bed, "nosecret", container("/bin/true", "Secret=not-there,type=env\n"))
    run_to_end(bed, "nosecret.service")
    assert bed.show("nosecret.service", "Result") != "success"
    journal = bed.journal("nosecret.service")
    assert "secret not-there does not exist: create it with 'sdcontainer secret create not-there FILE'" in journal
    # created now, the next start has it; removed again, the one after fails
    bed.run(["sdcontainer", "secret", "create", "not-there", "-"], input="late")
    bed.systemctl("reset-failed", "nosecret.service", check=False)
    run_to_end(bed, "nosecret.service")
    assert bed.show("nosecret.service", "Result") == "success", bed.journal("nosecret.service")
    bed.run(["sdcontainer", "secret", "rm", "not-there"])
    run_to_end(bed, "nosecret.service")
    assert bed.show("nosecret.service", "Result") != "success"


def test_log_driver_none_and_log_opt_tag(bed: Testbed) -> None:
    add_container(bed, "quiet", container("/bin/sh -c 'echo to-nowhere; echo err-nowhere >&2'", "LogDriver=none\n"))
    run_to_end(bed, "quiet.service")
    assert bed.show("quiet.service", "Result") == "success"
    journal = bed.journal("quiet.service")
    assert "nowhere" not in journal, journal
    add_container(bed, "tagged", container("/bin/echo tagged-line", "LogOpt=tag=mytag\n"))
    run_to_end(bed, "tagged.service")
    bed.run(["journalctl", "--sync"], check=False)
    out = bed.run(["journalctl", "-t", "mytag", "-o", "cat", "--no-pager"], check=False).stdout
    assert "tagged-line" in out.splitlines(), out


def test_sdcontainer_run_takes_secrets_too(bed: Testbed) -> None:
    result = bed.run(
        ["sdcontainer", "run", "--secret", "db-pw", "--secret", "db-pw,type=env,target=PW", ROOTFS]
        + ["/bin/sh", "-c", "cat /run/secrets/db-pw; echo; echo env=$PW"],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [VALUE, f"env={VALUE}"], result.stdout
    missing = bed.run(["sdcontainer", "run", "--secret", "absent", ROOTFS, "/bin/true"], check=False)
    assert missing.returncode != 0 and "secret absent does not exist" in missing.stdout + missing.stderr
