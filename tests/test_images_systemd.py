"""Image= against a real systemd: a .container unit whose image is pulled from a registry at
`systemctl start`, in the testbed (tests/testbed.py).

The testbed has a network namespace of its own (loopback only), so the registry runs inside
it: Debian's docker-registry, on 127.0.0.1:5000 of the testbed, with images pushed by skopeo
from an OCI layout written here and copied in. The store is the installed default,
/var/lib/sdcontainer/storage, a tmpfs of the testbed's (a real file system for the layers'
whiteouts, which an overlay would take for its own)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests import registry as reg
from tests.containers import add_container, wait_for
from tests.layers import Layout, member, tar_bytes, tree_tar
from tests.testbed import Testbed

pytestmark = pytest.mark.skipif(reg.available() is not None, reason=reg.available() or "")

REGISTRY = "127.0.0.1:5000"
STORE = "/var/lib/sdcontainer/storage"

SERVE = b"""#!/bin/sh
echo "$GREETING from $(pwd)" > /www/greeting
exec /bin/httpd -f -p "$PORT" -h /www
"""


def web_layer(page: bytes) -> bytes:
    return tar_bytes(
        [
            member("app/", tarfile.DIRTYPE, mode=0o755),
            member("app/serve.sh", data=SERVE, mode=0o755),
            member("www/", tarfile.DIRTYPE, mode=0o755),
            member("www/index.html", data=page),
            member("etc/.wh.os-release"),
        ]
    )


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    bed = installed_testbed
    top = tmp_path_factory.mktemp("images-systemd")
    base = tree_tar(busybox_rootfs)
    layout = Layout(top / "oci")
    config = {"Entrypoint": ["/app/serve.sh"], "Env": ["GREETING=hello", "PORT=8081"], "WorkingDir": "/www"}
    layout.image([base, web_layer(b"web one\n")], config=config, ref="web:1")
    layout.image(
        [base, web_layer(b"web two\n")], config={**config, "Env": ["GREETING=bonjour", "PORT=8082"]}, ref="web:2"
    )
    layout.write()
    bed.copy_in(str(layout.path), "/srv/oci")
    bed.write_file("/srv/registry/config.yml", reg.config_text("/srv/registry/data", 5000))
    bed.write_file(
        "/etc/containers/registries.conf.d/50-sdcontainer-test.conf",
        f'[[registry]]\nlocation = "{REGISTRY}"\ninsecure = true\n',
    )
    bed.popen([reg.REGISTRY, "serve", "/srv/registry/config.yml"], stdout=open(top / "registry.log", "wb"), stderr=-2)  # noqa: SIM115
    wait_for(
        lambda: bed.run(["busybox", "wget", "-qO-", f"http://{REGISTRY}/v2/"], check=False).returncode == 0, timeout=30
    )
    for ref in ("web:1", "web:2"):
        bed.run(
            [reg.SKOPEO, "copy", "--dest-tls-verify=false", f"oci:/srv/oci:{ref}", f"docker://{REGISTRY}/test/{ref}"]
        )
    return bed


def page(bed: Testbed, port: int, path: str) -> str:
    return wait_for(lambda: bed.run(["busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/{path}"], check=False).stdout)


def test_a_unit_with_image_pulls_and_runs_it(bed: Testbed) -> None:
    add_container(
        bed, "web1", f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={REGISTRY}/test/web:1\nNetwork=host\n"
    )
    unit_text = bed.run(["systemctl", "cat", "web1.service"]).stdout
    assert f"--image {REGISTRY}/test/web:1" in unit_text and "After=network-online.target" in unit_text
    bed.start_unit("web1.service")
    assert bed.show("web1.service", "ActiveState") == "active"
    # the image's entrypoint, its Env and its WorkingDir
    assert page(bed, 8081, "greeting") == "hello from /www\n"
    assert page(bed, 8081, "index.html") == "web one\n"
    journal = bed.journal("web1.service")
    assert f"pulling image {REGISTRY}/test/web:1 (Pull=missing)" in journal, journal
    # the container's init is the unit's main process, as with Rootfs=
    main_pid = bed.show("web1.service", "MainPID")
    assert bed.read_file(f"/proc/{main_pid}/comm").strip() == "httpd"
    records = json.loads(bed.run(["sdcontainer", "list", "--format", "json"]).stdout)
    (record,) = [r for r in records if r["unit"] == "web1.service"]
    assert record["image"] == f"{REGISTRY}/test/web:1" and len(record["image_id"]) == 64
    # in use: rmi refuses, naming the unit
    refused = bed.run(["sdcontainer", "rmi", f"{REGISTRY}/test/web:1"], check=False)
    assert refused.returncode == 4 and "used by the running container web1.service" in refused.stderr

    # a second image with the same base: its unit starts, and the base is stored once
    add_container(
        bed, "web2", f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={REGISTRY}/test/web:2\nNetwork=host\n"
    )
    bed.start_unit("web2.service")
    assert page(bed, 8082, "greeting") == "bonjour from /www\n"
    layers = bed.run(["ls", f"{STORE}/layers"]).stdout.split()
    assert len(layers) == 3, layers
    images = json.loads(bed.run(["sdcontainer", "images", "--format", "json"]).stdout)
    assert sorted(n for i in images for n in i["names"]) == [f"{REGISTRY}/test/web:1", f"{REGISTRY}/test/web:2"]

    # a restart starts from the store: no second pull
    bed.systemctl("restart", "web1.service")
    assert page(bed, 8081, "index.html") == "web one\n"
    assert bed.journal("web1.service").count("pulling image") == 1

    for unit in ("web1.service", "web2.service"):
        bed.systemctl("stop", unit)
    removed = bed.run(["sdcontainer", "rmi", f"{REGISTRY}/test/web:1"]).stdout
    assert "deleted" in removed
    assert len(bed.run(["ls", f"{STORE}/layers"]).stdout.split()) == 2


def test_pull_never_and_a_missing_image_fail_the_start_clearly(bed: Testbed) -> None:
    add_container(
        bed, "nopull", f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={REGISTRY}/test/absent:1\nPull=never\n"
    )
    bed.systemctl("start", "nopull.service", check=False)
    wait_for(lambda: bed.show("nopull.service", "ActiveState") == "failed")
    assert "is not in the store" in bed.journal("nopull.service")
    add_container(bed, "absent", f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={REGISTRY}/test/absent:1\n")
    bed.systemctl("start", "absent.service", check=False)
    wait_for(lambda: bed.show("absent.service", "ActiveState") == "failed")
    journal = bed.journal("absent.service")
    assert "manifest unknown" in journal, journal
    assert bed.show("absent.service", "ExecMainStatus") == "4"


def test_pull_ahead_of_time_and_run(bed: Testbed, tmp_path: Path) -> None:
    out = bed.run(["sdcontainer", "pull", f"{REGISTRY}/test/web:1"]).stdout.strip()
    assert len(out) == 64
    again = bed.run(["sdcontainer", "pull", f"{REGISTRY}/test/web:1"])
    assert again.stdout.strip() == out
    # sdcontainer run takes an image too (a transient unit, attached)
    ran = bed.run(["sdcontainer", "run", "--entrypoint", "", f"{REGISTRY}/test/web:1", "/bin/cat", "/www/index.html"])
    assert ran.stdout == "web one\n", ran.stderr


def test_a_pull_at_start_is_not_killed_by_the_start_timeout(bed: Testbed) -> None:
    """TimeoutStartSec=2s, and a pull that takes longer (nothing listens, three retries a
    second apart): the launcher's EXTEND_TIMEOUT_USEC= keeps the start alive until the pull
    fails for its own reason."""
    add_container(
        bed,
        "slowpull",
        "[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=127.0.0.1:9/test/web:1\nRetry=3\nRetryDelay=1s\n"
        "[Service]\nTimeoutStartSec=2s\n",
    )
    bed.systemctl("start", "slowpull.service", check=False)
    wait_for(lambda: bed.show("slowpull.service", "ActiveState") == "failed", timeout=60)
    journal = bed.journal("slowpull.service")
    assert bed.show("slowpull.service", "Result") == "exit-code", journal
    assert "(after 4 tries)" in journal and "connection refused" in journal, journal
