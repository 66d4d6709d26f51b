"""The key table: parsing .container values into a spec, and the launcher round trip."""

from __future__ import annotations

import pytest

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.keys import KEYS, QUADLET_ONLY_KEYS, spec_from_argv, spec_from_unit, spec_to_argv
from sdcontainer.spec import BindMount, ContainerSpec, TmpfsMount
from sdcontainer.unitfile import parse_text


def spec(body: str, path: str = "/etc/sdcontainer/t.container") -> ContainerSpec:
    return spec_from_unit(parse_text("[Container]\n" + body, path))


def test_the_issue_example() -> None:
    s = spec(
        "Rootfs=/srv/rootfs/busybox\nExec=/bin/httpd -f -p 8080 -h /www\n"
        "Environment=GREETING=hi\nVolume=/srv/www:/www:ro\n"
    )
    assert s.rootfs == "/srv/rootfs/busybox"
    assert s.command == ("/bin/httpd", "-f", "-p", "8080", "-h", "/www")
    assert s.environment == ("GREETING=hi",)
    assert s.volumes == (BindMount("/srv/www", "/www", True),)
    assert s.network == "none"


def test_lists_accumulate_split_and_reset() -> None:
    s = spec('Rootfs=/r\nExec=x\nEnvironment=A=1 "B=two words"\nEnvironment=C=3\nLabel=x=1\nLabel=\nLabel=y=2\n')
    assert s.environment == ("A=1", "B=two words", "C=3")
    assert s.labels == ("y=2",)


def test_relative_paths_resolve_against_the_unit_directory() -> None:
    s = spec("Rootfs=./root\nExec=x\nVolume=./data:/data\nEnvironmentFile=env\n", "/srv/units/a.container")
    assert s.rootfs == "/srv/units/root"
    assert s.volumes[0].source == "/srv/units/data"
    assert s.environment_files == ("/srv/units/env",)


def test_specifiers_are_kept_for_systemd() -> None:
    s = spec("Rootfs=%S/rootfs\nExec=/bin/echo %i\nVolume=%h/data:/data\nHostName=web-%i\n")
    assert s.rootfs == "%S/rootfs"
    assert s.exec == ("/bin/echo", "%i")
    assert s.hostname == "web-%i"


def test_entrypoint_json_and_plain() -> None:
    assert spec('Rootfs=/r\nEntrypoint=["/bin/sh", "-c"]\nExec="echo hi"\n').command == ("/bin/sh", "-c", "echo hi")
    assert spec("Rootfs=/r\nEntrypoint=/bin/init\n").command == ("/bin/init",)


def test_tmpfs_and_booleans_and_signals() -> None:
    s = spec("Rootfs=/r\nExec=x\nTmpfs=/cache:size=10m,mode=700\nReadOnly=yes\nRunInit=true\nStopSignal=int\n")
    assert s.tmpfs == (TmpfsMount("/cache", ("size=10m", "mode=700")),)
    assert s.read_only and s.run_init
    assert s.stop_signal == "SIGINT"


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("Rootfs=/r\nExec=x\nFrobnicate=1\n", 4, "unknown key Frobnicate= in [Container]"),
        ("Rootfs=/r\nExec=x\nPublishPort=80:80\n", 4, "Quadlet key that sdcontainer does not support yet"),
        ("Rootfs=/r\nExec=x\nMemory=1G\n", 4, "use MemoryMax= in [Service]"),
        ("Rootfs=/r\nExec=x\nNetwork=bridge\n", 4, "Network=bridge is not supported yet"),
        ("Rootfs=/r\nExec=x\nReadOnly=maybe\n", 4, "invalid ReadOnly=: 'maybe' is not a boolean"),
        ("Rootfs=/r\nExec=x\nVolume=data:/data\n", 4, "named volume 'data' is not supported yet"),
        ("Rootfs=/r\nExec=x\nVolume=/a:/b:rx\n", 4, "unknown volume option 'rx'"),
        ("Rootfs=/r\nExec=x\nWorkingDir=rel\n", 4, "'rel' is not an absolute path"),
        ("Rootfs=/r\nExec=x\nStopSignal=SIGFOO\n", 4, "not a signal name"),
        ("Rootfs=/r\nExec=x\nGroup=g\n", 4, "Group= requires User="),
        ("Image=docker.io/library/busybox\nExec=x\n", 2, "Image= is not supported yet"),
        ("Rootfs=/r\nImage=x\nExec=x\n", 2, "exclude each other"),
    ],
)
def test_errors_name_file_line_and_key(body: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec(body)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"/etc/sdcontainer/t.container:{line}: ")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [("Exec=x\n", "one of Rootfs= or Image= is required"), ("Rootfs=/r\n", "no command")],
)
def test_errors_without_a_line(body: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        spec(body)


def test_quadlet_only_keys_do_not_overlap_the_table() -> None:
    assert not QUADLET_ONLY_KEYS & {k.name for k in KEYS}


ROUND_TRIP = [
    ContainerSpec(rootfs="/r", exec=("/bin/true",)),
    ContainerSpec(
        name="web@1",
        unit="web@1.service",
        rootfs="/srv/root",
        entrypoint=("/bin/sh", "-c"),
        exec=("echo $HOME; exit 7",),
        environment=("A=1", "B=two words", "PATH"),
        environment_files=("/etc/env",),
        working_dir="/www",
        user="app",
        group="app",
        hostname="web",
        volumes=(BindMount("/a", "/b", True, ("nosuid",)), BindMount("/c", "/d")),
        tmpfs=(TmpfsMount("/t", ("size=1m",)), TmpfsMount("/u")),
        read_only=True,
        read_only_tmpfs=False,
        network="host",
        labels=("a=b",),
        annotations=("c=d",),
        run_init=True,
        no_new_privileges=False,
        add_capabilities=("CAP_NET_ADMIN",),
        drop_capabilities=("CAP_ALL",),
    ),
]


@pytest.mark.parametrize("original", ROUND_TRIP)
def test_launcher_argv_round_trip(original: ContainerSpec) -> None:
    assert spec_from_argv(spec_to_argv(original)) == original


def test_launcher_argv_rejects_unknown_options() -> None:
    with pytest.raises(UsageError, match="unknown launcher option"):
        spec_from_argv(["--rootfs", "/r", "--bogus", "x", "--", "true"])


def test_launcher_requires_absolute_paths_after_expansion() -> None:
    with pytest.raises(UsageError, match="not an absolute path"):
        spec_from_argv(["--rootfs", "%S/x", "--", "true"])
