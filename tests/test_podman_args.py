"""PodmanArgs= (podman run's flags read as the keys they stand for), Secret=, LogDriver=,
LogOpt= and SecurityLabel*= in a file, and the secret store: host tests (issue 13). The real
systemd side is tests/test_secrets_systemd.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sdcontainer import keys, secrets
from sdcontainer.errors import ConfigError, UsageError
from sdcontainer.keys import (
    KEYS_BY_NAME,
    PODMAN_FLAGS,
    QUADLET_ONLY_KEYS,
    podman_flags,
    service_settings,
    spec_from_unit,
)
from sdcontainer.spec import BindMount, ContainerSpec
from sdcontainer.unitfile import parse_text
from sdcontainer.values import SecretRef, secret_ref

PATH = "/etc/sdcontainer/t.container"


def spec(body: str) -> ContainerSpec:
    return spec_from_unit(parse_text("[Container]\nRootfs=/r\nExec=x\n" + body, PATH))


def refused(body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        spec(body)
    return str(caught.value)


# --- PodmanArgs= --------------------------------------------------------------------------


def test_flags_are_the_keys_they_stand_for() -> None:
    s = spec(
        "Memory=1g\nEnvironment=A=1\n"
        'PodmanArgs=--cap-add NET_ADMIN --memory=512m -e "B=two words" --env=C=3 --read-only --init=false\n'
        "PodmanArgs=--security-opt no-new-privileges=false -p 8080:80 --user 1000:1001 -v /srv:/srv:ro --rm\n"
        "PodmanArgs=--tz UTC --pids-limit 100 --ulimit nofile=1024:2048 -h box -l a=b --sdnotify=container\n"
        "PodmanArgs=--security-opt label=disable --name web -w /app --dns 192.0.2.1 --tmpfs /scratch\n"
    )
    assert s.add_capabilities == ("CAP_NET_ADMIN",)
    assert s.memory == "512M"  # after the file's own Memory=, as podman takes PodmanArgs= last
    assert s.environment == ("A=1", "B=two words", "C=3")
    assert s.read_only is True and s.run_init is False and s.no_new_privileges is False
    assert s.publish_ports == ("8080:80/tcp",) and (s.user, s.group) == ("1000", "1001")
    assert s.volumes == (BindMount("/srv", "/srv", True),)
    assert (s.timezone, s.pids_limit, s.ulimits, s.hostname) == ("UTC", "100", ("nofile=1024:2048",), "box")
    assert s.labels == ("a=b",) and s.notify == "yes" and s.security_label_disable is True
    assert (s.name, s.working_dir, s.dns_servers, s.tmpfs[0].target) == ("web", "/app", ("192.0.2.1",), "/scratch")
    assert ("MemoryMax", "512M") in service_settings(s)


def test_an_empty_podman_args_drops_the_lines_before_it() -> None:
    assert spec("PodmanArgs=--memory 1g\nPodmanArgs=\nPodmanArgs=--init\n").memory is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--privileged", "PodmanArgs= --privileged is not supported; add what the container needs with --cap-add"),
        ("--restart=always", "PodmanArgs= --restart is not supported; set Restart= in [Service]"),
        ("--umask 022", "PodmanArgs= --umask is not supported"),
        ("--cap-ad NET_ADMIN", "PodmanArgs= --cap-ad is not supported; did you mean --cap-add?"),
        ("--memroy 1g", "did you mean --memory?"),
        ("--device /dev/fuse", "--device: its key AddDevice= is a Quadlet key that sdcontainer does not support yet"),
        ("--userns=keep-id", "--userns: its key UserNS= is a Quadlet key that sdcontainer does not support yet"),
        ("nginx", "PodmanArgs= 'nginx' is not a flag (the command and its arguments go in Exec=)"),
        ("--memory", "PodmanArgs= --memory needs a value"),
        ("--init=maybe", "PodmanArgs= --init=maybe: not a boolean"),
        ("--security-opt seccomp=unconfined", "its key SeccompProfile= is a Quadlet key"),
        ("--security-opt lable=disable", "--security-opt lable=disable is not supported; did you mean label?"),
        ("--sdnotify=ignore", "--sdnotify=ignore is not supported (container, conmon or healthy)"),
        ("--memory lots", "invalid Memory=: 'lots' is not a size"),
    ],
)
def test_other_flags_are_refused_naming_the_flag(args: str, message: str) -> None:
    error = refused(f"PodmanArgs=--init {args}\n")
    assert error.startswith(f"{PATH}:4: "), error
    assert message in error, error


def test_every_error_of_podman_args_is_reported() -> None:
    errors: list[ConfigError] = []
    unit = parse_text("[Container]\nRootfs=/r\nExec=x\nPodmanArgs=--bogus\nPodmanArgs=--memory lots\n", PATH)
    keys.section_errors(unit, errors, whole=True)
    assert [str(e) for e in errors] == [
        f"{PATH}:4: PodmanArgs= --bogus is not supported",
        f"{PATH}:5: invalid Memory=: 'lots' is not a size (a number of bytes, or with k, m, g, t or p: 512m, 1.5g)",
    ]


def test_one_flag_table_for_every_key() -> None:
    """Each flag names a key of the table or one Quadlet has and sdcontainer not yet; every
    key with a launcher option that podman has as a flag is in it (by the option's name)."""
    assert set(PODMAN_FLAGS.values()) <= set(KEYS_BY_NAME) | QUADLET_ONLY_KEYS
    for key in KEYS_BY_NAME.values():
        if key.option and key.option in PODMAN_FLAGS:
            assert PODMAN_FLAGS[key.option] == key.name
    assert podman_flags("Environment") == ["--env", "-e"]
    assert podman_flags("Volume") == ["--volume", "-v"]


# --- Secret= ------------------------------------------------------------------------------


def test_secret_values() -> None:
    assert secret_ref("pw") == SecretRef("pw")
    assert secret_ref("source=pw,type=env,target=PW") == SecretRef("pw", "env", "PW")
    mounted = secret_ref("source=pw,type=mount,uid=1000,gid=1001,mode=0440")
    assert mounted == SecretRef("pw", "mount", None, 1000, 1001, 0o440)
    assert (mounted.destination, secret_ref("pw,target=/etc/pw").destination) == ("/run/secrets/pw", "/etc/pw")
    assert secret_ref("pw,target=sub/pw").destination == "/run/secrets/sub/pw"
    for value in ("pw", "pw,type=env,target=PW", "pw,uid=1,gid=2,mode=600", "pw,target=/x"):
        assert str(secret_ref(value)) == value  # what the launcher option carries reads back the same


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../etc/shadow", "is not a valid secret name"),
        (".hidden", "is not a valid secret name"),
        ("pw,type=file", "type='file' is not mount or env"),
        ("pw,type=env,mode=400", "mode= only apply to type=mount"),
        ("pw,type=env,target=1X", "is not an environment variable name"),
        ("pw,target=../../etc/passwd", "is not a file path"),
        ("pw,mode=999", "is not an octal file mode"),
        ("pw,uid=-1", "uid='-1' is not a number"),
        ("pw,size=3", "is not one of source=, type=, target=, uid=, gid=, mode="),
        ("pw,source=other", "the name is given twice"),
    ],
)
def test_bad_secret_values_are_refused(value: str, message: str) -> None:
    error = refused(f"Secret={value}\n")
    assert error.startswith(f"{PATH}:4: invalid Secret=: ") and message in error, error


