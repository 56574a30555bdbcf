"""outputs/output.py without a network: the queue, ordering, retries, status."""

from __future__ import annotations

import asyncio

from captioncast.outputs import OutputState
from captioncast.protocol.backoff import Backoff
from tests.support.scripted_output import Scripted, final
from tests.support.waiting import until


async def test_finals_go_out_in_order_through_failures_and_status_says_so() -> None:
    out = Scripted(fail={2: 3})
    for seq in range(1, 6):
        out.offer(final(seq))
    await out.close(timeout=5)
    assert out.sent == [1, 2, 3, 4, 5]
    assert out.attempts.count(2) == 4
    status = out.status()
    assert status["sent"] == 5 and status["failed"] == 3 and status["dropped"] == 0
    assert status["last_error"] == "scripted failure of 2"
    assert status["last_success_at"] is not None and status["state"] == "closed"


async def test_offer_never_waits_for_a_stuck_far_end() -> None:
    hold = asyncio.Event()
    out = Scripted(hold=hold, queue_size=1000)
    for seq in range(1, 501):
        assert out.offer(final(seq))
    # offer() never yields to the loop: all 500 are queued before the worker first runs.
    assert out.attempts == []
    await until(lambda: out.attempts == [1])  # the worker is stuck on the first one
    assert out.state is OutputState.SENDING and out.status()["queued"] == 500
    hold.set()
    await out.close(timeout=5)
    assert out.sent == list(range(1, 501))


async def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    hold = asyncio.Event()
    out = Scripted(hold=hold, queue_size=3)
    for seq in range(1, 7):
        out.offer(final(seq))
        await asyncio.sleep(0)  # the worker takes the first one in flight
    hold.set()
    await out.close(timeout=5)
    assert out.sent == [1, 4, 5, 6]
    assert out.status()["dropped"] == 2


async def test_waiting_state_while_the_far_end_is_not_ready() -> None:
    out = Scripted(fail={99: 1000}, retry=Backoff(first_s=0.01, max_s=0.01))
    out.offer(final(99))
    await until(lambda: out.state is OutputState.WAITING)
    out.fail[99] = 0
    await out.close(timeout=5)
    assert out.sent == [99]


async def test_close_drains_then_counts_what_is_left_as_dropped() -> None:
    out = Scripted(fail={1: 10**6}, retry=Backoff(first_s=0.01, max_s=0.01))
    out.offer(final(1))
    out.offer(final(2))
    await out.close(timeout=0.1)
    assert out.sent == [] and out.status()["dropped"] == 2
    assert not out.offer(final(3)) and out.status()["dropped"] == 3


async def test_empty_finals_are_skipped_and_max_attempts_gives_up() -> None:
    out = Scripted(fail={1: 10}, retry=Backoff(first_s=0.001, max_s=0.001, max_attempts=2))
    out.offer({**final(1)})
    out.offer({**final(2), "text": ""})
    out.offer(final(3))
    await out.close(timeout=5)
    assert out.sent == [3]
    assert out.status()["dropped"] == 1 and out.status()["skipped"] == 1


async def test_a_bug_in_a_kind_does_not_block_the_queue_for_ever() -> None:
    class Buggy(Scripted):
        async def send(self, payload: int) -> None:
            if payload == 1:
                raise KeyError("bug")
            await super().send(payload)

    out = Buggy()
    out.offer(final(1))
    out.offer(final(2))
    await out.close(timeout=5)
    assert out.sent == [2] and out.status()["dropped"] == 1
    assert "internal" in out.status()["last_error"]
