"""How a client reaches a protected server: its token, and TLS with a private CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

UNAUTHORIZED_HINT = "give the server's token with --token or CAPTIONCAST_TOKEN"
UNREACHABLE_HINT = ("is the server running? start one with `captioncast serve`, or give its "
                    "address with --server or CAPTIONCAST_SERVER")
TLS_HINT = ("for a server with a private or self-signed certificate, "
            "give its CA with --cafile or CAPTIONCAST_CAFILE")


@dataclass(frozen=True)
class Access:
    token: str | None = None
    cafile: str | None = None  # CA bundle for wss:// and https:// (None: the system's)

    def headers(self) -> dict[str, str]:
        # A header, not ?token=: URLs end up in logs, headers do not.
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_for(self, url: str) -> ssl.SSLContext | None:
        """A TLS context for wss:// and https:// URLs, None for plain ones."""
        if not url.startswith(("wss://", "https://")):
            return None
        return ssl.create_default_context(cafile=self.cafile)


NO_ACCESS = Access()


def websocket_base(server: str) -> str:
    """ws:// or wss:// from any address a user may give: ws(s)://, http(s)://, host:port."""
    base = server.rstrip("/")
    for plain, websocket in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(plain):
            return websocket + base[len(plain):]
    return base if base.startswith(("ws://", "wss://")) else "ws://" + base


def explain_refusal(status: int) -> str:
    """What a user should do about an HTTP status the server answered with."""
    if status == 401:
        return f"HTTP 401 unauthorized: {UNAUTHORIZED_HINT}"
    if status == 403:
        return "HTTP 403 forbidden: this origin is not allowed on the server"
    if status == 429:
        return "HTTP 429: too many connections from this address"
    return f"HTTP {status}"
