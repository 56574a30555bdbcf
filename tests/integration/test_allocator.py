"""The real server runs on jemalloc where it is installed, and on glibc when told to."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from captioncast.allocator import find_jemalloc
from tests.integration.conftest import start_server, stop_server

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or find_jemalloc() is None,
    reason="needs libjemalloc2 (installed by .ci/run)")


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_serve_restarts_itself_on_jemalloc_and_says_so() -> None:
    server = start_server(name="allocator-auto")
    try:
        assert "libjemalloc" in mapped_libraries(server.process.pid)
        assert "event=allocator name=jemalloc" in server.log.read_text()
        assert server.health()[0] == 200
    finally:
        stop_server(server)
    assert server.process.returncode == 0


def test_allocator_system_stays_on_glibc() -> None:
    server = start_server("--allocator", "system", name="allocator-system")
    try:
        assert "libjemalloc" not in mapped_libraries(server.process.pid)
        assert "event=allocator name=glibc" in server.log.read_text()
    finally:
        stop_server(server)
