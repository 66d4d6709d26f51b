"""The value grammars (sdcontainer.values), one at a time: what each accepts and makes of it,
its boundaries, and what it refuses with a message naming the problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from sdcontainer import values as v
from sdcontainer.keys import KEYS
from sdcontainer.spec import BindMount, TmpfsMount

FILE = v.ParseContext(unit_dir="/etc/sdcontainer")  # a .container file's values
LAUNCHER = v.ParseContext(expanded=True)  # the launcher's options, specifiers expanded

Parser = Callable[[str, v.ParseContext], Any]


def accepts(parse: Parser, cases: list[tuple[str, Any]], ctx: v.ParseContext = FILE) -> None:
    for value, expected in cases:
        assert parse(value, ctx) == expected, value


def refuses(parse: Parser, cases: list[tuple[str, str]], ctx: v.ParseContext = FILE) -> None:
    """Each value is refused with exactly this message."""
    for value, message in cases:
        with pytest.raises(ValueError) as caught:
            parse(value, ctx)
        assert str(caught.value) == message, value


# --- the table uses these grammars ----------------------------------------------------------


def test_every_key_parses_with_a_grammar_of_this_module() -> None:
    """The table declares keys; the grammars are here (Image= defers to the store's)."""
    elsewhere = {key.name for key in KEYS if key.parse.__module__ != "sdcontainer.values"}
    assert elsewhere == {"Image"}


def test_pull_policies_have_one_home() -> None:
    from sdcontainer import images

    assert images.PULL_POLICIES is v.PULL_POLICIES


# --- paths, strings, booleans ---------------------------------------------------------------


def test_abs_path() -> None:
    accepts(v.parse_abs_path, [("/", "/"), ("/a/../b//c/", "/b/c"), ("/srv", "/srv"), ("%h/data", "%h/data")])
    refuses(v.parse_abs_path, [("", "a path is required"), ("rel", "'rel' is not an absolute path")])
    # after systemd expanded specifiers, a % is just a character of a relative path
    refuses(v.parse_abs_path, [("%h/data", "'%h/data' is not an absolute path")], LAUNCHER)


def test_host_path() -> None:
    accepts(v.parse_host_path, [("./data", "/etc/sdcontainer/data"), ("..", "/etc"), ("env", "/etc/sdcontainer/env")])
    accepts(v.parse_host_path, [("/srv/x/", "/srv/x"), ("%S/rootfs", "%S/rootfs")])
    refuses(v.parse_host_path, [("./data", "'./data' is not an absolute path")], LAUNCHER)
    refuses(v.parse_host_path, [("", "a path is required")])


def test_string() -> None:
    accepts(v.parse_string, [("app", "app"), ("a b", "a b")])
    refuses(v.parse_string, [("", "a value is required")])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), ("TRUE", True), ("on", True), ("1", True), ("no", False), ("False", False), ("off", False),
     ("0", False)],
)  # fmt: skip
def test_bool(value: str, expected: bool) -> None:
    assert v.parse_bool(value, FILE) is expected


def test_bool_refuses() -> None:
    message = "is not a boolean (use yes/no, true/false, on/off or 1/0)"
    refuses(v.parse_bool, [("maybe", f"'maybe' {message}"), ("", f"'' {message}"), ("2", f"'2' {message}")])


def test_env_assignment() -> None:
    accepts(v.parse_env_assignment, [(x, x) for x in ("A=1", "_x=", "PATH", "a1_B=two words", "A==")])
    refuses(
        v.parse_env_assignment,
        [
            ("1A=2", "'1A' is not a valid environment variable name"),
            ("=x", "'' is not a valid environment variable name"),
            ("A-B=1", "'A-B' is not a valid environment variable name"),
        ],
    )


def test_label() -> None:
    accepts(v.parse_label, [(x, x) for x in ("a=b", "a=", "a.b/c=d=e")])
    refuses(
        v.parse_label, [("=b", "'=b' is not KEY=VALUE"), ("ab", "'ab' is not KEY=VALUE"), ("", "'' is not KEY=VALUE")]
    )


# --- names ----------------------------------------------------------------------------------


def test_hostname() -> None:
    accepts(v.parse_hostname, [(x, x) for x in ("web", "a" * 63, "web-1.example", "9")])
    accepts(v.parse_hostname, [("web-%i", "web-%i")])  # systemd expands the specifier
    message = "is not a valid host name (letters, digits, '-' and '.', at most 63)"
    refuses(
        v.parse_hostname,
        [("a" * 64, f"'{'a' * 64}' {message}"), ("-web", f"'-web' {message}"), ("a_b", f"'a_b' {message}")],
    )
    refuses(v.parse_hostname, [("web-%i", f"'web-%i' {message}")], LAUNCHER)


