"""What is measured: the unit files of the three start-up cases, the density units and the
`.container` template for the generator benchmark. Plain data and text, no side effects."""

from __future__ import annotations

from typing import NamedTuple

#: Paths inside the testbed.
ROOTFS = "/srv/rootfs/busybox"
VENV = "/usr/local/lib/sdcontainer/venv"
VENV_PYTHON = f"{VENV}/bin/python3"
GENERATOR = "/usr/local/lib/systemd/system-generators/sdcontainer-generator"
CONTAINER_DIR = "/etc/sdcontainer"
UNIT_DIR = "/etc/systemd/system"
GEN_SOURCES = "/srv/bench-gen"  # /srv/bench-gen/<n>/*.container
GEN_OUTPUT = "/tmp/bench-gen-out"  # a tmpfs in the testbed
PODMAN_IMAGE = "localhost/busybox"

#: The long-running payload of every case: busybox's sleep.
PAYLOAD = ("/bin/sleep", "1000")
PAYLOAD_LINE = " ".join(PAYLOAD)

#: Generator benchmark sizes (0 = start-up and imports only) and the reload comparison size.
GEN_SIZES = (0, 1, 100, 1000)
RELOAD_SIZE = 100
#: The 100-file set is linked into the generator's search path only while measured.
RELOAD_LINK = f"{CONTAINER_DIR}/bench-reload"

DENSITY_COUNT = 10


class Case(NamedTuple):
    key: str  # short id used in the JSON
    label: str  # row title in the table
    unit: str  # systemd unit name in the testbed


SDCONTAINER = Case("sdcontainer", "sdcontainer (.container, Rootfs=, Network=none, RunInit=no)", "bench-sd.service")
PLAIN = Case(
    "plain", "plain sandboxed unit (floor: RootDirectory=, MountAPIVFS=, PrivateNetwork=)", "bench-plain.service"
)
PODMAN = Case("podman", "Quadlet-style podman unit (podman 4.3.1 + runc, conmon)", "bench-podman.service")
# Two reference points that split the difference between the floor and sdcontainer:
BARE = Case("bare", "(reference) bare unit: Type=exec, the host's /bin/sleep, no sandbox", "bench-bare.service")
PYNOTIFY = Case(
    "pynotify",
    "(reference) Python Type=notify floor: the launcher's interpreter and flags, READY=1, exec sleep",
    "bench-pynotify.service",
)
#: The Python floor in sdcontainer's own unit: the generated bench-sd.service with only its
#: ExecStart= replaced by PYNOTIFY's, so that sdcontainer minus this is the launcher's own work
#: (the unit's [Service] policy, Delegate=, the device policy, ... cost the same in both).
PYUNIT = Case(
    "pyunit",
    "(reference) the Python floor in sdcontainer's generated unit (its [Service] settings, ExecStart= as above)",
    "bench-pyunit.service",
)
#: A runs without podman, A2 with it: in one interleaved run podman's background work slowed the
#: case that followed it, so the floor ratio is measured apart from podman.
SDIMAGE = Case(
    "sdimage", "sdcontainer from a stored image (.container, Image=, Pull=never, Network=none)", "bench-img.service"
)
#: The busybox tree imported into sdcontainer's image store inside the testbed.
IMAGE = "localhost/bench-busybox:1"
START_CASES = (PLAIN, SDCONTAINER, SDIMAGE, BARE, PYNOTIFY, PYUNIT)
PODMAN_CASES = (PLAIN, SDCONTAINER, PODMAN)


def sdcontainer_container(name_comment: str = "") -> str:
    """The `.container` file of the sdcontainer case.

    `sleep` as PID 1 of its pid namespace has no SIGTERM handler, so the kernel drops SIGTERM
    and `systemctl stop` would wait for the whole stop timeout. StopSignal=SIGKILL makes the
    stop (case D) measure the machinery rather than a timeout; it does not touch the start path.
    A main process killed by its own KillSignal=SIGKILL is a failure to systemd unless
    SuccessExitStatus= names the signal."""
    head = f"# {name_comment}\n" if name_comment else ""
    return (
        f"{head}[Unit]\nDescription=sdcontainer benchmark\nStartLimitIntervalSec=0\n\n"
        f"[Container]\nRootfs={ROOTFS}\nExec={PAYLOAD_LINE}\nNetwork=none\nRunInit=no\nStopSignal=SIGKILL\n\n"
        "[Service]\nSuccessExitStatus=SIGKILL\n"
    )


