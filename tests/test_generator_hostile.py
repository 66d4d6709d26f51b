"""The generator on hostile file and directory names (issue 10, part 4): the real generator,
run as systemd runs it, on a search directory built to break it. Each test puts good files
beside the hostile entry: they must still be generated, and the hostile one must be
escaped, or refused with one message that names it (shown escaped, so the message itself
cannot smuggle a line into the journal or a terminal)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CHECKOUT
from tests.test_generator import FAKE_LAUNCHER, GOOD, stand_ins, write

# a directory name that, written raw into a unit, ends the SourcePath= line and starts a
# [Service] section with an ExecStartPre= (the other slashes come from nested directories)
PAYLOAD_DIRS = ["a\n[Service]\nExecStartPre=", "bin", "touch ", "tmp", "pwned\n"]


def generator(
    search: list[Path], out: Path | None, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The generator as systemd runs it (or --dry-run without `out`), and its wall time.
    The timeout only stops a hung run; no test asserts on the time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDCONTAINER_")}
    env.update(SDCONTAINER_UNIT_PATH=":".join(map(str, search)), PYTHONPATH=str(CHECKOUT))
    env["SDCONTAINER_LAUNCHER"] = FAKE_LAUNCHER
    args = [str(out)] if out is not None else ["--dry-run"]
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sdcontainer.generator", *args],
        env=env,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
    )
    return result, time.monotonic() - start


def run_into(tmp_path: Path, units: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path / "out"
    out.mkdir()
    result, seconds = generator([units], out)
    print(f"generator: {seconds:.2f} s, exit {result.returncode}")
    return out, result


def services(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".service"))


def lines_about(result: subprocess.CompletedProcess[str], fragment: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if fragment in line]


def every_unit_line(out: Path) -> Iterator[str]:
    """The lines of every file written, split where systemd splits them (at \\n only, not
    at the form feeds and other breaks of str.splitlines)."""
    for path in out.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield from path.read_text().split("\n")


def test_a_newline_in_a_directory_name_cannot_add_a_directive(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    hostile = units.joinpath(*PAYLOAD_DIRS)
    write(hostile / "x.container", GOOD)
    out, result = run_into(tmp_path, units)
    assert result.returncode == 1, result.stderr
    # x.service stands in for the refused file: the path is in it, escaped, as one line
    assert services(out) == ["good.service", "x.service"], result.stderr
    assert stand_ins(out) == ["x.service"]
    injected = [line for line in every_unit_line(out) if line.startswith(("ExecStartPre", "[Service]ExecStartPre"))]
    assert injected == []
    stand_in = (out / "x.service").read_text()
    assert "SourcePath=" not in stand_in
    assert "a\\n[Service]\\nExecStartPre=/bin/touch /tmp/pwned\\n/x.container" in stand_in, stand_in
    assert "Traceback" not in result.stderr
    # one message, naming the file with its newlines escaped: no raw newline in a message
    (message,) = lines_about(result, "x.container")
    assert "a\\n[Service]\\nExecStartPre=/bin/touch /tmp/pwned\\n/x.container" in message, message
    assert "control character" in message, message


def test_names_that_are_not_utf8_fail_alone(tmp_path: Path) -> None:
    """A name that is not UTF-8 cannot be written into a unit file (which is UTF-8 text):
    it used to end the whole run in a UnicodeEncodeError, losing every later unit."""
    units = tmp_path / "units"
    write(units / "a-good.container", GOOD)
    write(units / "z-good.container", GOOD)
    os.mkdir(os.fsencode(units) + b"/m-\xff-dir")
    (Path(os.fsdecode(os.fsencode(units) + b"/m-\xff-dir")) / "inner.container").write_text(GOOD)
    with open(os.fsencode(units) + b"/n-\xfe.container", "w") as f:
        f.write(GOOD)
    out, result = run_into(tmp_path, units)
    assert result.returncode == 1, result.stderr
    # inner.service stands in for the file in the directory that is not UTF-8 (its path
    # shown escaped); n-\xfe.container gives no unit name, so nothing stands in for it
    assert services(out) == ["a-good.service", "inner.service", "z-good.service"], result.stderr
    assert stand_ins(out) == ["inner.service"]
    assert "m-\\xff-dir/inner.container" in (out / "inner.service").read_text(encoding="utf-8")
    assert "Traceback" not in result.stderr, result.stderr
    (inner,) = lines_about(result, "inner.container")
    assert "m-\\xff-dir/inner.container" in inner and "UTF-8" in inner, inner
    (bad_name,) = lines_about(result, "n-\\xfe.container")
    assert "not valid UTF-8" in bad_name, bad_name


def test_a_symlink_to_the_root_directory_is_not_followed(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    (units / "root").symlink_to("/")
    write(units / "sub" / "inside.container", GOOD)
    (units / "also-sub").symlink_to("sub")  # inside the search path: followed, once
    out, result = run_into(tmp_path, units)
    assert services(out) == ["good.service", "inside.service"], result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (message,) = lines_about(result, f"{units}/root")
    assert "outside the search path" in message and "not followed" in message, message
    assert result.returncode == 1


def test_symlink_loops(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / "sub" / "in-loop.container", GOOD)
    (units / "sub" / "up").symlink_to("..")  # a loop: back to the search directory
    (units / "sub" / "here").symlink_to(".")
    (units / "self.container").symlink_to("self.container")  # ELOOP
    out, result = run_into(tmp_path, units)
    assert services(out) == ["good.service", "in-loop.service", "self.service"], result.stderr
    assert stand_ins(out) == ["self.service"]
    assert "Traceback" not in result.stderr, result.stderr
    (message,) = lines_about(result, "self.container")
    assert "symbolic links" in message, message


def make_chain(top: Path, depth: int, name: str = "d") -> list[str]:
    """`depth` nested directories under `top`, made through directory fds (the path is soon
    longer than PATH_MAX); a .container at the bottom. Returns the names, top first."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("bottom.container", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    return [name] * depth