def test_container_name() -> None:
    accepts(v.parse_name, [(x, x) for x in ("%N", "web@1", "a.b:c_d-e")])
    message = "is not a valid container name (letters, digits and @_.:-)"
    refuses(v.parse_name, [("-x", f"'-x' {message}"), ("a b", f"'a b' {message}"), ("", f"'' {message}")])


def test_service_unit_name() -> None:
    for name in ("web.service", "web@1.service", "a:b_c\\x2d.service", "a" * 247 + ".service"):
        assert v.is_service_unit_name(name), name
    for name in ("a" * 248 + ".service", ".hidden.service", "a/b.service", "x.socket", "a%b.service", "", ".service"):
        assert not v.is_service_unit_name(name), name


def test_group_add() -> None:
    accepts(v.parse_group_add, [("wheel", "wheel"), ("4242", "4242"), ("keep", "keep")])
    refuses(
        v.parse_group_add,
        [
            (
                "keep-groups",
                "keep-groups is not supported yet (it keeps rootless podman's own groups); "
                "name the groups, or give their numbers",
            ),
            ("a b", "'a b' is not a group name or number"),
            ("a:b", "'a:b' is not a group name or number"),
            ("", "'' is not a group name or number"),
        ],
    )


def test_timezone() -> None:
    accepts(
        v.parse_timezone, [(x, x) for x in ("local", "UTC", "Europe/Berlin", "Etc/GMT+5", "America/Port-au-Prince")]
    )
    message = "is not a time zone name (such as Europe/Berlin, UTC or local)"
    refuses(
        v.parse_timezone,
        [
            (x, f"{x!r} {message}")
            for x in ("../../etc/shadow", "/etc/localtime", "Europe//Berlin", "Europe/./x", "a b", "")
        ],
    )


def test_capability() -> None:
    accepts(
        v.parse_capability, [("net_admin", "CAP_NET_ADMIN"), ("CAP_SYS_ADMIN", "CAP_SYS_ADMIN"), ("all", "CAP_ALL")]
    )
    accepts(v.parse_capability, [("cap_chown", "CAP_CHOWN")])
    refuses(v.parse_capability, [(x, f"{x!r} is not a capability name") for x in ("net-admin", "CAP_", "1", "")])


# --- mounts and masks -----------------------------------------------------------------------


def test_volume() -> None:
    accepts(
        v.parse_volume,
        [
            ("/srv/www:/www", BindMount("/srv/www", "/www")),
            ("/a:/b:ro", BindMount("/a", "/b", True)),
            ("/a:/b:ro,rw", BindMount("/a", "/b", False)),  # the last one wins
            ("/a:/b:ro,nosuid,nodev,z,Z", BindMount("/a", "/b", True, ("nosuid", "nodev"))),
            ("/a:/b:", BindMount("/a", "/b")),
            ("./data:/data", BindMount("/etc/sdcontainer/data", "/data")),
            ("%h/data:/data", BindMount("%h/data", "/data")),
            ("/a:/b:U", BindMount("/a", "/b", False, ("U",))),
            # named, from a .volume file, anonymous
            ("data:/data", BindMount("data", "/data")),
            ("data:/data:ro,U,nocopy,noexec", BindMount("data", "/data", True, ("U", "nocopy", "noexec"))),
            ("db.volume:/var/lib/db", BindMount("db.volume", "/var/lib/db")),
            ("/data", BindMount("", "/data")),
            (":/data:ro", BindMount("", "/data", True)),
            # systemd expands these before the launcher reads them
            ("${DATA}:/data", BindMount("${DATA}", "/data")),
            ("%p-data:/data", BindMount("%p-data", "/data")),
        ],
    )
    refuses(
        v.parse_volume,
        [
            ("/a:/b:ro:x", "'/a:/b:ro:x' is not [SOURCE:]TARGET[:OPTIONS]"),
            (
                "/a:/b:rx",
                "unknown volume option 'rx' (known: ro, rw, z, Z, U, copy, nocopy, bind, dev, exec, nodev, noexec, "
                "nosuid, rbind, suid)",
            ),
            ("/a:b", "'b' is not an absolute path"),
            ("/a:", "a path is required"),
            ("/a:/b:nocopy", "'/a:/b:nocopy': nocopy is for a volume, not a host path"),
            (
                "/a:/b:rshared",
                "'/a:/b:rshared': mount propagation (rshared) is not supported: a container's mounts are private",
            ),
        ],
    )
    named = (
        "is neither an absolute path nor a volume name (a letter or digit, then letters, digits and _.-, at most 200)"
    )
    refuses(
        v.parse_volume,
        [(f"{x}:/d", f"{x!r} {named}") for x in ("a/b", ".hidden", "-x", "x y", "a" * 201, "ä")],
    )
    # a relative source through a directory with a colon in its name could not be passed on
    refuses(
        v.parse_volume,
        [("./d:/d", "the source '/x:y/d' has a ':' in it (the launcher's --volume is SOURCE:TARGET[:OPTIONS])")],
        v.ParseContext(unit_dir="/x:y"),
    )
    # in the launcher, after systemd: what was a variable is a name or a path now, checked
    expanded = v.ParseContext(expanded=True)
    accepts(v.parse_volume, [("/srv/data:/d", BindMount("/srv/data", "/d"))], expanded)
    refuses(
        v.parse_volume, [("${DATA}:/d", f"'${{DATA}}' {named}"), ("..:/d", "'..' is not an absolute path")], expanded
    )


