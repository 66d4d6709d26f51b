"""The key table: parsing .container values into a spec, and the launcher round trip."""

from __future__ import annotations

import pytest

from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.keys import (
    KEYS,
    QUADLET_ONLY_KEYS,
    Kind,
    service_settings,
    spec_from_argv,
    spec_from_unit,
    spec_to_argv,
)
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
    assert s.network == "sdcontainer"  # Quadlet's default: the default bridge network


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
        (
            "Rootfs=/r\nExec=x\nNetwork=container:db\nPublishPort=80\n",
            5,
            "PublishPort= cannot be used with Network=container:db: the container shares the network "
            "namespace of db; publish the port there",
        ),
        (
            "Rootfs=/r\nExec=x\nNetwork=db.container\nIP=10.88.0.9\n",
            5,
            "IP= cannot be used with Network=db.container: the container shares the network namespace "
            "of db.container; set the address there",
        ),
        (
            "Rootfs=/r\nExec=x\nNetwork=container:db\nSysctl=net.ipv4.ip_forward=1\n",
            5,
            "Sysctl=net.* cannot be set with Network=container:db: they would change db's network",
        ),
        (
            "Rootfs=/r\nExec=x\nNetwork=none\nPublishPort=8080:80\n",
            5,
            "PublishPort= needs a bridge network, not Network=none",
        ),
        ("Rootfs=/r\nExec=x\nNetwork=host\nIP=10.88.0.9\n", 5, "IP= needs a bridge network, not Network=host"),
        ("Rootfs=/r\nExec=x\nServiceName=web\n", 4, "name the file after the service instead"),
        ("Rootfs=/r\nExec=x\nMemory=lots\n", 4, "invalid Memory=: 'lots' is not a size"),
        ("Rootfs=/r\nExec=x\nMemory=1.5.2g\n", 4, "invalid Memory=: '1.5.2g' is not a size"),
        ("Rootfs=/r\nExec=x\nPidsLimit=-5\n", 4, "invalid PidsLimit=: '-5' is not a number of processes"),
        ("Rootfs=/r\nExec=x\nUlimit=nofile\n", 4, "invalid Ulimit=: 'nofile' is not NAME=SOFT[:HARD]"),
        ("Rootfs=/r\nExec=x\nUlimit=files=10\n", 4, "invalid Ulimit=: unknown limit 'files' (known: core,"),
        ("Rootfs=/r\nExec=x\nUlimit=nofile=2048:1024\n", 4, "nofile: the soft limit 2048 is above the hard limit 1024"),
        ("Rootfs=/r\nExec=x\nUlimit=nofile=-1:1024\n", 4, "the soft limit -1 is above the hard limit 1024"),
        ("Rootfs=/r\nExec=x\nUlimit=nofile=lots\n", 4, "nofile limit 'lots' is not a number (or -1 for unlimited)"),
        ("Rootfs=/r\nExec=x\nUlimit=nice=41\n", 4, "nice limit 41 is out of range"),
        ("Rootfs=/r\nExec=x\nUlimit=cpu=1,nofile=x\n", 4, "invalid Ulimit=: nofile limit 'x'"),
        ("Rootfs=/r\nExec=x\nAddHost=db\n", 4, "invalid AddHost=: 'db' is not NAME:IP"),
        (
            "Rootfs=/r\nExec=x\nAddHost=db:300.1.1.1\n",
            4,
            "invalid AddHost=: '300.1.1.1' is not an IPv4 or IPv6 address",
        ),
        ("Rootfs=/r\nExec=x\nAddHost=a;;b:10.0.0.1\n", 4, "invalid AddHost=: 'a;;b:10.0.0.1' has an empty host name"),
        ("Rootfs=/r\nExec=x\nAddHost=a b:10.0.0.1\n", 4, "invalid AddHost=: 'a b' is not a host name"),
        ("Rootfs=/r\nExec=x\nAddHost=gw:host-gateway\n", 4, "invalid AddHost=: host-gateway is not supported yet"),
        ("Rootfs=/r\nExec=x\nDNS=8.8.8.8,dns.google\n", 4, "invalid DNS=: 'dns.google' is not an IP address (or none)"),
        ("Rootfs=/r\nExec=x\nDNS=none\nDNS=8.8.8.8\n", 5, "DNS=none cannot be combined with name servers"),
        ("Rootfs=/r\nExec=x\nDNS=none\nDNSOption=edns0\n", 5, "DNS=none leaves the image's resolv.conf alone"),
        ("Rootfs=/r\nExec=x\nDNSSearch=example.com\nDNS=none\n", 4, "DNSSearch= and DNSOption= cannot go in it"),
        ("Rootfs=/r\nExec=x\nDNSSearch=-bad.example\n", 4, "invalid DNSSearch=: '-bad.example' is not a domain name"),
        ("Rootfs=/r\nExec=x\nDNSSearch=.,example.com\n", 4, "DNSSearch=. (no search domains) cannot be combined"),
        ("Rootfs=/r\nExec=x\nDNSOption=ndots 2\n", 4, "invalid DNSOption=: 'ndots 2' is not a resolver option"),
        ("Rootfs=/r\nExec=x\nShmSize=64q\n", 4, "invalid ShmSize=: '64q' is not a size"),
        ("Rootfs=/r\nExec=x\nGroupAdd=keep-groups\n", 4, "invalid GroupAdd=: keep-groups is not supported yet"),
        ("Rootfs=/r\nExec=x\nGroupAdd=a b\n", 4, "invalid GroupAdd=: 'a b' is not a group name or number"),
        (
            "Rootfs=/r\nExec=x\nTimezone=../../etc/shadow\n",
            4,
            "invalid Timezone=: '../../etc/shadow' is not a time zone name",
        ),
        (
            "Rootfs=/r\nExec=x\nTimezone=/etc/localtime\n",
            4,
            "is not a time zone name (such as Europe/Berlin, UTC or local)",
        ),
        ("Rootfs=/r\nExec=x\nEnvironmentHost=sometimes\n", 4, "invalid EnvironmentHost=: 'sometimes' is not a boolean"),
        ("Rootfs=/r\nExec=x\nMask=/proc/a:proc/b\n", 4, "invalid Mask=: 'proc/b' is not an absolute path"),
        ("Rootfs=/r\nExec=x\nUnmask=/proc/[a\n", 4, "invalid Unmask=: '/proc/[a': malformed [...] in the pattern"),
        ("Rootfs=/r\nExec=x\nUnmask=proc/*\n", 4, "invalid Unmask=: 'proc/*' is not an absolute path, a pattern"),
        ("Rootfs=/r\nExec=x\nSysctl=kernel.shmmax\n", 4, "invalid Sysctl=: 'kernel.shmmax' is not NAME=VALUE"),
        (
            "Rootfs=/r\nExec=x\nSysctl=kernel.domainname=x\n",
            4,
            "sysctl kernel.domainname is not allowed: only the container's own namespaces",
        ),
        ("Rootfs=/r\nExec=x\nSysctl=vm.swappiness=1\n", 4, "sysctl vm.swappiness is not allowed"),
        ('Rootfs=/r\nExec=x\nSysctl="kernel.sem= 1 2 3 4"\n', 4, "has spaces around the name or the value"),
        ("Rootfs=/r\nExec=x\nSysctl=net/ipv4/ip_forward=1\n", 4, "'net/ipv4/ip_forward' is not a sysctl name"),
        (
            "Rootfs=/r\nNetwork=host\nSysctl=net.ipv4.ip_forward=1\nExec=x\n",
            4,
            "net.* sysctls cannot be set with Network=host",
        ),
        ("Rootfs=/r\nExec=x\nNetwork=a.network\nNetwork=b.network\n", 5, "several Network= lines"),
        ("Rootfs=/r\nExec=x\nIP6=fd00::1\n", 4, "IP6= on the default network is not supported"),
        ("Rootfs=/r\nExec=x\nNetwork=none\nNetworkAlias=db\n", 5, "NetworkAlias= needs a bridge network"),
        ("Rootfs=/r\nExec=x\nReadOnly=maybe\n", 4, "invalid ReadOnly=: 'maybe' is not a boolean"),
        ("Rootfs=/r\nExec=x\nVolume=da/ta:/data\n", 4, "'da/ta' is neither an absolute path nor a volume name"),
        ("Rootfs=/r\nExec=x\nMount=type=image,src=x,dst=/x\n", 4, "invalid Mount=: type=image: not supported"),
        ("Rootfs=/r\nExec=x\nVolume=/a:/b:rx\n", 4, "unknown volume option 'rx'"),
        ("Rootfs=/r\nExec=x\nWorkingDir=rel\n", 4, "'rel' is not an absolute path"),
        ("Rootfs=/r\nExec=x\nStopSignal=SIGFOO\n", 4, "not a signal name"),
        ("Rootfs=/r\nExec=x\nGroup=g\n", 4, "Group= requires User="),
        ("Image=docker.io/library/Busybox\nExec=x\n", 2, "is not a repository name"),
        ("Image=busybox:-bad\n", 2, "is not a valid tag"),
        ("Image=busybox@sha256:abc\n", 2, "is not a sha256:<64 hex digits> digest"),
        ("Image=web.build\n", 2, ".build units are not supported yet"),
        (
            "Image=busybox\nPull=sometimes\n",
            3,
            "invalid Pull=: 'sometimes' is not one of never, missing, always, newer",
        ),
        ("Image=busybox\nRetry=-1\n", 3, "invalid Retry=: '-1' is not a whole number"),
        ("Image=busybox\nRetryDelay=soon\n", 3, "invalid RetryDelay=: 'soon' is not a duration"),
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


