"""Helpers every WebSocket route shares: its query, a refusal as the first event, closing."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from captioncast.errors import BadRequest, CaptioncastError
from captioncast.protocol import codes
from captioncast.protocol.events import Error


def query_of(connection: ServerConnection) -> dict[str, str]:
    """The handshake's query as a dict; a parameter given twice is a BadRequest."""
    assert connection.request is not None
    pairs = parse_qsl(urlsplit(connection.request.path).query, keep_blank_values=True)
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise BadRequest(f"query parameter {key} is given twice")
        query[key] = value
    return query


def peer_of(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


async def reject(connection: ServerConnection, error: CaptioncastError) -> None:
    """Report a fatal error as the first event, then close with its code."""
    event = Error(1, code=error.code, message=error.message)
    with contextlib.suppress(ConnectionClosed):
        await connection.send(event.to_json())
        await connection.close(error.close_code or codes.INTERNAL, error.message[:120])


async def close_or_abort(connection: ServerConnection, timeout_s: float, code: int = codes.NORMAL,
                         reason: str = "") -> None:
    """Close; a peer that reads nothing, not even our close frame, is cut off."""
    try:
        async with asyncio.timeout(timeout_s):
            await connection.close(code, reason[:120])
    except TimeoutError:
        connection.transport.abort()
    except ConnectionClosed:
        pass
