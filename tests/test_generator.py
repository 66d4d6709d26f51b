"""The generator, run as systemd runs it: files in a search path, units out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdcontainer.generator import REFUSED_CODE
from tests.helpers import CHECKOUT

GOLDEN = Path(__file__).parent / "golden"
FAKE_LAUNCHER = "/usr/libexec/sdcontainer/launcher"


def run_generator(
    search: list[Path], *args: str, launcher: str | None = FAKE_LAUNCHER
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDCONTAINER_")}
    env["SDCONTAINER_UNIT_PATH"] = ":".join(str(p) for p in search)
    env["PYTHONPATH"] = str(CHECKOUT)
    if launcher:
        env["SDCONTAINER_LAUNCHER"] = launcher
    return subprocess.run(
        [sys.executable, "-m", "sdcontainer.generator", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def generate_into(
    tmp_path: Path, search: list[Path], launcher: str | None = FAKE_LAUNCHER
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path / "out"
    out.mkdir()
    return out, run_generator(search, str(out), str(tmp_path / "early"), str(tmp_path / "late"), launcher=launcher)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = "[Container]\nRootfs=/srv/rootfs\nExec=/bin/true\n"


def stand_ins(out: Path) -> list[str]:
    """The services in `out` that stand in for refused files: they only fail, saying why."""
    return sorted(p.name for p in out.glob("*.service") if REFUSED_CODE in p.read_text())


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.container")))
def test_golden(name: str, tmp_path: Path) -> None:
    """A .container in, the .service out, compared with the reviewed copy beside it.
    SDCONTAINER_UPDATE_GOLDEN=1 rewrites the copies (then review the diff)."""
    shutil.copytree(GOLDEN, tmp_path / "units")
    out, result = generate_into(tmp_path, [tmp_path / "units"])
    assert result.returncode == 0, result.stderr
    # the .service, and the .socket (and proxy) a [Socket] section adds: NAME.socket, NAME-proxy.service
    prefix = name.rstrip("@")
    made = [f"{name}.service"] + sorted(
        p.name for p in out.iterdir() if p.is_file() and p.name.startswith((f"{prefix}.socket", f"{prefix}-proxy"))
    )
    for unit in made:
        text = (out / unit).read_text().replace(str(tmp_path / "units"), "/etc/sdcontainer")
        expected = GOLDEN / f"{unit}.expected"
        if os.environ.get("SDCONTAINER_UPDATE_GOLDEN"):
            expected.write_text(text)
        assert text == expected.read_text()


def test_a_bad_file_fails_alone(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "good1.container", GOOD)
    write(units / "sub" / "good2.container", GOOD)
    write(units / "bad.container", "[Container]\nRootfs=/srv/rootfs\nExec=/bin/true\nthis line is broken\n")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["bad.service", "good1.service", "good2.service"]
    assert stand_ins(out) == ["bad.service"]
    errors = [line for line in result.stderr.splitlines() if ".container:" in line]
    assert errors == [
        f"sdcontainer-generator: {units}/bad.container:4: line is not a [Section] header, "
        "a Key=Value assignment or a comment: 'this line is broken'"
    ]


def test_files_that_are_no_unit_files_fail_alone(tmp_path: Path) -> None:
    """A FIFO would block the generator until systemd kills it, a link to /dev/zero (or a
    huge file) would read until memory runs out and end in a traceback: either way every
    unit after it would be lost. Each must be one error about that file."""
    units = tmp_path / "units"
    write(units / "b-good.container", GOOD)
    os.mkfifo(units / "a-fifo.container")
    (units / "a-zero.container").symlink_to("/dev/zero")
    with open(units / "a-huge.container", "wb") as f:
        f.truncate(64 << 20)  # sparse
    write(units / "b-good.container.d" / "fifo.conf", "")
    (units / "b-good.container.d" / "fifo.conf").unlink()
    os.mkfifo(units / "b-good.container.d" / "fifo.conf")
    write(units / "c-good.container", GOOD)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDCONTAINER_")}
    env.update(SDCONTAINER_UNIT_PATH=str(units), PYTHONPATH=str(CHECKOUT), SDCONTAINER_LAUNCHER=FAKE_LAUNCHER)
    result = subprocess.run(
        ["prlimit", f"--as={1 << 30}", "--", sys.executable, "-m", "sdcontainer.generator", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result
    refused = ["a-fifo.service", "a-huge.service", "a-zero.service", "b-good.service"]
    assert sorted(p.name for p in out.iterdir()) == [*refused, "c-good.service"]
    assert stand_ins(out) == refused
    errors = [line for line in result.stderr.splitlines() if ".container" in line and "failed" not in line]
    assert errors == [
        f"sdcontainer-generator: {units}/a-fifo.container: not a regular file",
        f"sdcontainer-generator: {units}/a-huge.container: larger than 8 MiB; not a unit file",
        f"sdcontainer-generator: {units}/a-zero.container: not a regular file",
        f"sdcontainer-generator: {units}/b-good.container.d/fifo.conf: not a regular file",
    ], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_error_names_file_line_and_key(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a.container", GOOD + "Bogus=1\n")
    result = run_generator([units], "--dry-run")
    assert result.returncode == 1
    assert f"{units}/a.container:4: unknown key Bogus= in [Container]" in result.stderr


def test_first_file_of_a_name_wins_and_subdirectories_are_walked(tmp_path: Path) -> None:
    first, second = tmp_path / "etc", tmp_path / "usr"
    write(first / "deep" / "er" / "web.container", GOOD.replace("/bin/true", "/bin/first"))
    write(second / "web.container", GOOD.replace("/bin/true", "/bin/second"))
    write(second / "other.container", GOOD)
    out, result = generate_into(tmp_path, [first, second])
    assert result.returncode == 0, result.stderr
    assert "/bin/first" in (out / "web.service").read_text()
    assert (out / "other.service").exists()


def test_dropins_most_specific_wins_and_lists_merge(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "web-front.container", GOOD + "Environment=A=base\n")
    write(units / "container.d" / "10-all.conf", "[Container]\nEnvironment=ALL=1\n")
    write(units / "container.d" / "20-over.conf", "[Container]\nEnvironment=SHADOWED=1\n")
    write(units / "web-.container.d" / "15-prefix.conf", "[Container]\nEnvironment=PREFIX=1\n")
    write(units / "web-front.container.d" / "20-over.conf", "[Container]\nEnvironment=OWN=1\n")
    write(units / "web-front.container.d" / "30-install.conf", "[Install]\nWantedBy=multi-user.target\n")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 0, result.stderr
    text = (out / "web-front.service").read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert "--env A=base --env ALL=1 --env PREFIX=1 --env OWN=1 " in exec_start
    assert "SHADOWED" not in text
    assert (out / "multi-user.target.wants" / "web-front.service").is_symlink()


def test_a_dropins_mount_on_a_taken_destination_names_both_lines(tmp_path: Path) -> None:
    units = tmp_path / "units"
    main = write(units / "web.container", GOOD + "Volume=/srv/a:/data\n")
    dropin = write(units / "web.container.d" / "10-data.conf", "[Container]\n\nTmpfs=/data:size=1M\n")
    out, result = generate_into(tmp_path, [units])
    assert stand_ins(out) == ["web.service"]
    line = len((GOOD + "Volume=/srv/a:/data\n").splitlines())
    assert (
        f"{dropin}:3: Tmpfs=/data:size=1M: /data is already the destination of Volume=/srv/a:/data at {main}:{line}"
        in (result.stderr)
    )


def test_templates_and_instances(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(
        units / "echo@.container",
        "[Container]\nRootfs=/srv/rootfs\nExec=/bin/echo %i\n[Install]\nWantedBy=multi-user.target\n",
    )
    write(units / "echo@.container.d" / "10.conf", "[Container]\nEnvironment=FROM_TEMPLATE_DROPIN=1\n")
    os.symlink("echo@.container", units / "echo@hello.container")
    write(
        units / "tick@.container",
        "[Container]\nRootfs=/srv/rootfs\nExec=/bin/true\n[Install]\nWantedBy=timers.target\nDefaultInstance=one\n",
    )
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 0, result.stderr
    assert (out / "echo@.service").exists()
    instance = (out / "echo@hello.service").read_text()
    assert "FROM_TEMPLATE_DROPIN=1" in instance
    # an instance is enabled like a normal unit; a template only through DefaultInstance=
    assert os.readlink(out / "multi-user.target.wants" / "echo@hello.service") == "../echo@hello.service"
    assert not (out / "multi-user.target.wants" / "echo@.service").exists()
    assert os.readlink(out / "timers.target.wants" / "tick@one.service") == "../tick@.service"


def test_install_links_and_alias(tmp_path: Path) -> None:
    units = tmp_path / "units"
    shutil.copy(GOLDEN / "db.container", units.mkdir() or units / "db.container")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 0, result.stderr
    assert os.readlink(out / "multi-user.target.requires" / "db.service") == "../db.service"
    assert os.readlink(out / "database.service") == "db.service"


def test_dependency_on_a_missing_container_fails(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a.container", "[Unit]\nRequires=nothere.container\n" + GOOD)
    result = run_generator([units], "--dry-run")
    assert result.returncode == 1
    assert f"{units}/a.container:2: Requires= names nothere.container" in result.stderr


@pytest.mark.parametrize(
    ("service", "fragment"),
    [
        ("ExecStart=/bin/false", "ExecStart= in [Service] is not allowed"),
        ("User=nobody", "User= in [Service] is not allowed"),
        ("Type=forking", "Type=forking in [Service] is not supported"),
        ("KillMode=process", "KillMode=process in [Service] is not supported"),
        ("RuntimeDirectoryPreserve=yes", "RuntimeDirectoryPreserve=yes in [Service] is not supported"),
    ],
)
def test_service_settings_that_would_break_the_container(tmp_path: Path, service: str, fragment: str) -> None:
    units = tmp_path / "units"
    write(units / "a.container", GOOD + "[Service]\n" + service + "\n")
    result = run_generator([units], "--dry-run")
    assert result.returncode == 1
    assert fragment in result.stderr


def test_the_records_runtime_directory_comes_after_the_users(tmp_path: Path) -> None:
    """So a user's RuntimeDirectory= adds to it and an empty one cannot reset it."""
    units = tmp_path / "units"
    write(
        units / "a.container",
        GOOD + "[Service]\nRuntimeDirectory=app\nRuntimeDirectory=\nRuntimeDirectoryPreserve=restart\n",
    )
    result = run_generator([units], "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines.index("RuntimeDirectory=") < lines.index("RuntimeDirectory=sdcontainer/containers/%n")
    # no record cleanup (systemd removes the directory); the default network's release only
    stops = [line for line in lines if line.startswith("ExecStopPost=")]
    assert [line.split()[-3:] for line in stops] == [["release", "--unit", "%n"]]


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a.container", GOOD + "[Servce]\nRestart=always\n")
    result = run_generator([units], "--dry-run")
    assert "a.container:4: unknown section [Servce]" in result.stderr


def test_dry_run_writes_nothing_and_prints_units(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a.container", GOOD + "[Install]\nWantedBy=multi-user.target\n")
    result = run_generator([units], "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("--- a.service ---\n")
    assert "--- symlink multi-user.target.wants/a.service -> ../a.service ---" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["units"]


def test_no_files_is_fine(tmp_path: Path) -> None:
    result = run_generator([tmp_path / "missing"], "--dry-run")
    assert result.returncode == 0
    assert result.stdout == ""


def test_generator_imports_nothing_heavy(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a.container", GOOD)
    code = (
        f"import sys; sys.path.insert(0, {str(CHECKOUT)!r}); from sdcontainer.generator import main; "
        "main(['--dry-run']); print('MODULES', ' '.join(sorted(sys.modules)))"
    )
    env = dict(os.environ, SDCONTAINER_UNIT_PATH=str(units))
    # -I -S as installed: no site-packages hooks that import things on their own
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.rpartition("MODULES ")[2].split())
    heavy_modules = (
        "click",
        "pystemd",
        "dbus_fast",
        "pyroute2",
        "dataclasses",
        "typing",
        "json",
        "inspect",
        "re",
        "enum",
        "difflib",  # the "did you mean" of error messages: error paths only
    )
    for heavy in heavy_modules:
        assert heavy not in loaded, f"the generator imported {heavy}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """systemd's own checker on the generated units, with a launcher path that exists."""
    units = tmp_path / "units"
    for name in ("hello", "db"):
        shutil.copy(GOLDEN / f"{name}.container", units.mkdir(exist_ok=True) or units)
    for sub in ("srv/rootfs/busybox", "srv/www"):
        (tmp_path / sub).mkdir(parents=True)
    out, result = generate_into(tmp_path, [units], launcher=None)
    assert result.returncode == 0, result.stderr
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(p) for p in sorted(out.glob("*.service")))],
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"),
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in verify.stderr.splitlines()
        # the host has no systemd running: complaints about the host's own units are not ours
        if ("hello" in line or "db.service" in line or "sdcontainer" in line)
    ]
    assert verify.returncode == 0 and problems == [], verify.stderr


def test_network_of_another_container_requires_its_service(tmp_path: Path) -> None:
    """Quadlet's network.reuse.container: Network=basic.container gives Requires= and After=
    basic.service (and no release at stop: nothing is leased); container:NAME gives neither;
    a file that is not there is an error naming the line."""
    units = tmp_path / "units"
    write(units / "basic.container", GOOD)
    write(units / "reuse.container", GOOD + "Network=basic.container\n")
    write(units / "byname.container", GOOD + "Network=container:basic\n")
    write(units / "web@.container", GOOD)
    write(units / "side.container", GOOD + "Network=web@1.container\n")
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 0, result.stderr
    reuse = (out / "reuse.service").read_text()
    assert "Requires=basic.service\n" in reuse and "After=basic.service\n" in reuse
    assert "ExecStopPost" not in reuse and " --network basic.container " in reuse
    byname = (out / "byname.service").read_text()
    assert "basic.service" not in byname and "ExecStopPost" not in byname
    assert "Requires=web@1.service\n" in (out / "side.service").read_text()
    write(units / "lost.container", GOOD + "Network=gone.container\n")
    result = run_generator([units], "--dry-run")
    assert f"{units}/lost.container:4: Network= names gone.container, but no such file is on the search path" in (
        result.stderr
    )
