"""`sdcontainer check` and the generator's refusals report every error of a file, with the
key a misspelt one may mean, and `check` warns about what a good file would meet when it
starts on this host (issue 14)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdcontainer.cli import cli
from sdcontainer.errors import MAX_ERRORS, ConfigError, ErrorList
from sdcontainer.generator import diagnose, find_sources, generate
from sdcontainer.unitfile import parse_text
from tests.test_generator import GOOD, generate_into, stand_ins, write
from tests.test_quadlet_corpus import CORPUS

SEVERAL = """\
[Unit]
Requires=nothere.container
[Container]
Rootfs=/srv/rootfs
Exec=/bin/true
Environmnet=A=1
PidsLimit=lots
workingdir=/x
this is not a line
Volume=/a:/b:zz
Volume=/c:/d
[Servce]
Restart=always
[Service]
User=nobody
[Quadlet]
DefaultDependency=no
"""


def check(*files: Path) -> tuple[int, list[str], list[str]]:
    result = CliRunner().invoke(cli, ["check", *map(str, files)])
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def test_every_error_of_a_file_in_line_order_with_the_key_it_may_mean(tmp_path: Path) -> None:
    path = write(tmp_path / "web.container", SEVERAL)
    status, out, err = check(path)
    assert (status, out) == (3, [])
    assert err == [
        f"{path}:2: Requires= names nothere.container, but no such file is on the search path",
        f"{path}:6: unknown key Environmnet= in [Container]; did you mean Environment=?",
        f"{path}:7: invalid PidsLimit=: 'lots' is not a number of processes (or -1 for no limit)",
        f"{path}:8: unknown key workingdir= in [Container]; did you mean WorkingDir=?",
        f"{path}:9: line is not a [Section] header, a Key=Value assignment or a comment: 'this is not a line'",
        f"{path}:10: invalid Volume=: unknown volume option 'zz' (known: ro, rw, z, Z, U, copy, nocopy, bind, dev, "
        "exec, nodev, noexec, nosuid, rbind, suid)",
        f"{path}:12: unknown section [Servce] (known: [Container], [Unit], [Service], [Socket], [Install], "
        "[Quadlet] and X- sections); did you mean [Service]?",
        f"{path}:15: User= in [Service] is not allowed here: the launcher must start as root; set User= in "
        "[Container] for the container's user",
        f"{path}:17: unknown key DefaultDependency= in [Quadlet]; did you mean DefaultDependencies=?",
    ]


def test_no_suggestion_for_a_key_that_is_like_none(tmp_path: Path) -> None:
    path = write(tmp_path / "a.container", GOOD + "Bogus=1\nEnv=A=1\n")
    _, _, err = check(path)
    assert err == [f"{path}:4: unknown key Bogus= in [Container]", f"{path}:5: unknown key Env= in [Container]"]


def test_the_checks_between_keys_only_in_a_file_whose_lines_are_good(tmp_path: Path) -> None:
    """Rootfs=/srv/x with a bad value, or a line that is no line: 'one of Rootfs= or Image= is
    required' would be noise. A file of good lines gets every check between keys that fails."""
    noisy = write(tmp_path / "noisy.container", "[Container]\nRootfs=\nExec /bin/true\nGroup=x\n")
    _, _, err = check(noisy)
    assert err == [f"{noisy}:3: line is not a [Section] header, a Key=Value assignment or a comment: 'Exec /bin/true'"]
    whole = write(
        tmp_path / "whole.container",
        "[Container]\nRootfs=/r\nImage=x:1\nExec=/bin/true\nGroup=x\nReloadCmd=/bin/r\nReloadSignal=HUP\n",
    )
    _, _, err = check(whole)
    assert err == [
        f"{whole}:2: Image= and Rootfs= exclude each other; set exactly one",
        f"{whole}:5: Group= requires User=",
        f"{whole}:6: ReloadCmd= and ReloadSignal= exclude each other; set one of them",
    ]


def test_a_drop_ins_errors_follow_the_files_and_name_the_drop_in(tmp_path: Path) -> None:
    path = write(tmp_path / "web.container", GOOD + "Foo=1\n")
    conf = write(tmp_path / "web.container.d" / "10-x.conf", "[Container]\nBar=2\nPidsLimit=x\n")
    _, _, err = check(path)
    assert err == [
        f"{path}:4: unknown key Foo= in [Container]",
        f"{conf}:2: unknown key Bar= in [Container]",
        f"{conf}:3: invalid PidsLimit=: 'x' is not a number of processes (or -1 for no limit)",
    ]


def test_the_lines_after_a_bad_section_header_are_not_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "a.container", GOOD + "[Service\nFoo=1\nBar=2\n[Service]\nUser=x\n")
    _, _, err = check(path)
    assert err == [
        f"{path}:4: invalid section header '[Service'",
        f"{path}:8: User= in [Service] is not allowed here: the launcher must start as root; set User= in "
        "[Container] for the container's user",
    ]


def test_a_file_that_cannot_be_read_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "a.container"
    path.write_bytes(b"[Container]\nFoo=\xff\n")
    _, _, err = check(path)
    assert err == [f"{path}: file is not valid UTF-8"]


