"""sdcontainer.firewall against real nftables, each test in a network namespace of its own
(tests/netns.py): the table as `nft -j list` shows it, deletion by unit, conflicts, and
traffic through published ports from an "outside" netns and from the "host" itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sdcontainer import netlink
from sdcontainer.errors import NetworkError
from sdcontainer.firewall import Firewall, Nft, PortMapping, Published, dumps, loads
from tests.netns import Namespaces, connect, in_netns, link_outside, serve


def nft_table() -> dict[str, Any]:
    """`nft -j list table inet sdcontainer`, by the nft program (not our code): map and set
    name -> elements as (key, value, comment); chain -> rule count."""
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "sdcontainer"], capture_output=True, text=True)
    if out.returncode != 0:
        return {"missing": out.stderr.strip()}
    found: dict[str, Any] = {}
    for obj in json.loads(out.stdout)["nftables"]:
        for kind in ("map", "set"):
            if kind in obj:
                elems = []
                for e in obj[kind].get("elem", []):
                    key, value = (e[0], e[1]) if kind == "map" else (e, None)
                    elems.append((json.dumps(key["elem"]["val"]), json.dumps(value), key["elem"].get("comment")))
                found[obj[kind]["name"]] = sorted(elems)
        if "rule" in obj:
            found.setdefault(f"rules:{obj['rule']['chain']}", 0)
            found[f"rules:{obj['rule']['chain']}"] += 1
    return found


# --- parsing PublishPort= --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mapping"),
    [
        ("8080:80", PortMapping(8080, 80)),
        ("80", PortMapping(0, 80)),
        ("80-82/udp", PortMapping(0, 80, "udp", "", 3)),
        ("127.0.0.1:5353:53/udp", PortMapping(5353, 53, "udp", "127.0.0.1")),
        ("0.0.0.0:8080:80", PortMapping(8080, 80)),
        ("[::1]:8080:80/tcp", PortMapping(8080, 80, "tcp", "::1")),
        ("10.0.0.1::80", PortMapping(0, 80, "tcp", "10.0.0.1")),
        ("9000-9002:80-82/udp", PortMapping(9000, 80, "udp", "", 3)),
    ],
)
def test_parse_publish_port(text: str, mapping: PortMapping) -> None:
    assert PortMapping.parse(text) == mapping
    assert PortMapping.parse(str(mapping)) == mapping


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("8080:80/sctp", "protocol must be tcp or udp"),
        ("8080:0", "ports are 1-65535"),
        ("90-80:80", "ports are 1-65535"),
        ("9000-9002:80-81", "ranges differ in length"),
        ("host:8080:80", "'host' is not an IP address"),
        ("a:b:c:d", "expected"),
        ("[::1:8080:80", "written [ADDRESS]:PORT"),
    ],
)
def test_parse_publish_port_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError) as e:
        PortMapping.parse(text)
    assert str(e.value).startswith(f"PublishPort={text}: ") and error in str(e.value)


def test_json_round_trip() -> None:
    doc = {"a": [1, 'x"y\n\u00e9', None, True, False, {"b": []}], "c": {}}
    assert loads(dumps(doc)) == doc == json.loads(dumps(doc))
    with pytest.raises(ValueError):
        loads('{"a": 1} x')


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_process", [True, False], ids=["libnftables", "nft-program"])
def test_publish_list_release(tmp_path: Path, in_process: bool) -> None:
    def run() -> dict[str, Any]:
        with Firewall(lock_path=str(tmp_path / "fw.lock"), nft=Nft() if in_process else Nft(library=None)) as fw:
            assert fw.nft.in_process == in_process
            fw.add_network("backend", ["10.90.0.0/24", "fd90::/64"])
            ports = [PortMapping.parse(p) for p in ("8080:80", "127.0.0.1:5353:53/udp", "9000-9001:90-91")]
            published = fw.publish("api.service", ports, ipv4="10.90.0.10", ipv6="fd90::a")
            fw.publish("web.service", [PortMapping.parse("8081:80")], ipv4="10.90.0.11")
            result = {
                "published": published,
                "listed": fw.published("api.service"),
                "table": nft_table(),
                "networks": fw.networks(),
            }
            result["released"] = fw.release("api.service")
            result["after"] = nft_table()
            result["again"] = fw.release("api.service")
            fw.release("web.service")
            result["network_removed"] = (fw.remove_network("backend"), fw.remove_network("backend"))
            result["empty"] = nft_table()
            result["deleted"] = fw.delete_table()
            result["gone"] = nft_table()
            return result

    r = in_netns(run)
    api = [
        Published("api.service", "tcp", "", 8080, "10.90.0.10", 80),
        Published("api.service", "tcp", "", 8080, "fd90::a", 80),
        Published("api.service", "udp", "127.0.0.1", 5353, "10.90.0.10", 53),
        Published("api.service", "tcp", "", 9000, "10.90.0.10", 90),
        Published("api.service", "tcp", "", 9001, "10.90.0.10", 91),
        Published("api.service", "tcp", "", 9000, "fd90::a", 90),
        Published("api.service", "tcp", "", 9001, "fd90::a", 91),
    ]
    assert r["published"] == api
    assert sorted(r["listed"], key=str) == sorted(api, key=str)
    t = r["table"]
    assert t["any4"] == [
        ('{"concat": ["tcp", 8080]}', '{"concat": ["10.90.0.10", 80]}', "api.service"),
        ('{"concat": ["tcp", 8081]}', '{"concat": ["10.90.0.11", 80]}', "web.service"),
        ('{"concat": ["tcp", 9000]}', '{"concat": ["10.90.0.10", 90]}', "api.service"),
        ('{"concat": ["tcp", 9001]}', '{"concat": ["10.90.0.10", 91]}', "api.service"),
    ]
    assert t["addr4"] == [('{"concat": ["127.0.0.1", "udp", 5353]}', '{"concat": ["10.90.0.10", 53]}', "api.service")]
    assert [e[2] for e in t["any6"]] == ["api.service"] * 3 and t["addr6"] == []
    assert t["masq4"] == [('{"prefix": {"addr": "10.90.0.0", "len": 24}}', "null", "backend")]
    assert t["masq6"] == [('{"prefix": {"addr": "fd90::", "len": 64}}', "null", "backend")]
    assert (t["rules:published"], t["rules:prerouting"], t["rules:output"], t["rules:postrouting"]) == (4, 1, 1, 5)
    assert r["networks"] == {"backend": ["10.90.0.0/24", "fd90::/64"]}
    assert sorted(r["released"], key=str) == sorted(api, key=str)
    after = r["after"]
    assert [e[2] for m in ("any4", "addr4", "any6", "addr6") for e in after[m]] == ["web.service"]
    assert r["again"] == []
    assert r["network_removed"] == (True, False)
    empty = r["empty"]
    assert all(empty[m] == [] for m in ("any4", "addr4", "any6", "addr6", "masq4", "masq6"))
    assert r["deleted"] is True and "missing" in r["gone"]


def test_conflicts_name_both_units(tmp_path: Path) -> None:
    def run() -> list[str]:
        errors = []
        with Firewall(lock_path=str(tmp_path / "fw.lock")) as fw:
            fw.publish("api.service", [PortMapping.parse("127.0.0.1:8080:80")], ipv4="10.90.0.10")
            fw.publish("dns.service", [PortMapping.parse("5353:53/udp")], ipv4="10.90.0.12")
            attempts = [
                ("web.service", "8080:80"),  # any vs 127.0.0.1: a clash
                ("web.service", "127.0.0.1:8080:81"),
                ("web.service", "5353:53/udp"),
                ("web.service", "192.0.2.1:5353:53/udp"),
            ]
            for unit, port in attempts:
                try:
                    fw.publish(unit, [PortMapping.parse(port)], ipv4="10.90.0.11")
                except NetworkError as e:
                    errors.append(str(e))
            # not clashes: another address, another protocol, the unit itself again
            fw.publish(
                "web.service",
                [PortMapping.parse("127.0.0.2:8080:80"), PortMapping.parse("5353:53/tcp")],
                ipv4="10.90.0.11",
            )
            fw.publish("api.service", [PortMapping.parse("127.0.0.1:8080:8080")], ipv4="10.90.0.10")
            # a gone unit's ports are taken over, and all of its elements go
            fw.publish(
                "new.service", [PortMapping.parse("5353:53/udp")], ipv4="10.90.0.13", alive=lambda u: u != "dns.service"
            )
            errors.append(" ".join(sorted(f"{p.unit}:{p.host_port}/{p.proto}" for p in fw.published())))
            try:
                fw.publish("x.service", [PortMapping.parse("[::1]:80:80")], ipv4="10.90.0.14")
            except NetworkError as e:
                errors.append(str(e))
        return errors

    assert in_netns(run) == [
        "web.service cannot publish 0.0.0.0:8080/tcp: host port 8080/tcp is already published by api.service (127.0.0.1:8080)",
        "web.service cannot publish 127.0.0.1:8080/tcp: host port 8080/tcp is already published by api.service (127.0.0.1:8080)",
        "web.service cannot publish 0.0.0.0:5353/udp: host port 5353/udp is already published by dns.service (0.0.0.0:5353)",
        "web.service cannot publish 192.0.2.1:5353/udp: host port 5353/udp is already published by dns.service (0.0.0.0:5353)",
        "api.service:8080/tcp new.service:5353/udp web.service:5353/tcp web.service:8080/tcp",
        "x.service cannot publish [::1]:80:80/tcp: the container has no IPv6 address",
    ]


def test_table_comes_back_after_a_flush(tmp_path: Path) -> None:
    def run() -> tuple[list[Published], dict[str, Any]]:
        with Firewall(lock_path=str(tmp_path / "fw.lock")) as fw:
            fw.publish("api.service", [PortMapping.parse("8080:80")], ipv4="10.90.0.10")
            subprocess.run(["nft", "flush", "ruleset"], check=True)
            fw.publish("web.service", [PortMapping.parse("8081:80")], ipv4="10.90.0.11")
            return fw.published(), nft_table()

    published, table = in_netns(run)
    assert published == [Published("web.service", "tcp", "", 8081, "10.90.0.11", 80)]
    assert table["rules:published"] == 4


# --- traffic -------------------------------------------------------------------------------


def _traffic(tmp_path: Path) -> dict[str, str]:
    with Namespaces() as ns, Firewall(lock_path=str(tmp_path / "fw.lock")) as fw:
        netlink.ensure_bridge("sdbr0", ["10.90.0.1/24"])
        outside = link_outside(ns)
        c1, c2 = ns.netns(), ns.netns()
        for netns, unit, address in ((c1, "c1.service", "10.90.0.10/24"), (c2, "c2.service", "10.90.0.11/24")):
            netlink.attach(netns, bridge="sdbr0", host_ifname=netlink.host_ifname(unit), addresses=[address],
                           gateways=["10.90.0.1"], hairpin=True)  # fmt: skip
        fw.add_network("backend", ["10.90.0.0/24"])
        serve(ns, c1, "0.0.0.0", 80, "c1")
        serve(ns, outside, "0.0.0.0", 9000, "outside")
        fw.publish("c1.service", [PortMapping.parse("8080:80"), PortMapping.parse("127.0.0.1:5353:80/udp"),
                                  PortMapping.parse("8090-8091:80-81/udp")], ipv4="10.90.0.10")  # fmt: skip
        seen = {
            "outside tcp 8080": connect(ns, outside, "192.0.2.1", 8080),
            "outside udp 8090": connect(ns, outside, "192.0.2.1", 8090, "udp"),
            "outside udp 5353 (127.0.0.1 only)": connect(ns, outside, "192.0.2.1", 5353, "udp"),
            "host 127.0.0.1 tcp 8080": connect(ns, None, "127.0.0.1", 8080),
            "host 127.0.0.1 udp 5353": connect(ns, None, "127.0.0.1", 5353, "udp"),
            "host 192.0.2.1 tcp 8080": connect(ns, None, "192.0.2.1", 8080),
            "c2 via the gateway 8080": connect(ns, c2, "10.90.0.1", 8080),
            "c1 to itself via 192.0.2.1:8080": connect(ns, c1, "192.0.2.1", 8080),
            "c1 to outside": connect(ns, c1, "192.0.2.2", 9000),
        }
        fw.release("c1.service")
        seen["outside tcp 8080 after release"] = connect(ns, outside, "192.0.2.1", 8080)
        seen["host 127.0.0.1 tcp 8080 after release"] = connect(ns, None, "127.0.0.1", 8080)
        return seen


def test_published_ports_and_masquerade_carry_traffic(tmp_path: Path) -> None:
    seen = in_netns(lambda: _traffic(tmp_path))
    assert {k: v.split(":")[0] if v.startswith("failed") else v for k, v in seen.items()} == {
        "outside tcp 8080": "c1 192.0.2.2",  # the client's own address: no masquerade inbound
        "outside udp 8090": "c1 192.0.2.2",
        "outside udp 5353 (127.0.0.1 only)": "failed",
        "host 127.0.0.1 tcp 8080": "c1 10.90.0.1",  # route_localnet + masquerade of 127/8
        "host 127.0.0.1 udp 5353": "c1 10.90.0.1",
        "host 192.0.2.1 tcp 8080": "c1 192.0.2.1",
        "c2 via the gateway 8080": "c1 10.90.0.1",  # hairpin: masqueraded, or the reply would bypass NAT
        "c1 to itself via 192.0.2.1:8080": "c1 10.90.0.1",
        "c1 to outside": "outside 192.0.2.1",  # masqueraded outbound
        "outside tcp 8080 after release": "failed",
        "host 127.0.0.1 tcp 8080 after release": "failed",
    }


def test_without_libnftables_the_nft_program_is_used() -> None:
    assert Nft().in_process  # tools/setup installs libnftables1
    assert not Nft(library="libnftables-not-installed.so.0").in_process


# --- free host ports (PublishPort=80) ----------------------------------------------------------


def test_a_free_host_port_avoids_ports_bound_on_the_host_and_published_by_others(tmp_path: Path) -> None:
    """In a netns whose ephemeral range is four ports: two bound by host programs (TCP; one
    only bound, one listening), one published by another unit: PublishPort=80 gets the
    fourth, a second one finds none; a range gets consecutive ports; UDP is its own space;
    a unit that is gone does not hold its port."""
    import socket

    def run() -> dict[str, Any]:
        with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
            f.write("40000 40003")
        held = []
        for port, listen in ((40000, False), (40001, True)):
            s = socket.socket()
            s.bind(("0.0.0.0", port))
            if listen:
                s.listen()
            held.append(s)
        result: dict[str, Any] = {}
        with Firewall(lock_path=str(tmp_path / "fw.lock")) as fw:
            fw.publish("db.service", [PortMapping.parse("40002:5432")], ipv4="10.90.0.9")
            result["web"] = fw.publish("web.service", [PortMapping.parse("80")], ipv4="10.90.0.10")
            try:
                fw.publish("api.service", [PortMapping.parse("80")], ipv4="10.90.0.11")
            except NetworkError as e:
                result["none left"] = str(e)
            # the same unit again (a restart) may get it again: its own old element is not in the way
            result["again"] = fw.publish("web.service", [PortMapping.parse("127.0.0.1::80")], ipv4="10.90.0.10")
            result["udp"] = fw.publish("dns.service", [PortMapping.parse("53/udp")], ipv4="10.90.0.12")
            # db.service is gone: its port may be chosen, and its element goes
            fw.release("web.service")
            result["range"] = fw.publish(
                "rng.service", [PortMapping.parse("80-81")], ipv4="10.90.0.13", alive=lambda u: u != "db.service"
            )
            result["table"] = sorted((p.unit, p.host_port, p.proto) for p in fw.published())
        for s in held:
            s.close()
        return result

    r = in_netns(run)
    assert r["web"] == [Published("web.service", "tcp", "", 40003, "10.90.0.10", 80)]
    assert r["none left"] == "PublishPort=80/tcp: no free host port found (64 tries)"
    assert r["again"] == [Published("web.service", "tcp", "127.0.0.1", 40003, "10.90.0.10", 80)]
    assert r["udp"][0].host_port in range(40000, 40004) and r["udp"][0].proto == "udp"
    assert [(p.host_port, p.container_port) for p in r["range"]] == [(40002, 80), (40003, 81)]
    assert r["table"] == [
        ("dns.service", r["udp"][0].host_port, "udp"),
        ("rng.service", 40002, "tcp"),
        ("rng.service", 40003, "tcp"),
    ]