def image_container() -> str:
    """The sdcontainer case's file with Image= instead of Rootfs= (same tree, same payload)."""
    return sdcontainer_container("image").replace(f"Rootfs={ROOTFS}\n", f"Image={IMAGE}\nPull=never\n")


def plain_unit() -> str:
    """The floor: the same program in systemd's own sandbox. Type=exec, so `systemctl start`
    returns once the program has been exec'd. Here `sleep` is not a PID 1 and dies of SIGTERM."""
    return (
        "[Unit]\nDescription=plain sandboxed unit (benchmark floor)\nStartLimitIntervalSec=0\n\n"
        f"[Service]\nType=exec\nRootDirectory={ROOTFS}\nMountAPIVFS=yes\nPrivateNetwork=yes\n"
        f"ExecStart={PAYLOAD_LINE}\n"
    )


def bare_unit() -> str:
    """What systemd and systemctl cost by themselves: no sandbox, no root directory."""
    return (
        "[Unit]\nDescription=bare unit (benchmark reference)\nStartLimitIntervalSec=0\n\n"
        f"[Service]\nType=exec\nExecStart={PAYLOAD_LINE}\n"
    )


#: The least any Python launcher can cost: start the interpreter the way the launcher's is
#: started (same interpreter and flags), tell systemd READY=1 through _socket, exec the payload.
PY_NOTIFY = (
    "import _socket, os; s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM); "
    "s.connect(os.environ['NOTIFY_SOCKET']); s.send(b'READY=1'); "
    f"os.execv('{PAYLOAD[0]}', {list(PAYLOAD)!r})"
)


def pynotify_unit(python: str, flags: list[str]) -> str:
    return (
        "[Unit]\nDescription=Python Type=notify floor (benchmark reference)\nStartLimitIntervalSec=0\n\n"
        f'[Service]\nType=notify\nExecStart={python} {" ".join(flags)} -c "{PY_NOTIFY}"\n'
    )


def pyunit_unit(generated: str, python: str, flags: list[str]) -> str:
    """The generated sdcontainer unit `generated` with the Python floor as its ExecStart=."""
    exec_start = pynotify_unit(python, flags).rpartition("ExecStart=")[2]
    lines = [ln for ln in generated.splitlines() if not ln.startswith(("ExecStart=", "SourcePath="))]
    service = lines.index("[Service]")
    return "\n".join([*lines[: service + 1], f"ExecStart={exec_start.rstrip()}", *lines[service + 1 :]]) + "\n"


def podman_unit(runtime: str = "runc") -> str:
    """What Quadlet (podman >= 4.4) would generate for the same container, written by hand
    because Debian 12's podman 4.3.1 has no Quadlet.

    crun 1.8.1 refuses this machine's hybrid cgroup layout, hence --runtime runc. As in the
    sdcontainer case, `sleep` is the container's PID 1 and ignores SIGTERM; without
    --stop-signal=SIGKILL `podman rm -f` waits its 10 s stop timeout. conmon exits 137 then."""
    return (
        "[Unit]\nDescription=Quadlet-style podman unit (benchmark)\nStartLimitIntervalSec=0\n\n"
        "[Service]\nType=notify\nNotifyAccess=all\nKillMode=mixed\nDelegate=yes\n"
        "SuccessExitStatus=137\nEnvironment=PODMAN_SYSTEMD_UNIT=%n\n"
        "ExecStart=/usr/bin/podman run --name bench-%N --replace --rm --cgroups=split --sdnotify=conmon -d "
        f"--runtime {runtime} --stop-signal=SIGKILL --network=none {PODMAN_IMAGE} {PAYLOAD_LINE}\n"
        "ExecStop=/usr/bin/podman rm -f -i bench-%N\n"
    )


