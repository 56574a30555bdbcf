"""An output kind without a network, for the outputs' unit tests: scripted failures, finals."""

from __future__ import annotations

import asyncio
from typing import Any

from captioncast.outputs import Delivery, DeliveryError, Output
from captioncast.protocol.backoff import Backoff

FAST = Backoff(first_s=0.001, max_s=0.005)


def final(seq: int, text: str = "", start: float = 0.0, step: float = 0.3) -> dict[str, Any]:
    text = text or f"final number {seq}"
    words = [{"word": w, "start": start + i * step, "end": start + i * step + 0.25}
             for i, w in enumerate(text.split())]
    return {"type": "final", "seq": seq, "utterance": seq, "text": text, "start": start,
            "end": start + len(words) * step, "language": "en", "words": words}


class Scripted(Output[int]):
    """A kind whose attempts fail as scripted: `fail[seq]` failures before success."""

    kind = "scripted"

    def __init__(self, fail: dict[int, int] | None = None, hold: asyncio.Event | None = None,
                 **kwargs: Any) -> None:
        super().__init__(retry=kwargs.pop("retry", FAST), **kwargs)
        self.fail = dict(fail or {})
        self.hold = hold
        self.attempts: list[int] = []
        self.sent: list[int] = []

    def prepare(self, delivery: Delivery) -> int | None:
        return int(delivery.event["seq"]) if delivery.text else None

    async def send(self, payload: int) -> None:
        self.attempts.append(payload)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail.get(payload, 0) > 0:
            self.fail[payload] -= 1
            raise DeliveryError(f"scripted failure of {payload}", waiting=payload == 99)
        self.sent.append(payload)

