"""A real captioncast server with the real model, started once for the integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def admission_off(args: tuple[str, ...]) -> tuple[str, ...]:
    """Admission by measured decode cost (--max-load) refuses streams on a slow or busy
    machine: test servers admit by --max-sessions only, unless a test sets --max-load
    (tests/integration/test_load.py does, to test exactly that)."""
    return args if "--max-load" in args else ("--max-load", "0", *args)


def store_off(args: tuple[str, ...]) -> tuple[str, ...]:
    """Test servers keep no transcripts unless a test gives them a store (--store or
    --data-dir: tests/integration/test_store_server.py)."""
    given = {"--store", "--data-dir", "--no-store"} & {a.split("=")[0] for a in args}
    return args if given else ("--no-store", *args)


def start_server(*args: str, name: str = "server") -> RunningServer:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    log = ARTIFACTS / f"{name}-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", str(port),
         *store_off(admission_off(args))],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ},
    )
    server = RunningServer(port, process, log)
    wait_healthy(process, lambda: server.health()[0], log)
    return server


def wait_healthy(process: subprocess.Popen[bytes], status: Callable[[], int],
                 log: Path, timeout: float = 120) -> None:
    """Until /healthz answers 200 (the model is loaded); the log tells why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if status() == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become healthy: {log.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    running = start_server()
    yield running
    stop_server(running)
