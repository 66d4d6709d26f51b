"""Image benchmark: unpacking a large multi-layer image, and starting from a stored image.

    /usr/bin/python3 -m bench.images [--runs 5] [--size-mb 300] [--work DIR] [--json PATH]

(as root, from the checkout). The image is generated offline, deterministically, once
(cached under /var/tmp/sdcontainer-bench-images): five gzip layers, about --size-mb MB of
files between them (many small files, a few large ones, symlinks, hard links, a whiteout
and an opaque directory), as an OCI layout. Then, interleaved, --runs times each:

  sdcontainer   sdcontainer.unpack.unpack() of each layer into a directory of its own (what
                a pull does: both digests computed, whiteouts made, every name checked)
  tar           `tar -xzf LAYER -C DIR` of each layer into a directory of its own (GNU tar
                with gzip in a second process; no digests, no checks)
  umoci         `umoci unpack --image LAYOUT:TAG BUNDLE` (all layers into one tree, whiteouts
                applied, and an mtree manifest written), when umoci is installed

Wall time of the whole image, median over the runs, MB/s of uncompressed tar, each one's
ratio to tar, and the peak RSS of the unpacking process (wait4's ru_maxrss: for tar the
larger of tar and gzip). The page cache is warm (the blobs are read once before timing):
decompression, not the disk, is the floor.

Then starting a container from the stored image against Rootfs= of the same tree: the
launcher in the foreground (no systemd) running /bin/true, --runs times each, interleaved.

`run(runs)` returns everything as a dict (for bench/run.py); main() prints a markdown
summary and writes the JSON.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
CACHE = Path("/var/tmp/sdcontainer-bench-images")
PYTHON = "/usr/bin/python3"
UMOCI = shutil.which("umoci")
TAG = "bench"


def log(message: str) -> None:
    print(f"[bench.images {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the image ---------------------------------------------------------------------------------


def _content(rng: random.Random, size: int) -> bytes:
    """Text-like bytes (base64 of random data: gzip gets them to about 75%)."""
    raw = rng.randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw)[:size]


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **kw: Any) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_600_000_000
    info.mode = kw.pop("mode", 0o644)
    for key, value in kw.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _layer_specs(total: int) -> list[list[tuple[str, int]]]:
    """(kind, count/size) per layer, scaled to `total` bytes of file content."""
    unit = total // 300
    return [
        [("small", 15000), ("avg", 8 * unit // 1000)],  # ~120 units in small files
        [("large", 20), ("avg", 5 * unit)],  # ~100 units in 5-unit files
        [("small", 5000), ("avg", 4 * unit // 1000), ("links", 500)],  # ~20 units, links
        [("small", 1000), ("avg", 10 * unit // 1000), ("whiteouts", 1)],  # ~10 units
        [("large", 2), ("avg", 25 * unit)],  # ~50 units
    ]


def build_image(size_mb: int) -> dict[str, Any]:
    """The layout (cached); returns its description."""
    directory = CACHE / f"{size_mb}mb"
    meta_path = directory / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    log(f"generating a {size_mb} MB image in {directory} (once)")
    shutil.rmtree(directory, ignore_errors=True)
    blobs = directory / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rng = random.Random(20261127)
    total = size_mb * 1_000_000
    layers = []
    for index, spec in enumerate(_layer_specs(total)):
        settings = dict(spec)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            top = f"layer{index}"
            _add(tar, f"{top}/", type=tarfile.DIRTYPE, mode=0o755)
            count = settings.get("small") or settings.get("large") or 0
            avg = settings["avg"]
            for i in range(count):
                if i % 200 == 0:
                    _add(tar, f"{top}/d{i // 200:03d}/", type=tarfile.DIRTYPE, mode=0o755)
                size = max(1, int(avg * rng.uniform(0.25, 1.75))) if "small" in settings else avg
                _add(tar, f"{top}/d{i // 200:03d}/f{i:05d}", _content(rng, size), mode=0o644)
            for i in range(settings.get("links", 0)):
                _add(tar, f"{top}/s{i:04d}", type=tarfile.SYMTYPE, linkname=f"d000/f{i % 200:05d}")
                _add(tar, f"{top}/h{i:04d}", type=tarfile.LNKTYPE, linkname=f"{top}/d000/f{i % 200:05d}")
            if settings.get("whiteouts"):
                _add(tar, "layer0/.wh.d000", b"")
                _add(tar, "layer2/.wh..wh..opq", b"")
        tar_bytes = raw.getvalue()
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        blob = compressor.compress(tar_bytes) + compressor.flush()
        digest = hashlib.sha256(blob).hexdigest()
        (blobs / digest).write_bytes(blob)
        layers.append(
            {
                "digest": f"sha256:{digest}",
                "diff_id": "sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
                "size": len(blob),
                "tar_size": len(tar_bytes),
            }  # fmt: skip
        )
        log(f"layer {index}: {len(tar_bytes) / 1e6:.0f} MB tar, {len(blob) / 1e6:.0f} MB gzip")
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        }  # fmt: skip
    ).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    (blobs / config_digest).write_bytes(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_digest}",
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer["digest"],
                    "size": layer["size"],
                }
                for layer in layers
            ],
        }  # fmt: skip
    ).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest).write_bytes(manifest)
    (directory / "oci" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_json = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{manifest_digest}",
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": TAG}}]}  # fmt: skip
    (directory / "oci" / "index.json").write_text(json.dumps(index_json))
    meta = {"layout": str(directory / "oci"), "layers": layers}
    meta_path.write_text(json.dumps(meta))
    return meta


# --- the contenders ------------------------------------------------------------------------------

SDCONTAINER_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from sdcontainer.unpack import unpack
dest = sys.argv[2]
for i, blob in enumerate(sys.argv[3:]):
    import os
    os.mkdir(f"{dest}/{i}")
    with open(blob, "rb") as f:
        unpack(f, f"{dest}/{i}")
"""