def generator_container(index: int) -> str:
    """One `.container` file of the generator benchmark (a few keys of each kind)."""
    return (
        f"[Unit]\nDescription=Generated benchmark container {index:04d}\nAfter=network-online.target\n\n"
        f"[Container]\nRootfs={ROOTFS}\nExec=/bin/httpd -f -p {8000 + index} -h /www\n"
        f"Environment=GREETING=hello INDEX={index:04d}\nEnvironment=MODE=bench\n"
        "Volume=/srv/www:/www:ro\nNetwork=none\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def density_units() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path in the testbed, text) of the density units: 10 sdcontainer, 10 podman."""
    sd = [
        (f"{CONTAINER_DIR}/bench-dens-sd-{i}.container", sdcontainer_container(f"density {i}"))
        for i in range(DENSITY_COUNT)
    ]
    pod = [(f"{UNIT_DIR}/bench-dens-pod-{i}.service", podman_unit()) for i in range(DENSITY_COUNT)]
    return sd, pod


def unit_of(path: str) -> str:
    name = path.rsplit("/", 1)[1]
    return name.removesuffix(".container") + ".service" if name.endswith(".container") else name


#: F (parallel starts) and G (scaling): the same numbered units serve both.
PARALLEL_SIZES = (1, 10, 50, 100)
SCALING_CHECKPOINTS = (1, 10, 50, 100, 150, 200)
MANY_COUNT = max(*PARALLEL_SIZES, *SCALING_CHECKPOINTS)


def many_units(kind: str) -> list[tuple[str, str]]:
    """(path in the testbed, text) of MANY_COUNT numbered units of one kind."""
    if kind == "sdcontainer":
        return [
            (f"{CONTAINER_DIR}/bench-n-sd-{i:03d}.container", sdcontainer_container(f"many {i}"))
            for i in range(MANY_COUNT)
        ]
    if kind == "plain":
        return [(f"{UNIT_DIR}/bench-n-plain-{i:03d}.service", plain_unit()) for i in range(MANY_COUNT)]
    if kind == "podman":
        return [(f"{UNIT_DIR}/bench-n-pod-{i:03d}.service", podman_unit()) for i in range(MANY_COUNT)]
    raise ValueError(kind)


#: E: `true` run to completion, by each tool a user could pick; (key, label, argv).
CRUN_BUNDLE = "/srv/bench-crun"


#: E: a running container of the sdcontainer case's kind, for `sdcontainer exec` (started for E only).
EXEC = Case("exec", "sdcontainer container for exec (same file as the sdcontainer case)", "bench-exec.service")


def run_to_end_commands() -> list[tuple[str, str, list[str]]]:
    true = "/bin/true"
    return [
        # --network none: as the others here (PrivateNetwork=yes, podman's --network=none); run's
        # default is the bridge network, as podman run's
        ("sdcontainer", "`sdcontainer run --network none ROOTFS /bin/true` (transient unit over D-Bus, waits, "
         "collects)", ["sdcontainer", "run", "--network", "none", ROOTFS, true]),
        ("systemd_run", "`systemd-run --wait -q -p RootDirectory=ROOTFS -p MountAPIVFS=yes -p PrivateNetwork=yes`",
         ["systemd-run", "--wait", "-q", "-p", f"RootDirectory={ROOTFS}", "-p", "MountAPIVFS=yes",
          "-p", "PrivateNetwork=yes", true]),
        ("systemd_run_pipe", "`systemd-run --wait --pipe -q -p RootDirectory=ROOTFS -p MountAPIVFS=yes "
         "-p PrivateNetwork=yes` (stdio passed, as `sdcontainer run` passes it)",
         ["systemd-run", "--wait", "--pipe", "-q", "-p", f"RootDirectory={ROOTFS}", "-p", "MountAPIVFS=yes",
          "-p", "PrivateNetwork=yes", true]),
        ("exec", "`sdcontainer exec NAME /bin/true` (into a running container: joins it, no unit)",
         ["sdcontainer", "exec", EXEC.unit.removesuffix(".service"), true]),
        ("nspawn", "`systemd-nspawn -q --register=no -D ROOTFS` (its own scope unit)",
         ["systemd-nspawn", "-q", "--register=no", "-D", ROOTFS, true]),
        ("crun", "`crun run -b BUNDLE` (OCI runtime alone: no image store, no unit)",
         ["crun", "run", "-b", CRUN_BUNDLE, "bench-crun"]),
        ("podman", "`podman run --rm --runtime runc --network=none localhost/busybox`",
         ["podman", "run", "--rm", "--runtime", "runc", "--network=none", PODMAN_IMAGE, true]),
        ("unshare", "`unshare --pid --fork --mount --net --uts --ipc chroot ROOTFS` (C floor, no confinement)",
         ["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "chroot", ROOTFS, true]),
    ]  # fmt: skip
