"""Compatibility with Quadlet, measured on Quadlet's own test inputs (shared/corpus).

A file Quadlet accepts must either be accepted here or be refused with an error saying
which Quadlet feature is not supported yet; a file Quadlet rejects must be rejected here.
Most corpus files use Image=, which this version refuses, so the files are also run with
Image= swapped for Rootfs= to see how the rest of each file fares.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sdcontainer.errors import ConfigError
from sdcontainer.generator import find_sources, generate
from tests.helpers import CHECKOUT

# beside the checkout (/work/main), or two levels up from a worktree (/work/wt/NAME)
CORPUS = (
    next((p for p in (CHECKOUT.parent / "shared", CHECKOUT.parent.parent / "shared") if p.is_dir()), CHECKOUT)
    / "corpus"
    / "quadlet-e2e"
)
UNSUPPORTED = re.compile(r"not supported yet|does not support yet|is not supported")

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is not there")


def classify(directory: Path) -> dict[str, str]:
    sources, index = find_sources([str(directory)])
    known = {s.name for s in sources}
    outcome = {}
    for source in sources:
        name = str(Path(source.path).relative_to(directory))
        try:
            generate(source, known, index)
            outcome[name] = "accepted"
        except ConfigError as error:
            outcome[name] = "unsupported" if UNSUPPORTED.search(str(error)) else f"error: {error}"
    return outcome


# Files Quadlet converts but whose container podman would refuse at start; refusing them
# when the unit is generated is the better place for the error.
KNOWN_DIVERGENCES = {
    "quotes.container": 'ContainerName=RemoveQuotes"Name is not a valid name (podman refuses it at run)',
    "rootfs.container": "Rootfs= without Exec=: there is no image config to supply a command",
    # Quadlet only warns: rootless podman can run as another user, our launcher needs root
    # to build namespaces, and User=/Group= in [Container] give the container its user.
    "service-user.container": "User= in [Service] is refused",
    "service-group.container": "Group= in [Service] is refused",
    "service-dynamicuser.container": "DynamicUser= in [Service] is refused",
    "service-dynamicuser.pod": "DynamicUser= in [Service] is refused: the pod's namespaces and network need root",
    "service-dynamicuser.volume": "DynamicUser= in [Service] is refused: the volume store is root's",
    "service-dynamicuser.image": "DynamicUser= in [Service] is refused: the pull writes root's image store",
    # only with Image= swapped out: the empty Entrypoint= leaves the image's Cmd, which a
    # Rootfs= does not have
    "entrypoint-empty.container": "no command once Image= is replaced by Rootfs=",
    # only with Image= swapped out: a Rootfs= tree has no image to update
    "autoupdate.container": "AutoUpdate= without Image= is refused once Image= is replaced by Rootfs=",
    # Quadlet passes it on and `podman run` fails at every start ("sdnotify policy healthy
    # requires a healthcheck"); the generator says so once, naming the line
    "notify-healthy.container": "Notify=healthy without HealthCmd= is refused",
}


# what an image would supply: a root file system and an entrypoint
IMAGE_STANDIN = "Rootfs=/srv/rootfs\nEntrypoint=/image/entrypoint"


def quadlet_rejects(path: Path) -> bool:
    return "## assert-failed" in path.read_text()


@pytest.fixture(scope="module")
def corpus_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    as_is = tmp_path_factory.mktemp("corpus") / "as-is"
    with_rootfs = as_is.parent / "with-rootfs"
    for target in (as_is, with_rootfs):
        shutil.copytree(CORPUS, target)
    for path in [*with_rootfs.rglob("*.container"), *with_rootfs.rglob("*.conf")]:
        if path.is_file() and not path.is_symlink():
            path.write_text(re.sub(r"^Image=.*$", IMAGE_STANDIN, path.read_text(), flags=re.M))
    return as_is, with_rootfs


def test_quadlet_rejected_files_are_rejected(tmp_path: Path) -> None:
    """Each alone in a directory, as Quadlet's test runs them (dependent.error.container
    names a unit that is not there)."""
    rejected = [p for p in CORPUS.glob("*.container") if quadlet_rejects(p)]
    assert rejected
    for path in rejected:
        alone = tmp_path / path.stem
        alone.mkdir()
        shutil.copy(path, alone)
        for variant in ("as-is", "standin"):
            if variant == "standin":
                (alone / path.name).write_text(re.sub(r"^Image=.*$", IMAGE_STANDIN, path.read_text(), flags=re.M))
            assert classify(alone) != {path.name: "accepted"}, f"{path.name} ({variant}) was accepted"


def test_quadlet_accepted_files_are_accepted_or_refused_as_unsupported(
    corpus_copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for label, copy in zip(("as written", "Image= -> Rootfs="), corpus_copies, strict=True):
        outcome = classify(copy)
        accepted_by_quadlet = {n: r for n, r in outcome.items() if not quadlet_rejects(CORPUS / n)}
        bad = {n: r for n, r in accepted_by_quadlet.items() if r.startswith("error") and n not in KNOWN_DIVERGENCES}
        with capsys.disabled():
            counts = Counter(r if not r.startswith("error") else "error" for r in accepted_by_quadlet.values())
            print(f"\nquadlet corpus ({label}): {len(accepted_by_quadlet)} files Quadlet accepts: {dict(counts)}")
        assert bad == {}


def test_reload_files_mean_what_they_mean_to_quadlet(tmp_path: Path) -> None:
    """ReloadCmd=: the words Quadlet hands to `podman exec` are the words our ExecReload= runs
    in the container; ReloadSignal=: the signal; both together: refused, naming the line."""
    from sdcontainer.unitfile import split_words

    paths = sorted(CORPUS.glob("reload*.container"))
    assert {p.name for p in paths} >= {"reloadcmd.container", "reloadsignal.container", "reloadboth.container"}
    for path in paths:
        alone = tmp_path / path.stem
        alone.mkdir()
        shutil.copy(path, alone)
        (source,), index = find_sources([str(alone)])
        text = path.read_text()
        if quadlet_rejects(path):
            with pytest.raises(ConfigError) as caught:
                generate(source, {source.name}, index)
            assert re.match(
                rf"{re.escape(source.path)}:\d+: ReloadCmd= and ReloadSignal= exclude each other", str(caught.value)
            )
            continue
        reloads = [
            line for line in generate(source, {source.name}, index).text.splitlines() if line.startswith("ExecReload=")
        ]
        assert len(reloads) == 1, (path.name, reloads)
        if "ReloadSignal=" in text:
            assert reloads[0] == "ExecReload=/bin/kill -s SIGHUP $MAINPID"
            continue
        words = split_words(reloads[0].partition("=")[2])
        assert words[words.index("--") - 3 : words.index("--")] == ["exec", "--unit", "%n"]
        for line in text.splitlines():
            if line.startswith("## assert-podman-reload-final-args"):
                expected = shlex.split(line.split(None, 2)[2])
                assert words[-len(expected) :] == expected, path.name
