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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server

if TYPE_CHECKING:
    from captioncast.transport.http_post import HttpFront
    from captioncast.transport.server import ServerContext

log = logging.getLogger("captioncast.shutdown")


@dataclass(frozen=True)
class ShutdownOptions:
    timeout_s: float = 10.0  # from the signal to the process exiting
    close_timeout_s: float = 3.0  # a peer that does not answer our close frame is cut

    @property
    def drain_s(self) -> float:
        """Time for streams to finalize: what is left after the closes are allowed for."""
        return max(0.0, self.timeout_s - self.reserve_s)

    @property
    def reserve_s(self) -> float:
        # Closing handshakes, the HTTP front, the MQTT bridges' last status messages.
        return min(self.close_timeout_s + 1.0, self.timeout_s * 0.4)


def signal_stop(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """The first signal starts a graceful shutdown; a second one cuts the drain short."""
    if stop.is_set():
        log.info("event=shutdown_hurried")
        hurry.set()
    stop.set()


async def drain(ctx: ServerContext, server: Server, front: HttpFront,
                options: ShutdownOptions, hurry: asyncio.Event | None = None) -> None:
    """Finalize every live stream, then close every connection, within options.timeout_s."""
    started = time.monotonic()
    ctx.draining = True  # /healthz answers 503, admit() refuses new sessions
    handlers = list(ctx.sessions.values())
    log.info("event=draining sessions=%d timeout_s=%.1f", len(handlers), options.timeout_s)
    for handler in handlers:
        handler.go_away()
    closed = [asyncio.ensure_future(h.connection.wait_closed()) for h in handlers]
    waits: list[asyncio.Future[object]] = list(closed)  # type: ignore[arg-type]
    if hurry is not None:
        waits.append(asyncio.ensure_future(hurry.wait()))
    try:
        if closed:
            deadline = started + options.drain_s
            while any(not c.done() for c in closed) and not (hurry and hurry.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait([w for w in waits if not w.done()], timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    unfinished = sum(not c.done() or c.cancelled() for c in closed)
    log.info("event=drained sessions=%d unfinished=%d seconds=%.2f", len(handlers),
             unfinished, time.monotonic() - started)
    # Files being transcribed had the drain time too; what is left of them gets 503.
    left = max(0.5, options.timeout_s - (time.monotonic() - started))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(left / 2):
            await front.close()
    # Viewers and streams that did not finish: close 1001; cut those that do not answer.
    server.close(close_connections=True)
    left = max(0.5, options.timeout_s - (time.monotonic() - started) - 0.5)
    try:
        async with asyncio.timeout(left):
            await server.wait_closed()
    except TimeoutError:
        for connection in list(server.connections):
            connection.transport.abort()
        log.info("event=connections_aborted")