def test_unit_level_keys_become_service_settings() -> None:
    s = spec(
        "Rootfs=/r\nExec=x\nMemory=1.5g\nPidsLimit=0\nUlimit=nofile=1024:2048\n"
        "Ulimit=RLIMIT_NPROC=-1,CORE=0\nUlimit=cpu=10:-1\nUlimit=nofile=4096\nStopSignal=INT\n"
    )
    assert s.memory == "1536M" and s.pids_limit == "infinity"
    assert s.ulimits == ("nofile=1024:2048", "nproc=infinity", "core=0", "cpu=10:infinity", "nofile=4096")
    assert service_settings(s) == [
        ("KillSignal", "SIGINT"), ("MemoryMax", "1536M"), ("TasksMax", "infinity"),
        ("LimitNOFILE", "4096"), ("LimitNPROC", "infinity"), ("LimitCORE", "0"), ("LimitCPU", "10:infinity"),
    ]  # fmt: skip
    assert spec("Rootfs=/r\nExec=x\nMemory=0\nPidsLimit=-1\n").memory == "infinity"
    assert spec("Rootfs=/r\nExec=x\nPidsLimit=-1\n").pids_limit == "infinity"
    assert spec("Rootfs=/r\nExec=x\nMemory=\nUlimit=nofile=1\nUlimit=\n").memory is None
    # host: the service's own limits, as podman's --ulimit host gives the host's
    assert service_settings(spec("Rootfs=/r\nExec=x\nUlimit=nofile=10\nUlimit=host\n")) == [("TasksMax", "2048")]
    # without PidsLimit=: podman's 2048, not systemd's DefaultTasksMax=
    assert spec("Rootfs=/r\nExec=x\n").pids_limit is None
    assert service_settings(spec("Rootfs=/r\nExec=x\n")) == [("TasksMax", "2048")]


