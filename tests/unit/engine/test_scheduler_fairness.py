"""Earliest-deadline-first scheduling, played out on a clock the test moves.

Each decode takes a known time of that clock (scheduler_sim.Simulation), and sessions ask
at known times of it, so every test below sees the same sequence of events on any
machine, loaded or not.
"""

import asyncio
import itertools

import pytest

from captioncast.engine.scheduler import Budgets, DecodeScheduler
from tests.support.scheduler_sim import FakeClock, Simulation, SteppedDecoder, request


async def test_partials_are_shared_fairly_between_sessions() -> None:
    """Two talkers ask for their next partial as soon as the last one is back, as the
    policy does; a hog asks for a fresh one every 2 ms whatever happens to the last one.
    A decode takes 10 ms."""
    clock = FakeClock()
    decoder = SteppedDecoder()
    rid = itertools.count(1)
    served = {"a": 0, "b": 0}
    hog: list[asyncio.Future[object]] = []
    async with DecodeScheduler(decoder, clock=clock) as scheduler:
        sim = Simulation(scheduler, decoder, clock, decode_ms=10)
        talking = {o: scheduler.submit(o, request(next(rid), "partial")) for o in served}
        while len(decoder.order) < 90:
            hog.append(scheduler.submit("hog", request(next(rid), "partial")))  # type: ignore[arg-type]
            await sim.settle()
            await sim.tick(2)
            for owner, future in talking.items():
                if future.done():
                    served[owner] += 1
                    talking[owner] = scheduler.submit(owner, request(next(rid), "partial"))
        decoded = len(decoder.order)
        hog_served = sum(f.done() and not f.cancelled() for f in hog)
        waiting = sum(not f.done() for f in hog)
        replaced = scheduler.stats.replaced_partials
        decoder.open()
    assert sum(served.values()) + hog_served == decoded, (served, hog_served)
    assert abs(served["a"] - served["b"]) <= 1, served
    assert min(served.values()) >= 25, served
    # Asking five times as often buys the hog no more than its turn...
    assert len(hog) >= 4 * hog_served, (len(hog), hog_served)
    assert hog_served <= min(served.values()) + 1, (served, hog_served)
    # ...because each newer partial replaced the one waiting: none was decoded stale.
    assert replaced == len(hog) - hog_served - waiting


async def test_a_refreshed_partial_keeps_its_place_in_line() -> None:
    clock = FakeClock()
    decoder = SteppedDecoder()
    async with DecodeScheduler(decoder, clock=clock) as scheduler:
        sim = Simulation(scheduler, decoder, clock, decode_ms=10)
        busy = scheduler.submit("x", request(1, "final"))
        await sim.settle()  # the worker holds it while the others queue
        clock.advance(0.02)
        scheduler.submit("a", request(2, "partial"))
        clock.advance(0.01)
        b = scheduler.submit("b", request(3, "partial"))
        clock.advance(0.01)
        a = scheduler.submit("a", request(4, "partial"))  # a's refresh, still first in line
        decoder.open()
        await asyncio.gather(busy, a, b)
        assert [rid for _, rid in decoder.order] == [1, 4, 3]


async def test_finals_first_but_a_partial_does_not_starve() -> None:
    """Another session's finals arrive every 15 ms for a second, each decoded in 20 ms:
    faster than they are decoded. A partial asked at the start waits while finals with
    earlier deadlines are queued, then has its turn before the later ones."""
    clock = FakeClock()
    decoder = SteppedDecoder()
    budgets = Budgets(final_s=0.05, partial_s=0.3)
    arrived_ms: dict[int, int] = {}
    async with DecodeScheduler(decoder, budgets=budgets, clock=clock) as scheduler:
        sim = Simulation(scheduler, decoder, clock, decode_ms=20)
        partial = scheduler.submit("p", request(1, "partial"))
        finals = []
        while sim.ms < 1000 or scheduler.depth or decoder.decoding:
            if sim.ms < 1000 and sim.ms % 15 == 0:
                rid = 100 + len(finals)
                arrived_ms[rid] = sim.ms
                finals.append(scheduler.submit("f", request(rid, "final")))
            await sim.settle()
            await sim.tick(5)
        await asyncio.gather(*finals)
        assert partial.done() and not partial.cancelled()
        order = [r for _, r in decoder.order]
        position = order.index(1)
        # Finals went first while their deadlines came before the partial's (asked at
        # 0 ms, it is due at 300 ms; a final asked at t is due at t + 50 ms), then the
        # partial had its turn, before every final due after it.
        before = sorted(r for r, t in arrived_ms.items() if t + 50 < 300)
        assert order[:position] == before, order
        assert len(order) - position - 1 >= 5, order
        assert scheduler.stats.decodes["final"] == len(finals) == len(arrived_ms)


async def test_lag_is_the_wait_of_the_oldest_live_decode() -> None:
    clock = FakeClock()
    decoder = SteppedDecoder()
    async with DecodeScheduler(decoder, clock=clock) as scheduler:
        sim = Simulation(scheduler, decoder, clock, decode_ms=10)
        assert scheduler.lag() == 0.0
        busy = scheduler.submit("a", request(1, "final"))
        await sim.settle()
        clock.advance(0.01)
        waiting = scheduler.submit("b", request(2, "final"))
        clock.advance(0.1)
        assert scheduler.lag() == pytest.approx(0.1)
        decoder.open()
        await asyncio.gather(busy, waiting)
        assert scheduler.lag() == 0.0