def test_mount() -> None:
    accepts(
        v.parse_mount,
        [
            ("type=bind,source=/srv,destination=/data", BindMount("/srv", "/data")),
            ("type=bind,src=/srv,dst=/data,ro=true,relabel=shared,U=true", BindMount("/srv", "/data", True, ("U",))),
            ("type=bind,src=/path with spaces,target=/p", BindMount("/path with spaces", "/p")),
            ("type=bind,src=./rel,dst=/p,bind-nonrecursive", BindMount("/etc/sdcontainer/rel", "/p", False, ("bind",))),
            ("type=volume,source=vol1,destination=/p,ro", BindMount("vol1", "/p", True)),
            ("type=volume,source=basic.volume,destination=/p,readonly=false", BindMount("basic.volume", "/p")),
            ("type=volume,destination=/p,volume-nocopy", BindMount("", "/p", False, ("nocopy",))),
            ("destination=/p", BindMount("", "/p")),
            ("type=bind,src=/a,dst=/b,bind-propagation=rprivate", BindMount("/a", "/b")),
            ("type=tmpfs,tmpfs-size=512M,destination=/t", TmpfsMount("/t", ("size=512M",))),
            ("type=tmpfs,tmpfs-mode=1777,dst=/t,ro", TmpfsMount("/t", ("mode=1777", "ro"))),
        ],
    )
    refuses(
        v.parse_mount,
        [
            (
                "type=image,source=fedora,destination=/f",
                "type=image: not supported (sdcontainer mounts bind, volume, tmpfs; image, devpts, glob and "
                "artifact mounts are not supported yet)",
            ),
            ("type=bind,dst=/x", "type=bind needs a source"),
            ("type=bind,src=vol,dst=/x", "type=bind: 'vol' is not a host path"),
            ("type=volume,src=/x,dst=/y", "type=volume: '/x' is a path, not a volume name (type=bind mounts a path)"),
            (
                "type=volume,src=../x,dst=/y",
                "type=volume: '../x' is a path, not a volume name (type=bind mounts a path)",
            ),
            (
                "type=bind,src=/a,dst=/b,bind-propagation=shared",
                "bind-propagation=shared: not supported: a container's mounts are private",
            ),
            ("type=bind,src=/a", "'type=bind,src=/a' has no destination (destination=, dst= or target=)"),
            ("type=bind,src=/a,dst=/b,idmap=uids=1-2-3", "unknown or unsupported --mount option 'idmap'"),
            ("type=bind,src=/a,dst=/b,ro=maybe", "ro=maybe: not true or false"),
            ('type=bind,"src=/a,dst=/b', "'type=bind,\"src=/a,dst=/b': an unterminated double quote"),
            ("type=volume,dst=/b,tmpfs-size=1M", "tmpfs-size: only for type=tmpfs"),
        ],
    )