def remove_chain(top: Path, names: list[str]) -> None:
    """rmtree recurses (a RecursionError this deep): remove the chain bottom-up by fds."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    for name in names:
        fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    os.unlink("bottom.container", dir_fd=fds[-1])
    for name, parent in zip(reversed(names), reversed(fds[:-1]), strict=True):
        os.close(fds.pop())
        os.rmdir(name, dir_fd=parent)
    os.close(fds.pop())


def test_two_thousand_nested_directories(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "a-good.container", GOOD)
    write(units / "z-good.container", GOOD)
    names = make_chain(units, 2000)
    try:
        out, result = run_into(tmp_path, units)
    finally:
        remove_chain(units, names)
    assert services(out) == ["a-good.service", "z-good.service"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # the walk stops at its depth bound, saying where
    (message,) = lines_about(result, "not searched")
    assert message.startswith(f"sdcontainer-generator: {units}/d/d/"), message[:200]
    assert "levels" in message, message[-300:]
    assert result.returncode == 1


def test_five_thousand_files(tmp_path: Path) -> None:
    units = tmp_path / "units"
    for i in range(50):
        sub = units / f"group{i:02}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"c{i:02}-{j:03}.container").write_text(GOOD)
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(services(out)) == 5000


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("bad name.container", 'only ASCII letters, digits and ":-_.\\@"'),
        ("semi;colon.container", 'only ASCII letters, digits and ":-_.\\@"'),
        ("per%cent.container", 'only ASCII letters, digits and ":-_.\\@"'),
        ("@x.container", 'nothing before the "@"'),
        (".hidden.container", "starts with"),
        ("ü.container", 'only ASCII letters, digits and ":-_.\\@"'),
    ],
)
def test_names_that_are_not_unit_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / name, GOOD)
    out, result = run_into(tmp_path, units)
    assert result.returncode == 1, result.stderr
    assert services(out) == ["good.service"], result.stderr  # no unit name: nothing stands in for it
    (message,) = lines_about(result, name)
    assert "not a valid unit name" in message and why in message, message


def test_names_that_are_unit_names_are_accepted(tmp_path: Path) -> None:
    """systemd-escape's names (\\x2d), colons, instances with an @ of their own, and the
    longest file name there can be (255 bytes: NAME_MAX)."""
    units = tmp_path / "units"
    names = ["a\\x2db.container", "c:d.container", "t@.container", "t@i@j.container", "y" * 245 + ".container"]
    for name in names:
        write(units / name, GOOD)
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr
    assert services(out) == sorted(n.replace(".container", ".service") for n in names)


def test_a_health_unit_name_that_would_be_too_long(tmp_path: Path) -> None:
    """x*245.service fits; x*245-health.service does not: the file is refused, not half made."""
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / ("x" * 245 + ".container"), GOOD + "HealthCmd=/bin/true\n")
    out, result = run_into(tmp_path, units)
    assert result.returncode == 1
    # the service's own name fits: it stands in for the file, alone (no health units)
    assert sorted(p.name for p in out.iterdir()) == ["good.service", "x" * 245 + ".service"]
    assert stand_ins(out) == ["x" * 245 + ".service"]
    (message,) = lines_about(result, "-health.service")
    assert "longer than 255" in message, message


def test_a_percent_in_a_directory_name_is_not_a_specifier(tmp_path: Path) -> None:
    """SourcePath= and the paths resolved against the file's directory (Rootfs=./root,
    Volume=./data:...) reach systemd, which expands specifiers in them: % must be %%."""
    units = tmp_path / "units"
    write(units / "100%n" / "p.container", "[Container]\nRootfs=./root\nVolume=./data:/data\nExec=/bin/true\n")
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr
    text = (out / "p.service").read_text()
    assert f"SourcePath={units}/100%%n/p.container\n" in text
    assert f"--rootfs {units}/100%%n/root " in text
    assert f"--volume {units}/100%%n/data:/data:rw " in text
    assert f"RequiresMountsFor={units}/100%%n/root {units}/100%%n/data\n" in text


def test_quotes_and_spaces_in_a_directory_name(tmp_path: Path) -> None:
    """RequiresMountsFor= is a list of words: a path with a space or a quote is quoted."""
    units = tmp_path / "units"
    write(units / 'my "dir" x' / "q.container", "[Container]\nRootfs=./root\nExec=/bin/true\n")
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr
    text = (out / "q.service").read_text()
    assert f'RequiresMountsFor="{units}/my \\"dir\\" x/root"\n' in text
    assert f'--rootfs "{units}/my \\"dir\\" x/root"' in text
    assert f'SourcePath={units}/my "dir" x/q.container\n' in text


def test_a_colon_in_the_directory_of_a_relative_volume(tmp_path: Path) -> None:
    """The launcher's --volume is SOURCE:TARGET[:OPTIONS]: a source with a colon in it
    would be read as another target. Refused, naming the line."""
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / "a:b" / "v.container", GOOD + "Volume=./data:/data\n")
    out, result = run_into(tmp_path, units)
    assert services(out) == ["good.service", "v.service"], result.stderr
    assert stand_ins(out) == ["v.service"]
    (message,) = lines_about(result, "v.container")
    assert "v.container:4:" in message and "':'" in message, message


def test_install_names_are_unit_names(tmp_path: Path) -> None:
    """WantedBy= names become link names in the output directory: a C escape in them (the
    value is unquoted and unescaped) must not make a name with a newline."""
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / "w.container", GOOD + "[Install]\nWantedBy=multi-user.target\\nfoo\n")
    out, result = run_into(tmp_path, units)
    assert services(out) == ["good.service", "w.service"], result.stderr
    assert stand_ins(out) == ["w.service"]  # and no link: a stand-in is never enabled
    assert sorted(p.name for p in out.iterdir()) == ["good.service", "w.service"]
    (message,) = lines_about(result, "w.container")
    assert "w.container:5:" in message and "not a valid unit name" in message, message


def test_a_line_ending_in_backslashes_cannot_swallow_the_next(tmp_path: Path) -> None:
    """systemd continues a line that ends in an odd number of backslashes. The parser took
    a line ending in three as complete; written as the last of the file's [Service] lines, it
    made systemd join the generator's RuntimeDirectory= line to it."""
    units = tmp_path / "units"
    write(units / "c.container", GOOD + "[Service]\nEnvironment=Y=b\nEnvironment=X=a\\\\\\\n")
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr
    lines = (out / "c.service").read_text().splitlines()
    odd = [line for line in lines if (len(line) - len(line.rstrip("\\"))) % 2]
    assert odd == []
    # continued at the end of the file, as systemd reads it: the last backslash is a space
    assert lines[lines.index("RuntimeDirectory=sdcontainer/containers/%n") - 1] == "Environment=X=a\\\\"


