""".pod files on the host: NAME-pod.service as rendered, the [Pod] table's errors as FILE:LINE,
Pod= in a .container (bound to the pod's service, wanted by it, its own network keys refused),
and the pod-create verb's command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdcontainer.cli import cli
from sdcontainer.errors import ConfigError
from sdcontainer.generator import find_sources, generate
from sdcontainer.keys import spec_from_argv, spec_to_argv
from sdcontainer.pods import POD_KEYS, QUADLET_ONLY_POD_KEYS, _parse_create
from sdcontainer.sources import Known
from tests.helpers import CHECKOUT

ROOTFS = "[Container]\nRootfs=/srv/root\nExec=/bin/sleep 1000\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def generated(directory: Path, name: str) -> tuple[str, list[tuple[str, str]]]:
    sources, index = find_sources([str(directory)])
    (source,) = [s for s in sources if s.name == name]
    result = generate(source, Known(sources), index)
    return result.text, result.links


def lines(text: str, section: str) -> list[str]:
    body = text.split(f"[{section}]\n", 1)[1]
    return [line for line in body.split("\n\n", 1)[0].splitlines() if line]


def check(*files: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["check", *map(str, files)])
    return result.exit_code, result.stderr.splitlines()


def test_a_pod_file_becomes_a_oneshot_that_creates_and_removes_the_pod(tmp_path: Path) -> None:
    write(
        tmp_path,
        "app.pod",
        "[Unit]\nDescription=the app\n[Pod]\nPodName=app\nHostName=apphost\nPublishPort=8080:80\n"
        "PublishPort=127.0.0.1:8443:443\nIP=10.88.7.7\n[Install]\nWantedBy=multi-user.target\n",
    )
    text, links = generated(tmp_path, "app.pod")
    unit = lines(text, "Unit")
    assert unit[:3] == ["Wants=network-online.target", "After=network-online.target", "Description=the app"]
    service = lines(text, "Service")
    assert service[:3] == ["Type=oneshot", "RemainAfterExit=yes", "SyslogIdentifier=%N"]
    start = next(line for line in service if line.startswith("ExecStart="))
    assert start.split()[-15:] == [
        "pod-create",
        "--pod",
        "app",
        "--unit",
        "%n",
        "--name",
        "app",
        "--hostname",
        "apphost",
        "--ip",
        "10.88.7.7",
        "--publish",
        "8080:80/tcp",
        "--publish",
        "127.0.0.1:8443:443/tcp",
    ]
    stop = next(line for line in service if line.startswith("ExecStopPost="))
    assert stop.split()[-5:] == ["pod-remove", "--pod", "app", "--unit", "%n"]
    assert service[-1] == "RuntimeDirectory=sdcontainer/containers/%n"
    assert links == [("multi-user.target.wants/app-pod.service", "../app-pod.service")]
    # what the verb reads back is what the file said
    words = start.split("pod-create ", 1)[1].replace("%n", "app-pod.service").split()
    pod, unit_name, spec = _parse_create(words)
    assert (pod, unit_name) == ("app", "app-pod.service")
    assert spec.publish_ports == ("8080:80/tcp", "127.0.0.1:8443:443/tcp")
    assert (spec.name, spec.hostname, spec.ip, spec.network) == ("app", "apphost", "10.88.7.7", "sdcontainer")


def test_an_empty_pod_file_and_one_without_a_network(tmp_path: Path) -> None:
    write(tmp_path, "a.pod", "[Pod]\n")
    write(tmp_path, "b.pod", "[Pod]\nNetwork=none\n")
    a, _ = generated(tmp_path, "a.pod")
    assert next(line for line in lines(a, "Service") if line.startswith("ExecStart=")).endswith("--unit %n")
    b, _ = generated(tmp_path, "b.pod")
    assert "network-online.target" not in b
    assert "--network none" in b


def test_a_container_in_a_pod_is_bound_to_it_and_wanted_by_it(tmp_path: Path) -> None:
    write(tmp_path, "app.pod", "[Pod]\n")
    write(tmp_path, "web.container", ROOTFS + "Pod=app.pod\n")
    write(tmp_path, "batch.container", ROOTFS + "Pod=app.pod\nStartWithPod=no\n")
    text, links = generated(tmp_path, "web.container")
    unit = lines(text, "Unit")
    assert "BindsTo=app-pod.service" in unit and "After=app-pod.service" in unit
    assert links == [("app-pod.service.wants/web.service", "../web.service")]
    start = next(line for line in lines(text, "Service") if line.startswith("ExecStart="))
    assert "--pod app.pod" in start
    assert "--network" not in start  # the pod's namespace, not one of its own
    assert "ExecStopPost=" not in text  # no lease of its own to release
    spec = spec_from_argv(start.split(" start ", 1)[1].split())
    assert spec.pod == "app.pod" and spec.network == "none"
    _, batch_links = generated(tmp_path, "batch.container")
    assert batch_links == []


def test_pod_argv_round_trips() -> None:
    spec = spec_from_argv(["--unit", "web.service", "--rootfs", "/", "--pod", "app.pod", "--", "/bin/true"])
    assert spec.pod == "app.pod"
    assert "--pod" in spec_to_argv(spec)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Network=host", "Network= cannot be set in a pod (Pod=app.pod): set it in the .pod file"),
        ("PublishPort=80:80", "PublishPort= cannot be set in a pod (Pod=app.pod): set it in the .pod file"),
        ("HostName=x", "HostName= cannot be set in a pod (Pod=app.pod): set it in the .pod file"),
        ("IP=10.88.0.9", "IP= cannot be set in a pod (Pod=app.pod): set it in the .pod file"),
    ],
)
def test_a_container_in_a_pod_cannot_have_its_own_network_keys(tmp_path: Path, line: str, message: str) -> None:
    write(tmp_path, "app.pod", "[Pod]\n")
    path = write(tmp_path, "web.container", ROOTFS + "Pod=app.pod\n" + line + "\n")
    with pytest.raises(ConfigError) as raised:
        generated(tmp_path, "web.container")
    assert str(raised.value) == f"{path}:5: {message}"


def test_a_pod_that_is_not_there_or_not_a_pod_file(tmp_path: Path) -> None:
    path = write(tmp_path, "web.container", ROOTFS + "Pod=gone.pod\n")
    with pytest.raises(ConfigError) as raised:
        generated(tmp_path, "web.container")
    assert str(raised.value) == f"{path}:4: Pod= names gone.pod, but no such file is on the search path"
    write(tmp_path, "web.container", ROOTFS + "Pod=test-pod\n")
    with pytest.raises(ConfigError, match=r"web.container:4: .*'test-pod' is not the name of a .pod file"):
        generated(tmp_path, "web.container")


def test_bad_pod_files_say_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.pod",
        "[Pod]\nPublishPort=nonsense\nUserNS=auto\nPodNmae=x\n[Service]\nExecStart=/bin/true\n[Weird]\nA=b\n",
    )
    code, errors = check(path)
    assert code != 0
    text = "\n".join(errors)
    assert f"{path}:2: " in text and "PublishPort" in text
    assert f"{path}:3: key UserNS= in [Pod] is a Quadlet key that sdcontainer does not support yet" in text
    assert f"{path}:4: unknown key PodNmae= in [Pod]; did you mean PodName=?" in text
    assert f"{path}:6: ExecStart= in [Service] is not allowed here" in text
    assert f"{path}:7: unknown section [Weird] in a .pod file" in text


def test_a_published_port_needs_the_pods_bridge_network(tmp_path: Path) -> None:
    path = write(tmp_path, "p.pod", "[Pod]\nNetwork=none\nPublishPort=80:80\n")
    with pytest.raises(ConfigError) as raised:
        generated(tmp_path, "p.pod")
    assert str(raised.value) == f"{path}:3: PublishPort= needs a bridge network, not Network=none"


def test_every_pod_key_but_volume_has_an_option_the_verb_reads() -> None:
    assert [key.name for key in POD_KEYS if not key.option] == ["Volume"]


def test_the_pods_volumes_go_to_each_container_before_its_own(tmp_path: Path) -> None:
    write(tmp_path, "app.pod", "[Pod]\nVolume=./shared:/shared:ro\n")
    write(tmp_path, "web.container", ROOTFS + "Pod=app.pod\nVolume=/srv/own:/own\n")
    text, _ = generated(tmp_path, "web.container")
    start = next(line for line in lines(text, "Service") if line.startswith("ExecStart="))
    assert f"--volume {tmp_path}/shared:/shared:ro --volume /srv/own:/own" in start
    pod, _ = generated(tmp_path, "app.pod")
    assert "--volume" not in pod


# --- the man page against the table -----------------------------------------------------------

POD_PAGE = CHECKOUT / "man" / "sdcontainer.pod.5.scd"


def test_every_pod_key_has_a_term_line_and_every_term_line_is_a_key() -> None:
    from tests.test_man import KEY_TERM, section

    terms = KEY_TERM.findall(section(POD_PAGE.read_text(encoding="utf-8"), "# [POD] SECTION"))
    assert sorted(terms) == sorted(key.name for key in POD_KEYS)
    assert len(terms) == len(set(terms))


def test_the_refused_quadlet_pod_keys_are_listed_exactly() -> None:
    from tests.test_man import section

    text = section(POD_PAGE.read_text(encoding="utf-8"), "## Quadlet keys not supported")
    assert set(re.findall(r"([A-Z][A-Za-z0-9]*)=", text)) == set(QUADLET_ONLY_POD_KEYS)


def test_the_pod_page_builds_with_scdoc() -> None:
    from tests.test_man import test_no_text_line_starts_with_a_roff_control_character, test_page_builds_with_scdoc

    test_page_builds_with_scdoc(POD_PAGE)
    test_no_text_line_starts_with_a_roff_control_character(POD_PAGE)


def test_a_container_whose_pod_file_is_refused_is_refused_too(tmp_path: Path) -> None:
    write(tmp_path, "app.pod", "[Pod]\nUserNS=auto\n")
    path = write(tmp_path, "web.container", ROOTFS + "Pod=app.pod\n")
    with pytest.raises(ConfigError) as raised:
        generated(tmp_path, "web.container")
    assert str(raised.value).startswith(f"{path}:4: Pod= names app.pod, which is refused: {tmp_path}/app.pod:2: ")
