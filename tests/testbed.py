"""A real systemd, booted as PID 1 of throwaway namespaces, for integration tests and benchmarks.

How it works (see DESIGN.md, "Testing against the real thing"):

1. The host side (``Testbed.start``) makes a cgroup of its own in every cgroup hierarchy (all
   v1 controllers and the v2 ``unified`` mount; with ``cgroup="unified"`` in the v2 hierarchy
   only), nested under the cgroup the caller runs in, and spawns
   ``unshare --pid --fork --mount --uts --ipc --cgroup --propagation private [--net]``
   from inside those cgroups (``preexec_fn`` writes ``0`` to each ``cgroup.procs``).
2. The child of ``unshare`` is PID 1 of the new pid namespace. It runs this very file with
   ``--boot`` (``/usr/bin/python3 -I -S``, standard library only): a tmpfs, an overlay on it
   with ``lowerdir=/`` (so nothing reaches the host's disk); fresh proc with /proc/sys
   read-only (the kernel is the host's; /proc/sys/net stays writable with ``network=True``);
   a fresh sysfs, read-only (udev and friends find nothing to do); the cgroup hierarchies
   mounted afresh *inside the cgroup namespace*, so their root is the testbed's cgroup and
   systemd builds init.scope and system.slice below it (``cgroup="host"``, the default: the
   host's layout, hybrid or pure v2; ``cgroup="unified"``: one cgroup2 mount on /sys/fs/cgroup
   and no v1 hierarchy, so that systemd runs in unified mode even on a hybrid host, with
   whichever controllers the host's v2 hierarchy has, see ``Testbed.cgroup_controllers``); a
   private /dev (a tmpfs with null, zero, random, tty, ..., a new devpts instance,
   /dev/console a null device); fresh tmpfs on
   /run, /tmp, /var/tmp, /dev/shm and the state directories (overlayfs cannot use an overlay as
   its upper layer); the project checkout bound in read-only at its own path; host-enabled
   services, host packages' generators and units that would touch the host's kernel, devices
   or consoles masked; then ``pivot_root`` and ``exec /lib/systemd/systemd --system`` with
   ``container=sdcontainer-testbed``. It reaches ``running`` in about 0.3 s.
3. Commands run inside through ``nsenter -t <pid> -m -u -i -n -p -C``, from a leaf cgroup of
   the testbed (``sdcontainer-testbed-exec``), so that /proc/self/cgroup and the testbed's
   /sys/fs/cgroup agree, with a clean environment: no pyenv on PATH, Debian's
   /usr/bin/python3. Files are read and written by a child chrooted into /proc/<pid>/root.
4. ``close()`` sends SIGKILL to systemd (the kernel then kills everything in its pid
   namespace, and every mount dies with the mount namespace) and removes the cgroup subtrees,
   children first. ``unshare --kill-child`` and a parent-death signal make the testbed die with
   the process that started it; empty cgroups of dead owners are swept at the next start.

Never bind-mount the host's /sys, /sys/fs/cgroup or /dev into a booting systemd read-write:
it creates init.scope/system.slice at the top of every host hierarchy (escaping the caller's
memory cgroup), mkdirs cpu,cpuacct/perf_event/... in the host's /sys/fs/cgroup tmpfs and then
remounts that tmpfs read-only for the whole host, and adds /dev/log, /dev/initctl,
/dev/hugepages, /dev/mqueue and VT allocations (logind) to the host's /dev.

Usable from pytest (``tests/conftest.py`` has the fixtures) and from scripts::

    from tests.testbed import Testbed   # with the checkout on sys.path (python3 -m bench.x)
    with Testbed(network=True) as tb:   # booted and running
        tb.run(["systemctl", "status"])
    with Testbed(cgroup="unified") as tb:  # systemd in unified mode (pure cgroup v2)
        tb.run(["stat", "-fc", "%T", "/sys/fs/cgroup"])  # cgroup2fs
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

PROJECT_DIR = Path(__file__).resolve().parent.parent
HOST_PYTHON = "/usr/bin/python3"
SYSTEMD = "/lib/systemd/systemd"
CGROUP_PREFIX = "sdcontainer-testbed-"
CONTAINER_NAME = "sdcontainer-testbed"
#: Commands run by ``Testbed.run`` join this cgroup (a leaf below the testbed's root) and the
#: testbed's cgroup namespace, so that what they read in /proc/self/cgroup matches the
#: testbed's /sys/fs/cgroup mounts.
EXEC_CGROUP = "sdcontainer-testbed-exec"

#: PATH inside the testbed: no pyenv shims, /usr/local first so that ``make install`` wins.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Directories that get a fresh tmpfs inside the testbed. A host directory must never show
#: through at one of these (or below them): the testbed's systemd-tmpfiles would empty it.
VOLATILE_DIRS = ("/run", "/tmp", "/var/tmp", "/dev/shm")
#: Where the checkout shows inside when its own path is under one of those.
CHECKOUT_FALLBACK = "/srv/sdcontainer-checkout"

#: State directories that get a tmpfs of their own (overlayfs refuses an overlay as upper).
DEFAULT_STATE_DIRS = ("/var/lib/sdcontainer", "/var/lib/containers")

#: Device nodes copied into the testbed's private /dev (those the host lacks are skipped).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty", "net/tun", "fuse")

#: Units that would reach the host's kernel, devices or consoles, or that only slow the boot.
#: Host-enabled services and timers (found in /etc/systemd/system/*.wants) are masked as well.
ALWAYS_MASK = (
    # would write the host's kernel settings (the testbed shares the kernel)
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-hwdb-update.service",
    "systemd-pstore.service",
    "systemd-remount-fs.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    # devices and consoles are the host's
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "getty@.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "getty.target",
    "systemd-timesyncd.service",
    "systemd-firstboot.service",
)
#: Generators that would act on the host's consoles or pull in SysV scripts (postgresql...).
#: Generators that host packages ship (postgresql-generator...) are masked as well.
MASK_GENERATORS = ("systemd-getty-generator", "systemd-sysv-generator")


class TestbedError(RuntimeError):
    """The testbed could not be set up or did not reach a running state."""


class TestbedUnavailable(TestbedError):
    """This machine or user cannot create the namespaces (not root, no unshare, ...)."""


class CommandFailed(subprocess.CalledProcessError):
    """A command run inside the testbed failed; its message includes what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