def test_a_secret_is_a_credential_of_the_unit_never_a_value() -> None:
    s = spec("Secret=pw\nSecret=pw,type=env,target=PW\nSecret=db\n")
    assert [item for item in service_settings(s) if "Credential" in item[0]] == [
        ("LoadCredential", "sdcontainer-secret-pw:/var/lib/sdcontainer/secrets/pw"),
        ("SetCredential", "sdcontainer-secret-pw:\\x00"),
        ("LoadCredential", "sdcontainer-secret-db:/var/lib/sdcontainer/secrets/db"),
        ("SetCredential", "sdcontainer-secret-db:\\x00"),
    ]
    argv = keys.spec_to_argv(s)
    assert argv.count("--secret") == 3 and keys.spec_from_argv(argv).secrets == s.secrets


# --- the store ----------------------------------------------------------------------------


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    monkeypatch.setenv("SDCONTAINER_SECRETS", str(directory))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return directory


def test_the_store_is_private_and_written_whole(store: Path) -> None:
    secrets.create("pw", b"one")
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / "pw").stat().st_mode) == 0o600
    with pytest.raises(UsageError, match="exists already"):
        secrets.create("pw", b"two")
    secrets.create("pw", b"two", replace=True)
    assert secrets.read_for_start("pw") == b"two" and secrets.names() == ["pw"]  # no temporary file left
    assert os.listdir(store) == ["pw"]
    info = secrets.info("pw")
    assert info["Size"] == 3 and b"two" not in repr(info).encode()
    for bad, message in ((b"", "is empty"), (b"\0", "reserved"), (b"x" * 512_001, "more than 512000")):
        with pytest.raises(UsageError, match=message):
            secrets.create("other", bad)
    with pytest.raises(UsageError, match="not a valid secret name"):
        secrets.create("../pw", b"x")
    secrets.remove("pw")
    with pytest.raises(LookupError):
        secrets.read_for_start("pw")
    with pytest.raises(UsageError, match="no secret pw"):
        secrets.remove("pw")


