"""Graceful shutdown: refuse new work, finish every live stream's captions, then close.

On SIGTERM or SIGINT the listener stays open while streams drain, so that load
balancers read `/healthz` as 503 `draining` and new sessions get `overloaded` instead
of a refused connection. Each live stream is finalized as if its client had sent
`eos` (the tail decoded, every final sent, then `end`) and closed with 1001, going
away. What is still open when the time is up is closed regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server

from captioncast.options import ShutdownOptions

if TYPE_CHECKING:
    from captioncast.transport.http_front import HttpFront
    from captioncast.transport.server_context import ServerContext

log = logging.getLogger("captioncast.shutdown")


def signal_stop(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """The first signal starts a graceful shutdown; a second one cuts the drain short."""
    if stop.is_set():
        log.info("event=shutdown_hurried")
        hurry.set()
    stop.set()


async def drain(ctx: ServerContext, server: Server, front: HttpFront,
                options: ShutdownOptions, hurry: asyncio.Event | None = None,
                after_s: float = 0.0) -> None:
    """Finalize every live stream, then close every connection, within options.timeout_s
    less `after_s`, the time the caller needs once this returns."""
    started = time.monotonic()
    deadline = started + max(0.5, options.timeout_s - after_s)
    ctx.draining = True  # /healthz answers 503, admit() refuses new sessions
    handlers = list(ctx.sessions.values())
    log.info("event=draining sessions=%d timeout_s=%.1f", len(handlers), options.timeout_s)
    for handler in handlers:
        handler.go_away()
    closed = [asyncio.ensure_future(h.wait_closed()) for h in handlers]
    if closed:
        # Until every stream is closed, the time is up, or a second signal says hurry.
        race: set[asyncio.Future[Any]] = {asyncio.gather(*closed, return_exceptions=True)}
        if hurry is not None:
            race.add(asyncio.ensure_future(hurry.wait()))
        left = started + options.drain_s(after_s) - time.monotonic()
        await asyncio.wait(race, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
        for waiter in race:
            waiter.cancel()
        await asyncio.gather(*race, return_exceptions=True)  # retrieved: nothing logged
    unfinished = sum(not c.done() or c.cancelled() for c in closed)
    log.info("event=drained sessions=%d unfinished=%d seconds=%.2f", len(handlers),
             unfinished, time.monotonic() - started)
    # Files still being transcribed (minutes, for a long one) are cut: a request whose
    # answer has not started gets 503; new ones got 503 since the drain began.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.2, (deadline - time.monotonic()) / 2)):
            await front.close()
    # Viewers and streams that did not finish: close 1001; cut those that do not answer.
    server.close(close_connections=True)
    try:
        async with asyncio.timeout(max(0.2, deadline - time.monotonic())):
            await server.wait_closed()
    except TimeoutError:
        for connection in list(server.connections):
            connection.transport.abort()
        log.info("event=connections_aborted")