# --------------------------------------------------------------------------------------------
# cgroups


def _cgroup_mounts() -> list[tuple[str, str, str, str]]:
    """(mountpoint, fstype, mount root, super options) of every cgroup mount under /sys/fs/cgroup."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fields = left.split()
        fstype, _source, super_opts = right.split()[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = fields[3], fields[4].replace("\\040", " ")
        if mountpoint == "/sys/fs/cgroup" or mountpoint.startswith("/sys/fs/cgroup/"):
            mounts.append((mountpoint, fstype, root, super_opts))
    return mounts


def _mount_data(fstype: str, super_opts: str) -> str:
    """The data string that mounts the same hierarchy again (inside a cgroup namespace)."""
    opts = [o for o in super_opts.split(",") if o not in ("rw", "ro")]
    if fstype == "cgroup" and not any(o in _v1_controllers() for o in opts):
        opts.insert(0, "none")  # a named hierarchy without controllers
    return ",".join(opts)


def _cgroup_dirs() -> list[Path]:
    """The directory of this process's cgroup in every mounted hierarchy (v1 and v2)."""
    own: dict[frozenset[str], str] = {}  # controllers and name= ({} for v2) -> path
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        own[frozenset(c for c in controllers.split(",") if c)] = path
    dirs: list[Path] = []
    seen: set[frozenset[str]] = set()
    for mountpoint, fstype, root, super_opts in _cgroup_mounts():
        if fstype == "cgroup2":
            key: frozenset[str] = frozenset()
        else:
            opts = super_opts.split(",")
            key = frozenset(o for o in opts if o in _v1_controllers() or o.startswith("name="))
        if key in seen or key not in own:
            continue
        rel = os.path.relpath(own[key], root)
        if rel.startswith(".."):
            continue  # our cgroup is not visible through this mount
        seen.add(key)
        dirs.append(Path(mountpoint) / ("" if rel == "." else rel))
    return dirs


def _cgroup2_dir() -> Path | None:
    """This process's cgroup in the v2 hierarchy (``/sys/fs/cgroup/unified/...`` on a hybrid
    host, ``/sys/fs/cgroup/...`` on a pure v2 one), or None when no cgroup2 is mounted."""
    v2 = [mp for mp, fstype, _root, _opts in _cgroup_mounts() if fstype == "cgroup2"]
    for d in _cgroup_dirs():
        if any(d == Path(mp) or Path(mp) in d.parents for mp in v2):
            return d
    return None