def test_lines_break_where_systemd_breaks_them(tmp_path: Path) -> None:
    """systemd ends lines at \\n and \\r only; Python's str.splitlines also at \\f, \\v,
    \\x1c-\\x1e, \\x85, U+2028 and U+2029. A form feed inside an Environment= line made the
    parser see a second assignment that systemd, reading the same file, does not see."""
    units = tmp_path / "units"
    write(units / "f.container", GOOD + "[Service]\nEnvironment=A=1\x0cExecStartPre=/bin/touch /tmp/pwned\n")
    write(units / "n.container", GOOD + "[Service]\nEnvironment=A=1\x00ExecStartPre=/bin/touch /tmp/pwned\n")
    out, result = run_into(tmp_path, units)
    assert [line for line in every_unit_line(out) if line.startswith("ExecStartPre")] == []
    assert "Environment=A=1\x0cExecStartPre=/bin/touch /tmp/pwned" in (out / "f.service").read_text().split("\n")
    (message,) = lines_about(result, "n.container")
    assert "NUL" in message, message


def test_values_from_the_file_reach_execstart_quoted(tmp_path: Path) -> None:
    """% stays a specifier (%% for a literal one, as documented), $ is left for systemd (which
    leaves $HOME inside a word alone, as on Quadlet's podman command line), a lone ;
    is an argument and not systemd's command separator, quotes and C escapes survive."""
    units = tmp_path / "units"
    write(
        units / "v.container",
        "[Container]\nRootfs=/srv/rootfs\n"
        'Environment="A=x;y" "B=it\'s \\"q\\"" C=$HOME D=50%% E=a\\nb\n'
        "Exec=/bin/echo a ; /bin/touch /tmp/p \\\n  continued %n\n",
    )
    out, result = run_into(tmp_path, units)
    assert result.returncode == 0, result.stderr
    (exec_start,) = [line for line in every_unit_line(out) if line.startswith("ExecStart=")]
    assert '--env "A=x;y" --env "B=it\'s \\"q\\"" --env "C=$HOME" --env D=50%% --env "E=a\\nb"' in exec_start
    assert exec_start.endswith(' -- /bin/echo a ";" /bin/touch /tmp/p continued %n'), exec_start