def test_a_store_others_can_read_is_refused(store: Path) -> None:
    store.mkdir(mode=0o755)
    store.chmod(0o755)
    with pytest.raises(ConfigError, match="not private"):
        secrets.create("pw", b"x")


def test_credentials_come_first_and_the_fallback_means_missing(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets.create("pw", b"from-store")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "sdcontainer-secret-pw").write_bytes(b"from-credential")
    (credentials / "sdcontainer-secret-gone").write_bytes(b"\0")  # SetCredential='s fallback
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert secrets.read_for_start("pw") == b"from-credential"
    with pytest.raises(LookupError):
        secrets.read_for_start("gone")


# --- LogDriver=, LogOpt=, SecurityLabel*= -------------------------------------------------------


def test_log_keys() -> None:
    assert spec("LogDriver=journald\n").log_driver == "journald"
    assert ("SyslogIdentifier", "web") in service_settings(spec("LogOpt=tag=web\n"))
    assert "invalid LogDriver=: k8s-file (log files for podman logs) is not supported" in refused(
        "LogDriver=k8s-file\n"
    )
    assert "'syslog' is not one of journald, passthrough, none" in refused("LogDriver=syslog\n")
    assert "path= is not supported (options of file log drivers)" in refused("LogOpt=path=/var/log/x\n")
    assert "no podman template" in refused('LogOpt=tag="{{.ImageName}}"\n')


def test_security_labels_are_no_ops_without_selinux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(keys, "SELINUX_ENFORCE", str(tmp_path / "enforce"))
    s = spec("SecurityLabelDisable=true\nSecurityLabelType=spc_t\nSecurityLabelNested=yes\n")
    assert s.security_label_disable is True and s.security_label_type == "spc_t"
    assert "invalid SecurityLabelDisable=: 'maybe' is not a boolean" in refused("SecurityLabelDisable=maybe\n")
    (tmp_path / "enforce").write_text("1")
    error = refused("SecurityLabelType=spc_t\n")
    assert (
        error
        == f"{PATH}:4: SecurityLabelType=: SELinux is enabled on this host, and sdcontainer applies no SELinux labels"
    )


# --- [Service] Type= ----------------------------------------------------------------------


def _generate(tmp_path: Path, text: str) -> str:
    from sdcontainer.generator import find_sources, generate

    (tmp_path / "t.container").write_text(text)
    (source,), index = find_sources([str(tmp_path)])
    return generate(source, {source.name}, index).text


