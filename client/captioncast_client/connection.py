"""Opening a WebSocket to a captioncast server, and the errors a client can act on."""

from __future__ import annotations

import asyncio
import json
import ssl

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import EVENT_TYPES, Error, Event, ProtocolError, event_from_dict
from captioncast_client.access import (
    NO_ACCESS,
    TLS_HINT,
    UNAUTHORIZED_HINT,
    UNREACHABLE_HINT,
    Access,
    explain_refusal,
)
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable

PING_INTERVAL_S = 10.0
MAX_MESSAGE_BYTES = 2**22


async def open_connection(url: str, access: Access = NO_ACCESS,
                          open_timeout: float = 10.0) -> ClientConnection:
    """Connect to a WebSocket route, with the token and TLS settings of `access`.

    ServerUnreachable is what reconnecting may cure (network, TLS, a 5xx from a proxy
    while the server restarts); ServerRefused is what it cannot.
    """
    where = url.split("/v1/")[0]
    try:
        # Pings find a half-open connection (a dead Wi-Fi) in seconds, not minutes.
        return await connect(url, open_timeout=open_timeout, max_size=MAX_MESSAGE_BYTES,
                             additional_headers=access.headers(), ssl=access.ssl_for(url),
                             ping_interval=PING_INTERVAL_S, ping_timeout=PING_INTERVAL_S)
    except ssl.SSLCertVerificationError as exc:
        raise ServerUnreachable(f"cannot verify the certificate of {where}: "
                                f"{exc.verify_message}; {TLS_HINT}") from exc
    except ssl.SSLError as exc:
        raise ServerUnreachable(f"TLS with {where} failed ({exc.reason}): is it a wss:// "
                                "server, and is the address ws:// for a plain one?") from exc
    except (OSError, TimeoutError) as exc:
        raise ServerUnreachable(f"cannot reach captioncast at {where}: "
                                f"{exc or 'no answer in time'}; {UNREACHABLE_HINT}") from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        message = f"server refused the connection: {explain_refusal(status)}"
        raise (ServerUnreachable(message) if status >= 500 else ServerRefused(message)) from exc
    except InvalidURI as exc:
        raise ClientError(f"bad server address: {exc}") from exc
    except InvalidHandshake as exc:
        raise ServerUnreachable(f"{where} did not answer as a captioncast server ({exc}); "
                                "for a TLS server use wss://") from exc


def refusal(event: Error) -> ServerRefused:
    """The error to raise for a fatal `error` event that opened the stream."""
    message = f"server refused the stream: {event.code}: {event.message}"
    if event.code == ErrorCode.UNAUTHORIZED:
        message += f" ({UNAUTHORIZED_HINT})"
    error = ServerRefused(message)
    error.event = event
    return error


def decode(message: str | bytes) -> Event | None:
    """A server's text frame as its event; None for an event type this client does not know.

    A newer server may add event types (PROTOCOL.md allows additions): they are skipped,
    where a malformed known event raises ProtocolError.
    """
    data = json.loads(message)
    if not isinstance(data, dict):
        raise ProtocolError("an event is a JSON object")
    if data.get("type") not in EVENT_TYPES:
        return None
    return event_from_dict(data)


async def read_event(connection: ClientConnection, timeout: float) -> Event:
    """The next event, as the first one on a connection is read (ready, or why not)."""
    while True:
        try:
            message = await asyncio.wait_for(connection.recv(), timeout)
        except ConnectionClosed as exc:
            raise ServerRefused(f"server closed the connection: {exc}") from exc
        except TimeoutError as exc:
            raise ClientError("server sent no ready event") from exc
        event = decode(message)
        if event is not None:
            return event
