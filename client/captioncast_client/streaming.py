"""Send PCM chunks to `/v1/stream`, paced like a live source, and hand back every event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from captioncast_client.access import (
    NO_ACCESS,
    TLS_HINT,
    UNAUTHORIZED_HINT,
    Access,
    explain_refusal,
    websocket_base,
)

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit mono: what the clients send
Event = dict[str, Any]


class ClientError(Exception):
    """Something a user can act on; `exit_code` follows the CLI's conventions."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServerUnreachable(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class ServerRefused(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)


@dataclass
class StreamResult:
    events: list[Event] = field(default_factory=list)
    sent_at: list[tuple[float, float]] = field(default_factory=list)  # (audio s, wall clock)

    @property
    def finals(self) -> list[Event]:
        return [e for e in self.events if e["type"] == "final"]

    @property
    def errors(self) -> list[Event]:
        return [e for e in self.events if e["type"] == "error"]

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"])


def stream_url(server: str, **params: Any) -> str:
    query = {k: (str(v).lower() if isinstance(v, bool) else v)
             for k, v in params.items() if v not in (None, "")}
    base = websocket_base(server)
    return f"{base}/v1/stream" + (f"?{urlencode(query)}" if query else "")


async def open_connection(url: str, access: Access = NO_ACCESS,
                          open_timeout: float = 10.0) -> ClientConnection:
    """Connect to a WebSocket route, with the token and TLS settings of `access`."""
    where = url.split("/v1/")[0]
    try:
        return await connect(url, open_timeout=open_timeout, max_size=2**22,
                             additional_headers=access.headers(), ssl=access.ssl_for(url))
    except ssl.SSLCertVerificationError as exc:
        raise ServerUnreachable(f"cannot verify the certificate of {where}: "
                                f"{exc.verify_message}; {TLS_HINT}") from exc
    except ssl.SSLError as exc:
        raise ServerUnreachable(f"TLS with {where} failed ({exc.reason}): is it a wss:// "
                                "server, and is the address ws:// for a plain one?") from exc
    except (OSError, TimeoutError) as exc:
        raise ServerUnreachable(f"cannot reach captioncast at {where}: {exc}") from exc
    except InvalidStatus as exc:
        raise ServerRefused(
            f"server refused the connection: {explain_refusal(exc.response.status_code)}"
        ) from exc
    except InvalidURI as exc:
        raise ClientError(f"bad server address: {exc}") from exc
    except InvalidHandshake as exc:
        raise ServerUnreachable(f"{where} did not answer as a captioncast server ({exc}); "
                                "for a TLS server use wss://") from exc


def refusal(event: Event) -> ServerRefused:
    """The error to raise for a fatal `error` event that opened the stream."""
    message = f"server refused the stream: {event.get('code')}: {event.get('message')}"
    if event.get("code") == "unauthorized":
        message += f" ({UNAUTHORIZED_HINT})"
    return ServerRefused(message)


async def _chunks(source: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if hasattr(source, "__aiter__"):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk
            await asyncio.sleep(0)


async def stream(
    url: str,
    source: Iterable[bytes] | AsyncIterator[bytes],
    *,
    realtime: bool = True,
    on_event: Callable[[Event], None] | None = None,
    open_timeout: float = 10.0,
    end_timeout: float = 120.0,
    bytes_per_second: int = BYTES_PER_SECOND,
    access: Access = NO_ACCESS,
) -> StreamResult:
    """Stream audio, then `eos`; return every event up to `end`.

    With `realtime`, chunks leave at the pace of the audio they hold
    (`bytes_per_second` of it, 16 kHz s16le by default), as a live source sends them.
    """
    result = StreamResult()
    connection = await open_connection(url, access, open_timeout)
    async with connection:
        first = await _read_event(connection, 30.0)
        first["received_at"] = time.monotonic()
        result.events.append(first)
        if on_event:
            on_event(first)
        if first["type"] == "error":
            raise refusal(first)

        async def receive() -> None:
            async for message in connection:
                if not isinstance(message, str):
                    continue
                event = json.loads(message)
                event["received_at"] = time.monotonic()
                result.events.append(event)
                if on_event:
                    on_event(event)
                if event["type"] == "end":
                    return

        receiver = asyncio.create_task(receive())
        try:
            audio_sent = 0
            started = time.monotonic()
            async for chunk in _chunks(source):
                if receiver.done():
                    break
                if realtime:
                    # a live source sends a chunk once its audio has been captured
                    due = started + (audio_sent + len(chunk)) / bytes_per_second
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                await connection.send(chunk)
                audio_sent += len(chunk)
                result.sent_at.append((audio_sent / bytes_per_second, time.monotonic()))
            if not receiver.done():
                await connection.send(json.dumps({"type": "eos"}))
            await asyncio.wait_for(asyncio.shield(receiver), end_timeout)
        except ConnectionClosed as exc:
            raise ServerRefused(f"server closed the stream: {exc}") from exc
        except TimeoutError as exc:
            raise ClientError("the server did not finish the stream in time") from exc
        finally:
            if not receiver.done():
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await receiver
            elif receiver.exception() is not None:
                failure = receiver.exception()
                if isinstance(failure, ConnectionClosed) and not _ended(result):
                    raise ServerRefused(f"server closed the stream: {failure}") from failure
    return result


def _ended(result: StreamResult) -> bool:
    return any(e["type"] == "end" for e in result.events)


async def _read_event(connection: ClientConnection, timeout: float) -> Event:
    try:
        message = await asyncio.wait_for(connection.recv(), timeout)
    except ConnectionClosed as exc:
        raise ServerRefused(f"server closed the connection: {exc}") from exc
    except TimeoutError as exc:
        raise ClientError("server sent no ready event") from exc
    event: Event = json.loads(message)
    return event
