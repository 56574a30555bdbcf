"""Stream a source of PCM chunks, paced like a live source, and record every event.

`stream()` is the whole-stream call the CLI's stream and mic commands, the tests and the
benchmarks use: a `CaptionStream` fed from an iterator, its events recorded in their
JSON shape (`StreamResult`) and handed, typed, to `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from captioncast.protocol.events import Event, Partial
from captioncast_client.access import NO_ACCESS, Access, websocket_base
from captioncast_client.connection import open_connection, refusal
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable, SourceFailed
from captioncast_client.record import StreamResult
from captioncast_client.session import BYTES_PER_SECOND, CaptionStream

__all__ = [
    "BYTES_PER_SECOND",
    "ClientError",
    "ServerRefused",
    "ServerUnreachable",
    "StreamResult",
    "open_connection",
    "refusal",
    "stream",
    "stream_url",
]


def stream_url(server: str, **params: Any) -> str:
    """The `/v1/stream` URL of a server address, with its query parameters (PROTOCOL.md)."""
    query = {k: (str(v).lower() if isinstance(v, bool) else v)
             for k, v in params.items() if v not in (None, "")}
    base = websocket_base(server)
    return f"{base}/v1/stream" + (f"?{urlencode(query)}" if query else "")


async def _chunks(source: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if hasattr(source, "__aiter__"):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk
            await asyncio.sleep(0)


async def _feed(captions: CaptionStream, source: Iterable[bytes] | AsyncIterator[bytes],
                realtime: bool, rate: float) -> Exception | None:
    """The source into the stream, then `end()`; returns the source's failure, if any.

    A source that fails mid-stream still ends the stream with `end()`: the audio it gave
    before failing gets its finals, and the caller reports the failure afterwards.
    """
    started = time.monotonic()
    read = 0
    failure: Exception | None = None
    try:
        async for chunk in _chunks(source):
            if realtime:
                # a live source sends a chunk once its audio has been captured
                read += len(chunk)
                await asyncio.sleep(max(0.0, started + read / rate - time.monotonic()))
            await captions.send(chunk)
    except ClientError:
        return None  # the stream is over: iterating it says why
    except Exception as error:
        failure = error
    try:
        await captions.end()
    except ClientError:
        pass
    except Exception as error:
        captions.abort(error)
    return failure


async def stream(
    url: str,
    source: Iterable[bytes] | AsyncIterator[bytes],
    *,
    realtime: bool = True,
    on_event: Callable[[Event], None] | None = None,
    open_timeout: float = 10.0,
    end_timeout: float = 120.0,
    bytes_per_second: int = BYTES_PER_SECOND,
    frame_bytes: int = 2,
    speed: float = 1.0,
    reconnect: bool = True,
    reconnect_for_s: float | None = None,
    on_reconnect: Callable[[str], None] | None = None,
    keep_partials: bool = True,
    access: Access = NO_ACCESS,
) -> StreamResult:
    """Stream audio, then `eos`; return every event up to `end`.

    With `realtime`, chunks leave at the pace of the audio they hold
    (`bytes_per_second` of it, 16 kHz s16le by default), as a live source sends them,
    or `speed` times faster (benchmarks). Reconnecting is CaptionStream's: with
    `reconnect`, a dropped connection is resumed and the events are handed on exactly
    once and in order; a stream that gives up raises ServerUnreachable, whose `result`
    holds what was received. Without `keep_partials`, partials go to `on_event` only and
    no send times are kept, so that a session of hours keeps only its finals. `access`
    carries the token and TLS settings.
    """
    result = StreamResult()

    def sent(audio_s: float, at: float) -> None:
        result.sent_at.append((audio_s, at))

    def record(event: Event, at: float) -> None:
        if keep_partials or not isinstance(event, Partial):
            result.events.append({**event.to_dict(), "received_at": at})
        if on_event is not None:
            on_event(event)

    captions = CaptionStream(url, access=access, open_timeout=open_timeout,
                             end_timeout=end_timeout, bytes_per_second=bytes_per_second,
                             frame_bytes=frame_bytes, reconnect=reconnect,
                             reconnect_for_s=reconnect_for_s, on_reconnect=on_reconnect,
                             on_sent=sent if keep_partials else None)
    try:
        async with captions:
            feeder = asyncio.create_task(
                _feed(captions, source, realtime, bytes_per_second * speed))
            try:
                async for event in captions:
                    record(event, captions.received_at)
            finally:
                if not feeder.done():
                    feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            failure = feeder.result() if not feeder.cancelled() else None
            if failure is not None:
                raise SourceFailed(f"the audio source stopped: {failure}") from failure
    except ClientError as error:
        if error.event is not None and not result.events:
            record(error.event, time.monotonic())  # the refusal that opened the stream
        error.result = result
        raise
    finally:
        result.resumes = captions.resumes
    return result
