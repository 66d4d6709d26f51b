"""`$VAR` and `${VAR}` in a unit file's values mean what they mean in Quadlet: systemd expands
them at start from the unit's environment ([Service] Environment=, EnvironmentFile=), since
the values reach the launcher's command line as they reach podman's in Quadlet; `$$` is a
literal `$`. Such a value is checked by the launcher, once systemd has completed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcontainer.generator import generate
from sdcontainer.sources import Source
from sdcontainer.unitfile import parse_text, split_words
from sdcontainer.values import has_variable
from tests.containers import ROOTFS, add_container, container, run_to_end
from tests.testbed import Testbed


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("${DIR}/x", True),
        ("a${B}c", True),
        ("$ARGS", True),  # a word of its own: split at whitespace by systemd
        ("a$HOME", False),  # inside a word systemd expands only ${...}
        ("$$HOME", False),
        ("$${HOME}", False),
        ("$$$${X}", False),
        ("$$${X}", True),
        ("${unclosed", False),
        ("$(cat /run/pid)", True),  # a word starting with $ is a variable's name to systemd
        ("$", True),
        ("a $(b)", False),
        ("plain", False),
    ],
)
def test_what_systemd_expands(value: str, expanded: bool) -> None:
    assert has_variable(value) is expanded


def exec_start(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "v.container"
    path.write_text(body)
    text = generate(Source("v.container", str(path)), {"v.container"}, {}).text
    unit = parse_text(text, "v.service")
    (line,) = [e.value for e in unit.section("Service") if e.key == "ExecStart"]
    return split_words(line)


def test_values_with_variables_are_left_for_systemd(tmp_path: Path) -> None:
    words = exec_start(
        tmp_path,
        "[Container]\nImage=docker.io/library/postgres:${PG_MAJOR}-alpine\nVolume=${DATA}/pg:/var/lib/pg:z\n"
        "Environment=PASSWORD=${DB_PASSWORD} LITERAL=$${NOT_EXPANDED} HOME_IN_WORD=a$HOME\n"
        "Exec=$ARGS ${ONE}\n",
    )
    assert words[words.index("--image") + 1] == "docker.io/library/postgres:${PG_MAJOR}-alpine"
    assert words[words.index("--volume") + 1] == "${DATA}/pg:/var/lib/pg:rw"
    envs = [words[i + 1] for i, word in enumerate(words) if word == "--env"]
    assert envs == ["PASSWORD=${DB_PASSWORD}", "LITERAL=$${NOT_EXPANDED}", "HOME_IN_WORD=a$HOME"]
    assert words[words.index("--") + 1 :] == ["$ARGS", "${ONE}"]


def test_a_path_known_at_start_only_is_not_a_mount_dependency(tmp_path: Path) -> None:
    path = tmp_path / "v.container"
    path.write_text("[Container]\nRootfs=/srv/root\nExec=/bin/true\nVolume=${DATA}/pg:/pg\nVolume=/srv/a:/a\n")
    text = generate(Source("v.container", str(path)), {"v.container"}, {}).text
    (line,) = [line for line in text.splitlines() if line.startswith("RequiresMountsFor=")]
    assert "/srv/root" in line and "/srv/a" in line and "$" not in line


def test_a_value_without_a_variable_is_still_checked_in_the_generator(tmp_path: Path) -> None:
    from sdcontainer.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"v.container:2: invalid Volume=: '\$\$DATA/pg' is neither an absolute path nor a volume name",
    ):
        exec_start(tmp_path, "[Container]\nVolume=$$DATA/pg:/pg\nRootfs=/srv/root\nExec=/bin/true\n")


def test_health_check_words_keep_their_variables(tmp_path: Path) -> None:
    path = tmp_path / "v.container"
    path.write_text(
        "[Container]\nRootfs=/srv/r\nExec=/bin/true\nHealthCmd=pg_isready -p ${PGPORT} -U $$POSTGRES_USER\n"
    )
    generated = generate(Source("v.container", str(path)), {"v.container"}, {})
    health = dict(generated.others)["v-health.service"]
    (line,) = [line for line in health.splitlines() if line.startswith("ExecStart=")]
    assert split_words(line.removeprefix("ExecStart="))[-3:] == [
        "/bin/sh",
        "-c",
        "pg_isready -p ${PGPORT} -U $$POSTGRES_USER",
    ]


@pytest.fixture(scope="module")
def bed(installed_testbed: Testbed, busybox_rootfs: str) -> Testbed:
    installed_testbed.copy_in(busybox_rootfs, ROOTFS)
    installed_testbed.run(["mkdir", "-p", "/srv/data-from-env"])
    installed_testbed.write_file("/srv/data-from-env/marker", "volume-from-env\n")
    return installed_testbed


def test_the_container_gets_what_systemd_made_of_the_values(bed: Testbed) -> None:
    extra = (
        "Volume=${DATA}:/data:ro\n"
        "Environment=FROM_ENV=${GREETING} LITERAL=$${GREETING} IN_WORD=a$GREETING\n"
        "HostName=${HOST}\n"
    )
    service = "Environment=DATA=/srv/data-from-env GREETING=hello HOST=varhost 'ARGS=one two'\n"
    script = 'echo "[$FROM_ENV] [$LITERAL] [$IN_WORD] [$(hostname)] [$(cat /data/marker)]" "$@"'
    add_container(bed, "vars", container(f"/bin/sh -c '{script}' sh $ARGS ${{GREETING}}", extra, service))
    run_to_end(bed, "vars.service")
    out = bed.journal("vars.service")
    assert bed.show("vars.service", "Result") == "success", out
    # ${GREETING} expanded; $${GREETING} literal; $GREETING inside a word left alone;
    # $ARGS, a word of its own, split in two
    assert "[hello] [${GREETING}] [a$GREETING] [varhost] [volume-from-env] one two hello" in out, out
