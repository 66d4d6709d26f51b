""".image files on the host: the [Image] table's errors as FILE:LINE, NAME-image.service as
rendered, Image=NAME.image resolved in a .container, AutoUpdate='s checks; and the image
service's pull (`sdcontainer-launcher pull`) against a real registry on 127.0.0.1 with
credentials, every tag and another name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdcontainer.cli import cli
from sdcontainer.errors import ConfigError
from sdcontainer.generator import find_sources, generate
from sdcontainer.imagefile import IMAGE_KEYS, pull_argv
from sdcontainer.keys import spec_from_argv
from sdcontainer.sources import Known
from tests import registry as reg
from tests.helpers import CHECKOUT
from tests.layers import Layout, member, tar_bytes
from tests.test_quadlet_corpus import CORPUS


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def check(*files: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["check", *map(str, files)])
    return result.exit_code, result.stderr.splitlines()


def generated(directory: Path, name: str) -> tuple[str, list[tuple[str, str]]]:
    sources, index = find_sources([str(directory)])
    (source,) = [s for s in sources if s.name == name]
    result = generate(source, Known(sources), index)
    return result.text, result.links


def lines(text: str, section: str) -> list[str]:
    body = text.split(f"[{section}]\n", 1)[1]
    return [line for line in body.split("\n\n", 1)[0].splitlines() if line]


def test_an_image_file_becomes_a_oneshot_pull_with_each_key_as_an_option(tmp_path: Path) -> None:
    write(
        tmp_path,
        "web.image",
        "[Unit]\nDescription=the web image\n[Image]\nImage=docker://registry.example/web:1\nImageTag=web:prod\n"
        "AllTags=no\nArch=aarch64\nOS=linux\nVariant=v8\nAuthFile=auth.json\nCertDir=/etc/certs\n"
        "Creds=me:pa$ss\nTLSVerify=no\nPolicy=missing\nRetry=5\nRetryDelay=10s\n[Install]\nWantedBy=multi-user.target\n",
    )
    text, links = generated(tmp_path, "web.image")
    service = lines(text, "Service")
    assert service[:3] == ["Type=oneshot", "RemainAfterExit=yes", "SyslogIdentifier=%N"]
    (start,) = [line for line in service if line.startswith("ExecStart=")]
    assert start.endswith(
        f" pull --tag web:prod --arch arm64 --os linux --variant v8 --authfile {tmp_path}/auth.json "
        '--cert-dir /etc/certs --creds "me:pa$$ss" --tls-verify no --policy missing --retry 5 '
        "--retry-delay 10000ms -- registry.example/web:1"
    ), start
    unit = lines(text, "Unit")
    assert unit[:2] == ["Wants=network-online.target", "After=network-online.target"]
    assert "Description=the web image" in unit and f"SourcePath={tmp_path}/web.image" in unit
    assert links == [("multi-user.target.wants/web-image.service", "../web-image.service")]


def test_default_dependencies_no_and_an_after_reset_as_quadlet(tmp_path: Path) -> None:
    write(tmp_path, "a.image", "[Quadlet]\nDefaultDependencies=no\n[Image]\nImage=localhost/a\n")
    write(tmp_path, "b.image", "[Unit]\nAfter=\n[Image]\nImage=localhost/b\n")
    unit = lines(generated(tmp_path, "a.image")[0], "Unit")
    assert not [line for line in unit if line.startswith(("Wants=", "After=", "Before="))]
    unit = lines(generated(tmp_path, "b.image")[0], "Unit")
    assert [line for line in unit if line.startswith("After=")][-1] == "After="
    assert lines(generated(tmp_path, "b.image")[0], "Service")[3].endswith("pull -- localhost/b")


def test_every_error_of_an_image_file_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.image",
        "[Image]\nImagee=x\nArch=a b\nDecryptionKey=/k\nRetry=many\nTLSVerify=maybe\n"
        "[Service]\nUser=nobody\nType=simple\n[Pods]\nX=1\n",
    )
    status, errors = check(path)
    assert status == ConfigError.exit_status
    assert errors == [
        f"{path}:2: unknown key Imagee= in [Image]; did you mean Image=?",
        f"{path}:3: invalid Arch=: 'a b' is not a platform name (letters, digits, _ - . /)",
        f"{path}:4: key DecryptionKey= in [Image] is a Quadlet key that sdcontainer does not support yet "
        "(encrypted images are not supported yet)",
        f"{path}:5: invalid Retry=: 'many' is not a whole number",
        f"{path}:6: invalid TLSVerify=: " + errors[4].partition("invalid TLSVerify=: ")[2],
        f"{path}:8: User= in [Service] is not allowed here: the pull writes root's image store",
        f"{path}:9: Type=simple in [Service] of a .image file is not supported; allowed: oneshot",
        f"{path}:10: unknown section [Pods] in a .image file (known: [Image], [Unit], [Service], [Install], "
        "[Quadlet] and X- sections)",
    ], errors
    for text, message in (
        ("[Image]\n", "no Image= in [Image]: the image to pull is required"),
        ("[Image]\nImage=oci-archive:/srv/x.tar\n", "the oci-archive: transport is not supported"),
        ("[Image]\nImage=Not A Name\n", "invalid Image=:"),
    ):
        path = write(tmp_path, "one.image", text)
        status, errors = check(path)
        assert status == ConfigError.exit_status and len(errors) == 1 and message in errors[0], errors
        assert errors[0].startswith(str(path))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is not there")
def test_quadlets_image_files_are_accepted_or_refused_naming_the_key() -> None:
    """Every .image file of Quadlet's tests: accepted, or refused naming a Quadlet key (none
    of the keys the issue lists); no-image.image, which Quadlet rejects, is rejected."""
    files = sorted(CORPUS.glob("*.image"))
    assert len(files) > 15
    outcomes = {}
    for path in files:
        status, errors = check(path)
        outcomes[path.name] = "ok" if status == 0 else errors[0]
    assert "no Image=" in outcomes.pop("no-image.image")
    refused = {name: why for name, why in outcomes.items() if why != "ok"}
    for name, why in refused.items():
        assert "is a Quadlet key that sdcontainer does not support yet" in why or "DynamicUser=" in why, (name, why)
    assert set(refused) == {
        "containersconfmodule.image",
        "decrypt.image",
        "globalargs.image",
        "service-dynamicuser.image",
        "service-name.image",
    }, refused


def test_a_container_naming_an_image_file_runs_its_image_after_its_service(tmp_path: Path) -> None:
    write(tmp_path, "web.image", "[Image]\nImage=registry.example/web:1\nImageTag=localhost/web:prod\n")
    write(tmp_path, "plain.image", "[Image]\nImage=registry.example/plain:2\n")
    write(tmp_path, "web.container", "[Container]\nImage=web.image\n")
    write(tmp_path, "plain.container", "[Container]\nImage=plain.image\nPull=always\n")
    text = generated(tmp_path, "web.container")[0]
    unit = lines(text, "Unit")
    assert unit[-2:] == ["Requires=web-image.service", "After=web-image.service"]
    (start,) = [line for line in lines(text, "Service") if line.startswith("ExecStart=")]
    spec = spec_from_argv(start.split(" start ", 1)[1].split())
    assert (spec.image, spec.pull) == ("localhost/web:prod", "never")
    (start,) = [line for line in lines(generated(tmp_path, "plain.container")[0], "Service") if "start" in line]
    spec = spec_from_argv(start.split(" start ", 1)[1].split())
    assert (spec.image, spec.pull) == ("registry.example/plain:2", "always")  # a Pull= of its own stays


def test_a_container_naming_a_missing_or_refused_image_file_is_an_error_on_its_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.image", "[Image]\nImage=registry.example/x\nPodmanArgs=--foo\n")
    missing = write(tmp_path, "a.container", "[Container]\nExec=/bin/true\nImage=gone.image\n")
    refused = write(tmp_path, "b.container", "[Container]\nImage=bad.image\n")
    template = write(tmp_path, "c.container", "[Container]\nImage=t@.image\n")
    short = write(tmp_path, "d.container", "[Container]\nImage=short.image\nAutoUpdate=registry\n")
    write(tmp_path, "short.image", "[Image]\nImage=registry.example/x:1\nImageTag=x:prod\n")
    assert check(missing)[1] == [f"{missing}:3: Image= names gone.image, but no such file is on the search path"]
    (error,) = check(refused)[1]
    assert error.startswith(f"{refused}:2: Image= names bad.image, which is refused: {tmp_path}/bad.image:3: key Po")
    (error,) = check(template)[1]
    assert error.startswith(f"{template}:2: invalid Image=: t@.image: a .image file is named by its file name")
    assert check(short)[1] == [
        f"{short}:2: AutoUpdate=registry needs an image name with its registry; short.image names x:prod"
    ]


def test_auto_update_is_a_key_recorded_as_podmans_label(tmp_path: Path) -> None:
    good = write(tmp_path, "a.container", "[Container]\nImage=registry.example/a:1\nAutoUpdate=registry\n")
    text = generated(tmp_path, "a.container")[0]
    assert "--auto-update registry" in text
    from sdcontainer.launcher import _labels

    start = [line for line in lines(text, "Service") if line.startswith("ExecStart=")][0]
    spec = spec_from_argv(start.split(" start ", 1)[1].split())
    assert _labels(spec) == (("io.containers.autoupdate", "registry"),)
    assert check(good)[0] == 0
    for body, message in (
        ("Rootfs=/srv\nExec=/bin/true\nAutoUpdate=local", "4: AutoUpdate= needs Image="),
        ("Image=web:1\nAutoUpdate=registry", "3: AutoUpdate=registry needs an Image= that names its registry"),
        ("Image=web:1\nAutoUpdate=always", "3: invalid AutoUpdate=: 'always' is not one of registry, local"),
    ):
        path = write(tmp_path, "b.container", f"[Container]\n{body}\n")
        (error,) = check(path)[1]
        assert error.startswith(f"{path}:{message}"), error
    path = write(tmp_path, "c.container", "[Container]\nImage=web:1\nAutoUpdate=local\n")
    assert check(path)[0] == 0


def test_the_pull_verb_takes_what_the_table_writes() -> None:
    from sdcontainer.imagefile import IMAGE_KEYS_BY_OPTION, ImageSpec

    assert {key.option for key in IMAGE_KEYS if key.option} == set(IMAGE_KEYS_BY_OPTION)
    spec = ImageSpec(image="r.example/a:1", all_tags=True, tls_verify=False, retry=0)
    assert pull_argv(spec) == ["--all-tags", "--tls-verify", "no", "--retry", "0", "--", "r.example/a:1"]


# --- the image service's pull, against a real registry with credentials ----------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[reg.Registry]:
    why = reg.available()
    if why is not None:
        pytest.skip(why)
    top = tmp_path_factory.mktemp("imagefile-registry")
    registry = reg.Registry(top / "registry", user="puller", password="s3cret")
    layout = Layout(top / "oci")
    for tag in ("1", "2"):
        layer = tar_bytes([member("hello", data=f"tag {tag}\n".encode())])
        layout.image([layer], config={"Cmd": ["/hello"]}, ref=tag)
    layout.write()
    for tag in ("1", "2"):
        registry.push(layout.path, tag, f"test/app:{tag}", creds="puller:s3cret")
    yield registry
    registry.remove()


def pull(store: Path, registry: reg.Registry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SDCONTAINER_STORAGE": str(store),
        "CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf),
    }
    return subprocess.run(
        [sys.executable, "-m", "sdcontainer.launcher", "pull", *args],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def names(store: Path) -> set[str]:
    return {path.name.replace("%2F", "/") for path in (store / "names").iterdir()}


def test_the_pull_verb_uses_creds_and_tags_the_image(tmp_path: Path, registry: reg.Registry) -> None:
    store = tmp_path / "storage"
    name = f"{registry.host}/test/app:1"
    refused = pull(store, registry, "--retry", "0", "--", name)
    assert refused.returncode == 4 and "unauthorized" in refused.stderr.lower(), refused.stderr
    done = pull(store, registry, "--creds", "puller:s3cret", "--tag", "app:prod", "--", f"docker://{name}")
    assert done.returncode == 0, done.stderr
    assert names(store) == {name, "localhost/app:prod"}
    image_id = done.stdout.split()[-1]
    assert json.loads((store / "images" / f"{image_id}.json").read_text())["config"]["Cmd"] == ["/hello"]


def test_the_pull_verb_pulls_every_tag(tmp_path: Path, registry: reg.Registry) -> None:
    store = tmp_path / "storage"
    done = pull(store, registry, "--creds", "puller:s3cret", "--all-tags", "--", f"{registry.host}/test/app")
    assert done.returncode == 0, done.stderr
    assert names(store) == {f"{registry.host}/test/app:1", f"{registry.host}/test/app:2"}
    assert len(done.stdout.splitlines()) == 2


def test_registry_digest_asks_without_pulling(tmp_path: Path, registry: reg.Registry) -> None:
    from sdcontainer.images import Transport, registry_digest

    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf)
    try:
        before = len(registry.requests("/blobs/"))
        digest = registry_digest(f"{registry.host}/test/app:1", Transport(creds="puller:s3cret"))
    finally:
        del os.environ["CONTAINERS_REGISTRIES_CONF"]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert len(registry.requests("/blobs/")) == before


# --- the man page against the table -----------------------------------------------------------

IMAGE_PAGE = CHECKOUT / "man" / "sdcontainer.image.5.scd"


def test_every_image_key_has_a_term_line_and_every_term_line_is_a_key() -> None:
    from tests.test_man import KEY_TERM

    terms = KEY_TERM.findall(section_of(IMAGE_PAGE.read_text(encoding="utf-8"), "# [IMAGE] SECTION"))
    assert sorted(terms) == sorted(key.name for key in IMAGE_KEYS)
    assert len(terms) == len(set(terms))


def test_the_refused_quadlet_image_keys_are_listed_exactly() -> None:
    import re

    from sdcontainer.imagefile import QUADLET_ONLY_IMAGE_KEYS

    text = section_of(IMAGE_PAGE.read_text(encoding="utf-8"), "## Quadlet keys not supported")
    assert set(re.findall(r"([A-Z][A-Za-z0-9]*)=", text)) == set(QUADLET_ONLY_IMAGE_KEYS)


def test_the_image_page_builds_with_scdoc() -> None:
    from tests.test_man import test_no_text_line_starts_with_a_roff_control_character, test_page_builds_with_scdoc

    test_page_builds_with_scdoc(IMAGE_PAGE)
    test_no_text_line_starts_with_a_roff_control_character(IMAGE_PAGE)


def section_of(text: str, header: str) -> str:
    from tests.test_man import section

    return section(text, header)
