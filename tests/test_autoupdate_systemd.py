""".image files and AutoUpdate= against a real systemd (tests/testbed.py), with a real registry
(Debian's docker-registry) on 127.0.0.1:5000 inside the testbed's own network namespace.

A .image file's NAME-image.service pulls and stays active, and a .container with
Image=NAME.image requires it and runs that image without a pull of its own. `sdcontainer
auto-update` finds a new image pushed under the same tag, pulls it and restarts the unit; an
image whose entrypoint fails is rolled back to the one before; --dry-run changes nothing."""

from __future__ import annotations

import json
import tarfile
import time
from typing import Any

import pytest

from tests import registry as reg
from tests.containers import add_container, wait_for
from tests.layers import Layout, member, tar_bytes, tree_tar
from tests.testbed import Testbed

pytestmark = pytest.mark.skipif(reg.available() is not None, reason=reg.available() or "")

REGISTRY = "127.0.0.1:5000"
UNITS = "/etc/sdcontainer"

SERVE = b"""#!/bin/sh
exec /bin/httpd -f -p "$PORT" -h /www
"""


def page_layer(page: bytes) -> bytes:
    return tar_bytes(
        [
            member("app/", tarfile.DIRTYPE, mode=0o755),
            member("app/serve.sh", data=SERVE, mode=0o755),
            member("www/", tarfile.DIRTYPE, mode=0o755),
            member("www/index.html", data=page),
        ]
    )


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    bed = installed_testbed
    top = tmp_path_factory.mktemp("autoupdate-systemd")
    base = tree_tar(busybox_rootfs)
    layout = Layout(top / "oci")
    config = {"Entrypoint": ["/app/serve.sh"], "Env": ["PORT=8090"]}
    layout.image([base, page_layer(b"one\n")], config=config, ref="one")
    layout.image([base, page_layer(b"two\n")], config=config, ref="two")
    # an update that starts and fails at once: its entrypoint exits 1
    layout.image([base, page_layer(b"broken\n")], config={**config, "Entrypoint": ["/bin/false"]}, ref="broken")
    layout.write()
    bed.copy_in(str(layout.path), "/srv/oci")
    for name, text in (("one", b"one\n"), ("two", b"two\n")):  # one image each, to import
        single = Layout(top / f"oci-{name}")
        single.image([base, page_layer(text)], config=config, ref=name)
        single.write()
        bed.copy_in(str(single.path), f"/srv/oci-{name}")
    bed.write_file("/srv/registry/config.yml", reg.config_text("/srv/registry/data", 5000))
    bed.write_file(
        "/etc/containers/registries.conf.d/50-sdcontainer-test.conf",
        f'[[registry]]\nlocation = "{REGISTRY}"\ninsecure = true\n',
    )
    bed.popen([reg.REGISTRY, "serve", "/srv/registry/config.yml"], stdout=open(top / "registry.log", "wb"), stderr=-2)  # noqa: SIM115
    wait_for(
        lambda: bed.run(["busybox", "wget", "-qO-", f"http://{REGISTRY}/v2/"], check=False).returncode == 0, timeout=30
    )
    return bed


def push(bed: Testbed, ref: str, repo: str) -> None:
    bed.run([reg.SKOPEO, "copy", "--dest-tls-verify=false", f"oci:/srv/oci:{ref}", f"docker://{REGISTRY}/{repo}"])


def page(bed: Testbed, port: int) -> str:
    return wait_for(lambda: bed.run(["busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/"], check=False).stdout)


def record_of(bed: Testbed, unit: str) -> dict[str, Any]:
    records = json.loads(bed.run(["sdcontainer", "list", "--format", "json"]).stdout)
    (found,) = [r for r in records if r["unit"] == unit]
    return dict(found)


def stored_id(bed: Testbed, name: str) -> str:
    return str(json.loads(bed.run(["sdcontainer", "image", "inspect", name]).stdout)["id"])


def auto_update(bed: Testbed, *args: str, status: int = 0) -> dict[str, dict[str, str]]:
    started = time.monotonic()
    done = bed.run(["sdcontainer", "auto-update", "--format", "json", *args], check=False)
    # how long each run took, for the record (pytest -s shows it); no threshold
    print(f"\nsdcontainer auto-update {' '.join(args)}: {time.monotonic() - started:.2f} s")
    assert done.returncode == status, (done.stdout, done.stderr)
    return {report["unit"]: report for report in json.loads(done.stdout)}


def test_an_image_file_pulls_and_its_container_runs_that_image(bed: Testbed) -> None:
    push(bed, "one", "test/site:v1")
    bed.write_file(
        f"{UNITS}/site.image",
        f"[Image]\nImage=docker://{REGISTRY}/test/site:v1\nImageTag=site:prod\nRetry=1\nRetryDelay=1s\n",
    )
    add_container(bed, "app", "[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=site.image\nNetwork=host\n")
    unit_text = bed.run(["systemctl", "cat", "app.service"]).stdout
    assert "Requires=site-image.service" in unit_text and "After=site-image.service" in unit_text, unit_text
    assert "--image site:prod --pull never" in unit_text, unit_text
    image_unit = bed.run(["systemctl", "cat", "site-image.service"]).stdout
    assert "Type=oneshot" in image_unit and "RemainAfterExit=yes" in image_unit, image_unit
    assert bed.show("site-image.service", "ActiveState") == "inactive"

    bed.start_unit("app.service")  # pulls through site-image.service first
    assert bed.show("site-image.service", "ActiveState") == "active"  # and stays so
    assert page(bed, 8090) == "one\n"
    # the store has the image under both names; the container runs it by ImageTag=
    pulled = stored_id(bed, f"{REGISTRY}/test/site:v1")
    assert stored_id(bed, "localhost/site:prod") == pulled
    assert record_of(bed, "app.service")["image_id"] == pulled
    assert pulled in bed.journal("site-image.service")
    assert "pulling image" not in bed.journal("app.service")  # no pull of its own
    bed.systemctl("stop", "app.service")


