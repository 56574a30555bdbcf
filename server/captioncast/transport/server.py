"""The server: one port for WebSocket streams and HTTP routes, one shared model."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from captioncast import __version__
from captioncast.core.decoding import Decoder, DecodeRequest
from captioncast.engine.capacity import CapacityMeter
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import CaptioncastError, Overloaded
from captioncast.options import ServerOptions as ServerOptions
from captioncast.transport.channels import ChannelHub
from captioncast.transport.http_post import SNIFF_TIMEOUT_S, HttpFront
from captioncast.transport.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from captioncast.transport.metrics import Metrics
from captioncast.transport.mqtt import FLUSH_ON_EXIT_S, MqttBridge
from captioncast.transport.pages import route_pages
from captioncast.transport.responses import error_response, json_response
from captioncast.transport.security import (
    Gatekeeper,
    http_refusal,
    peer_host,
    redact,
    ssl_context,
)
from captioncast.transport.shutdown import drain, signal_stop
from captioncast.transport.stream import handle_stream, reject
from captioncast.transport.transcribe import TranscribeRoutes
from captioncast.transport.viewer import handle_viewer

if TYPE_CHECKING:
    from captioncast.transport.live_session import LiveSession

log = logging.getLogger("captioncast.server")

WS_ROUTES = ("/v1/stream", "/v1/captions")
POST_ROUTES = ("/v1/transcribe", "/v1/audio/transcriptions")  # served by transport/transcribe.py
# websockets itself refuses messages past this; our own, clearer limit is max_frame_bytes.
TRANSPORT_MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Ready:
    """A server that accepts sessions: where it is reached, what its owner tells people."""

    host: str
    port: int
    tls: bool
    model: str

    @property
    def _netloc(self) -> str:
        # A wildcard address is no place to connect to: this machine is one of them.
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def every_interface(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._netloc}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self._netloc}"


class ServerContext:
    """What every connection shares: the options, the model, the scheduler, the sessions."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.decoder: Decoder | None = None
        self._scheduler: DecodeScheduler | None = None
        self.model_name = options.model
        self.multilingual = False
        self.sessions: dict[str, LiveSession] = {}  # live ones, attached or awaiting resume
        self.channels = ChannelHub(options.channels)
        self.gate = Gatekeeper(options.security)
        self.draining = False
        self.started = time.monotonic()
        self.final_latencies: deque[float] = deque(maxlen=1000)
        self.metrics = Metrics()
        self.capacity = CapacityMeter(1, options.capacity)
        self.metrics.on_scrape(self._refresh_gauges)
        self._dropped_seen = 0

    @property
    def ready(self) -> bool:
        return self._scheduler is not None and not self.draining

    @property
    def scheduler(self) -> DecodeScheduler:
        assert self._scheduler is not None, "sessions start only once the model is loaded"
        return self._scheduler

    def attach(self, decoder: Decoder, scheduler: DecodeScheduler) -> None:
        self.decoder = decoder
        self._scheduler = scheduler
        self.capacity = CapacityMeter(scheduler.workers, self.options.capacity)
        self.model_name = decoder.name
        self.multilingual = decoder.multilingual

    def admit(self) -> None:
        if self._scheduler is None:
            raise Overloaded("the model is still loading; try again in a few seconds")
        if self.draining:
            raise Overloaded("the server is shutting down")
        if self.connected_sessions >= self.options.max_sessions:
            raise Overloaded(f"the server is at its limit of {self.options.max_sessions} sessions")
        # Sessions whose clients vanished wait for a resume; past --max-sessions of them the
        # oldest stops waiting, so that abandoned sessions never lock real clients out.
        waiting = [s for s in self.sessions.values() if s.awaiting_resume]
        if len(waiting) >= self.options.max_sessions:
            min(waiting, key=lambda s: s.detached_at).expire_now()
        # A session waiting for its client to resume decodes nothing: only connected ones
        # cost decoding time.
        self.capacity.admit(self.connected_sessions, self._scheduler.lag())

    @property
    def connected_sessions(self) -> int:
        return sum(1 for session in self.sessions.values() if session.link is not None)

    # -- hooks the sessions call, for /healthz, /metrics and admission ------------------

    def on_viewers_changed(self) -> None:
        self.metrics.viewers.set(self.channels.viewer_count)

    def on_session_started(self) -> None:
        self.metrics.sessions_total.inc()

    def on_refused(self, code: str) -> None:
        self.metrics.refused.labels(code).inc()

    def on_audio(self, seconds: float) -> None:
        self.metrics.audio_seconds.inc(seconds)

    def on_final_latency(self, seconds: float) -> None:
        self.final_latencies.append(seconds)
        self.metrics.final_latency.observe(seconds)

    def on_final(self) -> None:
        self.metrics.finals.inc()

    def on_stable_words(self, shown: int, revised: int) -> None:
        """Of the words partials showed as stable, how many the final changed (protocol 2)."""
        self.metrics.stable_words.inc(shown)
        self.metrics.stable_words_revised.inc(revised)

    def on_partial(self, latency: float | None = None) -> None:
        self.metrics.partials.inc()
        if latency is not None:
            self.metrics.partial_latency.observe(latency)

    def on_error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()

    def on_decoded(self, request: DecodeRequest, seconds: float, waited: float,
                   live: bool) -> None:
        kind = request.kind if live else "file"
        m = self.metrics
        m.decode_seconds.labels(kind).observe(seconds)
        m.decode_wait.labels(kind).observe(waited)
        m.decoded_audio.labels(kind).inc(request.duration)
        m.decode_busy.labels(kind).inc(seconds)
        if live:
            self.capacity.record(request.kind, request.duration, seconds)

    def _refresh_gauges(self) -> None:
        m, scheduler = self.metrics, self._scheduler
        m.sessions.set(len(self.sessions))
        m.viewers.set(self.channels.viewer_count)
        if scheduler is None:
            return
        m.queue_depth.set(scheduler.depth)
        m.lag.set(scheduler.lag())
        m.dropped_partials.inc(scheduler.stats.replaced_partials - self._dropped_seen)
        self._dropped_seen = scheduler.stats.replaced_partials
        if scheduler.stats.audio_seconds:
            m.real_time_factor.set(scheduler.stats.busy_seconds / scheduler.stats.audio_seconds)
        report = self.capacity.report(scheduler.lag())
        m.load.set(report.load)
        if report.capacity is not None:
            m.capacity.set(report.capacity)

    def health(self) -> dict[str, object]:
        latencies = sorted(self.final_latencies)
        scheduler = self._scheduler
        report = self.capacity.report(scheduler.lag() if scheduler else 0.0)
        return {
            "status": "ok" if self.ready else ("draining" if self.draining else "loading"),
            "version": __version__,
            "model": self.model_name,
            "multilingual": self.multilingual,
            "sessions": len(self.sessions),
            "connected_sessions": self.connected_sessions,
            "viewers": self.channels.viewer_count,
            "max_sessions": self.options.max_sessions,
            "queue_depth": scheduler.depth if scheduler else 0,
            "decode_workers": scheduler.workers if scheduler else 0,
            "capacity": report.capacity,  # live streams that fit, from measured decode cost
            "load": report.load,  # share of decode time used over the last minute
            "lag_s": report.lag_s,  # how long the oldest waiting live final has waited
            "final_cost_per_audio_s": report.cost_per_audio_s,
            "final_latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }


_json_response = json_response


def route_http(ctx: ServerContext, connection: ServerConnection | None,
               request: Request) -> Response | None:
    """Answer plain HTTP routes; return None to let a WebSocket upgrade go on."""
    path = urlsplit(request.path).path
    if path == "/healthz":
        status = http.HTTPStatus.OK if ctx.ready else http.HTTPStatus.SERVICE_UNAVAILABLE
        health = ctx.health()
        if not ctx.gate.trusted(request.path, request.headers):
            health = {"status": health["status"]}  # a probe without a token: the state only
        return _json_response(status, health)
    try:
        ctx.gate.check_origin(request.headers)
        if path not in WS_ROUTES:
            # WebSocket routes answer a bad token after the upgrade: error event, close 4001.
            ctx.gate.authorize(request.path, request.headers)
    except CaptioncastError as error:
        return _refusal(error, path)
    if path == "/metrics":
        return Response(http.HTTPStatus.OK.value, "OK", Headers(
            {"Content-Type": METRICS_CONTENT_TYPE, "Cache-Control": "no-store"}),
            ctx.metrics.render())
    if path in WS_ROUTES:
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return _json_response(
                http.HTTPStatus.UPGRADE_REQUIRED,
                {"error": "bad_request", "message": f"{path} is a WebSocket endpoint"},
            )
        return None
    page = route_pages(ctx, request)
    if page is not None:
        return page
    if path in POST_ROUTES:
        refused = _json_response(http.HTTPStatus.METHOD_NOT_ALLOWED,
                                 {"error": "bad_request", "message": f"{path} takes POST"})
        refused.headers["Allow"] = "POST"
        return refused
    return _json_response(
        http.HTTPStatus.NOT_FOUND,
        {"error": "not_found",
         "message": f"no route {path}; see /healthz, /v1/stream, /v1/captions, /overlay, "
                    "POST /v1/transcribe"},
    )


def _refusal(error: CaptioncastError, path: str) -> Response:
    status, headers = http_refusal(error) or (http.HTTPStatus.BAD_REQUEST, [])
    log.info("event=http_refused path=%s code=%s status=%d", path, error.code, status)
    response = error_response(http.HTTPStatus(status), error.code, error.message)
    for name, value in headers:
        response.headers[name] = value
    return response


async def _dispatch(connection: ServerConnection, ctx: ServerContext) -> None:
    request = connection.request
    assert request is not None
    path = urlsplit(request.path).path
    with contextlib.ExitStack() as held:
        try:
            ctx.gate.authorize(request.path, request.headers)
            held.enter_context(ctx.gate.connection(peer_host(connection.remote_address)))
        except CaptioncastError as error:
            log.info("event=session_refused peer=%s path=%s code=%s message=%r",
                     connection.remote_address, redact(request.path), error.code, error.message)
            await reject(connection, error)
            return
        if path == "/v1/stream":
            await handle_stream(connection, ctx)
        elif path == "/v1/captions":
            await handle_viewer(connection, ctx)


def load_decoder(options: ServerOptions) -> tuple[Decoder, int]:
    """Resolve, assemble and load the model (slow: run it off the event loop)."""
    from captioncast.engine.models import plan_device, resolve_model
    from captioncast.engine.whisper import WhisperDecoder

    location = resolve_model(options.model, options.model_cache)
    plan = plan_device(options.device, options.compute_type, options.decode_workers)
    log.info("event=model_loading model=%s path=%s device=%s compute_type=%s",
             location.name, location.path, plan.device, plan.compute_type)
    started = time.monotonic()
    decoder = WhisperDecoder(location, plan, cpu_threads=options.cpu_threads,
                             options=options.decoder_options)
    log.info("event=model_loaded model=%s seconds=%.2f multilingual=%s",
             decoder.name, time.monotonic() - started, decoder.multilingual)
    return decoder, plan.workers


async def run_server(options: ServerOptions, decoder: Decoder | None = None,
                     workers: int = 1, started: asyncio.Event | None = None,
                     stop: asyncio.Event | None = None,
                     on_ready: Callable[[Ready], None] | None = None) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives.

    With `decoder` given (tests, embedding), that decoder is used instead of loading one.
    `started` is set and `on_ready` called once sessions are accepted (the model loaded).
    """
    ctx = ServerContext(options)
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()  # a second signal: skip the drain
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, signal_stop, stop, hurry)
    tls = ssl_context(options.security)
    # asyncio waits 60 s for a TLS handshake; a silent peer gets what a plain one gets.
    tls_options: dict[str, Any] = (
        {} if tls is None else {"ssl": tls, "ssl_handshake_timeout": SNIFF_TIMEOUT_S})

    async def handler(connection: ServerConnection) -> None:
        await _dispatch(connection, ctx)

    # POSTs (file transcription) share the port: see transport/http_post.py.
    front = HttpFront(f"captioncast/{__version__}", lambda r: route_http(ctx, None, r),
                      gate=ctx.gate)
    TranscribeRoutes(ctx, options.transcribe).install(front)

    async with serve(
        handler, options.host, options.port,
        process_request=lambda c, r: route_http(ctx, c, r),
        create_connection=front.connection_class(),
        max_size=TRANSPORT_MAX_MESSAGE,
        ping_interval=options.ping_interval_s, ping_timeout=options.ping_timeout_s,
        write_limit=options.write_limit,
        close_timeout=options.shutdown.close_timeout_s,
        server_header=f"captioncast/{__version__}",
        **tls_options,
    ) as server:
        ports = [s.getsockname()[1] for s in server.sockets]
        port = ports[0] if ports else options.port
        # /healthz answers from here on ("loading"); sessions wait for the model.
        log.info("event=listening host=%s port=%s tls=%s auth=%s sessions=after_model_load",
                 options.host, port, tls is not None, ctx.gate.requires_token)
        if decoder is None:
            model, workers = await asyncio.to_thread(load_decoder, options)
        else:
            model = decoder
        async with (
            DecodeScheduler(model, options.decode_workers or workers,
                            on_decoded=ctx.on_decoded, budgets=options.scheduler) as scheduler,
            contextlib.AsyncExitStack() as bridges,
        ):
            if options.mqtt is not None:
                ctx.channels.sinks.append(await bridges.enter_async_context(
                    MqttBridge(options.mqtt, ctx.channels, options.port)))
            ctx.attach(model, scheduler)
            ready = Ready(options.host, port, tls is not None, ctx.model_name)
            log.info("event=ready url=%s/v1/stream model=%s", ready.ws_url, ready.model)
            if started is not None:
                started.set()
            if on_ready is not None:
                on_ready(ready)
            await stop.wait()
            # The MQTT bridges flush their last messages after the drain: leave them time.
            await drain(ctx, server, front, options.shutdown, hurry,
                        after_s=FLUSH_ON_EXIT_S if options.mqtt is not None else 0.0)
