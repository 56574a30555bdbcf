"""Error codes of `error` events and the close codes that follow fatal ones (PROTOCOL.md)."""

from __future__ import annotations

from enum import StrEnum, unique

from websockets.frames import CloseCode


@unique
class ErrorCode(StrEnum):
    """The `code` of an `error` event; a str, so it compares and serializes as its value."""

    BAD_REQUEST = "bad_request"
    BAD_AUDIO = "bad_audio"
    UNAUTHORIZED = "unauthorized"
    OVERLOADED = "overloaded"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


# WebSocket close codes by name: the standard ones are websockets' own enum, and the
# protocol adds 4001 in the private range (4000-4999) for a missing or wrong token.
NORMAL: int = CloseCode.NORMAL_CLOSURE  # 1000: after `end`
GOING_AWAY: int = CloseCode.GOING_AWAY  # 1001: the server shuts down
UNSUPPORTED: int = CloseCode.UNSUPPORTED_DATA  # 1003
POLICY: int = CloseCode.POLICY_VIOLATION  # 1008: bad request, timeout, taken over, too slow
TOO_BIG: int = CloseCode.MESSAGE_TOO_BIG  # 1009
INTERNAL: int = CloseCode.INTERNAL_ERROR  # 1011
OVERLOADED: int = CloseCode.TRY_AGAIN_LATER  # 1013
UNAUTHORIZED: int = 4001

# A client that sees one of these is refused for good: reconnecting cannot help.
REFUSAL_CLOSE_CODES = frozenset({UNSUPPORTED, POLICY, TOO_BIG, UNAUTHORIZED})