def test_comma_separated_values_are_items_of_their_own() -> None:
    s = spec(
        "Rootfs=/r\nExec=x\nDNS=192.0.2.1,2001:db8::1\nDNS=192.0.2.2\nDNSSearch=a.example,b.example.\n"
        "DNSOption=ndots:2,edns0\nAddHost=a;b:10.0.0.1,c:::1\n"
    )
    assert s.dns_servers == ("192.0.2.1", "2001:db8::1", "192.0.2.2")
    assert s.dns_search == ("a.example", "b.example.")
    assert s.dns_options == ("ndots:2", "edns0")
    assert s.add_hosts == ("a;b:10.0.0.1", "c:::1")
    assert spec_from_argv(["--rootfs", "/r", "--dns", "192.0.2.1,192.0.2.2", "--", "x"]).dns_servers == (
        "192.0.2.1",
        "192.0.2.2",
    )


def test_masks_sysctls_and_shm_size() -> None:
    s = spec(
        "Rootfs=/r\nExec=x\nMask=/proc/sys/foo:/proc/sys/bar /x//y/\nMask=/proc/sys/foobar\n"
        "Unmask=/proc/sys/foo:/proc/*\nUnmask=all\nShmSize=5g\n"
        'Sysctl=net.ipv6.conf.all.disable_ipv6=1 "kernel.sem=250 32000 32 128"\n'
        "Sysctl=kernel.shmmax=1,fs.mqueue.msg_max=20\n"
    )
    assert s.masks == ("/proc/sys/foo", "/proc/sys/bar", "/x/y", "/proc/sys/foobar")
    assert s.unmasks == ("/proc/sys/foo", "/proc/*", "ALL")
    assert s.shm_size == "5G"
    assert s.sysctls == (
        "net.ipv6.conf.all.disable_ipv6=1",
        "kernel.sem=250 32000 32 128",
        "kernel.shmmax=1",
        "fs.mqueue.msg_max=20",
    )
    assert spec("Rootfs=/r\nExec=x\nShmSize=0\n").shm_size == "0"


def test_group_add_timezone_and_environment_host() -> None:
    s = spec(
        "Rootfs=/r\nExec=x\nUser=app\nGroupAdd=audio,4242\nGroupAdd=video\nTimezone=Etc/GMT+5\nEnvironmentHost=yes\n"
    )
    assert s.group_add == ("audio", "4242", "video")
    assert s.timezone == "Etc/GMT+5" and s.env_host
    assert spec("Rootfs=/r\nExec=x\nTimezone=local\n").timezone == "local"
    assert spec("Rootfs=/r\nExec=x\nTimezone=\n").timezone is None  # as in the corpus: the default