def test_service_types(tmp_path: Path) -> None:
    body = "[Container]\nRootfs=/r\nExec=x\n"
    oneshot = _generate(tmp_path, body + "[Service]\nType=oneshot\nRemainAfterExit=yes\n").splitlines()
    # the file's Type= over the policy's, and no notification socket: the launcher stays, in the foreground
    assert oneshot.index("Type=oneshot") > oneshot.index("Type=notify") and "NotifyAccess=none" in oneshot
    simple = _generate(tmp_path, body + "[Service]\nType=simple\n").splitlines()
    assert "Type=simple" not in simple and "Type=notify" in simple
    assert "# Type=simple (line 5): taken as Type=notify, see sdcontainer.container(5)" in simple
    path = tmp_path / "t.container"
    for service, message in (
        (
            "Type=forking",
            f"{path}:5: Type=forking in [Service] is not supported; allowed: notify, oneshot, simple, exec",
        ),
        (
            "Type=oneshot\n[Container]\nHealthCmd=true",
            f"{path}:5: Type=oneshot cannot be combined with HealthCmd=: a oneshot container is the launcher's child",
        ),
        ("Type=oneshot\n[Container]\nNotify=yes", f"{path}:5: Type=oneshot cannot be combined with Notify=yes"),
    ):
        with pytest.raises(ConfigError) as caught:
            _generate(tmp_path, body + "[Service]\n" + service + "\n")
        assert str(caught.value).startswith(message), str(caught.value)


def test_startup_checks_need_their_command_and_a_health_check() -> None:
    s = spec("HealthCmd=true\nHealthStartupCmd=test -e /up\nHealthStartupInterval=2s\nHealthStartupRetries=3\n")
    assert s.health_startup_cmd == ("/bin/sh", "-c", "test -e /up") and s.health_startup_interval == 2000
    assert s.health_startup_retries == 3 and s.health_startup_success is None
    assert refused("HealthStartupCmd=true\n") == (
        f"{PATH}:4: HealthStartupCmd= needs HealthCmd=: the startup check gates the regular one"
    )
    assert (
        refused("HealthCmd=true\nHealthStartupRetries=2\n")
        == f"{PATH}:5: HealthStartupRetries= needs HealthStartupCmd="
    )
    assert "invalid HealthStartupInterval=: " in refused(
        "HealthCmd=true\nHealthStartupCmd=x\nHealthStartupInterval=0\n"
    )


def test_check_warns_of_a_secret_not_stored_here(store: Path, tmp_path: Path) -> None:
    from sdcontainer.generator import find_sources, host_warnings

    units = tmp_path / "units"
    units.mkdir()
    (units / "t.container").write_text(f"[Container]\nRootfs={tmp_path}\nExec=x\nSecret=pw\nSecret=db,type=env\n")
    secrets.create("pw", b"x")
    (source,), index = find_sources([str(units)])
    assert host_warnings(source, index) == [
        f"{units}/t.container:5: warning: secret db does not exist on this host: the unit cannot start here"
    ]


def test_http_proxy_image_volume_ignore_and_a_tag_with_a_specifier() -> None:
    assert spec("").http_proxy is True  # podman's default
    assert spec("PodmanArgs=--http-proxy=false\n").http_proxy is False
    assert "--http-proxy" in keys.spec_to_argv(spec("HttpProxy=no\n"))
    assert spec("PodmanArgs=--image-volume=ignore --image-volume ignore\n") == spec("")
    error = refused("PodmanArgs=--image-volume bind\n")
    assert "--image-volume bind: not supported; the image's volumes are always ignored here" in error
    assert ("SyslogIdentifier", "minecraft-%i") in service_settings(spec("LogOpt=tag=minecraft-%i\n"))


def test_the_proxy_variables_reach_the_container_unless_http_proxy_is_off() -> None:
    from sdcontainer.plan import Plan
    from sdcontainer.process import build_environment

    def env(s: ContainerSpec) -> dict[str, str]:
        plan = Plan(
            spec=s, foreground=True, rootfs="/", layers=None, image_id=None, image_env=("https_proxy=image",),
            working_dir="/", user=None, group=None, command=("x",), file_env={}, name="t", hostname="t",
            last_cap=40, caps=0, listen_fds=0, listen_fdnames=None, hosts="", hosts_file=None, resolv_conf=None, localtime=None,
        )  # fmt: skip
        return build_environment(plan, "/root", {"https_proxy": "http://proxy:3128", "NO_PROXY": "local", "X": "1"})

    on = env(spec("Environment=NO_PROXY=mine\n"))
    assert (on["https_proxy"], on["NO_PROXY"], "X" in on) == ("http://proxy:3128", "mine", False)
    off = env(spec("HttpProxy=no\n"))
    assert off["https_proxy"] == "image" and "NO_PROXY" not in off
