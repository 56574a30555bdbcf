"""Debian's nginx in front of captioncast nodes on loopback, from deploy/nginx.conf."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import ARTIFACTS, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


class Nginx:
    def __init__(self, workdir: Path, node_ports: list[int]) -> None:
        self.port = free_port()
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        text = CONFIG.read_text()
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                            for p in node_ports)
        text = re.sub(r"(?m)^\s*server node\d:8765.*\n", "", text)
        text = text.replace("least_conn;", "least_conn;\n" + servers)
        text = text.replace("listen 8765;", f"listen 127.0.0.1:{self.port};")
        temp = "\n".join(f"    {kind}_temp_path {workdir}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        access = f"\n    access_log {workdir}/logs/access.log;"
        text = text.replace("http {", "http {\n" + temp + access, 1)
        self.config = workdir / "nginx.conf"
        self.config.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.config), "-g",
             f"daemon off; pid {self.workdir}/nginx.pid; error_log {self.workdir}/logs/error.log;"],
            stdout=subprocess.DEVNULL, stderr=(ARTIFACTS / f"nginx-{self.port}.log").open("wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "logs" / "error.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
