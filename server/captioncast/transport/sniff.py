"""Which side of the port a connection goes to: a GET to websockets, anything else to h11.

websockets parses only GET requests (a WebSocket handshake is always a GET), so a POST
on its port fails before `process_request` sees it. `SniffingConnection`, passed to
`serve(create_connection=...)`, looks at the first bytes of each connection: a GET goes
on to websockets untouched (routes, upgrades, its timeouts); anything else is handed,
transport and bytes already read, to `adopt` (transport/http_front.py's HttpFront).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

from websockets.asyncio.server import ServerConnection

SNIFF_BYTES = len(b"GET ")
SNIFF_TIMEOUT_S = 10.0  # websockets' own open_timeout; a silent connection is dropped

Adopt = Callable[[asyncio.Transport, bytes], None]


class SniffingConnection(ServerConnection):
    """A websockets connection that first checks that the request is a GET.

    Until the first bytes decide, websockets has not started (no handshake task, no
    timeout of its own), so this class keeps a timeout of its own for silent peers.
    """

    adopt: ClassVar[Adopt]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._sniff_transport = transport
        self._sniffed = b""
        self._sniffing = True
        self._sniff_timer = self.loop.call_later(SNIFF_TIMEOUT_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        if not self._sniffing:
            super().data_received(data)
            return
        self._sniffed += data
        if len(self._sniffed) < SNIFF_BYTES and b"GET ".startswith(self._sniffed):
            return
        self._sniffing = False
        self._sniff_timer.cancel()
        first, self._sniffed = self._sniffed, b""
        if first.startswith(b"GET "):
            super().connection_made(self._sniff_transport)  # websockets takes it from here
            super().data_received(first)
        else:
            type(self).adopt(self._sniff_transport, first)

    def eof_received(self) -> None:
        if self._sniffing:
            return  # closed before saying anything: the transport closes
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sniffing:
            self._sniffing = False
            self._sniff_timer.cancel()
            return
        super().connection_lost(exc)


def sniffing(adopt: Adopt) -> type[ServerConnection]:
    """A `create_connection` for websockets' `serve` that hands non-GETs to `adopt`."""

    class Bound(SniffingConnection):
        pass

    Bound.adopt = staticmethod(adopt)
    return Bound
