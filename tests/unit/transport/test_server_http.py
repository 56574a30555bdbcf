"""The HTTP side of the port over a real socket, in-process, with the scripted decoder:
/healthz and /metrics as probes and scrapers read them, 404, 405, 426, tokens on GETs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from captioncast import __version__
from captioncast.transport.routes import POSTS, WEBSOCKETS
from captioncast.transport.security import SecurityOptions
from tests.support.inprocess import ScriptedServer, scripted_server

TOKEN = "s3cret-token"
# One sample of the Prometheus text format: a name, optional labels, a number.
SAMPLE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?([0-9.e+-]+|NaN|[+-]?Inf)")


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with scripted_server() as running:
        yield running


@pytest.fixture
async def guarded() -> AsyncIterator[ScriptedServer]:
    async with scripted_server(security=SecurityOptions(tokens=(TOKEN,))) as running:
        yield running


async def test_healthz_reports_ok_and_the_load_once_sessions_are_accepted(
        server: ScriptedServer) -> None:
    answer = await server.get("/healthz")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["model"] == "scripted" and body["multilingual"] is False
    assert body["sessions"] == body["connected_sessions"] == body["viewers"] == 0
    assert body["max_sessions"] == 64 and body["decode_workers"] >= 1
    for key in ("queue_depth", "capacity", "load", "lag_s", "uptime_s"):
        assert key in body, key


async def test_healthz_without_a_token_says_the_state_only(guarded: ScriptedServer) -> None:
    assert (await guarded.get("/healthz")).json() == {"status": "ok"}
    full = await guarded.get("/healthz", Authorization=f"Bearer {TOKEN}")
    assert full.status == 200 and full.json()["model"] == "scripted"


async def test_metrics_are_prometheus_text(server: ScriptedServer) -> None:
    answer = await server.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    lines = answer.body.decode().splitlines()
    samples = [line for line in lines if line and not line.startswith("#")]
    assert samples and all(SAMPLE.fullmatch(line) for line in samples), samples
    types = dict(line.split()[2:4] for line in lines if line.startswith("# TYPE"))
    assert types["captioncast_sessions"] == "gauge"
    assert types["captioncast_finals_total"] == "counter"
    assert types["captioncast_final_latency_seconds"] == "histogram"


async def test_unknown_paths_are_404_with_the_routes_named(server: ScriptedServer) -> None:
    answer = await server.get("/nowhere")
    assert answer.status == 404
    body = answer.json()
    assert body["error"] == "not_found" and "/v1/stream" in body["message"]


async def test_post_routes_answer_a_get_with_405_and_allow(server: ScriptedServer) -> None:
    for path in POSTS:
        answer = await server.get(path)
        assert answer.status == 405 and answer.headers["Allow"] == "POST", path
        assert answer.json()["error"] == "bad_request"


async def test_websocket_routes_answer_a_plain_get_with_426(server: ScriptedServer) -> None:
    for path in WEBSOCKETS:
        answer = await server.get(path)
        assert answer.status == 426, path
        assert answer.json()["error"] == "bad_request"


async def test_get_routes_want_the_token_when_tokens_are_configured(
        guarded: ScriptedServer) -> None:
    for path in ("/metrics", "/v1/channels", "/overlay?channel=show"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = await guarded.get(path, **headers)
            assert refused.status == 401, (path, headers)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert refused.json()["error"] == "unauthorized"
        assert (await guarded.get(path, Authorization=f"Bearer {TOKEN}")).status == 200, path
        joined = "&" if "?" in path else "?"
        assert (await guarded.get(f"{path}{joined}token={TOKEN}")).status == 200, path


async def test_channels_lists_none_before_anyone_speaks(server: ScriptedServer) -> None:
    answer = await server.get("/v1/channels")
    assert answer.status == 200 and answer.json() == {"channels": []}
