"""Earliest-deadline-first scheduling with a fake decoder of known cost."""

import asyncio

from captioncast.engine.scheduler import Budgets, DecodeScheduler
from tests.unit.test_scheduler import SlowDecoder, _request


async def _talker(scheduler: DecodeScheduler, owner: str, served: dict[str, int],
                  stop: asyncio.Event) -> None:
    """Asks for the next partial as soon as the last one is back, as the policy does."""
    rid = 0
    while not stop.is_set():
        rid += 1
        await scheduler.submit(owner, _request(rid, "partial"))
        served[owner] += 1


async def _hog(scheduler: DecodeScheduler, owner: str, served: dict[str, int],
               stop: asyncio.Event) -> None:
    """Asks for a fresh partial every 2 ms whatever happens to the last one."""
    rid = 0
    while not stop.is_set():
        rid += 1
        future = scheduler.submit(owner, _request(rid, "partial"))
        future.add_done_callback(
            lambda f: served.__setitem__(owner, served[owner] + (not f.cancelled())))
        await asyncio.sleep(0.002)


async def test_partials_are_shared_fairly_between_sessions() -> None:
    decoder = SlowDecoder(0.01)
    served = {"a": 0, "b": 0, "hog": 0}
    stop = asyncio.Event()
    async with DecodeScheduler(decoder) as scheduler:
        tasks = [asyncio.create_task(_talker(scheduler, "a", served, stop)),
                 asyncio.create_task(_talker(scheduler, "b", served, stop)),
                 asyncio.create_task(_hog(scheduler, "hog", served, stop))]
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert min(served["a"], served["b"]) >= 10, served
    # Asking more often buys the hog no more than its turn: refreshed, never queued stale.
    assert served["hog"] <= 1.5 * min(served["a"], served["b"]) + 2, served
    assert scheduler.stats.replaced_partials > 50


async def test_a_refreshed_partial_keeps_its_place_in_line() -> None:
    decoder = SlowDecoder(0.01)
    async with DecodeScheduler(decoder) as scheduler:
        decoder.gate.clear()
        busy = scheduler.submit("x", _request(1, "final"))
        await asyncio.sleep(0.02)
        scheduler.submit("a", _request(2, "partial"))
        await asyncio.sleep(0.01)
        b = scheduler.submit("b", _request(3, "partial"))
        await asyncio.sleep(0.01)
        a = scheduler.submit("a", _request(4, "partial"))  # a's refresh, still first in line
        decoder.gate.set()
        await asyncio.gather(busy, a, b)
        assert [rid for _, rid in decoder.order] == [1, 4, 3]


async def test_finals_first_but_a_partial_does_not_starve() -> None:
    decoder = SlowDecoder(0.02)
    budgets = Budgets(final_s=0.05, partial_s=0.3)
    async with DecodeScheduler(decoder, budgets=budgets) as scheduler:
        partial = scheduler.submit("p", _request(1, "partial"))
        finals: list[asyncio.Future[object]] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        rid = 100
        # Another session's finals arrive faster than they are decoded, for a second.
        while loop.time() - started < 1.0:
            finals.append(scheduler.submit("f", _request(rid, "final")))  # type: ignore[arg-type]
            rid += 1
            await asyncio.sleep(0.015)
            if partial.done() and not hasattr(partial, "served_at"):
                partial.served_at = loop.time() - started  # type: ignore[attr-defined]
        await asyncio.gather(*finals)
        assert partial.done() and not partial.cancelled()
        position = [r for _, r in decoder.order].index(1)
        # Finals went first while the partial was within its budget, then it had its turn.
        assert 3 <= position < len(decoder.order) - 5, decoder.order
        assert scheduler.stats.decodes["final"] == len(finals)


async def test_lag_is_the_wait_of_the_oldest_live_decode() -> None:
    decoder = SlowDecoder(0.0)
    async with DecodeScheduler(decoder) as scheduler:
        assert scheduler.lag() == 0.0
        decoder.gate.clear()
        busy = scheduler.submit("a", _request(1, "final"))
        await asyncio.sleep(0.01)
        waiting = scheduler.submit("b", _request(2, "final"))
        await asyncio.sleep(0.1)
        assert scheduler.lag() >= 0.09
        decoder.gate.set()
        await asyncio.gather(busy, waiting)
        assert scheduler.lag() == 0.0