def test_messages_with_control_characters_stay_one_line(tmp_path: Path) -> None:
    """Error messages go to the journal's native protocol, where a newline would start a
    new field (PRIORITY=, SYSLOG_IDENTIFIER=...): a name in a message is shown escaped."""
    units = tmp_path / "units"
    write(units / "x\nPRIORITY=0\nSYSLOG_IDENTIFIER=sshd" / "bad.container", "[Container]\nBogus=1\n")
    _, result = run_into(tmp_path, units)
    assert result.returncode == 1
    # two: the path cannot be written into a unit, and the unknown key
    messages = lines_about(result, "bad.container")
    assert len(messages) == 2, messages
    for message in messages:
        assert "x\\nPRIORITY=0\\nSYSLOG_IDENTIFIER=sshd/bad.container" in message, message
    assert not [line for line in result.stderr.splitlines() if line.startswith(("PRIORITY", "SYSLOG"))]


def test_a_default_instance_must_make_a_unit_name(tmp_path: Path) -> None:
    units = tmp_path / "units"
    write(units / "good.container", GOOD)
    write(units / "t@.container", GOOD + "[Install]\nWantedBy=multi-user.target\nDefaultInstance=a b\n")
    out, result = run_into(tmp_path, units)
    assert sorted(p.name for p in out.iterdir()) == ["good.service", "t@.service"], result.stderr
    assert stand_ins(out) == ["t@.service"]
    (message,) = lines_about(result, "t@.container")
    assert "t@.container:6: DefaultInstance= makes t@a b.service, not a valid unit name" in message, message
