"""The server: one port for WebSocket streams and HTTP routes, one shared model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from captioncast import __version__
from captioncast.core.decoding import Decoder
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.fanout.archive import Archive
from captioncast.fanout.mqtt import FLUSH_ON_EXIT_S, MqttBridge
from captioncast.fanout.output_sink import CLOSE_TIMEOUT_S, start_outputs
from captioncast.options import ServerOptions
from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.http_front import HttpFront
from captioncast.transport.responses import to_websockets
from captioncast.transport.routes import Routes
from captioncast.transport.security import answered_protocol, ssl_context
from captioncast.transport.server_context import ServerContext
from captioncast.transport.shutdown import drain, signal_stop
from captioncast.transport.sniff import SNIFF_TIMEOUT_S
from captioncast.transport.speaker_routes import load_voices

if TYPE_CHECKING:
    from captioncast.engine.models import DevicePlan

log = logging.getLogger("captioncast.server")

# websockets itself refuses messages past this; our own, clearer limit is max_frame_bytes.
TRANSPORT_MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Listening:
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


def load_decoder(options: ServerOptions) -> tuple[Decoder, DevicePlan]:
    """Resolve, assemble and load the model (slow: run it off the event loop)."""
    from captioncast.engine.models import plan_device, resolve_model
    from captioncast.engine.whisper import WhisperDecoder

    location = resolve_model(options.model, options.model_cache)
    plan = plan_device(options.device, options.compute_type, options.decode_workers,
                       options.decode_batch)
    log.info("event=model_loading model=%s path=%s device=%s compute_type=%s",
             location.name, location.path, plan.device, plan.compute_type)
    started = time.monotonic()
    decoder = WhisperDecoder(location, plan, cpu_threads=options.cpu_threads,
                             options=options.decoder_options)
    log.info("event=model_loaded model=%s seconds=%.2f multilingual=%s workers=%d batch=%d",
             decoder.name, time.monotonic() - started, decoder.multilingual, plan.workers,
             plan.batch)
    return decoder, plan


async def run_server(options: ServerOptions, decoder: Decoder | None = None,
                     workers: int = 1, started: asyncio.Event | None = None,
                     stop: asyncio.Event | None = None,
                     on_ready: Callable[[Listening], None] | None = None) -> None:
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

    routes = Routes(ctx, TranscribeRoutes(ctx, options.transcribe))
    # POSTs (file transcription) share the port: see transport/sniff.py.
    front = HttpFront(f"captioncast/{__version__}", routes.answer_get, gate=ctx.gate)
    routes.install(front)

    async def process_request(connection: object, request: Request) -> Response | None:
        answer = await routes.answer(request)
        return None if answer is None else to_websockets(answer)

    # Opened before listening: a store that cannot be opened (a corrupt file) is an
    # error at start, never an empty store in its place.
    archive = None if options.store.where is None else Archive.open(options.store)

    def select_subprotocol(connection: object,
                           offered: Sequence[Subprotocol]) -> Subprotocol | None:
        chosen = answered_protocol(offered)
        return None if chosen is None else Subprotocol(chosen)

    async with serve(
        routes.serve_websocket, options.host, options.port,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        create_connection=front.connection_class(),
        max_size=TRANSPORT_MAX_MESSAGE,
        # No permessage-deflate: PCM barely compresses, and inflating every 100 ms frame
        # was a tenth of what a silent session costs; captions are a few hundred bytes.
        compression=None,
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
        batch = options.decode_batch or 1
        if decoder is None:
            model, plan = await asyncio.to_thread(load_decoder, options)
            workers, batch = plan.workers, plan.batch
        else:
            model = decoder
        async with (
            DecodeScheduler(model, options.decode_workers or workers,
                            on_decoded=ctx.telemetry.decoded,
                            budgets=options.scheduler, batch=batch) as scheduler,
            contextlib.AsyncExitStack() as bridges,
        ):
            if archive is not None:  # closed after the drain: the last finals are written
                ctx.attach_store(await bridges.enter_async_context(archive))
                await load_voices(ctx)  # enrolled voices name speakers from the start
            if options.mqtt is not None:
                ctx.attach_bus(await bridges.enter_async_context(
                    MqttBridge(options.mqtt, ctx.channels, options.port)))
            start_outputs(ctx.outputs, options.outputs)
            ctx.attach(model, scheduler)
            ready = Listening(options.host, port, tls is not None, ctx.model_name)
            log.info("event=ready url=%s/v1/stream model=%s", ready.ws_url, ready.model)
            if started is not None:
                started.set()
            if on_ready is not None:
                on_ready(ready)
            await stop.wait()
            # The MQTT bridges flush their last messages after the drain, and the outputs
            # deliver the finals they hold: leave them time.
            outputs_s = CLOSE_TIMEOUT_S if ctx.outputs.names() else 0.0
            await drain(ctx, server, front, options.shutdown, hurry,
                        after_s=outputs_s + (FLUSH_ON_EXIT_S if options.mqtt is not None else 0.0))
            await ctx.outputs.close(timeout=0.2 if hurry.is_set() else outputs_s)
