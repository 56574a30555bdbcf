"""The decode scheduler with a decoder the test steps and a clock the test moves."""

import asyncio

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.engine.scheduler import Budgets, DecodeScheduler
from tests.support.scheduler_sim import (
    FakeClock,
    SteppedBatchDecoder,
    SteppedDecoder,
    request,
    settle,
)


async def test_finals_go_before_partials_and_partials_coalesce() -> None:
    decoder = SteppedDecoder()
    async with DecodeScheduler(decoder, clock=FakeClock()) as scheduler:
        first = scheduler.submit("a", request(1, "partial"))
        await settle(scheduler, decoder)  # the worker holds the first job while the queue fills
        stale = scheduler.submit("a", request(2, "partial"))
        newer = scheduler.submit("a", request(3, "partial"))
        other = scheduler.submit("b", request(4, "partial"))
        final = scheduler.submit("b", request(5, "final"))
        decoder.open()
        results = await asyncio.gather(first, newer, other, final)
        assert [r.text for r in results] == ["r1", "r3", "r4", "r5"]
        assert stale.cancelled()
        assert decoder.order == [("partial", 1), ("final", 5), ("partial", 3), ("partial", 4)]
        assert scheduler.stats.replaced_partials == 1


async def test_cancel_and_drop_owner_forget_queued_work() -> None:
    decoder = SteppedDecoder()
    async with DecodeScheduler(decoder, clock=FakeClock()) as scheduler:
        busy = scheduler.submit("a", request(1, "final"))
        await settle(scheduler, decoder)
        cancelled = scheduler.submit("a", request(2, "final"))
        gone = [scheduler.submit("b", request(i, "final")) for i in (3, 4)]
        kept = scheduler.submit("c", request(5, "final"))
        scheduler.cancel("a", 2)
        scheduler.drop_owner("b")
        decoder.open()
        await asyncio.gather(busy, kept)
        assert cancelled.cancelled() and all(f.cancelled() for f in gone)
        assert [rid for _, rid in decoder.order] == [1, 5]


async def test_a_failing_decode_fails_only_its_request() -> None:
    class Broken:
        name = "broken"
        multilingual = False

        def decode(self, request: DecodeRequest) -> DecodeResult:
            if request.request_id == 1:
                raise RuntimeError("boom")
            return DecodeResult(text=f"r{request.request_id}", language="en")

    async with DecodeScheduler(Broken(), clock=FakeClock()) as scheduler:
        bad = scheduler.submit("a", request(1, "final"))
        good = scheduler.submit("a", request(2, "final"))
        assert (await good).text == "r2"
        assert isinstance(bad.exception(), RuntimeError)


async def test_a_speculative_final_waits_behind_finals_already_known() -> None:
    decoder, clock = SteppedDecoder(), FakeClock()
    async with DecodeScheduler(decoder, clock=clock) as scheduler:
        busy = scheduler.submit("a", request(1, "final"))
        await settle(scheduler, decoder)
        guess = scheduler.submit("b", request(2, "final", speculative=True))
        clock.advance(0.1)  # a real final asked later is still due sooner
        known = scheduler.submit("c", request(3, "final"))
        decoder.open()
        await asyncio.gather(busy, guess, known)
        assert [rid for _, rid in decoder.order] == [1, 3, 2]


async def test_finals_are_decoded_with_less_effort_while_a_round_of_them_waits() -> None:
    decoder = SteppedDecoder()
    budgets = Budgets(busy_finals_per_worker=1.0)
    async with DecodeScheduler(decoder, workers=1, clock=FakeClock(),
                               budgets=budgets) as scheduler:
        first = scheduler.submit("a", request(1, "final"))
        await settle(scheduler, decoder)
        backlog = [scheduler.submit(f"s{i}", request(i, "final")) for i in (2, 3, 4)]
        partial = scheduler.submit("p", request(5, "partial"))
        decoder.open()
        await asyncio.gather(first, *backlog, partial)
        # taken with two finals behind it: busy; with one or none behind: full effort again
        assert decoder.efforts == {1: "full", 2: "busy", 3: "full", 4: "full", 5: "full"}
        assert scheduler.stats.busy_finals == 1


async def test_a_batching_decoder_gets_finals_together_and_partials_apart() -> None:
    decoder = SteppedBatchDecoder()
    async with DecodeScheduler(decoder, workers=1, clock=FakeClock(), batch=3) as scheduler:
        first = scheduler.submit("a", request(1, "final"))
        await settle(scheduler, decoder)
        finals = [scheduler.submit(f"s{i}", request(i, "final")) for i in (2, 3, 4, 5)]
        detect = scheduler.submit("d", request(6, "final", language=None))
        partials = [scheduler.submit(f"p{i}", request(i, "partial")) for i in (7, 8)]
        decoder.open()
        results = await asyncio.gather(first, *finals, detect, *partials)
        assert [r.text for r in results] == [f"r{i}" for i in range(1, 9)]
        # up to 3 finals of one language per call, earliest deadline first; a final that
        # detects its language goes alone (decode, not decode_batch); partials batch apart
        assert decoder.batches == [[2, 3, 4], [7, 8]]
        assert [rid for _, rid in decoder.order] == list(range(1, 9))
        assert scheduler.stats.batches == 2