def test_mount_round_trips_through_the_launchers_option() -> None:
    expanded = v.ParseContext(expanded=True)
    for text in (
        "type=bind,src=/a b,dst=/c,ro,U,bind-nonrecursive,noexec",
        "type=volume,src=data,dst=/d,nocopy,suid",
        "type=volume,dst=/d",
        "type=tmpfs,dst=/t,tmpfs-size=1M,tmpfs-mode=0700,exec",
        "type=bind,src=/a,dst=/with,comma",
    ):
        try:
            mount = v.parse_mount(text, FILE)
        except ValueError:
            continue  # the last: a destination with a comma must be quoted
        assert v.parse_mount(v.mount_text(mount), expanded) == mount, text
    mount = v.parse_mount('type=bind,src=/a,"dst=/with,comma"', FILE)
    assert mount == BindMount("/a", "/with,comma")
    assert v.parse_mount(v.mount_text(mount), expanded) == mount


def test_tmpfs() -> None:
    accepts(
        v.parse_tmpfs,
        [
            ("/tmp", TmpfsMount("/tmp")),
            ("/cache:size=64m,mode=1777,exec", TmpfsMount("/cache", ("size=64m", "mode=1777", "exec"))),
            ("/t:size=50%,,nr_inodes=1k", TmpfsMount("/t", ("size=50%", "nr_inodes=1k"))),
        ],
    )
    refuses(
        v.parse_tmpfs,
        [
            ("/t:Size=1", "invalid tmpfs option 'Size=1'"),
            ("/t:size=a b", "invalid tmpfs option 'size=a b'"),
            ("/t:size=", "invalid tmpfs option 'size='"),
            ("t", "'t' is not an absolute path"),
        ],
    )


def test_unmask() -> None:
    accepts(v.parse_unmask, [("all", "ALL"), ("ALL", "ALL"), ("/proc/*", "/proc/*"), ("/proc/[a-z]?", "/proc/[a-z]?")])
    refuses(
        v.parse_unmask,
        [
            ("proc/*", "'proc/*' is not an absolute path, a pattern such as /proc/* or ALL"),
            ("/proc/[a", "'/proc/[a': malformed [...] in the pattern"),
            ("/x\\", "'/x\\\\': the pattern ends in \\"),
        ],
    )


# --- network --------------------------------------------------------------------------------


def test_network() -> None:
    accepts(
        v.parse_network,
        [("none", "none"), ("host", "host"), ("bridge", "sdcontainer"), ("private", "sdcontainer"),
         ("sdcontainer", "sdcontainer"), ("container:db", "container:db"), ("container:db.service",
         "container:db.service"), ("db.container", "db.container"), ("db@%i.container", "db@%i.container"),
         ("backend.network", "backend.network"), ("backend", "backend"), ("my_net.1", "my_net.1")],
    )  # fmt: skip
    assert [v.joined_unit(n) for n in ("db.container", "container:db", "sdcontainer")] == ["db.service", None, None]
    assert [v.is_bridge(n) for n in ("sdcontainer", "container:db", "db.container", "none")] == [
        True,
        False,
        False,
        False,
    ]
    refuses(
        v.parse_network,
        [
            (
                "ns:/proc/1/ns/net",
                "Network=ns:/proc/1/ns/net is not supported yet; this version supports Network=none (a "
                "private network namespace with only loopback), Network=host, the default bridge "
                "network (Network=bridge, or no Network= at all: 10.88.0.0/16 on sdcontainer0), a "
                ".network file (Network=NAME.network), a named network (Network=NAME) and "
                "another container's network (Network=container:NAME or Network=NAME.container)",
            ),
            ("container:", "Network=container:: '' is not a container's name (letters, digits and @_.:-)"),
            ("container:a/b", "Network=container:a/b: 'a/b' is not a container's name (letters, digits and @_.:-)"),
            (".container", "Network=.container: '' is not a container's name (letters, digits and @_.:-)"),
            ("bridge:ip=10.88.0.5", "Network=bridge:ip=10.88.0.5: options of a network (ip=10.88.0.5) are "
             "not supported yet; use IP= for a static address"),
            ("backend.network:ip=10.90.0.5", "Network=backend.network:ip=10.90.0.5: options of a network "
             "(ip=10.90.0.5) are not supported yet; use IP= and IP6= for static addresses"),
            ("-x.network", "Network=-x.network: '-x' is not a valid .network file name"),
        ],
    )  # fmt: skip


def test_ipv6_and_network_alias() -> None:
    accepts(v.parse_ipv6, [("fd00:0::0a", "fd00::a")])
    refuses(v.parse_ipv6, [("10.0.0.1", "'10.0.0.1' is not an IPv6 address")])
    accepts(v.parse_network_alias, [("db.internal", "db.internal")])
    refuses(v.parse_network_alias, [("a b", "'a b' is not a host name (letters, digits, '-', '.' and '_')")])


