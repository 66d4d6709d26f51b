"""Named networks on the host alone: `.network` files parsed and rendered, their errors, the
definitions' choices (subnets, bridges), and the hosts files of sdcontainer.names (rewritten in
place, never torn, nothing lost with 50 joins at once). The real networks are in
tests/test_network_named_systemd.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sdcontainer import names, networks, state
from sdcontainer.errors import ConfigError, NetworkError, UsageError
from sdcontainer.generator import diagnose, generate
from sdcontainer.ipam import Ipam
from sdcontainer.sources import Source, find_sources
from sdcontainer.unitfile import split_words
from tests.test_quadlet_corpus import CORPUS


def render(tmp_path: Path, name: str, text: str, others: dict[str, str] | None = None) -> str:
    for other, body in {name: text, **(others or {})}.items():
        (tmp_path / other).write_text(body)
    sources, index = find_sources([str(tmp_path)])
    source = next(s for s in sources if s.name == name)
    return generate(source, {s.name for s in sources}, index).text


def errors_of(tmp_path: Path, name: str, text: str) -> list[str]:
    (tmp_path / name).write_text(text)
    return [str(e) for e in diagnose(Source(name, str(tmp_path / name)), {name}, {})]


def service_lines(text: str) -> list[str]:
    return text[text.index("[Service]\n") :].splitlines()[1:]


def test_a_network_file_becomes_a_oneshot_service_that_creates_it(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "backend.network",
        "[Network]\nSubnet=10.90.0.0/24\nGateway=10.90.0.1\nIPRange=10.90.0.128/25\nSubnet=fd00:90::/64\n"
        'Internal=yes\nDNS=192.0.2.53\nLabel=a=b "c=d e"\nOptions=mtu=1400\nInterfaceName=br-backend\n'
        "[Install]\nWantedBy=multi-user.target\n",
    )
    lines = service_lines(text)
    assert lines[:2] == ["Type=oneshot", "RemainAfterExit=yes"]
    create = lines[2].partition(" network-create ")[2]
    assert create == (
        "--file backend.network --name systemd-backend --subnet 10.90.0.0/24 --subnet fd00:90::/64 "
        "--gateway 10.90.0.1 --ip-range 10.90.0.128/25 --internal yes --dns 192.0.2.53 --label a=b "
        '--label "c=d e" --opt mtu=1400 --interface-name br-backend'
    )
    assert "SyslogIdentifier=%N" in lines and "ExecStopPost" not in text
    assert "[Install]\nWantedBy=multi-user.target" in text
    # the options are the launcher's: parsed back as systemd splits them, the file's network
    spec = networks.spec_from_argv(split_words(create)[2:])
    assert spec.name == "systemd-backend" and spec.labels == ("a=b", "c=d e") and spec.internal


def test_options_round_trip_through_the_launchers_command_line() -> None:
    spec = networks.NetworkSpec(
        name="n1",
        subnets=("10.90.0.0/24", "fd00::/64"),
        gateways=("10.90.0.254",),
        ip_ranges=("10.90.0.0/25",),
        internal=True,
        ipv6=True,
        dns=("1.1.1.1",),
        disable_dns=True,
        labels=("a=b c",),
        options=("mtu=1500",),
        interface_name="br0",
    )
    assert networks.spec_from_argv(networks.to_argv(spec)) == spec


def test_network_name_delete_on_stop_and_a_service_section(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "delete.network",
        "[Network]\nNetworkName=test-network\nNetworkDeleteOnStop=true\n[Service]\nType=exec\nRemainAfterExit=no\n",
    )
    lines = service_lines(text)
    assert "--name test-network" in lines[2]
    assert lines[3].endswith(" network-remove test-network")
    # the file's [Service] comes last, so its Type= wins (Quadlet's ipv6.network does that)
    assert lines[-2:] == ["Type=exec", "RemainAfterExit=no"]


def test_a_container_on_a_network_file_requires_its_service(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "api.container",
        "[Container]\nRootfs=/\nExec=/bin/true\nNetwork=backend.network\nIP=10.90.0.10\nIP6=fd00::10\n"
        "NetworkAlias=api.internal\n",
        {"backend.network": "[Network]\n"},
    )
    assert "Requires=backend-network.service\nAfter=backend-network.service\n" in text
    assert "--network backend.network --ip 10.90.0.10 --ip6 fd00::10 --network-alias api.internal" in text
    assert "ExecStopPost=" in text and " release --unit %n" in text
    # a named network (sdcontainer network create): no dependency
    text = render(tmp_path, "b.container", "[Container]\nRootfs=/\nExec=/bin/true\nNetwork=mynet\n")
    assert "-network.service" not in text and "--network mynet" in text


def test_a_network_file_not_on_the_search_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a.container:4: Network=gone.network: no such file is on the search path"):
        render(tmp_path, "a.container", "[Container]\nRootfs=/\nExec=/bin/true\nNetwork=gone.network\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Network]\nSubnett=10.1.0.0/24\n", ["2: unknown key Subnett= in [Network]; did you mean Subnet=?"]),
        ("[Network]\nDriver=macvlan\n", ["2: invalid Driver=: driver 'macvlan' is not supported"]),
        ("[Network]\nIPAMDriver=dhcp\n", ["2: key IPAMDriver= in [Network] is a Quadlet key that sdcontainer"]),
        ("[Network]\nSubnet=10.1.0.1/24\n", ["2: invalid Subnet=: 10.1.0.1/24 has host bits set"]),
        ("[Network]\nSubnet=10.1.0.0/24\nGateway=10.2.0.1\n", ["3: Subnet=10.1.0.0/24: gateway 10.2.0.1 is not in"]),
        (
            "[Network]\nSubnet=10.1.0.0/24\nGateway=10.1.0.1\nGateway=10.1.0.2\n",
            ["4: cannot set more gateways than subnets"],
        ),
        ("[Network]\nIPRange=10.1.0.0/28\n", ["2: cannot set Gateway= or IPRange= without Subnet="]),
        ("[Network]\nSubnet=10.1.0.0/16\nSubnet=10.1.2.0/24\n", ["3: Subnet=10.1.2.0/24 overlaps Subnet=10.1.0.0/16"]),
        ("[Network]\nOptions=vlan=3\n", ["2: invalid Options=: option 'vlan=3' is not supported"]),
        ("[Network]\nNetworkName=bridge\n", ["2: invalid NetworkName=: 'bridge' is not a network name"]),
        ("[Network]\nInterfaceName=much-too-long-name\n", ["2: invalid InterfaceName="]),
        ("[Network]\n[Service]\nExecStart=/bin/true\n", ["3: ExecStart= in [Service] is not allowed"]),
        ("[Netwrk]\n", ["1: unknown section [Netwrk] in a .network file"]),
        (
            "[Network]\nSubnett=1\nDriver=x\nInternal=maybe\n",
            ["2: unknown key Subnett=", "3: invalid Driver=", "4: invalid Internal=: 'maybe' is not a boolean"],
        ),
    ],
)
def test_bad_network_files_are_refused_naming_file_line_and_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    found = errors_of(tmp_path, "bad.network", text)
    path = tmp_path / "bad.network"
    assert len(found) == len(expected), found
    for error, wanted in zip(found, expected, strict=True):
        assert error.startswith(f"{path}:{wanted}"), error
    with pytest.raises(ConfigError, match=rf"^{path}:{expected[0].split(':')[0]}:"):
        render(tmp_path, "bad.network", text)


def test_a_template_network_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="template .network files"):
        render(tmp_path, "t@.network", "[Network]\n")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="no Quadlet corpus")
def test_quadlets_network_files_render_with_the_same_options(tmp_path: Path) -> None:
    """Quadlet's own .network files: the podman options they assert, our network-create's."""
    expected = {
        "subnets.network": "--name systemd-subnets --subnet 192.168.0.0/24 --subnet 192.168.1.0/24",
        "gateway.network": "--name systemd-gateway --subnet 192.168.1.0/24 --gateway 192.168.1.1",
        "internal.network": "--name systemd-internal --internal yes",
        "name.network": "--name test-network",
        "dns.network": "--name systemd-dns --dns 8.7.7.7 --dns 8.8.8.8",
        "disable-dns.network": "--name systemd-disable-dns --disable-dns yes",
        "options.network": "--name systemd-options --opt mtu=1504",
        "interface-name.network": "--name systemd-interface-name --interface-name enp1",
    }
    for name, options in expected.items():
        directory = tmp_path / name
        directory.mkdir()
        text = render(directory, name, (CORPUS / name).read_text())
        assert text.count(f"network-create --file {name} {options}\n") == 1, text


# --- definitions ---------------------------------------------------------------------------


def test_subnets_and_bridges_are_chosen_deterministically_and_never_overlap() -> None:
    a = networks._choose(networks.NetworkSpec(name="a", ipv6=True), "a", [])
    assert a == networks._choose(networks.NetworkSpec(name="a", ipv6=True), "a", [])
    assert a.subnets[0].startswith("10.89.") and a.subnets[0].endswith(".0/24")
    assert a.subnets[1].startswith("fd") and a.subnets[1].endswith("::/64")
    assert len(a.bridge) <= 15 and a.bridge == networks.bridge_name("a")
    assert a.gateways[0].endswith(".1") and a.gateways[1].endswith("::1")
    # a network whose preferred /24 is taken gets the next free one
    b = networks._choose(networks.NetworkSpec(name="a"), "a2", [networks.replace(a, name="other")])
    assert b.subnets[0] != a.subnets[0]
    with pytest.raises(NetworkError, match="overlaps 10.89"):
        networks._choose(networks.NetworkSpec(name="c", subnets=("10.89.0.0/16",)), "c", [a])
    with pytest.raises(NetworkError, match="default network's 10.88.0.0/16"):
        networks._choose(networks.NetworkSpec(name="c", subnets=("10.88.5.0/24",)), "c", [])
    with pytest.raises(NetworkError, match="bridge br0 is network x's"):
        networks._choose(
            networks.NetworkSpec(name="c", interface_name="br0"), "c", [networks.replace(a, name="x", bridge="br0")]
        )


def test_a_definition_round_trips_through_its_json() -> None:
    from sdcontainer.firewall import dumps, loads

    spec = networks.NetworkSpec(name="n", subnets=("10.90.0.0/24",), ip_ranges=("10.90.0.0/25",), labels=("k=v",))
    network = networks.replace(networks._choose(spec, "n", []), argv=tuple(networks.to_argv(spec)))
    assert networks.Network.from_json(loads(dumps(network.to_json()))) == network
    assert [p.size for p in network.pools()] == [126]


def test_ip_and_ip6_must_be_in_the_networks_subnets() -> None:
    network = networks._choose(networks.NetworkSpec(name="n", subnets=("10.90.0.0/24",)), "n", [])
    networks.check_address(network, "10.90.0.9", "IP")
    with pytest.raises(NetworkError, match=r"IP=10.91.0.9 is not in a subnet of network n \(10.90.0.0/24\)"):
        networks.check_address(network, "10.91.0.9", "IP")
    with pytest.raises(NetworkError, match="IP6=fd00::9: network n has no IPv6 subnet"):
        networks.check_address(network, "fd00::9", "IP6")


def test_a_bad_command_line_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown option '--subnett'"):
        networks.spec_from_argv(["--subnett", "10.0.0.0/24"])
    with pytest.raises(UsageError, match="cannot set more gateways than subnets"):
        networks.spec_from_argv(["--subnet", "10.0.0.0/24", "--gateway", "10.0.0.1", "--gateway", "10.0.0.2"])


# --- hosts files ----------------------------------------------------------------------------


@pytest.fixture()
def rundir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "containers"))
    return tmp_path


def join(network: Ipam, unit: str, address: str, *aliases: str) -> str:
    stem = unit.removesuffix(".service")
    base = f"127.0.0.1\tlocalhost\n{address}\t{stem}\n"
    return names.join(
        network, unit, [f"{address}/24"], names.host_names(stem, *aliases), base, peers=True, alive=lambda u: True
    )


def test_a_hosts_file_lists_the_others_and_is_rewritten_in_place(rundir: Path) -> None:
    network = Ipam("n", [], str(rundir / "networks"))
    api = join(network, "api.service", "10.90.0.2", "apihost", "web@1")
    assert Path(api).read_text() == "127.0.0.1\tlocalhost\n10.90.0.2\tapi\n"
    inode = os.stat(api).st_ino
    web = join(network, "web.service", "10.90.0.3")
    assert "10.90.0.2\tapi apihost\n" in Path(web).read_text()  # web@1 is no host name
    assert Path(api).read_text().endswith("10.90.0.3\tweb\n")
    assert os.stat(api).st_ino == inode
    names.leave(network, "web.service", peers=True, alive=lambda u: True)
    # shorter now: padded with a comment to the old length, not truncated
    text = Path(api).read_text()
    assert text.startswith("127.0.0.1\tlocalhost\n10.90.0.2\tapi\n#") and "web" not in text
    assert text.endswith(" \n") and os.stat(api).st_ino == inode
    assert not names.leave(network, "web.service", peers=True, alive=lambda u: True)


def test_a_stopped_member_is_left_out(rundir: Path) -> None:
    network = Ipam("n", [], str(rundir / "networks"))
    join(network, "old.service", "10.90.0.4")
    new = join(network, "new.service", "10.90.0.5")
    os.unlink(f"{state.container_dir('old.service')}/{names.BASE}")
    alive = {"new.service"}
    names.leave(network, "new.service", peers=True, alive=alive.__contains__)
    again = names.join(
        network, "new.service", ["10.90.0.5/24"], ["new"], "base\n", peers=True, alive=alive.__contains__
    )
    assert again == new and Path(new).read_text() == "base\n"


def test_fifty_joins_at_once_lose_no_name(rundir: Path) -> None:
    network = Ipam("n", [], str(rundir / "networks"))
    units = [f"c{i}.service" for i in range(50)]
    threads = [threading.Thread(target=join, args=(network, u, f"10.90.0.{i + 2}")) for i, u in enumerate(units)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, unit in enumerate(units):
        text = Path(names.hosts_path(unit)).read_text()
        listed = {line.split("\t")[1] for line in text.splitlines()[2:] if "\t" in line}
        assert listed == {f"c{j}" for j in range(50) if j != i}, (unit, text)


def test_a_reader_never_sees_a_torn_file(rundir: Path) -> None:
    path = rundir / "hosts"
    texts = ["a" * 300 + "\n", "b" * 40 + "\n"]
    path.write_text(texts[0])
    done = threading.Event()
    seen: set[str] = set()

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_text().split("\n")[0][:1] + str(len(path.read_text())))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(2000):
        names.rewrite(str(path), texts[i % 2])
    done.set()
    reader.join()
    assert all(s[1:] == "301" for s in seen), seen  # never shorter, never empty


# --- making and removing, in a network namespace of the test's own --------------------------


def test_create_again_change_refuse_in_use_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from sdcontainer import firewall, ipam, netlink
    from tests.netns import in_netns

    monkeypatch.setattr(ipam, "STATE_DIR", str(tmp_path / "networks"))
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "containers"))
    monkeypatch.setattr(networks, "FILES_DIR", str(tmp_path / "network-files"))
    monkeypatch.setattr(networks, "PERSISTENT_DIR", str(tmp_path / "persistent"))
    monkeypatch.setattr(networks, "LOCK", str(tmp_path / "networks.lock"))
    monkeypatch.setattr(firewall, "LOCK_PATH", str(tmp_path / "firewall.lock"))

    def errors(fn: object) -> str:
        try:
            fn()  # type: ignore[operator]
        except NetworkError as error:
            return str(error)
        return "no error"

    def run() -> dict[str, object]:
        spec = networks.spec_from_argv(["--name", "a", "--subnet", "10.90.0.0/24", "--ipv6", "yes"])
        made = networks.create(spec, file="a.network")
        result: dict[str, object] = {"again": networks.create(spec, file="a.network") == made}
        with netlink.Rtnl() as nl:
            bridge = nl.link(made.bridge)
            result["addresses"] = sorted(
                a.address for a in nl.addresses(bridge.index) if not a.address.startswith("fe80")
            )
        with firewall.Firewall() as fw:
            result["masquerade"] = fw.networks()
        result["loaded"] = networks.load("a.network") == made
        result["other file"] = errors(lambda: networks.create(spec, file="b.network"))
        made.ipam().lease("x.service", ["10.90.0.7"])
        os.makedirs(state.container_dir("x.service"))
        changed = networks.replace(spec, subnets=("10.91.0.0/24",))
        result["change in use"] = errors(lambda: networks.create(changed, file="a.network"))
        result["remove in use"] = errors(lambda: networks.remove("a"))
        shutil.rmtree(state.container_dir("x.service"))
        result["removed"] = networks.remove("a.network").bridge == made.bridge
        with netlink.Rtnl() as nl:
            result["links"] = sorted(link.name for link in nl.links())
        with firewall.Firewall() as fw:
            result["masquerade after"] = fw.networks()
        result["left"] = sorted(os.listdir(tmp_path / "networks")) + sorted(os.listdir(tmp_path / "network-files"))
        result["gone"] = errors(lambda: networks.load("a"))
        return result

    r = in_netns(run)
    v6 = r["addresses"][1]  # type: ignore[index]
    assert r["again"] and r["loaded"] and r["removed"]
    assert r["addresses"] == ["10.90.0.1/24", v6] and v6.startswith("fd") and v6.endswith("::1/64")
    assert r["masquerade"] == {"a": ["10.90.0.0/24", v6.replace("::1/", "::/")]}
    assert r["other file"] == "network a is made by a.network already; give b.network a NetworkName= of its own"
    assert (
        r["change in use"] == "network a exists with other settings and is in use by x.service; stop them to change it"
    )
    assert r["remove in use"] == "network a is in use by x.service; stop them first"
    assert r["links"] == ["lo"] and r["masquerade after"] == {} and r["left"] == []
    assert r["gone"].startswith("network a does not exist")  # type: ignore[union-attr]
