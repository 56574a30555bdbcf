"""The scheduler's background priority: file transcription waits behind live decodes."""

import asyncio

from captioncast.engine.scheduler import DecodeScheduler
from tests.support.scheduler_sim import FakeClock, SteppedDecoder, request, settle


async def test_background_decodes_wait_behind_live_finals_and_partials() -> None:
    decoder = SteppedDecoder()
    async with DecodeScheduler(decoder, clock=FakeClock()) as scheduler:
        running = scheduler.submit("file", request(1, "final"), background=True)
        await settle(scheduler, decoder)  # the worker holds the first job while the queue fills
        file_next = scheduler.submit("file", request(2, "final"), background=True)
        other_file = scheduler.submit("file2", request(3, "final"), background=True)
        partial = scheduler.submit("live", request(4, "partial"))
        final = scheduler.submit("live", request(5, "final"))
        decoder.open()
        await asyncio.gather(running, file_next, other_file, partial, final)
        # A background job already decoding finishes; then live work, then files in order.
        assert [rid for _, rid in decoder.order] == [1, 5, 4, 2, 3]


async def test_background_finals_are_never_coalesced_or_dropped() -> None:
    decoder = SteppedDecoder()
    decoder.open()
    async with DecodeScheduler(decoder, clock=FakeClock()) as scheduler:
        futures = [scheduler.submit("file", request(i, "final"), background=True)
                   for i in range(1, 6)]
        results = await asyncio.gather(*futures)
        assert [r.text for r in results] == [f"r{i}" for i in range(1, 6)]
        assert scheduler.stats.decodes["final"] == 5