#: What ``Testbed(cgroup=...)`` accepts: the host's layout (hybrid here, or pure v2), the host's
#: layout insisting that it be hybrid, or a single cgroup2 mount (systemd's unified mode).
CGROUP_MODES = ("host", "hybrid", "unified")


_V1: set[str] | None = None


def _v1_controllers() -> set[str]:
    global _V1
    if _V1 is None:
        lines = Path("/proc/cgroups").read_text().splitlines()[1:]
        _V1 = {ln.split()[0] for ln in lines if ln.strip()}
    return _V1


def _make_cgroup(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(exist_ok=True)
    # a v1 cpuset starts empty and refuses tasks until it has cpus and mems
    for knob in ("cpuset.cpus", "cpuset.mems"):
        mine, theirs = path / knob, parent / knob
        if mine.exists() and not mine.read_text().strip():
            mine.write_text(theirs.read_text())
    return path


def _join_cgroup(path: Path) -> None:
    """Move the calling process into ``path``, creating it when needed: systemd removes the
    empty cgroups it does not know below its root while it starts (ENOENT, or ENODEV when the
    directory dies between open and write)."""
    for _ in range(100):
        try:
            with open(path / "cgroup.procs", "w") as f:
                f.write("0")
            return
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise
        try:
            _make_cgroup(path.parent, path.name)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            time.sleep(0.005)
    raise TestbedError(f"cannot join {path}")


def _remove_cgroup_tree(top: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup subtree, children first, retrying while the kernel lets go of it."""
    deadline = time.monotonic() + timeout
    while top.exists():
        try:
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_cgroups() -> None:
    """Remove empty testbed cgroups left by a process that died without cleaning up."""
    for parent in _cgroup_dirs():
        for path in parent.glob(CGROUP_PREFIX + "*"):
            try:
                owner = int(path.name[len(CGROUP_PREFIX) :].split("-")[0])
            except ValueError:
                continue
            if owner == os.getpid() or _pid_alive(owner):
                continue
            with contextlib.suppress(OSError):  # still has processes: not ours to kill
                _remove_cgroup_tree(path, timeout=0.5)


# --------------------------------------------------------------------------------------------
# masks


def host_enabled_units(etc: Path = Path("/etc/systemd/system")) -> list[str]:
    """Services, timers, sockets and paths that the host enables in /etc/systemd/system."""
    names: set[str] = set()
    for wants in etc.glob("*.wants"):
        for link in wants.iterdir():
            if link.suffix in (".service", ".timer", ".socket", ".path"):
                names.add(link.name)
    return sorted(names)


def host_package_generators() -> list[str]:
    """Generators that neither systemd nor this project ship (postgresql-generator...)."""
    names: set[str] = set()
    for d in ("/lib/systemd/system-generators", "/usr/lib/systemd/system-generators"):
        if os.path.isdir(d):
            names.update(n for n in os.listdir(d) if not n.startswith(("systemd-", "sdcontainer")))
    return sorted(names)


# --------------------------------------------------------------------------------------------
# the testbed


class Testbed:
    """A systemd booted in throwaway namespaces. Use as a context manager."""

    __test__ = False  # not a pytest test class
    _instances: ClassVar[int] = 0

    def __init__(
        self,
        *,
        network: bool = False,
        project_dir: str | os.PathLike[str] = PROJECT_DIR,
        binds: Sequence[tuple[str, str, bool]] = (),
        state_dirs: Sequence[str] = DEFAULT_STATE_DIRS,
        mask: Iterable[str] = (),
        keep: Iterable[str] = (),
        name: str = CONTAINER_NAME,
        cgroup: str = "host",
    ) -> None:
        """``binds`` are extra (host source, target, read_only) bind mounts; ``mask`` adds units
        to mask, ``keep`` removes units from the default mask list. ``cgroup`` is the layout of
        the testbed's /sys/fs/cgroup (``CGROUP_MODES``): ``"host"`` mounts every hierarchy the
        host has (hybrid here: v1 controllers, name=systemd and an empty v2 ``unified``),
        ``"hybrid"`` the same but refuses a host without v1 hierarchies, ``"unified"`` only the
        testbed's subtree of the host's v2 hierarchy, so its systemd runs in unified mode."""
        if cgroup not in CGROUP_MODES:
            raise ValueError(f"cgroup must be one of {', '.join(CGROUP_MODES)}, not {cgroup!r}")
        self.cgroup_mode = cgroup
        self.network = network
        self.project_dir = Path(project_dir).resolve()
        # The checkout shows at its own path inside, unless that path is one the testbed
        # covers with a fresh tmpfs (a clone in /tmp, say): then at a fixed place instead.
        self.project_dir_inside = checkout_inside(self.project_dir)
        self.binds: list[tuple[str, str, bool]] = [(str(self.project_dir), self.project_dir_inside, True)]
        self.binds += [(str(Path(s).resolve()), t, ro) for s, t, ro in binds]
        for _src, target, _ro in self.binds:
            _check_bind_target(target)
        self.state_dirs = list(state_dirs)
        keep_set = set(keep)
        self.masks = sorted((set(ALWAYS_MASK) | set(host_enabled_units()) | set(mask)) - keep_set)
        self.name = name
        self.pid: int | None = None  # systemd's pid on the host
        self.boot_seconds: float | None = None
        self.install_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []
        self._exec_cgroups: list[Path] = []
        self._log: Any = None
        self._boot_log = ""
        self._started_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        """Start and wait until the system is running (or degraded)."""
        self.start()
        try:
            self.wait_running()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Boot systemd; returns as soon as it is PID 1 (see ``wait_running``)."""
        if self._proc is not None:
            raise TestbedError("testbed already started")
        if not os.path.exists(SYSTEMD):
            raise TestbedUnavailable(f"{SYSTEMD} is missing")
        sweep_stale_cgroups()
        self.boot_seconds = self.install_seconds = None
        Testbed._instances += 1
        cg_name = f"{CGROUP_PREFIX}{os.getpid()}-{Testbed._instances}"
        parents, cgroup_mounts = self._cgroup_layout()
        try:
            for parent in parents:
                self._cgroups.append(_make_cgroup(parent, cg_name))
            self._exec_cgroups = [cg / EXEC_CGROUP for cg in self._cgroups]
        except OSError as e:
            self._remove_cgroups()
            raise TestbedUnavailable(f"cannot create cgroups: {e}") from e
        procs = [str(cg / "cgroup.procs") for cg in self._cgroups]
        self._boot_log = ""

        config = {
            "name": self.name,
            "binds": self.binds,
            "state_dirs": self.state_dirs,
            "masks": self.masks,
            "mask_generators": sorted(set(MASK_GENERATORS) | set(host_package_generators())),
            "network": self.network,
            "dev_nodes": list(DEV_NODES),
            "cgroup_mounts": cgroup_mounts,
        }
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--cgroup"]
        argv += ["--propagation", "private"]
        if self.network:
            argv.append("--net")
        argv += ["--", HOST_PYTHON, "-I", "-S", str(Path(__file__).resolve()), "--boot", json.dumps(config)]

        def enter_cgroups() -> None:  # runs in the child between fork and exec
            for p in procs:
                with open(p, "w") as f:
                    f.write("0")
            _set_pdeathsig()

        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the testbed
            prefix="sdcontainer-testbed-", suffix=".log", delete=False
        )
        self._started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=enter_cgroups,
                start_new_session=True,
                env={"PATH": PATH, "LANG": "C.UTF-8"},
            )
        except OSError as e:
            self._cleanup_after_exit()
            raise TestbedUnavailable(f"cannot run unshare: {e}") from e
        self.pid = self._find_init()

    def _cgroup_layout(self) -> tuple[list[Path], list[tuple[str, str, str]]]:
        """The host cgroups to nest the testbed's under, and the (mountpoint, fstype, data) of
        the hierarchies its bootstrap mounts, for this testbed's ``cgroup`` mode."""
        mounts = _cgroup_mounts()
        if self.cgroup_mode == "unified":
            parent = _cgroup2_dir()
            v2 = [(fs, so) for _mp, fs, _root, so in mounts if fs == "cgroup2"]
            if parent is None or not v2:
                raise TestbedUnavailable("cgroup=unified: this host has no cgroup2 hierarchy mounted")
            # one cgroup2 mount on /sys/fs/cgroup itself: systemd's test for unified mode
            return [parent], [("/sys/fs/cgroup", "cgroup2", _mount_data(*v2[0]))]
        if self.cgroup_mode == "hybrid" and not any(fs == "cgroup" for _mp, fs, _r, _so in mounts):
            raise TestbedUnavailable("cgroup=hybrid: this host has no cgroup v1 hierarchy (pure v2)")
        return _cgroup_dirs(), [(mp, fs, _mount_data(fs, so)) for mp, fs, _root, so in mounts]

    def _find_init(self, timeout: float = 10.0) -> int:
        """The host pid of the child of ``unshare`` (PID 1 inside), once it exec'd systemd."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        upid = self._proc.pid
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                log = self.boot_log()
                self._cleanup_after_exit()
                if rc != 0 and "Operation not permitted" in log:
                    raise TestbedUnavailable(f"unshare failed (exit {rc}):\n{log}")
                raise TestbedError(f"testbed exited with status {rc} while booting:\n{log}")
            try:
                children = Path(f"/proc/{upid}/task/{upid}/children").read_text().split()
                if children:
                    pid = int(children[0])
                    if os.readlink(f"/proc/{pid}/exe").endswith("/systemd"):
                        return pid
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
            time.sleep(0.005)
        self.close()
        raise TestbedError(f"systemd did not start within {timeout}s:\n{self.boot_log()}")

    def close(self) -> None:
        """Kill systemd and everything in its namespaces; remove its cgroups."""
        if self._proc is None:
            return
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._cleanup_after_exit()

    def _cleanup_after_exit(self) -> None:
        # everything in the pid namespace is gone once its init has been reaped; processes that
        # entered it by nsenter are killed with it
        self._remove_cgroups()
        self._proc = None
        self.pid = None
        if self._log is not None:
            self._boot_log = self.boot_log()
            self._log.close()
            os.unlink(self._log.name)
            self._log = None

    def _remove_cgroups(self) -> None:
        errors = []
        for cg in self._cgroups:
            try:
                _remove_cgroup_tree(cg)
            except OSError as e:
                errors.append(f"{cg}: {e}")
        self._cgroups = []
        self._exec_cgroups = []
        if errors:
            raise TestbedError("cgroups left behind: " + "; ".join(errors))

    def restart(self, timeout: float = 30.0) -> None:
        """A fresh boot: the overlay's upper layer and every tmpfs start empty again."""
        self.close()
        self.start()
        self.wait_running(timeout)

    def boot_log(self) -> str:
        """What systemd (and the bootstrap) printed on stdout/stderr."""
        if self._log is None:
            return self._boot_log
        try:
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def cgroups(self) -> list[Path]:
        """The host directories of this testbed's cgroups (one per hierarchy it mounts: only
        the v2 one with ``cgroup="unified"``)."""
        return list(self._cgroups)

    def cgroup_controllers(self) -> set[str]:
        """The controllers of the testbed's cgroup2 hierarchy (cgroup.controllers at its root):
        those systemd can use in unified mode. A hybrid host's v1 hierarchies hold theirs, so
        they are missing here (this host's v2 has hugetlb at most, never memory)."""
        for path in ("/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"):
            if self.exists(path):
                return set(self.read_file(path).split())
        return set()

    @property
    def root(self) -> Path:
        """The testbed's root directory, seen from the host."""
        return Path(f"/proc/{self._need_pid()}/root")

    def _need_pid(self) -> int:
        if self.pid is None:
            raise TestbedError("testbed is not running")
        return self.pid

    def wait_running(self, timeout: float = 30.0) -> str:
        """Wait until ``systemctl is-system-running`` says running or degraded; return that."""
        pid = self._need_pid()
        deadline = time.monotonic() + timeout
        private = Path(f"/proc/{pid}/root/run/systemd/private")
        state = ""
        while time.monotonic() < deadline:
            if private.exists():
                r = self.run(["systemctl", "is-system-running"], check=False)
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    if self.boot_seconds is None:
                        self.boot_seconds = time.monotonic() - self._started_at
                    return state
                if state in ("stopping", "offline"):
                    break
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.02)
        failed = ""
        if self.pid is not None and self._proc is not None and self._proc.poll() is None:
            failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
            jobs = self.run(["systemctl", "list-jobs", "--no-legend"], check=False).stdout
            failed += "\njobs:\n" + jobs
        raise TestbedError(
            f"system state {state!r} after {timeout}s\nfailed units:\n{failed}\nboot log:\n{self.boot_log()}"
        )

    # -- running things inside ---------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "TERM": "dumb",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if extra:
            env.update(extra)
        return env

    def command(self, argv: Sequence[str], cwd: str | None = None) -> list[str]:
        """The host argv that runs ``argv`` inside the testbed (for hyperfine and the like).
        Run this way, the process stays in the caller's cgroup (its /proc/self/cgroup then
        reads "/.." inside); ``run`` and ``popen`` move it into the testbed's exec cgroup."""
        pid = self._need_pid()
        wd = ["--wd=" + cwd] if cwd else []
        return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-C", *wd, "--", *argv]

    def _enter_exec_cgroup(self) -> Callable[[], None]:
        cgroups = self._exec_cgroups

        def enter() -> None:  # between fork and exec
            for cg in cgroups:
                _join_cgroup(cg)

        return enter

    def popen(
        self, argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the testbed in the background (a server, a watcher); it dies
        with the testbed at the latest. ``kwargs`` go to ``subprocess.Popen``."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(
            self.command(argv, cwd=cwd), env=self.env(env), preexec_fn=self._enter_exec_cgroup(), **kwargs
        )

    @property
    def bus_address(self) -> str:
        """D-Bus address of the testbed's system bus, usable from the host
        (``DBUS_SYSTEM_BUS_ADDRESS``, dbus-fast's ``bus_address=``)."""
        return f"unix:path=/proc/{self._need_pid()}/root/run/dbus/system_bus_socket"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        input: str | None = None,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the testbed; stdout and stderr are captured as text."""
        r = subprocess.run(
            self.command(argv, cwd=cwd),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=timeout,
            preexec_fn=self._enter_exec_cgroup(),
        )
        if check and r.returncode != 0:
            raise CommandFailed(r.returncode, list(argv), r.stdout, r.stderr)
        return r

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def journal(self, unit: str, *args: str) -> str:
        """The unit's journal, message text only."""
        self.run(["journalctl", "--sync"], check=False)
        return self.run(["journalctl", "-u", unit, "-o", "cat", "--no-pager", *args], check=False).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    # Files are read and written by a forked child chrooted into /proc/<pid>/root: a path
    # opened through /proc/<pid>/root directly would follow an absolute symlink in the
    # testbed (/var/run -> /run, a masked unit -> /dev/null) out to the host's file system.

    def write_file(self, path: str, text: str | bytes, mode: int = 0o644) -> None:
        """Write a file into the testbed (parents are created; an existing file or symlink
        at ``path`` is replaced, not followed)."""
        data = text.encode() if isinstance(text, str) else text

        def write() -> bytes:
            dest = Path(path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
            return b""

        self._in_root(write)

    def read_file(self, path: str) -> str:
        return self.read_bytes(path).decode()

    def read_bytes(self, path: str) -> bytes:
        return self._in_root(lambda: Path(path).read_bytes())

    def exists(self, path: str) -> bool:
        return self._in_root(lambda: b"1" if os.path.lexists(path) else b"") == b"1"

    def copy_in(self, src: str | os.PathLike[str], dest: str) -> None:
        """Copy a host file or directory tree into the testbed at ``dest`` (through tar, so
        owners, modes and symlinks are kept and nothing is resolved on the host's side)."""
        src = Path(src)
        base, name = (src, ".") if src.is_dir() else (src.parent, src.name)
        self.run(["mkdir", "-p", dest if src.is_dir() else os.path.dirname(dest)])
        with subprocess.Popen(["tar", "-C", str(base), "-cf", "-", name], stdout=subprocess.PIPE) as tar:
            assert tar.stdout is not None
            target = dest if src.is_dir() else os.path.dirname(dest)
            r = subprocess.run(
                self.command(["tar", "-C", target, "--numeric-owner", "-xpf", "-"]),
                stdin=tar.stdout, capture_output=True, text=True, env=self.env(),
            )  # fmt: skip
        if tar.returncode != 0 or r.returncode != 0:
            raise TestbedError(f"copy_in {src} -> {dest} failed: {r.stderr}")
        if not src.is_dir() and os.path.basename(dest) != src.name:
            self.run(["mv", "-f", os.path.join(target, src.name), dest])

    def _in_root(self, fn: Callable[[], bytes]) -> bytes:
        root = str(self.root)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            status = 0
            try:
                os.close(rfd)
                os.chroot(root)
                os.chdir("/")
                payload = b"0" + fn()
            except OSError as e:  # re-raised in the parent as the same OSError subclass
                payload = b"2" + f"{e.errno or 0}\0{e.strerror}: {e.filename}".encode()
                status = 1
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                payload = b"1" + f"{type(e).__name__}: {e}".encode()
                status = 1
            try:
                with os.fdopen(wfd, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(status)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            payload = f.read()
        os.waitpid(pid, 0)
        if payload.startswith(b"2"):
            err, _, msg = payload[1:].decode(errors="replace").partition("\0")
            raise OSError(int(err), f"{msg} (in the testbed)")
        if not payload.startswith(b"0"):
            raise TestbedError(f"in the testbed's root: {payload[1:].decode(errors='replace')}")
        return payload[1:]

    def add_unit(self, name: str, text: str, *, reload: bool = True, no_start_limit: bool = True) -> None:
        """Write /etc/systemd/system/NAME; by default with ``StartLimitIntervalSec=0`` in its
        [Unit] section (tests and benchmarks start units in loops) and a daemon-reload."""
        if no_start_limit and "StartLimitIntervalSec=" not in text:
            text = _add_to_section(text, "Unit", "StartLimitIntervalSec=0")
        self.write_file(f"/etc/systemd/system/{name}", text)
        if reload:
            self.daemon_reload()

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    def start_unit(self, unit: str, *, reset: bool = True) -> subprocess.CompletedProcess[str]:
        """``systemctl start``, after ``reset-failed`` so a start limit hit earlier cannot bite."""
        if reset:
            self.systemctl("reset-failed", unit, check=False)
        return self.systemctl("start", unit)

    # -- installing the project --------------------------------------------------------------

    def install_project(self, prefix: str = "/usr/local", *, timeout: float = 600) -> float:
        """``make install`` from the read-only checkout (offline from build/wheels when it
        exists; prepare it on the host with ``make wheels``). Returns the seconds it took."""
        t0 = time.monotonic()
        argv = [
            "make",
            "-C",
            self.project_dir_inside,
            "install",
            f"PREFIX={prefix}",
            "BUILDDIR=/tmp/sdcontainer-build",
            "PYTHON=" + HOST_PYTHON,
        ]
        r = self.run(argv, check=False, timeout=timeout)
        if r.returncode != 0:
            raise TestbedError(f"make install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        self.daemon_reload()
        self.install_seconds = time.monotonic() - t0
        return self.install_seconds


def _add_to_section(text: str, section: str, line: str) -> str:
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if ln.strip() == f"[{section}]":
            lines.insert(i + 1, line)
            return "\n".join(lines) + "\n"
    return f"[{section}]\n{line}\n\n" + text


def checkout_inside(project_dir: str | os.PathLike[str]) -> str:
    """Where a testbed shows the checkout: at its own path, unless the testbed covers that
    path with a fresh tmpfs (a clone in /tmp, say); then at CHECKOUT_FALLBACK."""
    path = str(Path(project_dir).resolve())
    return CHECKOUT_FALLBACK if _is_volatile(path) else path


def _is_volatile(target: str) -> bool:
    t = os.path.normpath(target)
    return t == "/" or any(t == d or t.startswith(d + "/") or d.startswith(t + "/") for d in VOLATILE_DIRS)


def _check_bind_target(target: str) -> None:
    t = os.path.normpath(target)
    if not t.startswith("/"):
        raise ValueError(f"bind target must be absolute: {target!r}")
    for d in VOLATILE_DIRS:
        if _is_volatile(t):
            raise ValueError(
                f"refusing to bind a host directory at {target!r}: {d} is a fresh tmpfs in the "
                "testbed and its systemd-tmpfiles would empty what shows through there"
            )


def _set_pdeathsig() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# the bootstrap: runs as PID 1 of the new namespaces, then becomes systemd


def _boot(config: dict[str, Any]) -> None:  # pragma: no cover - runs inside the namespaces
    import ctypes
    import platform
    import socket
    import stat

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
    MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
    MNT_DETACH = 2

    def b(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    def mount(src: str | None, dst: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
        if libc.mount(b(src), b(dst), b(fstype), flags, b(data)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount {src} on {dst} ({fstype}, {flags:#x}, {data}): {os.strerror(e)}")

    def bind(src: str, dst: str, ro: bool = False, rec: bool = False) -> None:
        mount(src, dst, None, MS_BIND | (MS_REC if rec else 0))
        # a bind mount inherits the source mount's flags: set read-only or read-write explicitly
        mount(None, dst, None, MS_REMOUNT | MS_BIND | (MS_RDONLY if ro else 0))

    # make sure nothing propagates back to the host, whatever unshare did
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(config["name"])

    # any directory will do (the tmpfs is in this private mount namespace only), as long as
    # it does not hide a bind source such as a checkout cloned under /tmp
    sources = [src for src, _dst, _ro in config["binds"]]
    stage = next(
        d for d in ("/mnt", "/media", "/srv", "/tmp")
        if os.path.isdir(d) and not any(src == d or src.startswith(d + "/") for src in sources)
    )  # fmt: skip
    mount("sdcontainer-testbed", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    upper, work, root = f"{stage}/upper", f"{stage}/work", f"{stage}/root"
    for d in (upper, work, root):
        os.mkdir(d)
    mount("sdcontainer-testbed", root, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")

    def r(path: str) -> str:
        return root + path

    mount("proc", r("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # the kernel is the host's: its settings stay read-only (those of our own netns excepted)
    for path in ("/proc/sys", "/proc/sysrq-trigger"):
        if os.path.exists(r(path)):
            bind(r(path), r(path), ro=True)
    if config["network"]:
        bind(r("/proc/sys/net"), r("/proc/sys/net"))

    # A fresh sysfs (it shows this network namespace's devices), read-only so that udev and
    # friends find nothing to do. Never bind the host's /sys or /dev in read-write: systemd
    # mkdirs in them and remounts the host's /sys/fs/cgroup tmpfs read-only. The read-only flag
    # comes from a bind remount: a plain ro mount could reuse (and change) the host's superblock.
    mount("sysfs", r("/sys"), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, r("/sys"), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    # The cgroup hierarchies, mounted afresh inside our cgroup namespace: their root is the
    # testbed's own cgroup, so systemd builds its tree there. (Bind-mounting the host's
    # /sys/fs/cgroup shows it the host's roots, and it creates init.scope and system.slice at
    # the top of every host hierarchy, outside the testbed's cgroup.)
    cg = r("/sys/fs/cgroup")
    mounts = config["cgroup_mounts"]
    if any(m[0] == "/sys/fs/cgroup" for m in mounts):  # pure v2
        mount("cgroup2", cg, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, mounts[0][2])
    else:
        mount("tmpfs", cg, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")
        for mountpoint, fstype, data in mounts:
            os.mkdir(r(mountpoint))
            mount(fstype, r(mountpoint), fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, data)
        mount(None, cg, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")

    # A /dev of our own, as systemd-nspawn makes it: the host's /dev holds its consoles and
    # ttys (a getty or logind would grab them), and systemd creates nodes and links in /dev.
    mount("tmpfs", r("/dev"), "tmpfs", MS_NOSUID, "mode=0755")
    os.umask(0)
    for name in config["dev_nodes"]:
        try:
            st = os.stat("/dev/" + name)
        except FileNotFoundError:
            continue
        os.makedirs(os.path.dirname(r("/dev/" + name)), mode=0o755, exist_ok=True)
        os.mknod(r("/dev/" + name), st.st_mode, st.st_rdev)
    os.mknod(r("/dev/console"), 0o600 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)  # not the host's
    links = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}  # fmt: skip
    for link, target in links.items():
        os.symlink(target, r("/dev/" + link))
    for d in ("pts", "shm", "mqueue", "hugepages"):
        os.mkdir(r("/dev/" + d), 0o755)
    mount("devpts", r("/dev/pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("tmpfs", r("/dev/shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("mqueue", r("/dev/mqueue"), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.umask(0o022)

    mount("tmpfs", r("/run"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    mount("tmpfs", r("/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.makedirs(r("/var/tmp"), exist_ok=True)
    mount("tmpfs", r("/var/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for d in config["state_dirs"]:
        os.makedirs(r(d), exist_ok=True)
        mount("tmpfs", r(d), "tmpfs", 0, "mode=0755")
    for src, dst, ro in config["binds"]:
        os.makedirs(r(dst), exist_ok=True)
        bind(src, r(dst), ro=ro, rec=True)

    with open(r("/etc/hostname"), "w") as f:
        f.write(config["name"] + "\n")
    etc = r("/etc/systemd/system")
    for unit in config["masks"]:
        path = os.path.join(etc, unit)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink("/dev/null", path)
    gens = r("/etc/systemd/system-generators")
    os.makedirs(gens, exist_ok=True)
    for gen in config["mask_generators"]:
        os.symlink("/dev/null", os.path.join(gens, gen))

    os.chdir(root)
    sys_pivot_root = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
    nr = sys_pivot_root[platform.machine()]
    if libc.syscall(nr, b".", b".") != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"pivot_root: {os.strerror(e)}")
    if libc.umount2(b".", MNT_DETACH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount old root: {os.strerror(e)}")
    os.chdir("/")

    env = {"container": config["name"], "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"}
    os.execve(SYSTEMD, [SYSTEMD, "--system", "--show-status=no"], env)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--boot":
    _boot(json.loads(sys.argv[2]))
