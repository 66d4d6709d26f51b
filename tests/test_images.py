"""Images end to end on the host: imports of every kind, the store, the launcher running an
image (its layers as the overlay, its config's defaults), and pulls from a real registry
(Debian's docker-registry on 127.0.0.1, images pushed with skopeo from layouts built here)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import registry as reg
from tests.helpers import CHECKOUT
from tests.layers import Layout, digest, gz, member, tar_bytes, tree_tar
from tests.test_launcher import _WHY_NOT

pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")

LAUNCHER = [sys.executable, "-E", "-s", "-m", "sdcontainer.launcher"]
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

APP_SCRIPT = b'#!/bin/sh\necho "run $GREETING $*"; pwd; id -u; ls /etc\n'


@pytest.fixture(scope="session")
def base_layer(busybox_rootfs: str) -> bytes:
    """The busybox root file system as one uncompressed layer."""
    return tree_tar(busybox_rootfs)


def app_layer(greeting: bytes = b"hello from the image\n") -> bytes:
    """A second layer: files of the app, and a whiteout of the base's /etc/os-release."""
    return tar_bytes(
        [
            member("www/", tarfile.DIRTYPE, mode=0o755),
            member("www/index.html", data=greeting),
            member("etc/.wh.os-release"),
            member("app/", tarfile.DIRTYPE, mode=0o755),
            member("app/run.sh", data=APP_SCRIPT, mode=0o755),
        ]
    )


WEB_CONFIG = {
    "Entrypoint": ["/app/run.sh"],
    "Cmd": ["a", "b"],
    "Env": ["GREETING=hi", "PATH=/bin:/usr/bin"],
    "WorkingDir": "/app",
    "User": "1000",
}


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "storage"
    monkeypatch.setenv("SDCONTAINER_STORAGE", str(path))
    return path


