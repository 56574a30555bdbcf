"""One error family; each error knows its protocol code and, if fatal, its close code.

Each code's HTTP status, for the routes answered over HTTP, is in `HTTP_STATUS` below;
a few errors add their own headers on the way out (transport/security.py's
`http_refusal`: 401 with its challenge, 403, 429 and 503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Mapping

from captioncast.protocol import codes
from captioncast.protocol.codes import ErrorCode

HTTP_STATUS: Mapping[str, int] = {
    "bad_request": 400, "bad_audio": 400, "unauthorized": 401, "too_large": 413,
    "timeout": 408, "overloaded": 503, "internal": 500,
}


class CaptioncastError(Exception):
    """Base of every error that can be reported to a client as an `error` event."""

    code = ErrorCode.INTERNAL
    close_code: int | None = codes.INTERNAL  # None: report and carry on

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CaptioncastError):
    """A query parameter or control message the server cannot accept."""

    code = ErrorCode.BAD_REQUEST
    close_code: int | None = codes.POLICY


class BadControlMessage(BadRequest):
    """A malformed text frame: reported, and the session goes on."""

    close_code = None


class Forbidden(BadRequest):
    """A browser page from an origin the server does not allow (HTTP 403)."""


class BadAudio(CaptioncastError):
    """Audio bytes that do not match the declared format; the frame is dropped."""

    code = ErrorCode.BAD_AUDIO
    close_code = None


class NoSpeakerAudio(BadAudio):
    """Audio too short or too quiet to say whose voice it is: nothing to embed."""


class TooLarge(CaptioncastError):
    code = ErrorCode.TOO_LARGE
    close_code = codes.TOO_BIG


class Overloaded(CaptioncastError):
    """No room now; `retry_after_s`, when known, is when to try again (HTTP Retry-After)."""

    code = ErrorCode.OVERLOADED
    close_code = codes.OVERLOADED

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyConnections(Overloaded):
    """One address holds too many connections (HTTP 429, WebSocket close 1013)."""


class Unauthorized(CaptioncastError):
    code = ErrorCode.UNAUTHORIZED
    close_code = codes.UNAUTHORIZED


class SessionTimeout(CaptioncastError):
    code = ErrorCode.TIMEOUT
    close_code = codes.POLICY


class ModelError(CaptioncastError):
    """The model could not be found, assembled or loaded."""

    code = ErrorCode.INTERNAL
    close_code = codes.INTERNAL


def http_status(error: CaptioncastError) -> int:
    """The HTTP status that says `error` (500 for a code without one)."""
    return HTTP_STATUS.get(error.code, 500)
