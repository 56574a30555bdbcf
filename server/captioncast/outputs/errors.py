"""The outputs' error family: a bad spec (a future 400 answer) and a failed delivery (retried)."""

from __future__ import annotations


class OutputError(Exception):
    """Any error of a caption output."""


class OutputSpecError(OutputError, ValueError):
    """An output spec that cannot be built; the message is fit for a 400 answer."""


class DeliveryError(OutputError):
    """One delivery attempt failed; the output retries it after a backoff.

    `retry_after` is the wait the far end asked for (a `Retry-After` header), if any;
    `waiting` marks a far end that is up but not ready for captions (OBS not streaming,
    a meeting not started), shown as the `waiting` state rather than `retrying`.
    """

    def __init__(self, message: str, *, retry_after: float | None = None,
                 waiting: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.waiting = waiting
