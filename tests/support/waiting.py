"""Waiting on behaviour in tests: a condition, polled, with a deadline that means failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEADLINE_S = 10.0  # a condition that never comes true: a failure, never a wait


async def until(condition: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    """Yield to the loop until `condition` holds: on behaviour, not on how fast it comes."""
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.001)
