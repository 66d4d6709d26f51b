"""The package's import graph: no cycles, and every import points down one declared order.

The imports are read from the source with `ast`, and every import of a sdcontainer module
counts, wherever it is written: at the top, inside a function (a lazy import is a
dependency paid for later, not one that is absent) and under `if TYPE_CHECKING:` (a type
named in a signature is part of the module's contract; exempting those would have hidden
the launcher <-> rootfs/process loop this test was written against, issue 11).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import CHECKOUT

PACKAGE = CHECKOUT / "sdcontainer"

# Bottom to top: a module may import only modules listed before it. Where two modules do not
# import each other, their order here is a decision (which one may come to depend on the
# other), made by where they are listed.
LAYERS = (
    # the ground: the standard library only
    "text",  # string checks without re
    "linux",  # the one ctypes module
    "record",  # frozen records without dataclasses
    "trampoline",  # the sealed exec trampoline
    "notify",  # sd_notify
    "errors",  # the error hierarchy (text)
    # values every path shares
    "verbs",  # sdcontainer-launcher's verbs: the table and the one small argv parser
    "step",  # a failed step as a LaunchError
    "state",  # a running container's record
    "unitfile",  # the unit-file reader
    "spec",  # ContainerSpec
    "reference",  # image references: parsed, qualified, short names resolved
    "inet",  # addresses and subnets without the ipaddress module (PublishPort='s grammar needs it)
    "values",  # the value grammars of the keys
    # the file side
    "secrets",  # Secret=: the root-only store, and the credential each unit loads
    "keys",  # the key table: file <-> spec <-> launcher options
    "sockets",  # [Socket] and SocketProxy= units
    # images
    "unpack",  # one hostile layer tar into a directory
    "archive",  # an image archive's few documents, streamed
    "documents",  # index, manifest and config documents, checked field by field
    "store",  # the image store (reads for a start; writes via unpack)
    "volumes",  # named volumes: the store beside the images, copy-up and :U walks
    "images",  # pull and import into the store
    # networking: addresses, links, leases, the firewall table
    "netlink",  # the per-start rtnetlink round trips, stdlib only
    "ipam",  # leases per network, under a file lock
    "firewall",  # table inet sdcontainer through libnftables
    "names",  # the containers' hosts files, rewritten as a network's members come and go
    "networks",  # named networks: the [Network] key table, definitions, create and remove
    "release",  # the ExecStopPost= verb: leases and published ports of a unit that ended
    "network",  # a container's bridge network at start and stop: the three above together
    # the launch: the plan, and the steps that carry it out
    "plan",  # Plan: what a start decided on the host
    "process",  # user, environment, program; execve
    "security",  # capabilities, seccomp, masked paths; confine() takes process.Identity
    "rootfs",  # the mounts; the masked paths come from security
    # entering a running container
    "enter",  # exec, health checks, ReloadCmd=: the same confinement as the init
    "health",  # one health check, through enter
    # entry points
    "service",  # the [Service] policy, for unit files and transient units alike
    "sources",  # unit files on the search path: kinds, names, drop-ins, install links
    "volumefile",  # .volume -> NAME-volume.service; Volume=NAME.volume
    "imagefile",  # .image files: [Image] keys, NAME-image.service, the pull verb
    "pods",  # .pod files: [Pod] keys, NAME-pod.service, the pod-create/pod-remove verbs
    "network_unit",  # .network files -> NAME-network.service
    "generator",  # .container -> units
    "launcher",  # ExecStart: builds the plan, pulls when it must, runs the steps
    "transient",  # sdcontainer run: the generator's unit, as a transient one
    "lifecycle",  # ps, logs, start, stop, rm...: systemd's view over transient's D-Bus client
    "autoupdate",  # sdcontainer auto-update: AutoUpdate= units' images compared, pulled, restarted, rolled back
    "cli",  # sdcontainer
)


class Import:
    """One import of a package module: which, where, and in what kind of place."""

    __slots__ = ("module", "line", "kind")

    def __init__(self, module: str, line: int, kind: str) -> None:
        self.module, self.line, self.kind = module, line, kind  # kind: top, function, TYPE_CHECKING


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def package_imports(source: str, modules: set[str], package: str = "sdcontainer") -> list[Import]:
    """Every import of one of `modules` (the package's own) in a module's source, nested
    anywhere: functions, classes, try blocks, `if TYPE_CHECKING:`."""
    found: list[Import] = []

    def named(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif node.level:  # relative: from . import x, from .x import y
            dotted = [f"{package}.{node.module}"] if node.module else [f"{package}.{a.name}" for a in node.names]
        elif node.module == package:
            dotted = [f"{package}.{alias.name}" for alias in node.names]
        else:
            dotted = [node.module or ""]
        heads = [name.split(".")[1] for name in dotted if name.startswith(package + ".")]
        return [head for head in heads if head in modules]

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(module, child.lineno, kind) for module in named(child))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), "TYPE_CHECKING")
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), kind)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, "function" if kind == "top" else kind)
            else:
                visit(child, kind)

    visit(ast.parse(source), "top")
    return found


def import_graph(package_dir: Path = PACKAGE) -> dict[str, list[Import]]:
    """module -> its imports of other package modules (a module importing itself is kept)."""
    paths = sorted(package_dir.glob("*.py"))
    modules = {path.stem for path in paths if path.stem != "__init__"}
    return {path.stem: package_imports(path.read_text(), modules) for path in paths if path.stem != "__init__"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module that imports
    itself (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def upward_imports(graph: dict[str, list[Import]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Each import of a module not listed before the importer, as `a:LINE -> b (kind)`."""
    rank = {module: number for number, module in enumerate(layers)}
    return [
        f"{module}:{imp.line} -> {imp.module} ({imp.kind})"
        for module, imports in sorted(graph.items())
        for imp in imports
        if module in rank and imp.module in rank and rank[imp.module] >= rank[module]
    ]


# --- the package -----------------------------------------------------------------------------


def test_every_module_has_one_place_in_the_layers() -> None:
    modules = set(import_graph())
    assert len(LAYERS) == len(set(LAYERS)), [m for m in LAYERS if LAYERS.count(m) > 1]
    assert not modules - set(LAYERS), f"modules with no place in LAYERS: {sorted(modules - set(LAYERS))}"
    assert not set(LAYERS) - modules, f"LAYERS names modules that do not exist: {sorted(set(LAYERS) - modules)}"


def test_no_import_cycles() -> None:
    graph = {module: {imp.module for imp in imports} for module, imports in import_graph().items()}
    assert cycles(graph) == []


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_the_launcher_loads_only_its_start_path() -> None:
    """`import sdcontainer.launcher` is paid on every start: the image store, pulling, exec,
    health checks and the CLI's modules come in only on the paths that use them."""
    code = (
        f"import sys; sys.path.insert(0, {str(CHECKOUT)!r}); import sdcontainer.launcher; "
        "print(' '.join(sorted(sys.modules)))"
    )
    # -I -S as installed: no site-packages hooks that import things on their own
    loaded = set(
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "sdcontainer.plan" in loaded  # the check sees what was imported
    off_path = {
        f"sdcontainer.{m}"
        for m in (
            "reference",
            "store",
            "images",
            "unpack",
            "enter",
            "health",
            "notify",
            "sockets",
            "generator",
            "transient",
            "lifecycle",
            "cli",
        )
    }
    heavy = {"typing", "dataclasses", "json", "re", "enum", "subprocess", "tomllib", "signal", "contextlib"}
    assert sorted(loaded & (off_path | heavy)) == []


# --- the checks themselves ---------------------------------------------------------------------

SAMPLE = '''
"""import sdcontainer.nothing: in a docstring, not an import"""
import os
import sdcontainer.alpha
from sdcontainer import beta, gamma as g
from sdcontainer.delta import thing
from . import epsilon
from .zeta import other
from sdcontainer.unknown import x
TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdcontainer.eta import T
else:
    import sdcontainer.theta
def f():
    from sdcontainer.iota import y
    class Inner:
        import sdcontainer.kappa
    try:
        import sdcontainer.lam
    except ImportError:
        pass
    if TYPE_CHECKING:
        import sdcontainer.mu
'''


def test_every_kind_of_import_is_seen() -> None:
    modules = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lam", "mu"}
    found = {(imp.module, imp.kind) for imp in package_imports(SAMPLE, modules)}
    assert found == {
        ("alpha", "top"),
        ("beta", "top"),
        ("gamma", "top"),
        ("delta", "top"),
        ("epsilon", "top"),
        ("zeta", "top"),
        ("eta", "TYPE_CHECKING"),
        ("theta", "top"),
        ("iota", "function"),
        ("kappa", "function"),
        ("lam", "function"),
        ("mu", "TYPE_CHECKING"),
    }


def test_cycles_and_upward_imports_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = {"low": [Import("high", 3, "function")], "high": [Import("low", 1, "top")]}
    assert upward_imports(graph, ("low", "high")) == ["low:3 -> high (function)"]
    assert upward_imports({"a": [Import("a", 1, "top")]}, ("a",)) == ["a:1 -> a (top)"]
