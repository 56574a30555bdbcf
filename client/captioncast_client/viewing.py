"""Follow a channel on `/v1/captions`, reconnecting with `since` so no final is missed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import urllib.request
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import End, Error, Event, Final, Partial
from captioncast_client.access import NO_ACCESS, Access, websocket_base
from captioncast_client.connection import decode, open_connection, refusal
from captioncast_client.errors import ServerUnreachable


def captions_url(server: str, channel: str, since: int | None = None,
                 token: str | None = None) -> str:
    base = websocket_base(server)
    query: dict[str, Any] = {"channel": channel}
    if since is not None:
        query["since"] = since
    if token:
        query["token"] = token
    return f"{base}/v1/captions?{urlencode(query)}"


def live_channels(server: str, access: Access = NO_ACCESS,
                  timeout: float = 5.0) -> list[str] | None:
    """The channels that have a speaker now, on this server or another node behind the same
    broker (GET /v1/channels); None when the server does not say."""
    url = "http" + websocket_base(server)[len("ws"):] + "/v1/channels"  # wss:// -> https://
    request = urllib.request.Request(url, headers=access.headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout,
                                    context=access.ssl_for(url)) as answer:
            channels = json.loads(answer.read())["channels"]
        return [c["channel"] for c in channels if c.get("live") or c.get("live_elsewhere")]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an older server, a proxy in the way: say nothing rather than guess


async def follow(
    server: str,
    channel: str,
    *,
    since: int | None = None,
    partials: bool = False,
    until_end: bool = False,
    retries: int = 8,
    token: str | None = None,
    access: Access = NO_ACCESS,
    on_no_speaker: Callable[[list[str]], None] | None = None,
) -> AsyncGenerator[Final | Partial | End | Error, None]:
    """A channel's captions as typed events: every `final` once and in order, and `end`s.

    Follows the channel across its speakers (every `end`) unless `until_end`; with
    `partials`, partials too. A dropped connection is retried with backoff and `since`,
    so finals sent while we were away are replayed; partials in between are skipped. A
    server that cannot be reached at the first try is an error at once (there is nothing
    to catch up on), and so is one lost for `retries` tries in a row. A server's `error`
    is yielded, then the connection is retried (an `unauthorized` one raises
    ServerRefused instead). Once connected, `on_no_speaker` is called with the live
    channels if this one has no speaker, so that a caller can say why nothing shows.
    """
    last = since
    failures = 0
    connected = False
    while True:
        url = captions_url(server, channel, last, token)
        try:
            async with await open_connection(url, access) as connection:
                failures = 0
                if not connected and on_no_speaker is not None:
                    live = await asyncio.to_thread(live_channels, server, access)
                    if live is not None and channel not in live:
                        on_no_speaker(live)
                connected = True
                async for message in connection:
                    if not isinstance(message, str):
                        continue
                    event = decode(message)
                    if isinstance(event, Error):
                        if event.code == ErrorCode.UNAUTHORIZED:
                            raise refusal(event)  # reconnecting would not help
                        yield event
                        break  # the server closes after a fatal one; reconnect catches up
                    if not isinstance(event, Final | Partial | End):
                        continue
                    if last is not None and event.seq <= last:
                        continue  # already shown before a reconnect
                    if not isinstance(event, Partial):
                        last = event.seq
                    if partials or not isinstance(event, Partial):
                        yield event
                    if isinstance(event, End) and until_end:
                        return
        except ServerUnreachable as exc:
            failures += 1
            # A certificate that does not verify will not verify on the next try either.
            if not connected or failures > retries or isinstance(exc.__cause__, ssl.SSLError):
                raise
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            failures += 1
            if failures > retries:
                raise ServerUnreachable(f"lost captioncast at {server}: {exc}") from exc
        await asyncio.sleep(min(10.0, 0.25 * 2 ** failures) * random.uniform(0.8, 1.2))


async def watch(
    server: str,
    channel: str,
    on_event: Callable[[Event], None],
    *,
    since: int | None = None,
    follow: bool = False,
    retries: int = 8,
    token: str | None = None,
    access: Access = NO_ACCESS,
    on_no_speaker: Callable[[list[str]], None] | None = None,
) -> int | None:
    """Hand a channel's events to `on_event` until its `end` (or forever with `follow`).

    Returns the last seq seen. `follow()` with partials, as the watch command shows them.
    """
    last = since
    events = _follow(server, channel, since=since, partials=True, until_end=not follow,
                     retries=retries, token=token, access=access, on_no_speaker=on_no_speaker)
    async with contextlib.aclosing(events):
        async for event in events:
            if not isinstance(event, Partial | Error):
                last = event.seq
            on_event(event)
    return last


_follow = follow  # watch() takes a `follow` flag, as the command's --follow
