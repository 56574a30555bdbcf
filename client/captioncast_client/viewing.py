"""Follow a channel on `/v1/captions`, reconnecting with `since` so no final is missed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import End, Error, Event, Final, Partial, Speakers
from captioncast_client.access import (
    NO_ACCESS,
    UNAUTHORIZED_HINT,
    UNREACHABLE_HINT,
    Access,
    websocket_base,
)
from captioncast_client.connection import decode, open_connection, refusal
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable


def captions_url(server: str, channel: str, since: int | None = None,
                 token: str | None = None) -> str:
    base = websocket_base(server)
    query: dict[str, Any] = {"channel": channel}
    if since is not None:
        query["since"] = since
    if token:
        query["token"] = token
    return f"{base}/v1/captions?{urlencode(query)}"


@dataclass(frozen=True)
class ChannelSummary:
    """One entry of `GET /v1/channels`, as a client needs it."""

    name: str
    live: bool  # a speaker now, on this server or another node behind the same broker
    last_active: float | None  # Unix seconds of its last caption; None: nobody spoke yet
    seq: int = 0  # the channel's last seq


def list_channels(server: str, access: Access = NO_ACCESS,
                  timeout: float = 5.0) -> list[ChannelSummary]:
    """The server's channels (GET /v1/channels, its first page), live first; ClientError
    (ServerUnreachable, ServerRefused) when it cannot say."""
    url = "http" + websocket_base(server)[len("ws"):] + "/v1/channels"  # wss:// -> https://
    request = urllib.request.Request(url, headers=access.headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout,
                                    context=access.ssl_for(url)) as answer:
            channels = json.loads(answer.read())["channels"]
        summaries = [ChannelSummary(str(c["channel"]),
                                    bool(c.get("live") or c.get("live_elsewhere")),
                                    c.get("last_active"), int(c.get("seq") or 0))
                     for c in channels]
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ServerRefused(f"the server at {server} wants a token: "
                                f"{UNAUTHORIZED_HINT}") from exc
        raise ClientError(f"the server at {server} did not list its channels: HTTP "
                          f"{exc.code}") from exc
    except OSError as exc:
        raise ServerUnreachable(f"cannot reach captioncast at {server}: {exc}; "
                                f"{UNREACHABLE_HINT}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"the server at {server} answered GET /v1/channels with something "
                          "else than a channel list") from exc
    return sorted(summaries, key=lambda c: (not c.live, -(c.last_active or 0), c.name))


def live_channels(server: str, access: Access = NO_ACCESS,
                  timeout: float = 5.0) -> list[str] | None:
    """The channels that have a speaker now, on this server or another node behind the same
    broker (GET /v1/channels); None when the server does not say."""
    try:
        return [c.name for c in list_channels(server, access, timeout) if c.live]
    except ClientError:
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
    on_no_speaker: Callable[[list[ChannelSummary]], None] | None = None,
) -> AsyncGenerator[Final | Partial | End | Error | Speakers, None]:
    """A channel's captions as typed events: every `final` once and in order, and `end`s,
    and its speaker table (`speakers`) whenever it changes and on every (re)connect.

    Follows the channel across its speakers (every `end`) unless `until_end`; with
    `partials`, partials too. A dropped connection is retried with backoff and `since`,
    so finals sent while we were away are replayed; partials in between are skipped. A
    server that cannot be reached at the first try is an error at once (there is nothing
    to catch up on), and so is one lost for `retries` tries in a row. A server's `error`
    is yielded, then the connection is retried (an `unauthorized` one raises
    ServerRefused instead). Once connected, `on_no_speaker` is called with the server's
    channels if this one has no speaker, so that a caller can say why nothing shows (it is
    not among them if nobody has spoken on it). A replay (`since`) of a channel that has
    ended, `until_end`, goes on to its last `end`, not its first speaker's.
    """
    last = since
    failures = 0
    connected = False
    end_at = 0  # with until_end: an `end` before this seq is not the last one
    while True:
        url = captions_url(server, channel, last, token)
        try:
            async with await open_connection(url, access) as connection:
                failures = 0
                if not connected and (on_no_speaker is not None or since is not None):
                    listed = await asyncio.to_thread(_channels_or_none, server, access)
                    here = next((c for c in listed or () if c.name == channel), None)
                    if here is not None and not here.live and until_end:
                        end_at = here.seq
                    if listed is not None and on_no_speaker is not None \
                            and (here is None or not here.live):
                        on_no_speaker(listed)
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
                    if isinstance(event, Speakers):
                        # The newest table, said first on every (re)connect whatever its
                        # seq: it names the finals before and after it.
                        yield event
                        continue
                    if not isinstance(event, Final | Partial | End):
                        continue
                    if last is not None and event.seq <= last:
                        continue  # already shown before a reconnect
                    if not isinstance(event, Partial):
                        last = event.seq
                    if partials or not isinstance(event, Partial):
                        yield event
                    if isinstance(event, End) and until_end and event.seq >= end_at:
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


def _channels_or_none(server: str, access: Access) -> list[ChannelSummary] | None:
    try:
        return list_channels(server, access)
    except ClientError:
        return None  # an older server, a proxy in the way: say nothing rather than guess


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
    on_no_speaker: Callable[[list[ChannelSummary]], None] | None = None,
) -> int | None:
    """Hand a channel's events to `on_event` until its `end` (or forever with `follow`).

    Returns the last seq seen. `follow()` with partials, as the watch command shows them.
    """
    last = since
    events = _follow(server, channel, since=since, partials=True, until_end=not follow,
                     retries=retries, token=token, access=access, on_no_speaker=on_no_speaker)
    async with contextlib.aclosing(events):
        async for event in events:
            if not isinstance(event, Partial | Error | Speakers):
                last = event.seq
            on_event(event)
    return last


_follow = follow  # watch() takes a `follow` flag, as the command's --follow
