"""A real registry for tests: Debian's docker-registry (the CNCF distribution registry),
started standalone on 127.0.0.1 with its storage in a temporary directory, no TLS, and
optionally htpasswd auth; images are pushed to it with skopeo from OCI layouts the tests
write (tests/layers.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
SKOPEO = "/usr/bin/skopeo"


def available() -> str | None:
    """Why the registry tests cannot run here, or None."""
    for tool, package in ((REGISTRY, "docker-registry"), (SKOPEO, "skopeo")):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (Debian package {package}; tools/setup installs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """bcrypt, as the registry wants it, from libcrypt (Python 3.11's crypt module: deprecated,
    but Debian 12's Python has it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"


def config_text(storage: str, port: int, htpasswd: str | None = None) -> str:
    text = (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: sdcontainer-tests\n"
    )
    if htpasswd:
        text += f"auth:\n  htpasswd:\n    realm: sdcontainer-tests\n    path: {htpasswd}\n"
    return text


class Registry:
    """One registry process on the host's loopback."""

    def __init__(self, workdir: Path, user: str | None = None, password: str | None = None) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        htpasswd = None
        if user and password:
            htpasswd = str(workdir / "htpasswd")
            Path(htpasswd).write_text(htpasswd_line(user, password))
        (workdir / "config.yml").write_text(config_text(str(workdir / "data"), self.port, htpasswd))
        self.log_path = workdir / "registry.log"
        # registries.conf: this registry speaks plain HTTP
        self.registries_conf = workdir / "registries.conf"
        self.registries_conf.write_text(f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n')
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [REGISTRY, "serve", str(workdir / "config.yml")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401 with auth: it answers
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start:\n{self.log_path.read_text()}") from None
                time.sleep(0.1)

    def push(self, layout: Path, ref_name: str, repo: str, creds: str | None = None) -> None:
        """skopeo copy oci:LAYOUT:REF docker://HOST/REPO (a manifest list copied whole)."""
        args = [
            SKOPEO,
            "copy",
            "--all",
            "--dest-tls-verify=false",
            f"oci:{layout}:{ref_name}",
            f"docker://{self.host}/{repo}",
        ]
        if creds:
            args[2:2] = ["--dest-creds", creds]
        subprocess.run(args, check=True, capture_output=True, text=True)

    def requests(self, needle: str) -> list[str]:
        """Access-log lines of requests whose line holds `needle` ("GET /v2/test/web/blobs/")."""
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if needle in line and '" ' in line and "HTTP/1.1" in line
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