TAR_SCRIPT = 'i=0; for blob in "$@"; do mkdir "$DEST/$i" && tar -xzf "$blob" -C "$DEST/$i" || exit 1; i=$((i+1)); done'


# Forks the command from a small interpreter and reports wait4's ru_maxrss: forked from this
# (large) process, the child's high-water mark would start at our size.
MEASURE = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, of the command and what it waited for)."""
    result = subprocess.run([PYTHON, "-S", "-c", MEASURE, *argv], env=env, capture_output=True, text=True)
    seconds, peak, status = result.stdout.split()
    if status != "0" or result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({status}): {result.stderr[-2000:]}")
    return float(seconds), int(peak)


def _unpack_once(method: str, meta: dict[str, Any], work: Path) -> tuple[float, int]:
    dest = work / method
    shutil.rmtree(dest, ignore_errors=True)
    layout = Path(meta["layout"])
    blobs = [str(layout / "blobs" / "sha256" / layer["digest"][7:]) for layer in meta["layers"]]
    os.sync()  # the previous run's writeback does not land in this run's time
    if method == "sdcontainer":
        dest.mkdir()
        return _timed([PYTHON, "-c", SDCONTAINER_SCRIPT, str(PROJECT_DIR), str(dest), *blobs])
    if method == "tar":
        dest.mkdir()
        return _timed(["sh", "-c", TAR_SCRIPT, "tar", *blobs], env={**os.environ, "DEST": str(dest)})
    if method == "umoci":
        assert UMOCI is not None
        return _timed([UMOCI, "unpack", "--image", f"{layout}:{TAG}", str(dest)])
    raise ValueError(method)


def _check_same_tree(work: Path, meta: dict[str, Any]) -> None:
    """The contenders made the same files (whiteouts as tar entries are overlay whiteouts in
    sdcontainer's tree)."""
    for i in range(len(meta["layers"])):
        ours = {str(p.relative_to(work / "sdcontainer" / str(i))) for p in (work / "sdcontainer" / str(i)).rglob("*")}
        theirs = {str(p.relative_to(work / "tar" / str(i))) for p in (work / "tar" / str(i)).rglob("*")}
        theirs = {p.replace(".wh.", "") for p in theirs if not p.endswith(".wh..wh..opq")}
        if ours != theirs:
            raise RuntimeError(f"layer {i}: sdcontainer and tar disagree on {sorted(ours ^ theirs)[:5]}")


def bench_unpack(runs: int, size_mb: int, work_dir: str | None = None) -> dict[str, Any]:
    meta = build_image(size_mb)
    tar_total = sum(layer["tar_size"] for layer in meta["layers"])
    methods = ["sdcontainer", "tar"] + (["umoci"] if UMOCI else [])
    work = Path(work_dir or "/var/tmp/sdcontainer-bench-images/work")
    work.mkdir(parents=True, exist_ok=True)
    for blob in (Path(meta["layout"]) / "blobs" / "sha256").iterdir():
        blob.read_bytes()  # warm the page cache
    samples: dict[str, list[float]] = {m: [] for m in methods}
    rss: dict[str, list[int]] = {m: [] for m in methods}
    try:
        for run_index in range(runs + 1):  # the first round is a warm-up, not counted
            order = methods[run_index % len(methods) :] + methods[: run_index % len(methods)]
            for method in order:
                seconds, peak = _unpack_once(method, meta, work)
                if run_index > 0:
                    samples[method].append(seconds)
                    rss[method].append(peak)
                label = "warm-up" if run_index == 0 else f"run {run_index}"
                log(f"{label}: {method} {seconds:.2f} s, peak RSS {peak / 1e6:.0f} MB")
            if run_index == 0:
                _check_same_tree(work, meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {}
    for method in methods:
        median = statistics.median(samples[method])
        results[method] = {
            "samples_s": samples[method],
            "median_s": median,
            "mb_per_s": tar_total / 1e6 / median,
            "peak_rss_mb": max(rss[method]) / 1e6,
        }
    tar_median = results["tar"]["median_s"]
    for method in methods:
        results[method]["speed_vs_tar"] = tar_median / results[method]["median_s"]
    return {
        "layers": len(meta["layers"]),
        "tar_mb": tar_total / 1e6,
        "gzip_mb": sum(layer["size"] for layer in meta["layers"]) / 1e6,
        "files": None,
        "methods": results,
        "umoci": UMOCI is not None,
        "work_dir": str(work),
        "work_fs": subprocess.run(
            ["stat", "-fc", "%T", str(work.parent)], capture_output=True, text=True
        ).stdout.strip(),
    }


# --- starting from a stored image vs Rootfs= ------------------------------------------------------


def bench_start(runs: int) -> dict[str, Any]:
    sys.path.insert(0, str(PROJECT_DIR))
    from tests.layers import Layout, tree_tar
    from tests.rootfs import build_busybox_rootfs

    work = Path("/var/tmp/sdcontainer-bench-images/start")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        rootfs = build_busybox_rootfs(str(work / "rootfs"))
        layout = Layout(work / "oci")
        layout.image([tree_tar(rootfs)], config={"Cmd": ["/bin/true"]}, ref="busybox:bench")
        layout.write()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SDCONTAINER_STORAGE": str(work / "storage")}
        importer = "from sdcontainer.images import import_path; import_path('oci', 'busybox:bench')"
        subprocess.run([PYTHON, "-c", importer], cwd=work, env={**env, "PYTHONPATH": str(PROJECT_DIR)}, check=True)
        launcher = [PYTHON, "-E", "-s", "-m", "sdcontainer.launcher", "start", "--unit", "b.service", "--name", "b"]
        variants = {
            "image": [*launcher, "--image", "busybox:bench"],
            "rootfs": [*launcher, "--rootfs", rootfs, "--", "/bin/true"],
        }
        # run from the checkout, which -m puts first on sys.path (-E -s: as the tests run it)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for run_index in range(runs + 3):
            for name, argv in variants.items() if run_index % 2 else reversed(variants.items()):
                start = time.perf_counter()
                subprocess.run(argv, cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
                if run_index >= 3:
                    samples[name].append(time.perf_counter() - start)
        result: dict[str, Any] = {
            name: {"samples_s": s, "median_ms": statistics.median(s) * 1000} for name, s in samples.items()
        }
        result["image_vs_rootfs"] = result["image"]["median_ms"] / result["rootfs"]["median_ms"]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(runs: int, size_mb: int = 300, work_dir: str | None = None) -> dict[str, Any]:
    """Everything, as a dict (what main() prints and writes). `work_dir` is where the trees
    are unpacked (default /var/tmp/...: the disk; a tmpfs such as /dev/shm/x measures the
    CPU side alone)."""
    if os.geteuid() != 0:
        raise SystemExit("bench.images: run as root (unpacking sets owners; the launcher builds namespaces)")
    return {
        "unpack": bench_unpack(runs, size_mb, work_dir),
        "start": bench_start(max(runs, 10)),
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(result: dict[str, Any]) -> str:
    unpack = result["unpack"]
    lines = [
        f"Unpacking {unpack['layers']} gzip layers: {unpack['tar_mb']:.0f} MB of tar, {unpack['gzip_mb']:.0f} MB "
        f"compressed; median of {len(unpack['methods']['tar']['samples_s'])} runs (warm page cache), "
        f"unpacked on {unpack['work_fs']} ({unpack['work_dir']}).",
        "",
        "| | median | MB/s (tar) | speed vs tar -x | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in unpack["methods"].items():
        lines.append(
            f"| {name} | {m['median_s']:.2f} s | {m['mb_per_s']:.0f} | {m['speed_vs_tar']:.2f}x "
            f"| {m['peak_rss_mb']:.0f} MB |"
        )
    start = result["start"]
    lines += [
        "",
        f"Starting /bin/true in the foreground: from a stored image {start['image']['median_ms']:.1f} ms, "
        f"from Rootfs= {start['rootfs']['median_ms']:.1f} ms (image/rootfs {start['image_vs_rootfs']:.2f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--work", help="where to unpack (default: under /var/tmp; /dev/shm/DIR for a tmpfs)")
    parser.add_argument("--json", default=str(PROJECT_DIR / "bench" / "results" / "images.json"))
    args = parser.parse_args()
    result = run(args.runs, args.size_mb, args.work)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result), end="")


if __name__ == "__main__":
    main()
