"""Every route on the port in one table: WebSocket, GET and POST, and how each is answered.

GETs and WebSocket upgrades come through websockets (`answer_get` is its
`process_request`, `serve_websocket` its handler); POSTs come through h11
(transport/http_front.py), which asks `answer_get` for the GETs that follow them.
"""

from __future__ import annotations

import contextlib
import http
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from captioncast.errors import CaptioncastError
from captioncast.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from captioncast.transport import compat_routes
from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.http_front import HttpFront, PostHandler
from captioncast.transport.huggingface import PATH as HF_PATH
from captioncast.transport.huggingface import HuggingFaceRoute
from captioncast.transport.output_routes import (
    OUTPUT_PATH,
    OUTPUTS_PATH,
    OutputRoutes,
    list_outputs,
)
from captioncast.transport.pages import overlay, web_page
from captioncast.transport.responses import HttpResponse, error_response, json_response
from captioncast.transport.security import http_refusal, peer_host, redact
from captioncast.transport.server_context import ServerContext
from captioncast.transport.speaker_routes import (
    CHANNEL_SPEAKER,
    CHANNEL_SPEAKERS,
    VOICE,
    VOICES,
    SpeakerRoutes,
    channel_speakers,
    list_voices,
)
from captioncast.transport.stream import handle_stream
from captioncast.transport.transcript_routes import (
    CAPTION_FILE,
    TRANSCRIPT,
    caption_file,
    channel_list,
    delete_channel,
    transcript,
)
from captioncast.transport.viewer import handle_viewer
from captioncast.transport.websocket import reject

log = logging.getLogger("captioncast.server")

WsHandler = Callable[[ServerConnection, ServerContext], Awaitable[None]]
# A store's reads are awaited: a handler may answer later.
GetHandler = Callable[[ServerContext, Request], HttpResponse | Awaitable[HttpResponse]]
GetAnswer = HttpResponse | Awaitable[HttpResponse] | None
DeleteHandler = Callable[[ServerContext, HttpRequest], Awaitable[HttpResponse | None]]
UpgradeCheck = Callable[[ServerContext, Request], HttpResponse | None]  # None: upgrade