def test_publish_port() -> None:
    accepts(
        v.parse_publish_port,
        [("8080:80", "8080:80/tcp"), ("127.0.0.1:5353:53/udp", "127.0.0.1:5353:53/udp"),
         ("0.0.0.0:80:91", "80:91/tcp"), ("9000-9002:80-82/udp", "9000-9002:80-82/udp"),
         ("[::1]:8080:80", "[::1]:8080:80/tcp"), ("80", "80/tcp"), ("127.0.0.1::93", "127.0.0.1::93/tcp"),
         ("0.0.0.0::53/udp", "53/udp"), ("90-92", "90-92/tcp")],
    )  # fmt: skip
    refuses(
        v.parse_publish_port,
        [
         ("${PORT}:${PORT}", "'${PORT}:${PORT}': variables and specifiers in PublishPort= are not supported yet"),
         ("8080:80/sctp", "PublishPort=8080:80/sctp: protocol must be tcp or udp, not 'sctp'"),
         ("8080-8081:80", "PublishPort=8080-8081:80: the host and container ranges differ in length")],
    )  # fmt: skip


def test_ipv4() -> None:
    accepts(v.parse_ipv4, [("10.88.0.10", "10.88.0.10")])
    refuses(
        v.parse_ipv4, [("fd00::1", "'fd00::1' is not an IPv4 address"), ("10.88", "'10.88' is not an IPv4 address")]
    )


def test_add_host() -> None:
    accepts(v.parse_add_host, [(x, x) for x in ("db:192.0.2.1", "a;b.local:10.0.0.1", "v6:::1", "v6:2001:db8::1")])
    accepts(v.parse_add_host, [("web-%i:10.0.0.1", "web-%i:10.0.0.1")])
    refuses(
        v.parse_add_host,
        [
            ("db", "'db' is not NAME:IP"),
            (":10.0.0.1", "':10.0.0.1' is not NAME:IP"),
            ("a;;b:10.0.0.1", "'a;;b:10.0.0.1' has an empty host name"),
            ("a b:10.0.0.1", "'a b' is not a host name (letters, digits, '-', '.' and '_')"),
            ("gw:host-gateway", "host-gateway is not supported yet: there is no network to reach the host by"),
            ("db:300.1.1.1", "'300.1.1.1' is not an IPv4 or IPv6 address"),
            ("db:", "'' is not an IPv4 or IPv6 address"),
        ],
    )
    refuses(
        v.parse_add_host,
        [("web-%i:10.0.0.1", "'web-%i' is not a host name (letters, digits, '-', '.' and '_')")],
        LAUNCHER,
    )


def test_dns_server() -> None:
    accepts(v.parse_dns_server, [(x, x) for x in ("none", "192.0.2.1", "2001:db8::53", "::1")])
    refuses(
        v.parse_dns_server,
        [(x, f"{x!r} is not an IP address (or none)") for x in ("dns.google", "1.2.3", "01.2.3.4", "")],
    )


def test_dns_search() -> None:
    label = "a" * 63
    longest = ".".join([label] * 3 + ["b" * 61])  # 253 characters
    accepts(v.parse_dns_search, [(x, x) for x in (".", "example.com", "example.com.", "a-b.c1", label, longest)])
    message = "is not a domain name (or . for no search domains)"
    refuses(
        v.parse_dns_search,
        [(x, f"{x!r} {message}") for x in ("-bad.example", "bad-.example", "a..b", "a" * 64, longest + "b", "a_b", "")],
    )


def test_dns_option() -> None:
    accepts(v.parse_dns_option, [(x, x) for x in ("ndots:2", "edns0", "timeout:1", "use-vc", "no_tld_query")])
    message = "is not a resolver option (such as ndots:2 or edns0)"
    refuses(v.parse_dns_option, [(x, f"{x!r} {message}") for x in ("ndots 2", ":x", "", "a=b")])


def test_proxy_target() -> None:
    accepts(v.parse_proxy_target, [(x, x) for x in ("1", "8080", "65535", "127.0.0.1:8080", "[::1]:80", "::1:80")])
    message = "is not a TCP port (1-65535) or ADDRESS:PORT"
    refuses(
        v.parse_proxy_target,
        [(x, f"{x!r} {message}") for x in ("0", "65536", "123456", "x", "1.2.3.4:", "")]
        + [("a.b:80", "'a.b' is not an IP address")],
    )


# --- signals --------------------------------------------------------------------------------


