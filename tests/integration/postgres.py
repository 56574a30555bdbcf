"""A real, throwaway PostgreSQL cluster on a free loopback port, which a test may stop and
start again. PostgreSQL refuses to run as root: as root, it runs as the `postgres` user."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.conftest import ARTIFACTS, free_port

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
RUN_AS = "postgres"
USER = "captioncast"


def why_not() -> str | None:
    """The reason PostgreSQL cannot be started here, or None when it can."""
    if not PG_BINS:
        return "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and no runuser to start PostgreSQL as another user"
        if subprocess.run(["id", RUN_AS], capture_output=True).returncode != 0:
            return f"running as root and there is no {RUN_AS!r} user to run PostgreSQL"
    return None


class Postgres:
    def __init__(self, fsync: bool = False) -> None:
        self.fsync = fsync  # off for tests (a stop is not a power cut), on for benchmarks
        self.bin = PG_BINS[-1].parent
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and the server runs as
        # the postgres user.
        self.workdir = Path(tempfile.mkdtemp(prefix="captioncast-pg-"))
        self.data = self.workdir / "data"
        ARTIFACTS.mkdir(exist_ok=True)
        self.log = ARTIFACTS / f"postgres-{self.port}.log"
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.workdir, RUN_AS)
            shutil.chown(self.log, RUN_AS)
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}\n"
                               f"{self.log.read_text()}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1",
                                    "-p", str(self.port)], capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start: {self.log.read_text()}")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: connections are cut, with no goodbye to the clients."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)
