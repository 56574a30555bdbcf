"""The compatible live APIs' WebSocket routes: `/v1/listen` and `/v2/listen` (Deepgram, its
Flux), `/v1/realtime` (OpenAI).

Each vets its handshake in its API's own error shape, opens a LiveSession on the same
scheduler, limits, tokens and channels as `/v1/stream`, and serves it on the one
`Connection` with its translator (api/deepgram.py, api/flux.py, api/openai_realtime.py).
None of these APIs can resume a stream, so a dropped connection finalizes its session at
once instead of holding it for `resume_window_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from captioncast.api import deepgram, openai_realtime
from captioncast.api.deepgram import DeepgramTranslator, parse_listen_query
from captioncast.api.endpointing import endpointing_policy
from captioncast.api.flux import FluxTranslator, parse_flux_query
from captioncast.api.openai_realtime import RealtimeTranslator
from captioncast.api.realtime_config import SessionFlavour
from captioncast.core.params import StreamParams
from captioncast.errors import BadRequest, CaptioncastError, Unauthorized
from captioncast.protocol import codes
from captioncast.transport.responses import HttpResponse, json_response, status_of
from captioncast.transport.server_context import ServerContext
from captioncast.transport.stream import Connection, open_session, serve
from captioncast.transport.websocket import close_or_abort

# -- Deepgram: GET /v1/listen ---------------------------------------------------------------


def deepgram_error(status: int, code: str, message: str) -> HttpResponse:
    """A refused handshake as Deepgram answers it: the body, and dg-error."""
    request_id = str(uuid.uuid4())
    response = json_response(status, deepgram.error_body(code, message, request_id))
    response.headers.extend([("dg-error", message[:200]), ("dg-request-id", request_id)])
    return response


def vet_listen(ctx: ServerContext, request: Request) -> HttpResponse | None:
    """Before the upgrade: a bad token or query is an HTTP error, as Deepgram's are."""
    return _vet_deepgram(ctx, request, lambda path: parse_listen_query(path).stream)


def _vet_deepgram(ctx: ServerContext, request: Request,
                  parse: Callable[[str], StreamParams]) -> HttpResponse | None:
    """Deepgram's refusals before the upgrade (v1 and Flux): 401, 400 or 503 with
    dg-error, the reason its SDKs and Pipecat show."""
    try:
        ctx.gate.authorize(request.path, request.headers)
    except Unauthorized:
        return deepgram_error(401, "INVALID_AUTH", "Invalid credentials.")
    try:
        ctx.check_model_support(parse(request.path))
    except BadRequest as error:
        return deepgram_error(400, "Bad Request", error.message)
    if not ctx.ready:
        return deepgram_error(503, "Service Unavailable",
                              "the model is still loading or the server is shutting down")
    return None


async def handle_listen(connection: ServerConnection, ctx: ServerContext) -> None:
    assert connection.request is not None
    try:
        options = parse_listen_query(connection.request.path)
        policy = endpointing_policy(ctx.options.policy, options.endpointing_ms)
        live = open_session(connection, ctx, options.stream, policy)
    except CaptioncastError as error:
        # The handshake checked the query: what is left is no room (1013, try later).
        ctx.telemetry.refused(error.code)
        await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                             error.close_code or codes.INTERNAL, error.message)
        return
    translator = DeepgramTranslator(options, ctx.model_name)
    await serve(Connection(connection, live, translator, ctx.options))


# -- Deepgram Flux: GET /v2/listen -----------------------------------------------------------


def vet_flux(ctx: ServerContext, request: Request) -> HttpResponse | None:
    """Before the upgrade: a bad token or query (a threshold out of Flux's range)."""
    return _vet_deepgram(ctx, request, lambda path: parse_flux_query(path).stream)


async def handle_flux(connection: ServerConnection, ctx: ServerContext) -> None:
    assert connection.request is not None
    try:
        options = parse_flux_query(connection.request.path)
        live = open_session(connection, ctx, options.stream)
    except CaptioncastError as error:
        # The handshake checked the query: what is left is no room (1013, try later).
        ctx.telemetry.refused(error.code)
        await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                             error.close_code or codes.INTERNAL, error.message)
        return
    await serve(Connection(connection, live, FluxTranslator(options), ctx.options))


# -- OpenAI Realtime transcription: GET /v1/realtime?intent=transcription -------------------


def openai_error(status: int, message: str, code: str | None) -> HttpResponse:
    return json_response(status, openai_realtime.error_body(message, code))


def vet_realtime(ctx: ServerContext, request: Request) -> HttpResponse | None:
    """Before the upgrade: OpenAI's 401 for a bad key; only transcription sessions."""
    try:
        ctx.gate.authorize(request.path, request.headers)
    except Unauthorized as error:
        return openai_error(401, error.message, "invalid_api_key")
    query = dict(parse_qsl(urlsplit(request.path).query))
    if query.get("intent") != "transcription":
        return openai_error(400, "this server runs transcription sessions only: connect to "
                            "/v1/realtime?intent=transcription", "invalid_intent")
    if not ctx.ready:
        return openai_error(503, "the model is still loading or the server is shutting down",
                            "server_unavailable")
    return None


async def handle_realtime(connection: ServerConnection, ctx: ServerContext) -> None:
    """Settings first, then the session on the first audio."""
    assert connection.request is not None
    flavour = (SessionFlavour.BETA if "realtime=v1" in connection.request.headers.get(
        "OpenAI-Beta", "") else SessionFlavour.GA)
    translator = RealtimeTranslator(flavour, ctx.model_name, ctx.check_model_support)
    try:
        await connection.send(translator.greeting())
        opened = await _settings(connection, ctx, translator)
    except ConnectionClosed:
        return
    if not opened:
        return
    params = translator.open()
    try:
        ctx.check_model_support(params)
        live = open_session(connection, ctx, params, endpointing_policy(
            ctx.options.policy, translator.config.silence_ms))
    except CaptioncastError as error:
        ctx.telemetry.refused(error.code)
        await connection.send(translator.refusal(error.message, error.code,
                                                 server_side=status_of(error) >= 500))
        await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                             error.close_code or codes.INTERNAL, error.message)
        return
    await serve(Connection(connection, live, translator, ctx.options))


async def _settings(connection: ServerConnection, ctx: ServerContext,
                    translator: RealtimeTranslator) -> bool:
    """Answer client events until the first audio (True), or the connection's end."""
    while translator.first_audio is None:
        try:
            async with asyncio.timeout(ctx.options.idle_timeout_s or None):
                message = await connection.recv()
        except TimeoutError:
            await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                                 codes.POLICY, "no audio")
            return False
        for answer in translator.settings(message):
            await connection.send(answer)
    return True
