"""Who may use the server: bearer tokens, browser origins, connections per address, TLS.

Every check here is pure (a path and headers in, an error or None out) so that the
WebSocket routes, the GET pages and the POST front all ask the same questions.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import ssl
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from captioncast.errors import (
    CaptioncastError,
    Forbidden,
    Overloaded,
    TooManyConnections,
    Unauthorized,
)

# Open without a token: load balancers and Docker HEALTHCHECK probe it without
# credentials. Without a token it says only ok, loading or draining (see server.py).
PUBLIC_PATHS = frozenset({"/healthz"})
_TOKEN_IN_QUERY = re.compile(r"(?i)([?&]token=)[^&#]*")


@dataclass(frozen=True)
class SecurityOptions:
    tokens: tuple[str, ...] = ()  # empty: no authentication
    allowed_origins: tuple[str, ...] = ()  # empty: any origin
    max_connections_per_ip: int = 32  # 0: no limit
    # Stream sessions connected and not speaking, per address and per token (0: no limit):
    # idle sessions cost no decoding, so their number is not admission's business, but
    # sockets held open for nothing must not exhaust the server either.
    max_idle_per_ip: int = 16
    max_idle_per_token: int = 48
    certfile: Path | None = None
    keyfile: Path | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_token_file(path: Path) -> list[str]:
    """One token per line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CaptioncastError(f"cannot read token file {path}: {exc.strerror}") from exc
    tokens = [line.strip() for line in lines]
    return [t for t in tokens if t and not t.startswith("#")]


def ssl_context(options: SecurityOptions) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain ws:// and http://."""
    if options.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.certfile, options.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise CaptioncastError(
            f"cannot load the TLS certificate {options.certfile} "
            f"(key {options.keyfile or 'in the same file'}): {exc}") from exc
    return context


def redact(target: str) -> str:
    """A request target fit for a log line: the value of `token=` is never written."""
    return _TOKEN_IN_QUERY.sub(r"\1REDACTED", target)


# A browser cannot set headers on a WebSocket, so the hosted APIs take the key as a
# subprotocol: Deepgram's `["token", KEY]`, OpenAI's `"openai-insecure-api-key." + KEY`.
# The server must then name one subprotocol it speaks, or the browser drops the
# connection: `token` for Deepgram, `realtime` for OpenAI.
OPENAI_KEY_PROTOCOL = "openai-insecure-api-key."
ANSWERED_PROTOCOLS = ("token", "realtime")


def offered_protocols(headers: Mapping[str, str]) -> list[str]:
    offered = headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


def _protocol_token(headers: Mapping[str, str]) -> str | None:
    offered = offered_protocols(headers)
    for i, protocol in enumerate(offered):
        if protocol == "token" and i + 1 < len(offered):
            return offered[i + 1]
        if protocol.startswith(OPENAI_KEY_PROTOCOL) and len(protocol) > len(OPENAI_KEY_PROTOCOL):
            return protocol[len(OPENAI_KEY_PROTOCOL):]
    return None


def answered_protocol(offered: Sequence[str]) -> str | None:
    """The subprotocol the server names back: the first of ours the client offered."""
    return next((p for p in ANSWERED_PROTOCOLS if p in offered), None)