def test_signal() -> None:
    accepts(
        v.parse_signal,
        [("int", "SIGINT"), ("SIGTERM", "SIGTERM"), ("sigusr1", "SIGUSR1"), ("9", "SIGKILL"), ("15", "SIGTERM")],
    )
    refuses(
        v.parse_signal,
        [
            ("SIGFOO", "'SIGFOO' is not a signal name"),
            ("", "'' is not a signal name"),
            ("0", "'0' is not a signal number"),
            ("99", "'99' is not a signal number"),
            ("-9", "'-9' is not a signal name"),
        ],
    )


# --- time -----------------------------------------------------------------------------------


def test_timespan() -> None:
    accepts(
        v.parse_timespan, [(x, x) for x in ("30s", "5min", "1h 30min", "90", "1.5s", "500ms", "2weeks", "infinity")]
    )
    message = "is not a time span (such as 30s, 5min, 1h 30min or infinity)"
    refuses(v.parse_timespan, [(x, f"{x!r} {message}") for x in ("5 parsecs", "1..5s", "s", "-1", "Infinity")])
    refuses(v.parse_timespan, [("", "a time span is required"), (" ", "a time span is required")])


def test_seconds() -> None:
    accepts(v.parse_seconds, [("0", 0), ("10", 10), ("007", 7)])
    refuses(v.parse_seconds, [(x, f"{x!r} is not a whole number of seconds") for x in ("-1", "1.5", "10s", "")])


@pytest.mark.parametrize(
    ("value", "ms"),
    [("30s", 30_000), ("1m30s", 90_000), ("500ms", 500), ("10", 10_000), ("0", 0), ("0s", 0), ("1.5s", 1500),
     (".5s", 500), ("1h", 3_600_000), ("1ns", 1), ("1us", 1), ("1µs", 1), ("1500us", 2)],
)  # fmt: skip
def test_duration_in_milliseconds_rounded_up(value: str, ms: int) -> None:
    assert v.duration_ms(value) == ms
    assert v.parse_duration(value, FILE) == ms


def test_duration_refuses() -> None:
    message = "is not a duration (such as 30s, 1m30s or 500ms)"
    refuses(v.parse_duration, [(x, f"{x!r} {message}") for x in ("soon", "1.s", "1d", "-1s", "s", "1s2", "1..5s")])
    refuses(v.parse_duration, [("", "a duration is required")])


def test_positive_duration() -> None:
    accepts(v.parse_positive_duration, [("1ms", 1), ("1ns", 1), ("30s", 30_000)])
    refuses(v.parse_positive_duration, [("0s", "'0s': must be longer than 0"), ("0", "'0': must be longer than 0")])


def test_health_interval() -> None:
    accepts(v.parse_health_interval, [("disable", 0), ("DISABLE", 0), ("30s", 30_000), ("1", 1000)])
    refuses(
        v.parse_health_interval,
        [("0", "'0': must be longer than 0"), ("never", "'never' is not a duration (such as 30s, 1m30s or 500ms)")],
    )


def test_retry_delay_survives_the_launchers_command_line() -> None:
    accepts(v.parse_retry_delay, [("2s", "2000ms"), ("500ms", "500ms"), ("1m", "60000ms"), ("3", "3000ms")])
    for value in ("2000ms", "1ms", "0ms"):
        assert v.parse_retry_delay(value, LAUNCHER) == value  # the same after the round trip
    assert v.duration_seconds("2000ms") == 2.0 and v.duration_seconds("1ms") == 0.001
    refuses(v.parse_retry_delay, [("soon", "'soon' is not a duration (such as 30s, 1m30s or 500ms)")])


# --- sizes and limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [("0", 0), ("4096", 4096), ("512b", 512), ("64k", 64 << 10), ("512m", 512 << 20), ("512M", 512 << 20),
     ("1g", 1 << 30), ("1.5g", 3 << 29), ("64MiB", 64 << 20), ("2 GB", 2 << 30), ("1t", 1 << 40),
     ("0.5k", 512), ("1p", 1 << 50)],
)  # fmt: skip
def test_sizes_are_read_as_podman_reads_them(value: str, size: int) -> None:
    assert v.size_in_bytes(value) == size