def sdc(
    store: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The sdcontainer command, on this store."""
    result = subprocess.run(
        [sys.executable, "-m", "sdcontainer.cli", *args],
        cwd=CHECKOUT,
        env={**os.environ, **BASE_ENV, "SDCONTAINER_STORAGE": str(store), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def launch_image(
    store: Path, image: str, *command: str, options: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [*LAUNCHER, "start", "--unit", "probe.service", "--name", "probe", "--image", image, *options]
    if command:
        argv += ["--", *command]
    return subprocess.run(
        argv,
        cwd=CHECKOUT,
        env={**BASE_ENV, "SDCONTAINER_STORAGE": str(store), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def web_layout(path: Path, base: bytes, greeting: bytes = b"hello from the image\n") -> Path:
    layout = Layout(path)
    layout.image([base, app_layer(greeting)], config=WEB_CONFIG, ref="web:1")
    return layout.write()


# --- imports and the launcher ---------------------------------------------------------------


def test_an_imported_oci_layout_runs_with_its_config(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    image_id = sdc(store, "image", "import", str(web_layout(tmp_path / "oci", base_layer)), "test/web:1").stdout.strip()
    assert len(image_id) == 64
    result = launch_image(store, "test/web:1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Entrypoint + Cmd, Env, WorkingDir and User from the image's config
    assert lines[:3] == ["run hi a b", "/app", "1000"], result.stdout
    # the whiteout of the second layer hides the base's /etc/os-release
    assert "os-release" not in lines[3:] and "passwd" in lines[3:], result.stdout
    # the unit's keys override the config: Exec= replaces Cmd, Environment= wins over Env
    result = launch_image(
        store, "localhost/test/web:1", "x", options=("--env", "GREETING=bye", "--workdir", "/www", "--user", "0")
    )
    assert result.stdout.splitlines()[:3] == ["run bye x", "/www", "0"], result.stderr
    # an Entrypoint= given drops the image's Cmd, as in podman
    result = launch_image(store, "test/web:1", options=("--entrypoint", '["/bin/echo", "just"]'))
    assert result.stdout == "just\n", result.stderr
    # the container writes to its own upper layer: the store is not changed
    result = launch_image(
        store,
        "test/web:1",
        "/bin/sh",
        "-c",
        "echo scribble > /www/index.html; cat /www/index.html",
        options=("--entrypoint", "", "--user", "0"),
    )
    assert result.stdout == "scribble\n", result.stderr
    pages = sorted((d / "www/index.html").read_text() for d in (store / "layers").iterdir())
    assert pages == ["<html><body>hello from busybox</body></html>\n", "hello from the image\n"]


def test_the_images_working_directory_is_made_when_missing(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "oci")
    layout.image(
        [base_layer], config={"Cmd": ["/bin/sh", "-c", "pwd; id -u"], "WorkingDir": "/srv/made", "User": "1000:50"}
    )
    layout.write()
    sdc(store, "image", "import", str(layout.path), "wd:1")
    result = launch_image(store, "wd:1")
    assert result.stdout.split() == ["/srv/made", "1000"], result.stderr


def test_the_generator_takes_a_stored_images_stop_signal(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "oci")
    layout.image([base_layer], config={"Cmd": ["/bin/true"], "StopSignal": "SIGQUIT"})
    layout.write()
    units = tmp_path / "units"
    units.mkdir()
    (units / "q.container").write_text("[Container]\nImage=localhost/quits:1\n")
    (units / "own.container").write_text("[Container]\nImage=localhost/quits:1\nStopSignal=SIGINT\n")
    before = sdc(store, "unit", str(units / "q.container")).stdout
    assert "KillSignal" not in before and "SuccessExitStatus=143" in before  # not stored yet
    sdc(store, "image", "import", str(layout.path), "quits:1")
    after = sdc(store, "unit", str(units / "q.container")).stdout
    assert "KillSignal=SIGQUIT" in after and "SuccessExitStatus=131" in after
    own = sdc(store, "unit", str(units / "own.container")).stdout
    assert "KillSignal=SIGINT" in own and "SIGQUIT" not in own


def test_two_images_sharing_a_base_layer_store_it_once(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    first = sdc(store, "image", "import", str(web_layout(tmp_path / "one", base_layer, b"one\n")), "web:1").stdout
    second = sdc(store, "image", "import", str(web_layout(tmp_path / "two", base_layer, b"two\n")), "web:2").stdout
    assert first != second
    assert len(list((store / "layers").iterdir())) == 3  # one base, two app layers
    listed = json.loads(sdc(store, "images", "--format", "json").stdout)
    assert sorted(n for r in listed for n in r["names"]) == ["localhost/web:1", "localhost/web:2"]
    assert listed[0]["layers"][0] == listed[1]["layers"][0] == digest(base_layer)[7:]
    table = sdc(store, "images").stdout.splitlines()
    assert table[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"] and len(table) == 3
    # removing one name keeps the shared layer; removing the other removes it too
    assert "untagged localhost/web:1" in sdc(store, "rmi", "web:1").stdout
    assert len(list((store / "layers").iterdir())) == 2
    sdc(store, "rmi", "web:2")
    assert (
        list((store / "layers").iterdir()) == [] and json.loads(sdc(store, "images", "--format", "json").stdout) == []
    )
    missing = sdc(store, "rmi", "web:2", check=False)
    assert missing.returncode == 4 and "no image web:2 in the store" in missing.stderr


def test_an_oci_layout_without_a_name_takes_its_ref_name(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    image_id = sdc(store, "image", "import", str(web_layout(tmp_path / "oci", base_layer))).stdout.strip()
    assert json.loads(sdc(store, "image", "inspect", "web:1").stdout)["id"] == image_id
    assert json.loads(sdc(store, "image", "inspect", image_id[:12]).stdout)["names"] == ["localhost/web:1"]


@pytest.mark.parametrize("where", ["diff_id", "layer", "config"])
def test_a_layout_naming_files_by_bad_digests_is_refused(where: str, store: Path, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "oci")
    layout.image([app_layer()], config={"Cmd": ["/bin/true"]}, ref="bad:1")
    layout.write()
    blobs = layout.path / "blobs" / "sha256"
    index = json.loads((layout.path / "index.json").read_text())
    manifest_path = blobs / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_text())
    evil = "sha256:../../../../etc/passwd"
    if where == "config":
        manifest["config"]["digest"] = evil
    elif where == "layer":
        manifest["layers"][0]["digest"] = evil
    else:
        config_path = blobs / manifest["config"]["digest"][7:]
        config = json.loads(config_path.read_text())
        config["rootfs"]["diff_ids"] = [evil]
        data = json.dumps(config).encode()
        (blobs / digest(data)[7:]).write_bytes(data)
        manifest["config"]["digest"], manifest["config"]["size"] = digest(data), len(data)
    data = json.dumps(manifest).encode()
    (blobs / digest(data)[7:]).write_bytes(data)
    index["manifests"][0]["digest"], index["manifests"][0]["size"] = digest(data), len(data)
    (layout.path / "index.json").write_text(json.dumps(index))
    result = sdc(store, "image", "import", str(layout.path), "bad:1", check=False)
    assert result.returncode == 4 and "is not a sha256:<64 hex digits> digest; refused" in result.stderr, result.stderr
    assert not (store / "images").exists() or list((store / "images").iterdir()) == []


def test_a_rootfs_tar_imports_as_one_layer(store: Path, busybox_rootfs: str, tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar.gz"
    archive.write_bytes(gz(tree_tar(busybox_rootfs)))
    no_name = sdc(store, "image", "import", str(archive), check=False)
    assert no_name.returncode == 4 and "needs a NAME" in no_name.stderr
    sdc(store, "image", "import", str(archive), "busybox:plain")
    record = json.loads(sdc(store, "image", "inspect", "busybox:plain").stdout)
    assert record["names"] == ["localhost/busybox:plain"] and len(record["layers"]) == 1
    assert record["image_config"]["rootfs"]["diff_ids"] == [digest(tree_tar(busybox_rootfs))]
    # the image has no command: the start says so, and Exec= supplies one
    nocmd = launch_image(store, "busybox:plain")
    assert nocmd.returncode == 4 and "has no Entrypoint or Cmd; set Exec=" in nocmd.stderr
    assert launch_image(store, "busybox:plain", "/bin/cat", "/etc/os-release").stdout.startswith("ID=busybox")


def test_a_docker_save_archive_imports_with_its_tags(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/cat", "/www/index.html"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(base_layer), digest(app_layer())]},
    }
    config_bytes = json.dumps(config).encode()
    files = {
        f"{digest(config_bytes)[7:]}.json": config_bytes,
        "l1/layer.tar": base_layer,
        "l2/layer.tar": app_layer(),
        "manifest.json": json.dumps(
            [
                {
                    "Config": f"{digest(config_bytes)[7:]}.json",
                    "RepoTags": ["saved:3"],
                    "Layers": ["l1/layer.tar", "l2/layer.tar"],
                }
            ]
        ).encode(),
    }
    archive = tmp_path / "saved.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    image_id = sdc(store, "image", "import", str(archive)).stdout.strip()
    assert image_id == digest(config_bytes)[7:]
    assert json.loads(sdc(store, "image", "inspect", "docker.io/library/saved:3").stdout)["id"] == image_id
    assert launch_image(store, "docker.io/library/saved:3").stdout == "hello from the image\n"


def test_an_oci_archive_and_a_manifest_list_pick_this_machine(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "multi")
    amd = layout.image(
        [base_layer, app_layer(b"amd64\n")], config={"Cmd": ["/bin/cat", "/www/index.html"]}, add_to_index=False
    )
    arm = layout.image(
        [base_layer, app_layer(b"arm64\n")],
        config={"Cmd": ["/bin/cat", "/www/index.html"]},
        arch="arm64",
        add_to_index=False,
    )
    layout.image_index([arm, amd], ref="multi:1")
    layout.write()
    archive = tmp_path / "multi.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout.path, arcname=".")
    sdc(store, "image", "import", str(archive), "multi:1")
    assert launch_image(store, "multi:1").stdout == "amd64\n"


def test_start_path_and_pull_never(store: Path, base_layer: bytes, tmp_path: Path) -> None:
    missing = launch_image(store, "127.0.0.1:9/nothing/here:1", options=("--pull", "never"))
    assert missing.returncode == 4
    assert "image 127.0.0.1:9/nothing/here:1 is not in the store" in missing.stderr and "Pull=never" in missing.stderr
    sdc(store, "image", "import", str(web_layout(tmp_path / "oci", base_layer)), "web:1")
    # a start from the store reads the name and the record, and no layer file
    script = (
        "import sys, builtins, os\n"
        "opened = []\n"
        "real = os.open\n"
        "def spy(path, *a, **k):\n"
        "    opened.append(str(path)); return real(path, *a, **k)\n"
        "os.open = spy\n"
        "from sdcontainer.launcher import image_for_start\n"
        "from sdcontainer.store import layer_dirs\n"
        "class Spec: image = 'web:1'; pull = 'missing'; retry = None; retry_delay = None\n"
        "record = image_for_start(Spec())\n"
        "print('\\n'.join(o for o in opened if 'storage' in o)); print(len(layer_dirs(record)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=CHECKOUT,
        env={**BASE_ENV, "SDCONTAINER_STORAGE": str(store)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[-1] == "2"
    assert [Path(p).parent.name for p in out[:-1]] == ["names", "images"], out


def test_rmi_refuses_an_image_a_running_container_uses(
    store: Path, base_layer: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running containers are the launcher's records (written under systemd; the
    real-systemd test starts one); here a record of this very process stands in."""
    from click.testing import CliRunner

    from sdcontainer import cli, state

    image_id = sdc(store, "image", "import", str(web_layout(tmp_path / "oci", base_layer)), "web:1").stdout.strip()
    records = tmp_path / "containers"
    monkeypatch.setattr(state, "STATE_DIR", str(records))
    state.write(
        state.ContainerRecord(
            name="web", unit="web.service", pid=os.getpid(), rootfs=None, image="web:1", image_id=image_id,
            command=("/bin/httpd",), hostname="web", network="none", labels=(), annotations=(),
            started="2026-11-27T17:31:31Z", user=None, group=None, group_add=(), caps=0,
            no_new_privileges=True, working_dir="/", notify="no", notify_socket=None,
        )
    )  # fmt: skip
    result = CliRunner().invoke(cli.cli, ["rmi", "web:1"], standalone_mode=False)
    assert "is used by the running container web.service" in str(result.exception)
    result = CliRunner().invoke(cli.cli, ["image", "prune"])
    assert result.exit_code == 0 and (store / "images" / f"{image_id}.json").exists()
    state.remove("web.service")
    assert not records.exists() or not list(records.iterdir())
    result = CliRunner().invoke(cli.cli, ["rmi", image_id[:12]])
    assert result.exit_code == 0, result.output
    assert not list((store / "layers").iterdir())


# --- a real registry -------------------------------------------------------------------------

_NO_REGISTRY = reg.available()
BASE_BLOB: dict[str, str] = {}  # registry host -> the digest of the busybox base layer's blob


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: str) -> Iterator[reg.Registry]:
    """A registry with test/web:1 and :2 (sharing the busybox base layer), test/multi:1 (a
    manifest list for amd64 and arm64), pushed with skopeo."""
    if _NO_REGISTRY:
        pytest.skip(_NO_REGISTRY)
    top = tmp_path_factory.mktemp("registry")
    registry = reg.Registry(top / "registry")
    base = tree_tar(busybox_rootfs)
    layout = Layout(top / "oci")
    layout.image([base, app_layer(b"web one\n")], config=WEB_CONFIG, ref="web:1")
    layout.image([base, app_layer(b"web two\n")], config=WEB_CONFIG, ref="web:2")
    amd = layout.image(
        [base, app_layer(b"amd64\n")], config={"Cmd": ["/bin/cat", "/www/index.html"]}, add_to_index=False
    )
    arm = layout.image(
        [base, app_layer(b"arm64\n")], config={"Cmd": ["/bin/cat", "/www/index.html"]}, arch="arm64", add_to_index=False
    )
    layout.image_index([arm, amd], ref="multi:1")
    layout.write()
    BASE_BLOB[registry.host] = digest(gz(base))
    for ref, repo in (("web:1", "test/web:1"), ("web:2", "test/web:2"), ("multi:1", "test/multi:1")):
        registry.push(layout.path, ref, repo)
    yield registry
    registry.remove()