def test_a_bad_image_file_fails_its_service_naming_the_line(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/bad.image", "[Image]\nImage=localhost/x\nDecryptionKey=/k\n")
    bed.daemon_reload()
    bed.systemctl("start", "bad-image.service", check=False)
    wait_for(lambda: bed.show("bad-image.service", "ActiveState") == "failed")
    journal = bed.journal("bad-image.service")
    assert f"{UNITS}/bad.image:3: key DecryptionKey= in [Image]" in journal, journal


def test_auto_update_registry_updates_rolls_back_and_dry_run_changes_nothing(bed: Testbed) -> None:
    push(bed, "one", "test/upd:latest")
    add_container(
        bed,
        "upd",
        f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={REGISTRY}/test/upd:latest\n"
        "AutoUpdate=registry\nNetwork=host\nEnvironment=PORT=8091\n",
    )
    bed.start_unit("upd.service")
    assert page(bed, 8091) == "one\n"
    first = record_of(bed, "upd.service")
    assert first["labels"]["io.containers.autoupdate"] == "registry"
    reports = auto_update(bed)
    assert reports["upd.service"]["updated"] == "false", reports
    assert reports["upd.service"]["policy"] == "registry"

    # a new image under the same tag: --dry-run sees it and changes nothing
    push(bed, "two", "test/upd:latest")
    main_pid = bed.show("upd.service", "MainPID")
    reports = auto_update(bed, "--dry-run")
    assert reports["upd.service"]["updated"] == "pending", reports
    assert bed.show("upd.service", "MainPID") == main_pid
    assert stored_id(bed, f"{REGISTRY}/test/upd:latest") == first["image_id"]  # nothing pulled
    assert page(bed, 8091) == "one\n"

    reports = auto_update(bed)
    assert reports["upd.service"]["updated"] == "true", reports
    assert page(bed, 8091) == "two\n"
    second = record_of(bed, "upd.service")
    assert second["image_id"] != first["image_id"]
    assert stored_id(bed, f"{REGISTRY}/test/upd:latest") == second["image_id"]
    assert bed.show("upd.service", "MainPID") != main_pid

    # an update that fails to run: rolled back to the image before, which runs again
    push(bed, "broken", "test/upd:latest")
    reports = auto_update(bed, status=1)
    assert reports["upd.service"]["updated"] == "rolled back", reports
    assert bed.show("upd.service", "ActiveState") == "active"
    assert page(bed, 8091) == "two\n"
    assert record_of(bed, "upd.service")["image_id"] == second["image_id"]
    assert stored_id(bed, f"{REGISTRY}/test/upd:latest") == second["image_id"]

    # without rollback the unit is left failed, and reported so
    reports = auto_update(bed, "--no-rollback", status=1)
    assert reports["upd.service"]["updated"] == "failed", reports
    assert bed.show("upd.service", "ActiveState") != "active"
    bed.systemctl("reset-failed", "upd.service", check=False)


def test_auto_update_local_restarts_on_the_store_image(bed: Testbed) -> None:
    bed.run(["sdcontainer", "image", "import", "/srv/oci-one", "localhost/loc:1"])
    add_container(
        bed,
        "loc",
        "[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=localhost/loc:1\n"
        "AutoUpdate=local\nNetwork=host\nEnvironment=PORT=8092\n",
    )
    bed.start_unit("loc.service")
    assert page(bed, 8092) == "one\n"
    first = record_of(bed, "loc.service")["image_id"]
    assert auto_update(bed)["loc.service"]["updated"] == "false"
    # the store's image of that name changes: no registry is asked
    bed.run(["sdcontainer", "image", "import", "/srv/oci-two", "localhost/loc:1"])
    new = stored_id(bed, "localhost/loc:1")
    assert new != first
    assert auto_update(bed, "--dry-run")["loc.service"]["updated"] == "pending"
    assert record_of(bed, "loc.service")["image_id"] == first
    assert auto_update(bed)["loc.service"]["updated"] == "true"
    assert page(bed, 8092) == "two\n"
    assert record_of(bed, "loc.service")["image_id"] == new


def test_make_install_installs_the_daily_timer_and_its_service_runs(bed: Testbed) -> None:
    timer = bed.run(["systemctl", "cat", "sdcontainer-auto-update.timer"]).stdout
    assert "OnCalendar=daily" in timer and "WantedBy=timers.target" in timer, timer
    service = bed.run(["systemctl", "cat", "sdcontainer-auto-update.service"]).stdout
    assert "ExecStart=/usr/local/bin/sdcontainer auto-update" in service, service
    bed.systemctl("start", "sdcontainer-auto-update.service")  # a oneshot: returns when it is done
    assert bed.show("sdcontainer-auto-update.service", "Result") == "success"
    assert "loc.service" in bed.journal("sdcontainer-auto-update.service")