@pytest.mark.parametrize("value", ["", "m", "1x", "-1", "1..5g", "1.g", ".5g", "5 gg", "5gbb", "5  g", "1e"])
def test_sizes_podman_refuses_are_refused(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        v.size_in_bytes(value)
    assert str(caught.value) == f"{value!r} is not a size (a number of bytes, or with k, m, g, t or p: 512m, 1.5g)"


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0"), (1000, "1000"), (1024, "1K"), (1536 << 10, "1536K"), (512 << 20, "512M"), (5 << 30, "5G"),
     (3 << 40, "3T"), (1 << 50, "1P"), (1 << 60, "1024P"), ((1 << 30) + 1, "1073741825")],
)  # fmt: skip
def test_format_size_uses_the_largest_suffix_that_divides(size: int, text: str) -> None:
    assert v.format_size(size) == text


def test_memory_and_shm_size() -> None:
    accepts(v.parse_memory, [("0", "infinity"), ("1.5g", "1536M"), ("512m", "512M"), ("1000", "1000")])
    accepts(v.parse_shm_size, [("0", "0"), ("64m", "64M"), ("5g", "5G"), ("1.5k", "1536")])
    message = "is not a size (a number of bytes, or with k, m, g, t or p: 512m, 1.5g)"
    refuses(v.parse_memory, [("lots", f"'lots' {message}"), ("-1", f"'-1' {message}")])
    refuses(v.parse_shm_size, [("64q", f"'64q' {message}")])


def test_pids_limit() -> None:
    accepts(v.parse_pids_limit, [("-1", "infinity"), ("0", "infinity"), ("1", "1"), ("2048", "2048"), ("007", "7")])
    message = "is not a number of processes (or -1 for no limit)"
    refuses(v.parse_pids_limit, [(x, f"{x!r} {message}") for x in ("-5", "x", "1.5", "")])


def test_ulimit() -> None:
    accepts(
        v.parse_ulimit,
        [
            ("host", "host"),
            ("nofile=1024:2048", "nofile=1024:2048"),
            ("nofile=4096", "nofile=4096"),
            ("RLIMIT_NPROC=-1", "nproc=infinity"),
            ("CORE=0", "core=0"),
            ("cpu=10:-1", "cpu=10:infinity"),
            ("nofile=-1:-1", "nofile=infinity:infinity"),
            ("nice=40", "nice=40"),
            ("nofile=5:5", "nofile=5:5"),
        ],
    )
    refuses(
        v.parse_ulimit,
        [
            ("nofile", "'nofile' is not NAME=SOFT[:HARD]"),
            ("files=10", f"unknown limit 'files' (known: {', '.join(v.ULIMIT_SETTINGS)})"),
            ("nofile=2048:1024", "nofile: the soft limit 2048 is above the hard limit 1024"),
            ("nofile=-1:1024", "nofile: the soft limit -1 is above the hard limit 1024"),
            ("nofile=lots", "nofile limit 'lots' is not a number (or -1 for unlimited)"),
            ("nofile=1:", "nofile limit '' is not a number (or -1 for unlimited)"),
            ("nice=41", "nice limit 41 is out of range (0 to 40: 20 minus the lowest nice value)"),
        ],
    )


def test_every_ulimit_name_is_a_systemd_limit() -> None:
    assert all(setting == "Limit" + name.upper() for name, setting in v.ULIMIT_SETTINGS.items())


def test_sysctl() -> None:
    accepts(
        v.parse_sysctl,
        [
            (x, x)
            for x in (
                "net.ipv4.ip_forward=1",
                "kernel.sem=250 32000 32 128",
                "fs.mqueue.msg_max=20",
                "kernel.shm_rmid_forced=1",
            )
        ],
    )
    allowed = "kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shmall, kernel.shmmax, kernel.shmmni, kernel.shm_rmid_forced, fs.mqueue.* and net.*"
    refuses(
        v.parse_sysctl,
        [
            ("kernel.shmmax", "'kernel.shmmax' is not NAME=VALUE"),
            ("kernel.shmmax=", "'kernel.shmmax=' is not NAME=VALUE"),
            ("=1", "'=1' is not NAME=VALUE"),
            ("kernel.sem= 1 2 3 4", "'kernel.sem= 1 2 3 4' has spaces around the name or the value"),
            ("net/ipv4/ip_forward=1", "'net/ipv4/ip_forward' is not a sysctl name (such as net.ipv4.ip_forward)"),
            (
                "kernel.domainname=x",
                f"sysctl kernel.domainname is not allowed: only the container's own namespaces may be tuned ({allowed})",
            ),
            (
                "vm.swappiness=1",
                f"sysctl vm.swappiness is not allowed: only the container's own namespaces may be tuned ({allowed})",
            ),
        ],
    )


# --- commands -------------------------------------------------------------------------------