def test_every_key_has_one_of_the_four_kinds() -> None:
    members = {Kind.SINGLE, Kind.LIST, Kind.WORDS, Kind.EXEC}
    assert {key.kind for key in KEYS} == members  # each is used, and nothing else is a kind
    assert {kind for kind in members if kind.repeated} == {Kind.LIST, Kind.WORDS}


def test_quadlet_only_keys_do_not_overlap_the_table() -> None:
    assert not QUADLET_ONLY_KEYS & {k.name for k in KEYS}


ROUND_TRIP = [
    ContainerSpec(rootfs="/r", exec=("/bin/true",)),
    ContainerSpec(rootfs="/r", exec=("/bin/true",), dns_servers=("none",)),
    ContainerSpec(rootfs="/r", exec=("/bin/true",), dns_search=(".",), shm_size="0"),
    ContainerSpec(
        name="web@1",
        unit="web@1.service",
        rootfs="/srv/root",
        entrypoint=("/bin/sh", "-c"),
        exec=("echo $HOME; exit 7",),
        environment=("A=1", "B=two words", "PATH"),
        environment_files=("/etc/env",),
        env_host=True,
        working_dir="/www",
        user="app",
        group="app",
        group_add=("audio", "4242"),
        timezone="America/Argentina/Buenos_Aires",
        hostname="web",
        volumes=(BindMount("/a", "/b", True, ("nosuid",)), BindMount("/c", "/d")),
        tmpfs=(TmpfsMount("/t", ("size=1m",)), TmpfsMount("/u")),
        shm_size="1536K",
        read_only=True,
        read_only_tmpfs=False,
        network="host",
        add_hosts=("db;db.local:192.0.2.10", "v6:2001:db8::1"),
        dns_servers=("192.0.2.53", "2001:db8::53"),
        dns_search=("example.com", "example.org"),
        dns_options=("ndots:2", "edns0"),
        labels=("a=b",),
        annotations=("c=d",),
        run_init=True,
        no_new_privileges=False,
        add_capabilities=("CAP_NET_ADMIN",),
        drop_capabilities=("CAP_ALL",),
        masks=("/etc/shadow", "/proc/cpuinfo"),
        unmasks=("/proc/*", "ALL"),
        sysctls=("kernel.sem=250 32000 32 128", "fs.mqueue.msg_max=20"),
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


@pytest.mark.parametrize("unit", [".hidden.service", "a/b.service", "x.socket", "a%b.service", ""])
def test_launcher_refuses_a_unit_name_systemd_would_not_give(unit: str) -> None:
    with pytest.raises(UsageError, match="is not a service unit name"):
        spec_from_argv(["--unit", unit, "--rootfs", "/r", "--", "true"])


@pytest.mark.parametrize(
    ("body", "line", "earlier"),
    [
        (
            "Rootfs=/r\nExec=x\nVolume=/a:/data\nVolume=/b:/data/\n",
            5,
            "Volume=/a:/data at /etc/sdcontainer/t.container:4",
        ),
        ("Rootfs=/r\nExec=x\nTmpfs=/run/x\nVolume=/b:/run/x:ro\n", 5, "Tmpfs=/run/x at /etc/sdcontainer/t.container:4"),
    ],
)
def test_two_mounts_on_one_destination_name_both_lines(body: str, line: int, earlier: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec(body)
    assert str(caught.value).startswith(f"/etc/sdcontainer/t.container:{line}: ")
    assert earlier in str(caught.value) and "two mounts on one destination" in str(caught.value)


def test_a_reset_list_frees_its_destinations() -> None:
    assert spec("Rootfs=/r\nExec=x\nVolume=/a:/data\nVolume=\nVolume=/b:/data\n").volumes == (BindMount("/b", "/data"),)
    assert len(spec("Rootfs=/r\nExec=x\nVolume=/a:/data\nTmpfs=/data2\n").volumes) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("Exec=/bin/date +%F\n", "Exec=/bin/date +%F: %F is not a systemd specifier (write %% for a literal %)"),
        ("Exec=x\nEnvironment=P=50%z\n", "Environment=P=50%z: %z is not a systemd specifier"),
    ],
)
def test_a_percent_that_is_no_specifier_names_the_line(body: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec("Rootfs=/r\n" + body)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"/etc/sdcontainer/t.container:{body.count(chr(10)) + 2}: ")


def test_known_specifiers_and_a_literal_percent_pass() -> None:
    assert spec("Rootfs=/r\nExec=/bin/date +%%F %i %N %%\nEnvironment=P=100%\n").exec == (
        "/bin/date",
        "+%%F",
        "%i",
        "%N",
        "%%",
    )
