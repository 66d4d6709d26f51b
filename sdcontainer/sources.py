"""Unit files on the search path: their kinds, names, drop-ins, and what the generator writes.

Quadlet's file kinds, each with the section it is about and the service it becomes:
`web.container` -> web.service, `db.network` -> db-network.service, `data.volume` ->
data-volume.service, and so on (`KINDS`). The generator finds every kind in one walk; a
kind's renderer lives in the module `UnitKind.module` names (imported only when a file of
that kind exists), so adding a kind touches this table and that module, nothing else.

A kind's module provides `render(source, unit, known) -> Generated` (raising ConfigError
from `entry.error()` for a bad line) and may provide `diagnose(source, unit, known, errors)`,
which appends every error it finds to `errors` for `sdcontainer check` and a refused file's
stand-in unit; without it, the first error of render() is reported. `translate_dependency`
and `install_links` here serve every kind's [Unit] and [Install].
"""

from __future__ import annotations

import os
import stat

from sdcontainer.errors import ConfigError
from sdcontainer.record import record
from sdcontainer.text import shown
from sdcontainer.unitfile import (
    Entry,
    UnitFile,
    escape_specifiers,
    parse_file,
    split_words,
    unit_name_problem,
    unit_path_problem,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.service import ServicePolicy

# How many levels of subdirectories below a search directory are searched. People sort
# files into a level or two (Quadlet's users/UID/); the bound keeps a runaway tree (thousands
# of nested directories, a path past PATH_MAX) from costing more than a few hundred entries.
MAX_DEPTH = 16

# [Unit] settings whose values name units: a unit file named there means its service
DEPENDENCY_KEYS = frozenset(
    [
        "After",
        "Before",
        "BindsTo",
        "Conflicts",
        "OnFailure",
        "OnSuccess",
        "PartOf",
        "PropagatesReloadTo",
        "PropagatesStopTo",
        "ReloadPropagatedFrom",
        "Requires",
        "Requisite",
        "StopPropagatedFrom",
        "Upholds",
        "Wants",
    ]
)


@record
class UnitKind:
    suffix: str  # ".network"
    section: str  # the section the file is about: "Network"
    service_suffix: str  # added to the file's stem for its service: "-network"
    # the module with render(source, unit, known) -> Generated; None: not supported yet
    # (a file of the kind is refused with a message saying so)
    module: str | None

    def service_name(self, stem: str) -> str:
        """The service of a file `stem + suffix` (`db` -> db-network.service; an instance
        `db@a` -> db-network@a.service, as the health check's units are named)."""
        prefix, at, instance = stem.partition("@")
        return f"{prefix}{self.service_suffix}{at}{instance}.service"


CONTAINER = UnitKind(".container", "Container", "", "sdcontainer.generator")
KINDS = (
    CONTAINER,
    UnitKind(".network", "Network", "-network", "sdcontainer.network_unit"),
    UnitKind(".volume", "Volume", "-volume", "sdcontainer.volumefile"),
    UnitKind(".image", "Image", "-image", "sdcontainer.imagefile"),
    UnitKind(".pod", "Pod", "-pod", "sdcontainer.pods"),
    UnitKind(".kube", "Kube", "", None),
    UnitKind(".build", "Build", "-build", None),
)
KINDS_BY_SUFFIX = {kind.suffix: kind for kind in KINDS}


def kind_of(name: str) -> UnitKind | None:
    """The kind of a file name (`web.container`), None for any other name."""
    dot = name.rfind(".")
    kind = KINDS_BY_SUFFIX.get(name[dot:]) if dot > 0 else None
    return kind


def service_of(name: str) -> str | None:
    """The service a unit file name becomes (`db.network` -> db-network.service), None for
    a name that is not a unit file's."""
    kind = kind_of(name)
    return kind.service_name(name[: -len(kind.suffix)]) if kind else None


def translate_dependency(entry: Entry, known: set[str]) -> str:
    """A [Unit] dependency line's value with each unit file it names (`db.container`,
    `data.volume`) made the service that file becomes; a file that is not on the search
    path (not in `known`) is an error."""
    words = []
    for word in entry.value.split():
        service = service_of(word)
        if service is not None:
            if word not in known:
                raise entry.error(f"{entry.key}= names {word}, but no such file is on the search path")
            word = service
        words.append(word)
    return " ".join(words)


class Source:
    """One unit file found on the search path: a `.container` file, or another kind's."""

    def __init__(self, name: str, path: str, kind: UnitKind | None = None) -> None:
        self.name = name  # file name, e.g. web@.container
        self.path = path
        found = kind or kind_of(name)
        if found is None:
            raise ValueError(f"{name}: not a unit file name")
        self.kind = found

    @property
    def suffix(self) -> str:
        return self.kind.suffix

    @property
    def stem(self) -> str:
        return self.name[: -len(self.kind.suffix)]

    @property
    def template(self) -> str | None:
        """`foo@.container` for an instance `foo@bar.container`, else None."""
        prefix, at, instance = self.stem.partition("@")
        return f"{prefix}@{self.kind.suffix}" if at and instance else None

    @property
    def service(self) -> str:
        return self.kind.service_name(self.stem)

    @property
    def source_path(self) -> str:
        """The path as SourcePath= takes it: systemd expands specifiers there."""
        return escape_specifiers(self.path)

    def check_names(self) -> None:
        """Refuse a file whose path or name cannot be written into a unit as it is."""
        problem = unit_path_problem(self.path)
        if problem:
            raise ConfigError(problem, self.path)
        problem = unit_name_problem(self.service)
        if problem is None and self.stem.startswith("."):
            problem = 'it starts with "." (a hidden file)'
        if problem:
            raise ConfigError(f"{shown(self.service)} is not a valid unit name: {problem}", self.path)


def find_sources(
    search_path: list[str], problems: list[str] | None = None
) -> tuple[list[Source], dict[str, list[str]]]:
    """Every unit file (each kind of KINDS), subdirectories walked (depth first, a directory's own files
    before its subdirectories', names sorted), the first file of a name winning; and every
    drop-in directory (`*.d`) by name, in search-path order.

    The walk is a loop over a stack, not a recursion, and goes at most MAX_DEPTH levels
    below a search directory. A symlink to a directory is followed only if it leads to a
    directory inside the search path; each directory is visited once (by device and inode),
    so a symlink loop ends. A directory not searched for either reason, or not readable, is
    added to `problems` as a message naming it. Symlinks to files are followed wherever they
    point, as are drop-in directories, which are only listed."""
    seen: dict[str, Source] = {}
    dropin_index: dict[str, list[str]] = {}
    visited: set[tuple[int, int]] = set()
    roots = [os.path.realpath(top) for top in search_path]
    note = problems.append if problems is not None else (lambda message: None)
    for top in search_path:
        try:
            info = os.stat(top)
        except OSError:
            continue  # not there: nothing to find
        if not stat.S_ISDIR(info.st_mode):
            continue
        stack = [(top, 0, (info.st_dev, info.st_ino))]
        while stack:
            directory, depth, inode = stack.pop()
            if inode in visited:
                continue
            visited.add(inode)
            try:
                with os.scandir(directory) as listing:
                    entries = sorted(listing, key=_entry_name)
            except OSError as error:
                note(f"{shown(directory)}: cannot read the directory: {error.strerror}")
                continue
            subdirectories = []
            for entry in entries:
                name = entry.name
                try:
                    is_dir = entry.is_dir()  # d_type; a stat() for symlinks only
                except OSError:
                    is_dir = False
                if not is_dir:
                    kind = kind_of(name)
                    if kind is not None and name not in seen:
                        seen[name] = Source(name, entry.path, kind)
                elif name.endswith(".d"):
                    dropin_index.setdefault(name, []).append(entry.path)
                elif depth >= MAX_DEPTH:
                    where = f"more than {MAX_DEPTH} levels of directories below {shown(top)}"
                    note(f"{shown(entry.path)}: {where}; not searched")
                elif entry.is_symlink() and not _inside(real := os.path.realpath(entry.path), roots):
                    where = f"a symbolic link to a directory outside the search path ({shown(real)})"
                    note(f"{shown(entry.path)}: {where}; not followed")
                else:
                    try:
                        found = entry.stat()
                    except OSError:
                        continue  # gone since it was listed
                    subdirectories.append((entry.path, depth + 1, (found.st_dev, found.st_ino)))
            stack.extend(reversed(subdirectories))  # the first in name order is walked next
    return sorted(seen.values(), key=lambda s: s.name), dropin_index


class Known(set[str]):
    """The names of the unit files found (the `known` every renderer gets is a set of them),
    with where each is: a file that names another (Image=NAME.image) reads it from there."""

    def __init__(
        self, sources: list[Source] | tuple[Source, ...] = (), dropin_index: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(source.name for source in sources)
        self.paths = {source.name: source.path for source in sources}
        # the drop-in directories of find_sources(), for the drop-ins of a file read this way
        self.dropin_index = dropin_index or {}


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def dropin_dirs(source: Source) -> list[str]:
    """Drop-in directory names, most specific first: the unit's own, its template's, the
    dash-truncated prefixes (as systemd does for `foo-bar-baz.service`), then the kind's
    (`container.d`, `network.d`, ...)."""
    names = [source.name + ".d"]
    if source.template:
        names.append(source.template + ".d")
    prefix = source.stem.partition("@")[0]
    while "-" in prefix.rstrip("-"):
        prefix = prefix.rstrip("-").rpartition("-")[0] + "-"
        names.append(prefix + source.suffix + ".d")
    names.append(source.suffix[1:] + ".d")
    return names


def find_dropins(source: Source, dropin_index: dict[str, list[str]]) -> list[str]:
    """`*.conf` files applying to a source, in the order they are merged: sorted by file
    name, a name in a more specific directory (or earlier search path) shadowing the rest."""
    chosen: dict[str, str] = {}
    for dirname in dropin_dirs(source):
        for directory in dropin_index.get(dirname, ()):
            try:
                files = os.listdir(directory)
            except OSError:
                continue
            for conf in files:
                if conf.endswith(".conf") and conf not in chosen:
                    chosen[conf] = os.path.join(directory, conf)
    return [chosen[name] for name in sorted(chosen)]


def load(source: Source, dropin_index: dict[str, list[str]]) -> UnitFile:
    unit = parse_file(source.path)
    for conf in find_dropins(source, dropin_index):
        unit.merge(parse_file(conf))
    return unit


class Generated:
    def __init__(
        self,
        service: str,
        text: str,
        links: list[tuple[str, str]],
        others: list[tuple[str, str]] | None = None,
        policy: ServicePolicy | None = None,
    ) -> None:
        self.service = service
        self.text = text
        self.links = links  # (link path, target), relative to the output directory
        self.others = others or []  # (file name, text) of the units written beside the service
        self.policy = policy  # what the service's [Unit] and [Service] got from sdcontainer.service


def install_links(service: str, unit: UnitFile) -> list[tuple[str, str]]:
    """The symlinks `systemctl enable` would create for the unit `service` (the .service, or
    the .socket of a file with a [Socket] section), relative to the output directory."""
    suffix_of_unit = service[service.rindex(".") :]
    name = service
    if service.endswith("@" + suffix_of_unit):
        default_instance = unit.lookup_last("Install", "DefaultInstance")
        if default_instance is None or not default_instance.value:
            return []  # a template without DefaultInstance= is not enabled by itself
        name = service.replace("@" + suffix_of_unit, f"@{default_instance.value}{suffix_of_unit}")
        problem = _link_name_problem(name)
        if problem:
            raise default_instance.error(f"DefaultInstance= makes {shown(name)}, not a valid unit name: {problem}")
    links = []
    for key, suffix in (("WantedBy", ".wants"), ("RequiredBy", ".requires"), ("UpheldBy", ".upholds")):
        for entry in unit.lookup_all("Install", key):
            for target in split_words(entry.value, entry):
                if "/" in target:
                    raise entry.error(f"{key}={target}: a unit name cannot contain '/'")
                problem = _link_name_problem(target)
                if problem:
                    raise entry.error(f"{key}={shown(target)}: not a valid unit name: {problem}")
                links.append((f"{target}{suffix}/{name}", f"../{service}"))
    for entry in unit.lookup_all("Install", "Alias"):
        for alias in split_words(entry.value, entry):
            parts = alias.split("/")
            if alias.startswith("/") or ".." in parts or not alias.endswith(suffix_of_unit):
                raise entry.error(f"Alias={shown(alias)}: must be a relative name ending in {suffix_of_unit}")
            problem = unit_path_problem(alias) or _link_name_problem(parts[-1])
            if problem:
                raise entry.error(f"Alias={shown(alias)}: not a valid unit name: {problem}")
            links.append((alias, "../" * (len(parts) - 1) + service))
    return links


def _link_name_problem(name: str) -> str | None:
    """A unit name of [Install] (a link's name in the output directory). Specifiers are
    not expanded there; a % is let through as it always was."""
    return unit_name_problem(name.replace("%", "_"))
