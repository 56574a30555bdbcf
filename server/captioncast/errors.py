"""One error family; each error knows its protocol code and, if fatal, its close code."""

from __future__ import annotations


class CaptioncastError(Exception):
    """Base of every error that can be reported to a client as an `error` event."""

    code = "internal"
    close_code: int | None = 1011  # None: report and carry on

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CaptioncastError):
    """A query parameter or control message the server cannot accept."""

    code = "bad_request"
    close_code: int | None = 1008


class BadControlMessage(BadRequest):
    """A malformed text frame: reported, and the session goes on."""

    close_code = None


class BadAudio(CaptioncastError):
    """Audio bytes that do not match the declared format; the frame is dropped."""

    code = "bad_audio"
    close_code = None


class TooLarge(CaptioncastError):
    code = "too_large"
    close_code = 1009


class Overloaded(CaptioncastError):
    code = "overloaded"
    close_code = 1013


class Unauthorized(CaptioncastError):
    code = "unauthorized"
    close_code = 4001


class SessionTimeout(CaptioncastError):
    code = "timeout"
    close_code = 1008


class ModelError(CaptioncastError):
    """The model could not be found, assembled or loaded."""

    code = "internal"
    close_code = 1011