def pull_env(registry: reg.Registry) -> dict[str, str]:
    return {"CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf)}


def test_pull_then_pull_again_downloads_nothing(store: Path, registry: reg.Registry) -> None:
    name = f"{registry.host}/test/web:1"
    before = len(registry.requests("GET /v2/test/web/blobs/"))
    first = sdc(store, "pull", name, env=pull_env(registry)).stdout.strip()
    fetched = len(registry.requests("GET /v2/test/web/blobs/")) - before
    assert fetched == 3  # config and two layers
    again = sdc(store, "pull", name, env=pull_env(registry)).stdout.strip()
    assert again == first
    assert len(registry.requests("GET /v2/test/web/blobs/")) - before == fetched  # nothing downloaded
    # the image runs, and :2 adds only its own layer to the store, and downloads only that
    # layer and its config: the base layer the store has is not fetched again
    assert launch_image(store, name).stdout.startswith("run hi a b\n")
    before = len(registry.requests("GET /v2/test/web/blobs/"))
    sdc(store, "pull", f"{registry.host}/test/web:2", env=pull_env(registry))
    assert len(list((store / "layers").iterdir())) == 3
    fetched_now = registry.requests("GET /v2/test/web/blobs/")[before:]
    assert fetched_now and not [line for line in fetched_now if BASE_BLOB[registry.host] in line], fetched_now
    assert launch_image(store, f"{registry.host}/test/web:2").stdout.startswith("run hi a b\n")


def test_a_manifest_list_gives_this_machines_image(store: Path, registry: reg.Registry) -> None:
    sdc(store, "pull", f"{registry.host}/test/web:1", env=pull_env(registry))
    before = len(registry.requests("GET /v2/test/multi/blobs/"))
    sdc(store, "pull", f"{registry.host}/test/multi:1", env=pull_env(registry))
    fetched_now = registry.requests("GET /v2/test/multi/blobs/")[before:]
    assert fetched_now and not [line for line in fetched_now if BASE_BLOB[registry.host] in line]
    assert launch_image(store, f"{registry.host}/test/multi:1").stdout == "amd64\n"
    record = json.loads(sdc(store, "image", "inspect", f"{registry.host}/test/multi:1").stdout)
    assert record["architecture"] == "amd64"


def test_digest_pinning(store: Path, registry: reg.Registry) -> None:
    raw = subprocess.run(
        [reg.SKOPEO, "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/test/web:2"],
        capture_output=True,
        check=True,
    ).stdout
    pinned = f"{registry.host}/test/web@{digest(raw)}"
    image_id = sdc(store, "pull", pinned, env=pull_env(registry)).stdout.strip()
    assert launch_image(store, pinned).stdout.startswith("run hi a b\n")
    assert json.loads(sdc(store, "image", "inspect", pinned).stdout)["id"] == image_id
    wrong = sdc(store, "pull", f"{registry.host}/test/web@sha256:{'0' * 64}", env=pull_env(registry), check=False)
    assert wrong.returncode == 4 and "manifest unknown" in wrong.stderr
    assert "trying again" not in wrong.stderr  # not retried: it cannot get better


def test_missing_images_and_registries_are_clear_errors(store: Path, registry: reg.Registry) -> None:
    result = sdc(store, "pull", f"{registry.host}/test/nope:1", env=pull_env(registry), check=False)
    assert result.returncode == 4
    assert f"pulling {registry.host}/test/nope:1" in result.stderr and "manifest unknown" in result.stderr
    # without registries.conf saying it is insecure: no TLS there, said plainly
    result = sdc(store, "pull", f"{registry.host}/test/web:1", check=False)
    assert result.returncode == 4 and "registry without TLS" in result.stderr
    # nothing listening: retried with the delay asked for, then the error
    port = reg.free_port()
    result = sdc(store, "pull", "--retry", "1", "--retry-delay", "100ms", f"127.0.0.1:{port}/x:1", check=False)
    assert result.returncode == 4 and "connection refused" in result.stderr and "(after 2 tries)" in result.stderr
    assert "trying again in 0.1 s (1/1)" in result.stderr
    # no skopeo on PATH
    result = sdc(store, "pull", f"{registry.host}/test/web:1", env={"PATH": "/nonexistent"}, check=False)
    assert result.returncode == 4 and "install skopeo (apt install skopeo)" in result.stderr
    assert json.loads(sdc(store, "images", "--format", "json").stdout) == []


def test_auth_failure_and_credentials(store: Path, tmp_path: Path, busybox_rootfs: str) -> None:
    if _NO_REGISTRY:
        pytest.skip(_NO_REGISTRY)
    secured = reg.Registry(tmp_path / "secured", user="tester", password="s3cret")
    try:
        layout = Layout(tmp_path / "oci")
        layout.image([app_layer()], config={"Cmd": ["/bin/true"]}, ref="small:1")
        layout.write()
        secured.push(layout.path, "small:1", "test/small:1", creds="tester:s3cret")
        env = pull_env(secured)
        result = sdc(store, "pull", f"{secured.host}/test/small:1", env=env, check=False)
        assert result.returncode == 4 and "authentication required" in result.stderr, result.stderr
        assert "trying again" not in result.stderr
        import base64

        auth = tmp_path / "auth.json"
        token = base64.b64encode(b"tester:s3cret").decode()
        auth.write_text(json.dumps({"auths": {secured.host: {"auth": token}}}))
        sdc(store, "pull", f"{secured.host}/test/small:1", env={**env, "REGISTRY_AUTH_FILE": str(auth)})
    finally:
        secured.remove()


def test_concurrent_pulls_of_one_image_do_the_work_once(store: Path, registry: reg.Registry) -> None:
    name = f"{registry.host}/test/web:1"
    before = len(registry.requests("GET /v2/test/web/blobs/"))
    results: list[Any] = []

    def pull() -> None:
        results.append(launch_image(store, name, "/bin/true", options=("--entrypoint", ""), env=pull_env(registry)))

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert len(registry.requests("GET /v2/test/web/blobs/")) - before == 3
    assert len(list((store / "layers").iterdir())) == 2
    assert list((store / "tmp").iterdir()) == [] and list((store / "staging").iterdir()) == []


@pytest.mark.parametrize("api", ["fsconfig", "mount"])
def test_layers_mount_with_either_mount_api(api: str, tmp_path: Path) -> None:
    """rootfs.mount_layers: one lowerdir+ per layer, or (kernels before 6.8) lowerdir= with the
    layers' names relative to the store; the upper layer wins, then the top lower layer."""
    layers = tmp_path / "layers"
    for name, content in (("a" * 64, "base"), ("b" * 64, "top")):
        (layers / name).mkdir(parents=True)
        (layers / name / "who").write_text(content)
        (layers / name / f"only-{content}").write_text(content)
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    script = (
        f"import os, sys; sys.path.insert(0, {str(CHECKOUT)!r})\n"
        "from sdcontainer import linux, rootfs\n"
        "if sys.argv[1] == 'mount':\n"
        "    def no_fsopen(fstype): raise OSError(38, 'ENOSYS')\n"
        "    linux.fsopen = no_fsopen\n"
        "linux.mount(None, '/', None, linux.MS_REC | linux.MS_PRIVATE)\n"
        "top = sys.argv[2]\n"
        "rootfs.mount_layers([f'{top}/layers/' + 'a' * 64, f'{top}/layers/' + 'b' * 64], f'{top}/upper', f'{top}/work', f'{top}/merged')\n"
        "print(open(f'{top}/merged/who').read(), sorted(os.listdir(f'{top}/merged')))\n"
        "print([l for l in open('/proc/self/mountinfo') if l.split()[4].endswith('/merged')][0])\n"
    )
    out = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", script, api, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[0] == "top ['only-base', 'only-top', 'who']", out
    assert "nodev" in out.splitlines()[1]
    if api == "mount":
        assert f"lowerdir={'b' * 64}:{'a' * 64}," in out


def test_leftovers_of_a_crashed_writer_are_never_used_and_are_cleaned(
    store: Path, base_layer: bytes, tmp_path: Path
) -> None:
    """A writer killed mid-unpack leaves tmp/<random>/ (and a puller its staging/<pid>-...):
    nothing names them, the next writer removes them, and the layer is unpacked again."""
    layout = web_layout(tmp_path / "oci", base_layer)
    for sub in ("tmp/0123456789abcdef/etc", "staging/999999999-dead/blobs", "layers", "images", "names"):
        (store / sub).mkdir(parents=True)
    (store / "tmp/0123456789abcdef/etc/passwd").write_text("half a layer")
    # a killed unpack of the base layer: its diffID's directory does not exist yet
    assert not (store / "layers" / digest(base_layer)[7:]).exists()
    sdc(store, "image", "import", str(layout), "web:1")
    assert list((store / "tmp").iterdir()) == []
    assert (store / "layers" / digest(base_layer)[7:] / "etc/passwd").read_text().startswith("root:")
    from sdcontainer.images import _staging_dir

    fresh = _staging_dir(str(store))
    assert os.listdir(store / "staging") == [os.path.basename(fresh)]  # the dead puller's is gone


def test_pull_policies_at_start(store: Path, registry: reg.Registry, tmp_path: Path, base_layer: bytes) -> None:
    """Pull=missing never asks the registry once the image is stored; Pull=always asks each
    start and copies only a tag that moved; Pull=newer falls back to the stored image when
    the registry cannot be used, where Pull=always fails."""
    name = f"{registry.host}/test/moving:1"
    layout = Layout(tmp_path / "oci")
    config = {"Cmd": ["/bin/cat", "/www/index.html"]}
    layout.image([base_layer, app_layer(b"first\n")], config=config, ref="first")
    layout.image([base_layer, app_layer(b"second\n")], config=config, ref="second")
    layout.write()
    registry.push(layout.path, "first", "test/moving:1")

    def served(policy: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return launch_image(store, name, options=("--pull", policy), env=env or pull_env(registry))

    def asked() -> int:
        return len(registry.requests("GET /v2/test/moving/manifests/"))

    def copied() -> int:
        return len(registry.requests("GET /v2/test/moving/blobs/"))

    assert served("missing").stdout == "first\n"
    manifests, blobs = asked(), copied()
    assert served("missing").stdout == "first\n"
    assert asked() == manifests  # not even asked
    assert served("always").stdout == "first\n"
    assert asked() == manifests + 1 and copied() == blobs  # asked, and nothing copied
    registry.push(layout.path, "second", "test/moving:1")
    assert served("missing").stdout == "first\n"  # missing: what is stored
    assert served("always").stdout == "second\n"  # always: the tag moved
    images = json.loads(sdc(store, "images", "--format", "json").stdout)
    assert len(images) == 2 and sorted(n for i in images for n in i["names"]) == [name]  # the old one unnamed
    assert "removed image" in sdc(store, "image", "prune").stdout
    assert len(json.loads(sdc(store, "images", "--format", "json").stdout)) == 1
    # the registry cannot be used (registries.conf no longer says it has no TLS)
    unusable = tmp_path / "plain.conf"
    unusable.write_text("")
    newer = served("newer", {"CONTAINERS_REGISTRIES_CONF": str(unusable)})
    assert newer.stdout == "second\n" and "using the stored image" in newer.stderr, newer.stderr
    always = served("always", {"CONTAINERS_REGISTRIES_CONF": str(unusable)})
    assert always.returncode == 4 and "registry without TLS" in always.stderr
