"""The decode scheduler with a fake decoder of known cost."""

import asyncio
import threading
import time

import numpy as np

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.engine.scheduler import DecodeScheduler


class SlowDecoder:
    name = "slow"
    multilingual = False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.order: list[tuple[str, int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def decode(self, request: DecodeRequest) -> DecodeResult:
        self.gate.wait()
        time.sleep(self.seconds)
        self.order.append((request.kind, request.request_id))
        return DecodeResult(text=f"r{request.request_id}", language="en")


def _request(rid: int, kind: str) -> DecodeRequest:
    return DecodeRequest(rid, kind, 0, np.zeros(1600, np.float32))  # type: ignore[arg-type]


async def test_finals_go_before_partials_and_partials_coalesce() -> None:
    decoder = SlowDecoder(0.01)
    async with DecodeScheduler(decoder) as scheduler:
        decoder.gate.clear()  # hold the worker on the first job while the queue fills
        first = scheduler.submit("a", _request(1, "partial"))
        await asyncio.sleep(0.05)
        stale = scheduler.submit("a", _request(2, "partial"))
        newer = scheduler.submit("a", _request(3, "partial"))
        other = scheduler.submit("b", _request(4, "partial"))
        final = scheduler.submit("b", _request(5, "final"))
        decoder.gate.set()
        results = await asyncio.gather(first, newer, other, final)
        assert [r.text for r in results] == ["r1", "r3", "r4", "r5"]
        assert stale.cancelled()
        assert decoder.order == [("partial", 1), ("final", 5), ("partial", 3), ("partial", 4)]
        assert scheduler.stats.replaced_partials == 1


async def test_cancel_and_drop_owner_forget_queued_work() -> None:
    decoder = SlowDecoder(0.01)
    async with DecodeScheduler(decoder) as scheduler:
        decoder.gate.clear()
        busy = scheduler.submit("a", _request(1, "final"))
        await asyncio.sleep(0.05)
        cancelled = scheduler.submit("a", _request(2, "final"))
        gone = [scheduler.submit("b", _request(i, "final")) for i in (3, 4)]
        kept = scheduler.submit("c", _request(5, "final"))
        scheduler.cancel("a", 2)
        scheduler.drop_owner("b")
        decoder.gate.set()
        await asyncio.gather(busy, kept)
        assert cancelled.cancelled() and all(f.cancelled() for f in gone)
        assert [rid for _, rid in decoder.order] == [1, 5]


async def test_a_failing_decode_fails_only_its_request() -> None:
    class Broken(SlowDecoder):
        def decode(self, request: DecodeRequest) -> DecodeResult:
            if request.request_id == 1:
                raise RuntimeError("boom")
            return super().decode(request)

    async with DecodeScheduler(Broken(0.0)) as scheduler:
        bad = scheduler.submit("a", _request(1, "final"))
        good = scheduler.submit("a", _request(2, "final"))
        assert (await good).text == "r2"
        assert isinstance(bad.exception(), RuntimeError)
