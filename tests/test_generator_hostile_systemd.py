"""Hostile names under /etc/sdcontainer, in a real systemd (tests/testbed.py): the installed
generator runs at daemon-reload as systemd runs it; the payload a name tries to smuggle into
a unit never runs, and the good units beside it are generated and start."""

from __future__ import annotations

import time

import pytest

from tests.containers import ROOTFS, UNITS, add_container, container, run_to_end
from tests.testbed import Testbed

PWNED = "/tmp/sdcontainer-pwned"
# nested directories whose path, written raw into the unit, is
#   SourcePath=/etc/sdcontainer/a
#   [Service]
#   ExecStartPre=/bin/touch /tmp/sdcontainer-pwned
#   /x.container
HOSTILE_FILE = f"{UNITS}/a\n[Service]\nExecStartPre=/bin/touch {PWNED}\n/x.container"

# what the good unit's container prints: the values of the file as the container gets them
VALUES = (
    'Environment="A=x;y" "B=it\'s \\"q\\"" C=$HOME D=50%% E=a\\nb\n'
    'Exec=/bin/sh -c \'echo "A=[$A]" "B=[$B]" "C=[$C]" "D=[$D]"; \\\n'
    '  test "$E" = "a\\nb" && echo E-ok; echo unit=%n pct=%%\'\n'
)


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    return installed_testbed


def generator_messages(bed: Testbed) -> str:
    bed.run(["journalctl", "--sync"], check=False)
    return bed.run(["journalctl", "-t", "sdcontainer-generator", "-o", "cat", "--no-pager"], check=False).stdout


def test_a_newline_in_a_directory_name_does_not_run_its_payload(bed: Testbed) -> None:
    bed.write_file(HOSTILE_FILE, f"[Container]\nRootfs={ROOTFS}\nExec=/bin/true\n")
    add_container(bed, "good", container("/bin/true", VALUES))  # daemon-reload, which must succeed
    bed.systemctl("start", "x.service", check=False)
    run_to_end(bed, "good.service")
    assert not bed.exists(PWNED), "the ExecStartPre= from the directory name ran"
    # x.service stands in for the refused file: it failed, saying why, with the name escaped
    assert bed.show("x.service", "ActiveState") == "failed"
    assert "a\\n[Service]\\nExecStartPre=/bin/touch /tmp/sdcontainer-pwned\\n/x.container" in bed.journal("x.service")
    assert bed.show("good.service", "Result") == "success", bed.journal("good.service")
    out = bed.journal("good.service")
    assert 'A=[x;y] B=[it\'s "q"] C=[$HOME] D=[50%]' in out, out
    assert "E-ok" in out and "unit=good.service pct=%" in out, out
    # the refusal is in the journal, one line, the newlines shown as \n
    messages = generator_messages(bed)
    assert "a\\n[Service]\\nExecStartPre=/bin/touch /tmp/sdcontainer-pwned\\n/x.container" in messages, messages


def test_a_lone_semicolon_in_exec_is_an_argument(bed: Testbed) -> None:
    """systemd's ExecStart= separates commands at an unquoted ';' word: Exec= words are
    the container's arguments, so a ';' among them is quoted."""
    add_container(bed, "semi", container(f"/bin/echo one ; /bin/touch {PWNED}-semi"))
    run_to_end(bed, "semi.service")
    assert bed.show("semi.service", "Result") == "success", bed.journal("semi.service")
    assert f"one ; /bin/touch {PWNED}-semi" in bed.journal("semi.service")
    assert not bed.exists(f"{PWNED}-semi")


MAKE_HOSTILE_TREE = r"""
import os
units = b"/etc/sdcontainer/"
os.makedirs(units + b"m-\xff-dir", exist_ok=True)
open(units + b"m-\xff-dir/inner.container", "w").write("[Container]\nRootfs=/x\nExec=/bin/true\n")
open(units + b"n-\xfe.container", "w").write("[Container]\nRootfs=/x\nExec=/bin/true\n")
os.symlink("/", units + b"root")
os.makedirs(units + b"loop", exist_ok=True)
os.symlink("..", units + b"loop/up")
fd = os.open(units, os.O_RDONLY | os.O_DIRECTORY)
for _ in range(2000):
    os.mkdir("d", dir_fd=fd)
    child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = child
open(os.open("deep.container", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w").write("[Container]\n")
"""


def test_symlinks_deep_trees_and_bad_bytes_cost_only_themselves(bed: Testbed) -> None:
    bed.run(["python3", "-c", MAKE_HOSTILE_TREE])
    add_container(bed, "good2", container("/bin/echo good2-ran"), reload=False)
    start = time.monotonic()
    bed.daemon_reload()
    print(f"daemon-reload with the hostile tree: {time.monotonic() - start:.2f} s")
    run_to_end(bed, "good2.service")
    assert bed.show("good2.service", "Result") == "success"
    assert "good2-ran" in bed.journal("good2.service")
    messages = generator_messages(bed)
    assert "m-\\xff-dir/inner.container" in messages, messages
    assert "/etc/sdcontainer/root: a symbolic link to a directory outside the search path" in messages, messages
    assert "/etc/sdcontainer/d/d/" in messages and "not searched" in messages, messages