def test_it_stops_after_max_errors(tmp_path: Path) -> None:
    """A file of 100000 bad lines is most likely no unit file: reading all of it at boot
    would cost the generator's run its time, and the journal a line each."""
    path = write(tmp_path / "a.container", "[Container]\n" + "".join(f"Bad{i}=1\n" for i in range(100_000)))
    status, _, err = check(path)
    assert status == 3
    assert len(err) == MAX_ERRORS + 1, err[-3:]
    assert err[0] == f"{path}:2: unknown key Bad0= in [Container]"
    assert err[-1] == f"{path}: stopped after {MAX_ERRORS} errors; the rest is not checked"


def test_parse_text_collects_every_bad_line() -> None:
    errors = ErrorList()
    unit = parse_text("[Container]\nA=1\nno\n=x\n[Unit]\nB=2\n", "/f", errors)
    assert [str(e) for e in errors] == [
        "/f:3: line is not a [Section] header, a Key=Value assignment or a comment: 'no'",
        "/f:4: invalid key name ''",
    ]
    assert [(e.section, e.key) for e in unit.entries] == [("Container", "A"), ("Unit", "B")]
    with pytest.raises(ConfigError, match="/f:3: line is not"):
        parse_text("[Container]\nA=1\nno\n=x\n", "/f")  # without a list: the first error


def bad_inputs(tmp_path: Path) -> list[Path]:
    """Every refused file of Quadlet's corpus, and the test files above."""
    directory = tmp_path / "inputs"
    directory.mkdir()
    for path in CORPUS.glob("*.container"):
        shutil.copy(path, directory)
    for name, text in [("several", SEVERAL), ("noisy", "[Container]\nRootfs=\nExec /bin/true\nGroup=x\n")]:
        write(directory / f"{name}.container", text)
    return [directory]


def test_the_error_generate_raises_is_among_those_diagnose_finds(tmp_path: Path) -> None:
    """So that check and the generator report what they always did, and more: diagnose()
    checks in its own way, and must not miss what generate() finds."""
    sources, index = find_sources([str(d) for d in bad_inputs(tmp_path)])
    known = {s.name for s in sources}
    refused = 0
    for source in sources:
        try:
            generate(source, known, index)
        except ConfigError as error:
            refused += 1
            found = [str(e) for e in diagnose(source, known, index)]
            assert str(error) in found, (source.name, str(error), found)
    # Quadlet's corpus (beside the checkout, when it is there) adds its ~20 refused files
    assert refused >= (20 if CORPUS.is_dir() else 2)


def test_the_generator_reports_every_error_and_the_stand_in_says_how_many(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "web.container", SEVERAL)
    out, result = generate_into(tmp_path, [units])
    assert result.returncode == 1
    reported = [line for line in result.stderr.splitlines() if "web.container:" in line]
    assert len(reported) == 9, result.stderr
    assert stand_ins(out) == ["web.service"]
    text = (out / "web.service").read_text()
    assert "Requires= names nothere.container, but no such file is on the search path (and 8 more)\n" in text
    assert text.count(f'"{units}/web.container:') == 9  # each an argument of ExecStart=


# --- what a good file would meet on this host -----------------------------------------------


def test_a_missing_rootfs_is_a_warning_and_check_still_passes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "file").write_text("")
    here = write(tmp_path / "here.container", f"[Container]\nRootfs={root}\nExec=/bin/true\n")
    relative = write(tmp_path / "rel.container", "[Container]\nRootfs=./root\nExec=/bin/true\n")
    missing = write(tmp_path / "missing.container", f"[Container]\nExec=/bin/true\nRootfs={tmp_path}/nope\n")
    a_file = write(tmp_path / "file.container", f"[Container]\nRootfs={tmp_path}/file\nExec=/bin/true\n")
    template = write(tmp_path / "t@.container", "[Container]\nRootfs=/srv/%i\nExec=/bin/true\n")
    status, out, err = check(here, relative, missing, a_file, template)
    assert status == 0
    assert out == [f"{p}: ok" for p in (here, relative, missing, a_file, template)]
    assert err == [
        f"{missing}:3: warning: Rootfs={tmp_path}/nope does not exist on this host: the unit cannot start here",
        f"{a_file}:2: warning: Rootfs={tmp_path}/file is not a directory on this host: the unit cannot start here",
    ]  # nothing about the template's: systemd makes /srv/%i at each start


def test_an_image_not_in_the_store_is_a_warning_or_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("the image store is root's")
    from sdcontainer.images import import_path

    monkeypatch.setenv("SDCONTAINER_STORAGE", str(tmp_path / "storage"))
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    import_path(str(archive), "stored:1")
    stored = write(tmp_path / "stored.container", "[Container]\nImage=stored:1\nExec=/hello\nPull=never\n")
    never = write(tmp_path / "never.container", "[Container]\nImage=docker.io/library/gone:1\nPull=never\n")
    pulled = write(tmp_path / "pulled.container", "[Container]\nImage=docker.io/library/gone:1\n")
    status, out, err = check(stored, never, pulled)
    assert status == 0 and out == [f"{p}: ok" for p in (stored, never, pulled)]
    assert err == [
        f"{never}:2: warning: docker.io/library/gone:1 is not in the image store, and Pull=never: "
        "the unit cannot start here",
        f"{pulled}:2: note: docker.io/library/gone:1 is not in the image store: the first start pulls it",
    ]


def test_a_refused_file_gets_no_warnings(tmp_path: Path) -> None:
    path = write(tmp_path / "a.container", f"[Container]\nRootfs={tmp_path}/nope\nExec=/bin/true\nFoo=1\n")
    _, _, err = check(path)
    assert err == [f"{path}:4: unknown key Foo= in [Container]"]
