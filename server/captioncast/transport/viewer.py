"""`/v1/captions`: follow a channel's captions over a WebSocket, sending no audio."""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from captioncast.core.params import parse_viewer_params
from captioncast.errors import CaptioncastError, SessionTimeout
from captioncast.fanout.archive import as_event
from captioncast.fanout.hub import Viewer
from captioncast.protocol import codes
from captioncast.protocol.events import Error, Event
from captioncast.store import StoreError
from captioncast.transport.server_context import ServerContext
from captioncast.transport.websocket import close_or_abort, query_of, reject

log = logging.getLogger("captioncast.viewer")


async def _send(connection: ServerConnection, viewer: Viewer, send_timeout_s: float) -> None:
    while True:
        events = await viewer.next_events()
        if not events:
            behind = SessionTimeout(
                f"this viewer fell more than {viewer.backlog.limit} finals behind; "
                "reconnect with since= to catch up"
            )
            await connection.send(Error(viewer.channel.log.last_seq, code=behind.code,
                                        message=behind.message).to_json())
            await connection.close(behind.close_code or codes.POLICY, "viewer too slow")
            return
        for event in events:
            # A viewer that stops reading entirely is dropped; its backlog rules bound
            # what it costs until then.
            # asyncio.timeout: on 3.11 wait_for can swallow the cancel that ends a viewer.
            async with asyncio.timeout(send_timeout_s):
                await connection.send(event.to_json())


async def _drain(connection: ServerConnection) -> None:
    """Viewers send nothing we act on; reading notices when they leave."""
    async for _ in connection:
        pass


async def _older(ctx: ServerContext, name: str, since: int | None) -> list[Event]:
    """The stored finals after `since` that the channel's memory no longer holds."""
    await ctx.channels.prepare(name)
    channel = ctx.channels.get(name)
    if since is None or ctx.archive is None or channel is None:
        return []
    before = channel.log.first_held
    if since + 1 >= before:
        return []
    try:
        finals = await ctx.archive.finals(name, since=since, before=before)
    except StoreError as error:  # captions go on: the viewer gets what memory holds
        log.warning("event=viewer_replay_failed channel=%s error=%r", name, error.message)
        return []
    return [as_event(f) for f in finals]


async def handle_viewer(connection: ServerConnection, ctx: ServerContext) -> None:
    try:
        params = parse_viewer_params(query_of(connection))
        older = await _older(ctx, params.channel, params.since)
        viewer = ctx.channels.subscribe(params.channel, params.since, older)
    except CaptioncastError as error:
        await reject(connection, error)
        return
    ctx.viewers_changed()
    log.info("event=viewer_join channel=%s since=%s viewers=%d", params.channel, params.since,
             len(viewer.channel.viewers))
    try:
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(_send(connection, viewer, ctx.options.send_timeout_s))
            reader = group.create_task(_drain(connection))
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sender, reader):
                task.cancel()
    except* ConnectionClosed:
        pass
    except* TimeoutError:
        connection.transport.abort()  # it reads nothing: not even a close frame would pass
    finally:
        ctx.channels.unsubscribe(viewer)
        ctx.viewers_changed()
    await close_or_abort(connection, ctx.options.shutdown.close_timeout_s)