def test_entrypoint() -> None:
    accepts(
        v.parse_entrypoint,
        [('["/bin/sh", "-c"]', ("/bin/sh", "-c")), ("/bin/init", ("/bin/init",)), ("", ()), ("[]", ())],
    )
    refuses(
        v.parse_entrypoint,
        [
            ("[1]", "the JSON form must be an array of strings"),
            ('["a", null]', "the JSON form must be an array of strings"),
            ("[", "invalid JSON array: Expecting value"),
        ],
    )


def test_health_cmd() -> None:
    accepts(
        v.parse_health_cmd,
        [
            ("none", ()),
            ("NONE", ()),
            ("curl -f http://localhost/", ("/bin/sh", "-c", "curl -f http://localhost/")),
            ('["CMD", "/bin/check", "-q"]', ("/bin/check", "-q")),
            ('["CMD-SHELL", "test -e /ready", "&& true"]', ("/bin/sh", "-c", "test -e /ready && true")),
            ('["NONE"]', ()),
            ('["/bin/check"]', ("/bin/check",)),
        ],
    )


def test_health_cmd_docker_text_forms() -> None:
    """podman's text forms of docker's HEALTHCHECK: the prefix is not the program."""
    accepts(
        v.parse_health_cmd,
        [
            ("CMD-SHELL test -e /tmp/x || true", ("/bin/sh", "-c", "test -e /tmp/x || true")),
            ("cmd-shell  curl -f 'http://x/'", ("/bin/sh", "-c", " curl -f 'http://x/'")),
            ("CMD /bin/check -q  --now", ("/bin/check", "-q", "--now")),
            ("cmd pg_isready", ("pg_isready",)),
            ("NONE whatever", ()),
            ("CMDX run", ("/bin/sh", "-c", "CMDX run")),
        ],
    )
    refuses(
        v.parse_health_cmd,
        [("CMD ", "CMD needs a program after it"), ("CMD-SHELL  ", "CMD-SHELL needs a command line after it")],
    )
    refuses(
        v.parse_health_cmd,
        [
            ("[]", "the JSON form must be a non-empty array of strings"),
            ("[1]", "the JSON form must be a non-empty array of strings"),
            ('["CMD"]', '["CMD"] needs a program after it'),
            ('["CMD-SHELL"]', '["CMD-SHELL"] needs a command line after it'),
            ('["CMD"', "invalid JSON array: Expecting ',' delimiter"),
        ],
    )


# --- choices and counts ---------------------------------------------------------------------


def test_pull_policy() -> None:
    accepts(v.parse_pull, [(x, x) for x in ("never", "missing", "always", "newer")])
    message = "is not one of never, missing, always, newer"
    refuses(v.parse_pull, [(x, f"{x!r} {message}") for x in ("sometimes", "Always", "")])


def test_count() -> None:
    accepts(v.parse_count, [("0", 0), ("3", 3), ("999999", 999_999)])
    refuses(v.parse_count, [(x, f"{x!r} is not a whole number") for x in ("1000000", "-1", "x", "")])


def test_retries() -> None:
    accepts(v.parse_retries, [("1", 1), ("10", 10)])
    refuses(v.parse_retries, [(x, f"{x!r} is not a number of at least 1") for x in ("0", "-1", "x", "")])


def test_notify() -> None:
    accepts(
        v.parse_notify,
        [("yes", "yes"), ("TRUE", "yes"), ("0", "no"), ("off", "no"), ("healthy", "healthy"), ("Healthy", "healthy")],
    )
    refuses(v.parse_notify, [("maybe", "'maybe' is not a boolean or healthy"), ("", "'' is not a boolean or healthy")])


def test_health_on_failure() -> None:
    accepts(v.parse_health_on_failure, [(x, x) for x in ("none", "kill", "restart", "stop")])
    message = "is not one of none, kill, restart, stop"
    refuses(v.parse_health_on_failure, [(x, f"{x!r} {message}") for x in ("KILL", "reboot", "")])


def test_messages_are_one_line() -> None:
    """Whatever the value, the message stays on one line (it goes to the journal as FILE:LINE: ...)."""
    for parse in (v.parse_volume, v.parse_signal, v.parse_label, v.parse_dns_search, v.parse_sysctl):
        with pytest.raises(ValueError) as caught:
            parse("bad\nvalue", FILE)
        assert "\n" not in str(caught.value), parse.__name__
        assert re.search(r"bad\\nvalue", str(caught.value)), parse.__name__