def health(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /healthz: load balancers' probe; the figures only with a token."""
    status = http.HTTPStatus.OK if ctx.ready else http.HTTPStatus.SERVICE_UNAVAILABLE
    body = ctx.health()
    if not ctx.gate.trusted(request.path, request.headers):
        body = {"status": body["status"]}  # a probe without a token: the state only
    return json_response(status, body)


def metrics(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /metrics: Prometheus."""
    return HttpResponse(200, ctx.telemetry.metrics.render(), METRICS_CONTENT_TYPE)


# Answered before any token or origin check.
OPEN_GETS: dict[str, GetHandler] = {"/healthz": health}
GETS: dict[str, GetHandler] = {
    "/metrics": metrics,
    "/overlay": overlay,
    "/v1/channels": channel_list,
    "/v1/speakers": list_voices,  # enrolled voices (transport/speaker_routes.py)
}
GET_PATTERNS: tuple[tuple[re.Pattern[str], GetHandler], ...] = (
    (CAPTION_FILE, caption_file),
    (OUTPUTS_PATH, list_outputs),
    (CHANNEL_SPEAKERS, channel_speakers),
    (TRANSCRIPT, transcript),
)
# Through h11 (transport/http_front.py), after its origin and token checks.
DELETES: tuple[DeleteHandler, ...] = (delete_channel,)
# A bad token on these is answered after the upgrade: an error event, then close 4001.
WEBSOCKETS: dict[str, WsHandler] = {
    "/v1/stream": handle_stream,
    "/v1/captions": handle_viewer,
    "/v1/listen": compat_routes.handle_listen,  # Deepgram live
    "/v2/listen": compat_routes.handle_flux,  # Deepgram Flux: turns for voice agents
    "/v1/realtime": compat_routes.handle_realtime,  # OpenAI Realtime transcription
}
# Compatible APIs refuse a bad token or query before the upgrade, in their own shapes.
UPGRADE_CHECKS: dict[str, UpgradeCheck] = {
    "/v1/listen": compat_routes.vet_listen,
    "/v2/listen": compat_routes.vet_flux,
    "/v1/realtime": compat_routes.vet_realtime,
}
POSTS = ("/v1/transcribe", "/v1/audio/transcriptions")  # transport/file_routes.py
NOT_FOUND = ("no route {path}; see /, /watch, /healthz, /v1/stream, /v1/captions, /overlay, "
             "/v1/listen, /v2/listen, /v1/realtime, POST /v1/transcribe")
# Where a Deepgram client may knock: its 404 carries dg-error, the only reason Pipecat's
# Deepgram services show of a refused handshake.
DEEPGRAM_PREFIXES = ("/v1/listen", "/v2/", "/v1/speak", "/v1/agent")


class Routes:
    """The table above, bound to one server's context."""

    def __init__(self, ctx: ServerContext, transcribe: TranscribeRoutes) -> None:
        self.ctx = ctx
        self.posts: dict[str, PostHandler] = transcribe.routes()
        assert tuple(self.posts) == POSTS
        outputs = OutputRoutes(ctx)
        speakers = SpeakerRoutes(ctx)
        # Paths with names in them, other methods than GET: (pattern, method, handler).
        self.pattern_routes: tuple[tuple[re.Pattern[str], str, PostHandler], ...] = (
            (OUTPUTS_PATH, "POST", outputs.add),
            (OUTPUT_PATH, "DELETE", outputs.remove),
            (HF_PATH, "POST", HuggingFaceRoute(transcribe)),  # transport/huggingface.py
            (CHANNEL_SPEAKER, "PUT", speakers.name),  # transport/speaker_routes.py
            (VOICES, "POST", speakers.enroll),
            (VOICE, "DELETE", speakers.forget),
        )

    def install(self, front: HttpFront) -> None:
        for path, handler in self.posts.items():
            front.route(path, handler)
        for pattern, method, handler in self.pattern_routes:
            front.route_pattern(pattern, method, handler)
        front.delete_route = self.answer_delete

    async def answer_delete(self, request: HttpRequest) -> HttpResponse | None:
        for handler in DELETES:
            try:
                answer = await handler(self.ctx, request)
            except CaptioncastError as error:
                return _refusal(error, request.path)
            if answer is not None:
                return answer
        return None

    async def answer(self, request: Request) -> HttpResponse | None:
        """`answer_get`, awaited when its route reads the store."""
        answer = self.answer_get(request)
        if not inspect.isawaitable(answer):
            return answer
        try:
            return await answer
        except CaptioncastError as error:
            return _refusal(error, urlsplit(request.path).path)

    def answer_get(self, request: Request) -> GetAnswer:
        """Answer a GET; None to let a WebSocket upgrade go on."""
        ctx = self.ctx
        path = urlsplit(request.path).path
        if path in OPEN_GETS:
            return OPEN_GETS[path](ctx, request)
        try:
            ctx.gate.check_origin(request.headers)
            page = web_page(request)  # no data in them: no token (transport/pages.py)
            if page is not None:
                return page
            if path not in WEBSOCKETS:
                ctx.gate.authorize(request.path, request.headers)
        except CaptioncastError as error:
            return _refusal(error, path)
        if path in WEBSOCKETS:
            if "upgrade" not in request.headers.get("Connection", "").lower():
                return json_response(
                    http.HTTPStatus.UPGRADE_REQUIRED,
                    {"error": "bad_request", "message": f"{path} is a WebSocket endpoint"},
                )
            check = UPGRADE_CHECKS.get(path)
            return check(ctx, request) if check is not None else None
        handler = GETS.get(path) or next(
            (h for pattern, h in GET_PATTERNS if pattern.fullmatch(path)), None)
        if handler is not None:
            return handler(ctx, request)
        if path in self.posts:
            refused = json_response(http.HTTPStatus.METHOD_NOT_ALLOWED,
                                    {"error": "bad_request", "message": f"{path} takes POST"})
            refused.headers.append(("Allow", "POST"))
            return refused
        message = NOT_FOUND.format(path=path)
        if path.startswith(DEEPGRAM_PREFIXES):
            return compat_routes.deepgram_error(http.HTTPStatus.NOT_FOUND, "NOT_FOUND", message)
        return json_response(http.HTTPStatus.NOT_FOUND, {"error": "not_found", "message": message})

    async def serve_websocket(self, connection: ServerConnection) -> None:
        """websockets' handler: a token check, a connection slot, then the route."""
        ctx = self.ctx
        request = connection.request
        assert request is not None
        path = urlsplit(request.path).path
        with contextlib.ExitStack() as held:
            try:
                ctx.gate.authorize(request.path, request.headers)
                held.enter_context(ctx.gate.connection(peer_host(connection.remote_address)))
            except CaptioncastError as error:
                log.info("event=session_refused peer=%s path=%s code=%s message=%r",
                         connection.remote_address, redact(request.path), error.code,
                         error.message)
                await reject(connection, error)
                return
            handler = WEBSOCKETS.get(path)
            if handler is not None:
                await handler(connection, ctx)


def _refusal(error: CaptioncastError, path: str) -> HttpResponse:
    status, headers = http_refusal(error) or (http.HTTPStatus.BAD_REQUEST, [])
    log.info("event=http_refused path=%s code=%s status=%d", path, error.code, status)
    response = error_response(status, error.code, error.message)
    response.headers.extend(headers)
    return response


