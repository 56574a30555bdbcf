"""The route table (transport/routes.py) answered in-process, with no socket and no model."""

from __future__ import annotations

import asyncio
import json

from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.responses import HttpResponse
from captioncast.transport.routes import POSTS, UPGRADE_CHECKS, WEBSOCKETS, Routes
from captioncast.transport.server import ServerOptions
from captioncast.transport.server_context import ServerContext


def _get(path: str, **headers: str) -> HttpResponse | None:
    ctx = ServerContext(ServerOptions())
    routes = Routes(ctx, TranscribeRoutes(ctx, ctx.options.transcribe))
    return asyncio.run(routes.answer(Request(path, Headers(headers))))


def _json(response: HttpResponse | None) -> tuple[int, dict[str, object]]:
    assert response is not None and isinstance(response.body, bytes)
    return response.status, json.loads(response.body)


def test_healthz_says_loading_before_the_model() -> None:
    status, body = _json(_get("/healthz"))
    assert status == 503 and body["status"] == "loading" and body["sessions"] == 0


def test_unknown_paths_and_post_routes() -> None:
    status, body = _json(_get("/nowhere"))
    assert status == 404 and body["error"] == "not_found"
    message = str(body["message"])
    assert all(route in message for route in ("/v1/listen", "/v2/listen", "/v1/realtime"))
    # A Deepgram client knocking at the wrong door is told why in dg-error, the header
    # its SDKs and Pipecat read.
    for path in ("/v2/listen/", "/v1/listen/stream", "/v2/speak"):
        response = _get(path, Connection="Upgrade", Upgrade="websocket")
        status, body = _json(response)
        assert status == 404 and body["err_code"] == "NOT_FOUND", path
        assert response is not None and ("dg-error", body["err_msg"]) in response.headers
    for path in POSTS:
        response = _get(path)
        assert _json(response)[0] == 405 and response is not None
        assert ("Allow", "POST") in response.headers


def test_websocket_routes_want_an_upgrade() -> None:
    for path in WEBSOCKETS:
        assert _json(_get(path))[0] == 426
        if path not in UPGRADE_CHECKS:  # compatible APIs vet theirs: test_compat.py
            assert _get(path, Connection="Upgrade", Upgrade="websocket") is None


def test_pages_and_metrics_answer() -> None:
    assert _json(_get("/v1/channels")) == (200, {"channels": []})
    assert _json(_get("/v1/channels/show/captions.vtt"))[0] == 404
    metrics = _get("/metrics")
    assert metrics is not None and metrics.status == 200
    assert isinstance(metrics.body, bytes) and b"captioncast_sessions" in metrics.body
