"""Named volumes against a real systemd (tests/testbed.py): Volume=, Mount= and .volume files
in generated units, the launcher making, seeding, chowning and mounting them, and
`sdcontainer volume`. The volumes live in the testbed's own store,
/var/lib/sdcontainer/storage/volumes (a tmpfs of the testbed's)."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.containers import ROOTFS, UNITS, add_container, container, wait_for
from tests.layers import Layout, member, tar_bytes, tree_tar
from tests.testbed import Testbed

VOLUMES = "/var/lib/sdcontainer/storage/volumes"
IMAGE = "localhost/seed:1"


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    bed = installed_testbed
    bed.copy_in(busybox_rootfs, ROOTFS)
    # an image whose /seed a new volume is seeded from; its symlinks point out of the image
    seed = tar_bytes(
        [
            member("seed/", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000),
            member("seed/app.conf", data=b"from the image\n", mode=0o640, uid=1000, gid=1000),
            member("seed/sub/", tarfile.DIRTYPE, mode=0o755),
            member("seed/sub/deep", data=b"deep\n"),
            member("seed/passwd", tarfile.SYMTYPE, linkname="/etc/passwd"),
            member("seed/up", tarfile.SYMTYPE, linkname="../../../../../../etc"),
        ]
    )
    layout = Layout(tmp_path_factory.mktemp("volumes-systemd") / "oci")
    layout.image([tree_tar(busybox_rootfs), seed], config={"Cmd": ["/bin/sh"]}, ref="seed:1")
    layout.write()
    bed.copy_in(str(layout.path), "/srv/oci")
    bed.run(["sdcontainer", "image", "import", "/srv/oci", "seed:1"])
    return bed


def running(bed: Testbed, unit: str) -> None:
    bed.systemctl("reset-failed", unit, check=False)
    bed.systemctl("start", unit, check=False)
    assert bed.show(unit, "ActiveState") == "active", bed.journal(unit)


def volume_file(bed: Testbed, name: str, path: str) -> str:
    return wait_for(
        lambda: bed.exists(f"{VOLUMES}/{name}/_data/{path}") and bed.read_file(f"{VOLUMES}/{name}/_data/{path}")
    )


def test_a_named_volume_outlives_its_container_and_a_second_one_sees_it(bed: Testbed) -> None:
    add_container(
        bed, "writer", container("/bin/sh -c 'echo $$ >> /data/runs; exec sleep 1000'", "Volume=data:/data\n")
    )
    unit = bed.run(["systemctl", "cat", "writer.service"]).stdout
    assert "--volume data:/data:rw" in unit and "RequiresMountsFor=" in unit
    running(bed, "writer.service")
    assert len(volume_file(bed, "data", "runs").split()) == 1
    # in use: rm and prune refuse it, naming the unit; -f stops nothing
    for argv in (["rm", "data"], ["rm", "-f", "data"]):
        refused = bed.run(["sdcontainer", "volume", *argv], check=False)
        assert refused.returncode != 0 and "volume data is in use by writer.service" in refused.stderr, refused
    assert "data" not in bed.run(["sdcontainer", "volume", "prune"]).stdout
    listed = json.loads(bed.run(["sdcontainer", "volume", "ls", "--format", "json"]).stdout)
    assert [(v["name"], v["used_by"]) for v in listed if v["name"] == "data"] == [("data", ["writer.service"])]
    assert "writer.service" in bed.run(["sdcontainer", "volume", "ls"]).stdout
    # a restart: the same volume, the data still there
    bed.systemctl("restart", "writer.service")
    wait_for(lambda: len(bed.read_file(f"{VOLUMES}/data/_data/runs").split()) == 2)
    bed.systemctl("stop", "writer.service")
    # the container is gone, the volume is not; another container sees what the first wrote
    add_container(
        bed, "reader", container("/bin/sh -c 'cat /d/runs > /d/seen; exec sleep 1000'", "Volume=data:/d:U\nUser=4321\n")
    )
    running(bed, "reader.service")
    wait_for(lambda: bed.exists(f"{VOLUMES}/data/_data/seen"))
    assert len(bed.read_file(f"{VOLUMES}/data/_data/seen").split()) == 2
    # :U gave the volume to the container's user (4321), who could write into it
    owners = bed.run(["stat", "-c", "%u", f"{VOLUMES}/data/_data", f"{VOLUMES}/data/_data/runs"]).stdout.split()
    assert owners == ["4321", "4321"]
    bed.systemctl("stop", "reader.service")
    assert bed.run(["sdcontainer", "volume", "rm", "data"]).stdout.strip() == "data"
    assert not bed.exists(f"{VOLUMES}/data")


def test_a_volume_file_with_owner_and_a_seeded_volume_from_the_image(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/owned.volume", "[Volume]\nVolumeName=owned\nUser=1234\nGroup=5678\nLabel=app=test\n")
    bed.write_file(f"{UNITS}/seeded.volume", "[Volume]\n")  # systemd-seeded, copied up from the image
    add_container(
        bed,
        "app",
        f"[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage={IMAGE}\nPull=never\n"
        "Exec=/bin/sh -c 'ls -ln /o > /o/listing; exec sleep 1000'\n"
        "Volume=owned.volume:/o\nMount=type=volume,source=seeded.volume,destination=/seed\nVolume=fresh:/seed2:nocopy\n",
    )
    unit = bed.run(["systemctl", "cat", "app.service"]).stdout
    assert "Requires=owned-volume.service seeded-volume.service" in unit, unit
    running(bed, "app.service")
    assert bed.show("owned-volume.service", "ActiveState") == "active"
    assert bed.show("owned-volume.service", "SubState") == "exited"  # RemainAfterExit=yes
    assert bed.run(["stat", "-c", "%u:%g %a", f"{VOLUMES}/owned/_data"]).stdout.split() == ["1234:5678", "755"]
    inspected = json.loads(bed.run(["sdcontainer", "volume", "inspect", "owned"]).stdout)
    assert inspected[0]["labels"] == {"app": "test"} and inspected[0]["used_by"] == ["app.service"]
    # seeded from the image: content, modes, owners, and the symlinks as symlinks
    data = f"{VOLUMES}/systemd-seeded/_data"
    assert volume_file(bed, "systemd-seeded", "app.conf") == "from the image\n"
    assert bed.read_file(f"{data}/sub/deep") == "deep\n"
    assert bed.run(["stat", "-c", "%u:%g %a", data, f"{data}/app.conf"]).stdout.split() == [
        "1000:1000",
        "750",
        "1000:1000",
        "640",
    ]
    assert bed.run(["readlink", f"{data}/passwd", f"{data}/up"]).stdout.split() == [
        "/etc/passwd",
        "../../../../../../etc",
    ]
    assert bed.run(["ls", "-A", f"{VOLUMES}/fresh/_data"]).stdout == ""  # nocopy
    # seeded once: what the container removes stays removed after a restart
    bed.run(["rm", f"{data}/app.conf"])
    bed.systemctl("restart", "app.service")
    wait_for(lambda: bed.show("app.service", "ActiveState") == "active")
    assert not bed.exists(f"{data}/app.conf")
    bed.systemctl("stop", "app.service")


def test_a_device_backed_tmpfs_volume_and_a_variable_source(bed: Testbed) -> None:
    bed.write_file(f"{UNITS}/scratch.volume", "[Volume]\nDevice=tmpfs\nType=tmpfs\nOptions=size=2m,mode=0700\n")
    bed.run(["mkdir", "-p", "/srv/host-data"])
    add_container(
        bed,
        "tmpuser",
        container(
            "/bin/sh -c 'grep \" /scratch \" /proc/mounts > /host/mounts; exec sleep 1000'",
            "Volume=scratch.volume:/scratch\nVolume=${HOSTDIR}:/host\n",
            service="Environment=HOSTDIR=/srv/host-data",
        ),
    )
    unit = bed.run(["systemctl", "cat", "tmpuser.service"]).stdout
    assert '"${HOSTDIR}:/host:rw"' in unit, unit  # left for systemd to expand, as Quadlet's -v
    running(bed, "tmpuser.service")
    mounts = wait_for(lambda: bed.exists("/srv/host-data/mounts") and bed.read_file("/srv/host-data/mounts"))
    fields = mounts.split()
    assert fields[1:3] == ["/scratch", "tmpfs"], mounts
    assert "size=2048k" in fields[3] and "mode=700" in fields[3] and "nosuid" in fields[3] and "nodev" in fields[3]
    # nothing of it on the host: the tmpfs is the container's own
    assert "/scratch" not in bed.run(["cat", "/proc/self/mountinfo"]).stdout
    bed.systemctl("stop", "tmpuser.service")


def test_an_anonymous_volume_is_seeded_writable_and_gone_with_the_container(bed: Testbed) -> None:
    """Volume=/etc with ReadOnly=yes: a fresh copy of the rootfs's /etc, writable, in memory."""
    bed.run(["mkdir", "-p", "/srv/anon-out"])
    before = bed.run(["sdcontainer", "volume", "ls"]).stdout
    add_container(
        bed,
        "anon",
        container(
            "/bin/sh -c 'echo new > /etc/new && cat /etc/new /etc/passwd > /out/seen; exec sleep 1000'",
            "ReadOnly=yes\nVolume=/etc\nVolume=/srv/anon-out:/out\n",
        ),
    )
    running(bed, "anon.service")
    seen = wait_for(lambda: bed.exists("/srv/anon-out/seen") and bed.read_file("/srv/anon-out/seen"))
    assert seen.startswith("new\nroot:"), seen
    assert not bed.exists(f"{ROOTFS}/etc/new")  # the rootfs is never written
    assert bed.run(["sdcontainer", "volume", "ls"]).stdout == before  # not a named volume
    bed.systemctl("stop", "anon.service")


