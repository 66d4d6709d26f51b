"""Named volumes on the host: the store (sdcontainer.volumes), the walks over a volume's
content that must never leave it (copy-up, :U), and `.volume` files (sdcontainer.volumefile).
The containers that use volumes are tested against real systemd in test_volumes_systemd.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sdcontainer import state, volumes
from sdcontainer.errors import ConfigError, LaunchError, UsageError
from sdcontainer.generator import find_sources, generate
from sdcontainer.sources import Known, Source
from sdcontainer.unitfile import parse_text
from sdcontainer.volumefile import render

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDCONTAINER_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setattr(state, "STATE_DIR", str(tmp_path / "run"))
    return tmp_path


# --- names and the store -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/etc", "../x", ".hidden", "-rf", "a b", "x\n", "", "a" * 201, "é"])
def test_a_hostile_name_is_refused(store: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a valid volume name"):
        volumes.check_name(name)
    with pytest.raises(UsageError):
        volumes.remove(name)
    with pytest.raises(UsageError):
        volumes.inspect(name)


def test_create_read_list_remove(store: Path) -> None:
    made = volumes.ensure("data")
    again = volumes.ensure("data")  # made on the first use only
    assert again == made
    top = store / "storage" / "volumes"
    assert stat.S_IMODE(top.stat().st_mode) == 0o700  # the content is root's alone
    assert (top / "data" / "_data").is_dir()
    assert volumes.names() == ["data"]
    listed = volumes.listing()
    assert [(v["name"], v["mountpoint"], v["used_by"]) for v in listed] == [("data", str(top / "data" / "_data"), [])]
    with pytest.raises(UsageError, match="volume data exists already"):
        volumes.create(volumes.Volume(name="data", created=0))
    assert volumes.remove("data")
    assert volumes.names() == [] and not (top / "data").exists()
    with pytest.raises(UsageError, match="no such volume: data"):
        volumes.remove("data")
    assert not volumes.remove("data", force=True)


def test_a_volume_in_use_is_not_removed_nor_pruned(store: Path) -> None:
    volumes.ensure("db")
    volumes.ensure("spare")
    state.write_volumes("web.service", ["db"])
    with pytest.raises(UsageError, match=r"volume db is in use by web\.service: stop it first"):
        volumes.remove("db")
    with pytest.raises(UsageError, match="in use by web.service"):
        volumes.remove("db", force=True)  # -f stops nothing
    assert volumes.inspect("db")["used_by"] == ["web.service"]
    assert volumes.prune() == ["spare"]
    assert volumes.names() == ["db"]
    state.remove("web.service")  # what systemd does at the unit's stop
    assert volumes.prune() == ["db"]


@needs_root
def test_volume_create_verb_with_owner_and_labels(store: Path) -> None:
    status = volumes.create_command(
        ["--name", "owned", "--uid", "1234", "--group", "0", "--label", "a=1", "--label=b=2"]
    )
    assert status == 0
    data = store / "storage" / "volumes" / "owned" / "_data"
    assert (data.stat().st_uid, data.stat().st_gid) == (1234, 0)
    record = volumes.inspect("owned")
    assert record["labels"] == {"a": "1", "b": "2"} and record["copy"] is True
    # a second start of the service keeps the volume as it is (podman's --ignore)
    assert volumes.create_command(["--name", "owned", "--uid", "99"]) == 0
    assert data.stat().st_uid == 1234
    with pytest.raises(UsageError, match="no user 'no-such-user-here' on this host"):
        volumes.create_command(["--name", "other", "--user", "no-such-user-here"])
    assert "other" not in volumes.names()  # nothing left behind


# --- the walks: an attacker in the container controls the volume's content ------------------------


@needs_root
def test_chown_of_a_volume_never_follows_its_symlinks(tmp_path: Path) -> None:
    """:U at a restart: the container left symlinks to host files in its volume; only the
    links change owner, the host's files keep theirs."""
    victim = tmp_path / "host-secret"
    victim.write_text("root's")
    victim_dir = tmp_path / "host-dir"
    victim_dir.mkdir()
    (victim_dir / "inside").write_text("root's too")
    volume = tmp_path / "volume"
    (volume / "sub" / "deeper").mkdir(parents=True)
    (volume / "sub" / "file").write_text("x")
    os.symlink(victim, volume / "link-to-file")
    os.symlink(victim_dir, volume / "link-to-dir")
    os.symlink("../../host-secret", volume / "sub" / "relative-link")
    fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    try:
        volumes.chown_tree(fd, 4321, 4321)
    finally:
        os.close(fd)
    for path in (victim, victim_dir, victim_dir / "inside"):
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0), path
    for path in (volume, volume / "sub", volume / "sub" / "deeper", volume / "sub" / "file"):
        assert path.stat().st_uid == 4321, path
    for link in (volume / "link-to-file", volume / "link-to-dir", volume / "sub" / "relative-link"):
        assert link.lstat().st_uid == 4321, link


