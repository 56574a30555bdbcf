"""Follow a channel on `/v1/captions`, reconnecting with `since` so no final is missed."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from captioncast_client.access import NO_ACCESS, Access, websocket_base
from captioncast_client.streaming import (
    Event,
    ServerUnreachable,
    open_connection,
    refusal,
)


def captions_url(server: str, channel: str, since: int | None = None,
                 token: str | None = None) -> str:
    base = websocket_base(server)
    query: dict[str, Any] = {"channel": channel}
    if since is not None:
        query["since"] = since
    if token:
        query["token"] = token
    return f"{base}/v1/captions?{urlencode(query)}"


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
) -> int | None:
    """Print a channel until its `end` (or forever with `follow`); return the last seq seen.

    A dropped connection is retried with backoff and `since`, so finals sent while we
    were away are replayed; partials in between are simply skipped.
    """
    last = since
    failures = 0
    while True:
        url = captions_url(server, channel, last, token)
        try:
            async with await open_connection(url, access) as connection:
                failures = 0
                async for message in connection:
                    if not isinstance(message, str):
                        continue
                    event: Event = json.loads(message)
                    if event["type"] == "error":
                        if event.get("code") == "unauthorized":
                            raise refusal(event)  # reconnecting would not help
                        on_event(event)
                        break  # the server closes after a fatal one; reconnect catches up
                    if last is not None and event["seq"] <= last:
                        continue  # already shown before a reconnect
                    if event["type"] != "partial":
                        last = event["seq"]
                    on_event(event)
                    if event["type"] == "end" and not follow:
                        return last
        except ServerUnreachable as exc:
            failures += 1
            # A certificate that does not verify will not verify on the next try either.
            if failures > retries or isinstance(exc.__cause__, ssl.SSLError):
                raise
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            failures += 1
            if failures > retries:
                raise ServerUnreachable(f"lost captioncast at {server}: {exc}") from exc
        await asyncio.sleep(min(10.0, 0.25 * 2 ** failures) * random.uniform(0.8, 1.2))