def test_volume_commands_and_bad_names(bed: Testbed) -> None:
    assert bed.run(["sdcontainer", "volume", "create", "--label", "k=v", "made"]).stdout.strip() == "made"
    again = bed.run(["sdcontainer", "volume", "create", "made"], check=False)
    assert again.returncode != 0 and "volume made exists already" in again.stderr
    bed.run(["sdcontainer", "volume", "create", "--ignore", "made"])
    for name in ("..", "a/b", "../../etc"):
        refused = bed.run(["sdcontainer", "volume", "create", name], check=False)
        assert refused.returncode != 0 and "not a valid volume name" in refused.stderr, refused
    assert not bed.exists("/var/lib/sdcontainer/storage/etc")
    # a container whose variable expands to a hostile name fails to start, saying why
    add_container(bed, "hostile", container("/bin/true", "Volume=${NAME}:/x\n", service="Environment=NAME=.hidden"))
    bed.systemctl("start", "hostile.service", check=False)
    wait_for(lambda: bed.show("hostile.service", "ActiveState") == "failed")
    assert "'.hidden' is neither an absolute path nor a volume name" in bed.journal("hostile.service")
    missing = bed.run(["sdcontainer", "volume", "rm", "nothere"], check=False)
    assert missing.returncode != 0 and "no such volume: nothere" in missing.stderr
    bed.run(["sdcontainer", "volume", "rm", "-f", "nothere"])
    assert "removed volume made" in bed.run(["sdcontainer", "volume", "prune"]).stdout