def test_copy_up_copies_links_as_links_and_writes_nothing_outside(tmp_path: Path) -> None:
    """A hostile image: symlinks out of the image at the volume's path, and a volume whose
    content (left by a container) has a symlink where the image has a directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    image = tmp_path / "image" / "data"
    (image / "conf").mkdir(parents=True)
    (image / "conf" / "app.ini").write_text("[app]\n")
    os.chmod(image / "conf" / "app.ini", 0o640)
    (image / "big").write_bytes(os.urandom(3 << 20))
    os.symlink(str(outside), image / "escape")  # absolute: to the host's directory, if followed
    os.symlink("../../outside", image / "relative")
    os.mkfifo(image / "fifo")
    os.symlink(str(outside), image / "planted")
    volume = tmp_path / "volume"
    volume.mkdir()
    (image / "planted-dir").mkdir()
    (image / "planted-dir" / "payload").write_text("written through the link, if followed")
    os.symlink(str(outside), volume / "planted-dir")  # already in the volume: never followed
    src = os.open(image, os.O_RDONLY | os.O_DIRECTORY)
    dst = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    try:
        volumes.copy_up(src, dst)
    finally:
        os.close(src)
        os.close(dst)
    assert os.listdir(outside) == []
    assert (volume / "conf" / "app.ini").read_text() == "[app]\n"
    assert stat.S_IMODE((volume / "conf" / "app.ini").stat().st_mode) == 0o640
    assert (volume / "big").read_bytes() == (image / "big").read_bytes()
    assert os.readlink(volume / "escape") == str(outside)
    assert os.readlink(volume / "relative") == "../../outside"
    assert stat.S_ISFIFO((volume / "fifo").lstat().st_mode)
    assert os.readlink(volume / "planted-dir") == str(outside)


# --- .volume files ---------------------------------------------------------------------------------


def _render(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    sources, index = find_sources([str(tmp_path)])
    source = next(s for s in sources if s.name == name)
    return generate(source, Known(sources, index), index).text


def test_a_volume_file_becomes_a_oneshot_service(tmp_path: Path) -> None:
    text = _render(tmp_path, "data.volume", "[Volume]\nLabel=a=1 b=2\nUser=root\nGroup=11\nCopy=no\n")
    assert "Type=oneshot\nRemainAfterExit=yes\n" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(
        "volume-create --name systemd-data --user root --group 11 --label a=1 --label b=2 --no-copy"
    ), exec_start
    assert "RequiresMountsFor=/var/lib/sdcontainer/storage\n" in text
    named = _render(
        tmp_path, "other.volume", "[Volume]\nVolumeName=shared\nDevice=tmpfs\nType=tmpfs\nOptions=size=8m\n"
    )
    assert "--name shared --device tmpfs --type tmpfs --options size=8m" in named


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("VolumName=x", "unknown key VolumName= in [Volume]; did you mean VolumeName=?"),
        ("Driver=image", "invalid Driver=: driver 'image' is not supported (only local, the default)"),
        ("VolumeName=../x", "invalid VolumeName=: '../x' is not a valid volume name"),
        ("Image=fedora", "key Image= in [Volume] is not supported: volumes of the image driver are not supported"),
        ("Copy=maybe", "invalid Copy="),
        ("Type=ext4", "Type= needs Device=: what to mount"),
        ("Device=/dev/vdb1", "Device=/dev/vdb1 needs Type= (the file system: tmpfs, ext4, ...; bind for a directory)"),
        ("Options=size=1m,bad option", "invalid Options=: invalid mount option 'bad option'"),
    ],
)
def test_a_bad_volume_file_names_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.volume"
    path.write_text(f"[Volume]\n# a comment\n{body}\n")
    with pytest.raises(ConfigError) as caught:
        render(Source("bad.volume", str(path)), parse_text(path.read_text(), str(path)), set())
    assert str(caught.value).startswith(f"{path}:3: {message}"), str(caught.value)


def test_a_container_requires_the_service_of_its_volume_file(tmp_path: Path) -> None:
    (tmp_path / "db.volume").write_text("[Volume]\nVolumeName=dbdata\n")
    (tmp_path / "cache.volume").write_text("[Volume]\nVolumeName=ignored\n")
    (tmp_path / "cache.volume.d").mkdir()
    (tmp_path / "cache.volume.d" / "name.conf").write_text("[Volume]\nVolumeName=\n")  # reset: the default again
    text = _render(
        tmp_path,
        "web.container",
        "[Container]\nRootfs=/srv/r\nExec=/bin/true\nVolume=db.volume:/db:U\nVolume=named:/n\nVolume=/anon\n"
        "Volume=${DATA}:/data\nMount=type=volume,source=cache.volume,destination=/cache,ro\n",
    )
    lines = text.splitlines()
    assert "Requires=db-volume.service cache-volume.service" in lines
    assert "After=db-volume.service cache-volume.service" in lines
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert "--volume dbdata:/db:rw,nosuid,nodev,U" not in exec_start  # defaults are the launcher's
    assert "--volume dbdata:/db:rw,U" in exec_start
    assert "--volume named:/n:rw --volume :/anon:rw" in exec_start
    # systemd expands it from the unit's environment, as Quadlet's -v: one $, not $$
    assert '--volume "${DATA}:/data:rw"' in exec_start
    assert "--mount type=volume,destination=/cache,source=systemd-cache,ro" in exec_start
    # named volumes live in the store
    assert any(line.startswith("RequiresMountsFor=") and "/var/lib/sdcontainer/storage" in line for line in lines)


def test_a_volume_file_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "web.container"
    path.write_text("[Container]\nRootfs=/srv/r\nExec=/bin/true\nVolume=gone.volume:/x\n")
    sources, index = find_sources([str(tmp_path)])
    with pytest.raises(ConfigError, match=r"web\.container:4: gone\.volume: no such file is on the search path"):
        generate(sources[0], Known(sources, index), index)


def test_the_walks_hold_one_fd_per_level_not_per_directory(tmp_path: Path) -> None:
    """A wide tree (more directories than the fd limit) is copied and chowned; a tree deeper
    than MAX_DEPTH is an error, not a partial walk."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    image = tmp_path / "wide"
    for i in range(300):
        (image / f"d{i}").mkdir(parents=True)
        (image / f"d{i}" / "f").write_text(str(i))
    volume = tmp_path / "volume"
    volume.mkdir()
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        src = os.open(image, os.O_RDONLY | os.O_DIRECTORY)
        dst = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert volumes.copy_up(src, dst) == 600
            if os.geteuid() == 0:
                volumes.chown_tree(dst, 0, 0)
        finally:
            os.close(src)
            os.close(dst)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (volume / "d299" / "f").read_text() == "299"
    deep = tmp_path / "deep"
    path = deep
    for _ in range(volumes.MAX_DEPTH + 1):
        path = path / "d"
    path.mkdir(parents=True)
    (tmp_path / "volume2").mkdir()
    src = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    dst = os.open(tmp_path / "volume2", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(LaunchError, match="nest deeper than 256 levels"):
            volumes.copy_up(src, dst)
    finally:
        os.close(src)
        os.close(dst)
