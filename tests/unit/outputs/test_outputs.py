"""Outputs without a network: the queue, ordering, retries, status, specs, caption shaping."""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import pytest

from captioncast.outputs import (
    ChannelOutputs,
    Delivery,
    DeliveryError,
    Output,
    OutputRegistry,
    OutputSpecError,
    OutputState,
    build_output,
)
from captioncast.outputs.caption_chunks import caption_chunks, utc_millis, wall_time, wrap
from captioncast.outputs.obs_protocol import authentication, decode, identify
from captioncast.outputs.spec import redact, with_query
from captioncast.protocol.backoff import Backoff
from tests.support.waiting import until

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


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    policy = Backoff(first_s=1.0, max_s=8.0, jitter=(0.8, 1.2))
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(6.4 <= d <= 9.6 for d in delays[4:])
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jittered, not lockstep


# -- specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "fax"}, "kind"),
    ({"url": "http://x"}, "kind"),
    ({"kind": "webhook", "secret": "s" * 20}, "'url' is required"),
    ({"kind": "webhook", "url": "ftp://x", "secret": "s" * 20}, "http or https"),
    ({"kind": "webhook", "url": "http://x"}, "'secret' is required"),
    ({"kind": "webhook", "url": "http://x", "secret": "short"}, "16+"),
    ({"kind": "webhook", "url": "http://x", "secret": "s" * 20, "sekret": 1}, "sekret"),
    ({"kind": "zoom", "url": "http://x", "queue_size": 0}, "queue_size"),
    ({"kind": "zoom", "url": "http://x", "queue_size": True}, "queue_size"),
    ({"kind": "obs", "url": "http://localhost:4455"}, "ws or wss"),
    ({"kind": "teams", "url": "https://x", "line_chars": 200}, "line_chars"),
    ({"kind": "youtube", "url": "https://x", "id": "no spaces"}, "'id'"),
])
def test_bad_specs_say_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(OutputSpecError, match=re.escape(message)):
        build_output(spec)


async def test_registry_adds_lists_and_removes_outputs_by_id() -> None:
    registry = OutputRegistry()
    a = registry.add("show", {"kind": "webhook", "url": "http://127.0.0.1:9/h",
                              "secret": "s" * 20, "id": "notes"})
    b = registry.add("show", {"kind": "obs", "password": "pw"})
    assert a.id == "notes" and b.id != a.id
    with pytest.raises(OutputSpecError, match="already"):
        registry.add("show", {"kind": "webhook", "url": "http://x", "secret": "s" * 20,
                              "id": "notes"})
    statuses = registry.statuses("show")
    assert [s["id"] for s in statuses] == ["notes", b.id]
    assert statuses[0]["url"] == "http://127.0.0.1:9" and "secret" not in statuses[0]
    assert statuses[1]["url"] == "ws://127.0.0.1:4455" and "password" not in statuses[1]
    assert registry.statuses("other") == []
    registry.offer("nobody", final(1))  # a channel without outputs costs a dict lookup
    assert {s.name for s in registry.samples()} >= {"sent", "failed", "dropped", "queued"}
    assert await registry.remove("show", "notes")
    assert not await registry.remove("show", "notes")
    await registry.close(timeout=0.1)
    assert registry.statuses("show") == []


async def test_a_channel_has_a_bounded_number_of_outputs() -> None:
    outputs = ChannelOutputs("show", limit=2)
    outputs.add(Scripted())
    outputs.add(Scripted())
    with pytest.raises(OutputSpecError, match="most"):
        outputs.add(Scripted())
    await outputs.close(timeout=0.1)


# -- shaping ----------------------------------------------------------------------------------


def test_long_finals_split_into_608_captions_timed_by_their_words() -> None:
    text = ("so we went down to the river early in the morning and the fog was still lying "
            "on the water like a blanket when the first boats came out")
    chunks = caption_chunks(final(1, text, start=10.0))
    assert len(chunks) > 1
    assert all(len(c.lines) <= 2 and all(len(line) <= 32 for line in c.lines) for c in chunks)
    assert " ".join(" ".join(c.lines) for c in chunks) == text
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert chunks[0].start == 10.0 and chunks[1].start > 10.0


def test_wrap_keeps_every_line_within_its_width() -> None:
    lines = wrap("a " * 100 + "supercalifragilisticexpialidocious", 20)
    assert all(len(line) <= 20 for line in lines)


def test_audio_time_maps_to_wall_time_and_youtube_format() -> None:
    event = {"start": 12.0, "end": 16.5}
    assert wall_time(12.0, event, received_at=1000.0) == 995.5
    assert utc_millis(0.0) == "1970-01-01T00:00:00.000"
    assert utc_millis(1_700_000_000.1234) == "2023-11-14T22:13:20.123"


def test_query_parameters_are_appended_without_touching_the_signed_ones() -> None:
    url = "https://wmcapi.zoom.us/closedcaption?id=200&ns=GZHkEA==&signature=nY%2Ft&seq=3"
    assert with_query(url, seq=7, lang="en-US") == (
        "https://wmcapi.zoom.us/closedcaption?id=200&ns=GZHkEA==&signature=nY%2Ft"
        "&seq=7&lang=en-US")
    assert redact(url) == "https://wmcapi.zoom.us/closedcaption"
    assert redact("ws://user:pw@host:4455/x?y=1") == "ws://host:4455/x"


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    import email.utils

    import httpx

    from captioncast.outputs.http import retry_after

    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(httpx.Response(503)) is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    wait = retry_after(httpx.Response(429, headers={"Retry-After": later}))
    assert wait is not None and 55 <= wait <= 61
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None


def test_obs_identify_answers_the_challenge() -> None:
    # The protocol's rule, step by step, against the module's one-liner.
    import base64
    import hashlib

    secret = base64.b64encode(hashlib.sha256(b"pw" + b"salt").digest())
    want = base64.b64encode(hashlib.sha256(secret + b"chal").digest()).decode()
    assert authentication("pw", "salt", "chal") == want
    op, d = decode(identify({"authentication": {"salt": "salt", "challenge": "chal"}}, "pw"))
    assert op == 1 and d == {"rpcVersion": 1, "eventSubscriptions": 0, "authentication": want}
    op, d = decode(identify({"rpcVersion": 1}, None))
    assert "authentication" not in d