def presented_token(target: str, headers: Mapping[str, str]) -> str | None:
    """The token a request carries: `Authorization: Bearer` (or Deepgram's `Token`) first,
    then a browser's subprotocol key, then `?token=`."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token") and credentials.strip():
        return credentials.strip()
    in_protocol = _protocol_token(headers)
    if in_protocol is not None:
        return in_protocol
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if key == "token":
            return value
    return None


def token_key(target: str, headers: Mapping[str, str]) -> str | None:
    """A name for the token a request carries, fit to count by (never the token itself)."""
    token = presented_token(target, headers)
    return None if token is None else _digest(token).hex()[:16]


class Gatekeeper:
    """Answers, for each request, whether it may go on; counts connections per address."""

    def __init__(self, options: SecurityOptions) -> None:
        self.options = options
        # Digests of equal length: compare_digest's time then depends on neither the
        # tokens' lengths nor their characters (it takes only ASCII str, so bytes).
        self._tokens = [_digest(t) for t in options.tokens]
        self._origins = frozenset(o.rstrip("/").lower() for o in options.allowed_origins)
        self._connections: Counter[str] = Counter()

    @property
    def requires_token(self) -> bool:
        return bool(self._tokens)

    def authorize(self, target: str, headers: Mapping[str, str]) -> None:
        """Raise Unauthorized unless the request may use `target`'s path."""
        if urlsplit(target).path not in PUBLIC_PATHS:
            self.check_token(target, headers)

    def trusted(self, target: str, headers: Mapping[str, str]) -> bool:
        """Whether the request carries a valid token (always, when none is configured)."""
        try:
            self.check_token(target, headers)
        except Unauthorized:
            return False
        return True

    def check_token(self, target: str, headers: Mapping[str, str]) -> None:
        if not self._tokens:
            return
        token = presented_token(target, headers)
        if token is None:
            raise Unauthorized("this server needs a token: send Authorization: Bearer TOKEN "
                               "or add token=TOKEN to the URL")
        given = _digest(token)
        # Every token is compared, so the time taken says nothing about which one matched.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise Unauthorized("the token is not valid for this server")

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """Raise Forbidden for a browser request from an origin not on the list.

        Requests without Origin (non-browser clients) and same-origin requests (the
        overlay page served by this server) always pass: neither can be a cross-site
        hijack, which is what the list defends against.
        """
        origin = headers.get("Origin")
        if not self._origins or origin is None:
            return
        normalized = origin.rstrip("/").lower()
        if normalized in self._origins:
            return
        host = headers.get("Host", "").lower()
        if host and urlsplit(normalized).netloc == host:
            return
        raise Forbidden(f"origin {origin} is not allowed on this server")

    def check(self, target: str, headers: Mapping[str, str]) -> None:
        """Origin, then token: the errors every route answers before doing anything."""
        self.check_origin(headers)
        self.authorize(target, headers)

    # -- connections per address -----------------------------------------------------

    @contextlib.contextmanager
    def connection(self, address: str | None) -> Iterator[None]:
        """Hold one of `address`'s connections; Overloaded past the limit."""
        limit = self.options.max_connections_per_ip
        key = address or "?"
        if limit and self._connections[key] >= limit:
            raise TooManyConnections(
                f"too many connections from {key}: the limit is {limit} per address")
        self._connections[key] += 1
        try:
            yield
        finally:
            self._connections[key] -= 1
            if self._connections[key] <= 0:
                del self._connections[key]

    def connections_from(self, address: str) -> int:
        return self._connections[address]


def http_refusal(error: CaptioncastError) -> tuple[int, list[tuple[str, str]]] | None:
    """Status and headers for the errors of this module, None for any other error."""
    if isinstance(error, Unauthorized):
        return 401, [("WWW-Authenticate", 'Bearer realm="captioncast"')]
    if isinstance(error, Forbidden):
        return 403, []
    if isinstance(error, TooManyConnections):
        return 429, [("Retry-After", str(error.retry_after_s or 5))]
    if isinstance(error, Overloaded) and error.retry_after_s is not None:
        return 503, [("Retry-After", str(error.retry_after_s))]
    return None


def peer_host(address: object) -> str | None:
    """The host part of a socket peer name (IPv4 or IPv6 tuple)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None


def tokens_from(given: Iterable[str], files: Iterable[Path], env: str | None) -> tuple[str, ...]:
    """Every configured token: flags, files, then the environment; duplicates dropped."""
    tokens: list[str] = [t.strip() for t in given]
    for path in files:
        tokens.extend(read_token_file(path))
    if env:
        tokens.extend(t.strip() for t in env.split(","))
    return tuple(dict.fromkeys(t for t in tokens if t))
