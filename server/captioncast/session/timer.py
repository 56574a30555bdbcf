"""A one-shot timer on the running event loop that knows whether it is pending."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Timer:
    """One pending call on the event loop, replaced or cancelled as a whole."""

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._handle is not None

    def start(self, delay: float, callback: Callable[[], None]) -> None:
        self.cancel()

        def fire() -> None:
            self._handle = None
            callback()

        self._handle = asyncio.get_running_loop().call_later(delay, fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
