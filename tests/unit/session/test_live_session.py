"""A live session across connections, with the scripted decoder and no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from captioncast.core.params import StreamParams
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import BadRequest
from captioncast.options import ServerOptions
from captioncast.protocol.events import End, Error, Event, Final, Ready
from captioncast.session.link import TAKEN_OVER, State
from captioncast.session.live_session import LiveSession
from captioncast.transport.server_context import ServerContext
from captioncast.transport.stream import find_resumable
from tests.conftest import read_wav
from tests.support.fake_decoder import ScriptedDecoder

CHUNK = 3200  # 100 ms of s16le


class FakeLink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed: tuple[int, str] | None = None

    def send(self, event: Event, after: object = None) -> None:
        self.events.append(event)

    def finish(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take_over(self) -> None:
        self.closed = TAKEN_OVER

    async def wait_closed(self) -> None:
        return


def _pcm() -> bytes:
    gap = np.zeros(8000, np.float32)
    clip = read_wav("libri_test_61-70968-0000")
    audio = np.concatenate([clip, gap, clip, gap])
    return (audio * 32767).astype("<i2").tobytes()


async def _context(**options: object) -> AsyncIterator[ServerContext]:
    ctx = ServerContext(ServerOptions(**options))  # type: ignore[arg-type]
    decoder = ScriptedDecoder()
    async with DecodeScheduler(decoder) as scheduler:
        ctx.attach(decoder, scheduler)
        yield ctx


@pytest.fixture
async def ctx() -> AsyncIterator[ServerContext]:
    async for context in _context():
        yield context


async def _feed(live: LiveSession, pcm: bytes) -> None:
    for i in range(0, len(pcm), CHUNK):
        live.audio(pcm[i : i + CHUNK])
        await asyncio.sleep(0.002)


async def _until_over(live: LiveSession, timeout: float = 10.0) -> None:
    await _until(lambda: live.over, timeout)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _open(ctx: ServerContext, **params: object) -> LiveSession:
    live = LiveSession("sid", StreamParams(**params), ctx)  # type: ignore[arg-type]
    live.open()
    return live


async def test_a_dropped_session_keeps_decoding_and_replays_on_resume(ctx: ServerContext) -> None:
    pcm = _pcm()
    cut = len(pcm) // 2 - 1234 % CHUNK
    live = _open(ctx, channel="show")
    first = FakeLink()
    first.events += live.attach(first, None, "test")
    await _feed(live, pcm[:cut])
    # Partials of what arrived (they come back from the decoder thread): at least two,
    # so that the client has read something before the two it missed.
    await _until(lambda: len(first.events) >= 4)
    seen = len(first.events) - 2  # the client read all but the last two events
    last_read = first.events[seen - 1].seq
    live.detach(first, "connection_lost")
    assert ctx.sessions["sid"] is live and ctx.channels.get("show").speaker == "sid"
    await _until(lambda: not live.decoding)  # decodes of what arrived still finish

    second = FakeLink()
    resumed = live.attach(second, last_read, "test")
    ready = resumed[0]
    assert isinstance(ready, Ready) and ready.seq == 1
    assert ready.audio_received is not None
    assert round(ready.audio_received * 16000) * 2 == cut
    assert [e.seq for e in resumed[1:]] == list(range(last_read + 1, live.events.last_seq + 1))
    second.events += resumed[1:]
    await _feed(live, pcm[round(ready.audio_received * 16000) * 2 :])
    live.control("eos")
    await _until_over(live)

    events = first.events[:seen] + second.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.utterance for f in finals] == list(range(len(finals))) and len(finals) == 2
    assert isinstance(events[-1], End) and events[-1].duration == pytest.approx(len(pcm) / 32000)
    assert second.closed == (1000, "end of stream")
    live.detach(second, "closed")  # what the connection does once it has sent `end`
    assert "sid" not in ctx.sessions
    assert ctx.channels.get("show").speaker is None


async def test_a_session_nobody_resumes_is_finalized_when_its_window_ends() -> None:
    async for ctx in _context(resume_window_s=0.3):
        live = _open(ctx, channel="show")
        viewer = ctx.channels.subscribe("show", since=0)
        link = FakeLink()
        live.attach(link, None, "test")
        pcm = _pcm()
        await _feed(live, pcm[: len(pcm) // 4])  # mid-utterance
        live.detach(link, "connection_lost")
        await _until_over(live)
        finals = [e for e in live.events.replay(0) if isinstance(e, Final)]
        assert finals and finals[-1].text  # the open utterance got its final
        assert isinstance(live.events.replay(0)[-1], End) and live.reason == "expired"
        assert "sid" not in ctx.sessions
        seen = await viewer.next_events()
        assert isinstance(seen[-1], End)


async def test_without_a_resume_window_a_dropped_session_ends_at_once() -> None:
    async for ctx in _context(resume_window_s=0):
        live = _open(ctx)
        link = FakeLink()
        live.attach(link, None, "test")
        await _feed(live, _pcm()[: 16000 * 4])
        live.detach(link, "connection_lost")
        assert live.over and "sid" not in ctx.sessions


async def test_a_resume_closes_the_connection_still_attached(ctx: ServerContext) -> None:
    live = _open(ctx)
    old, new = FakeLink(), FakeLink()
    live.attach(old, None, "test")
    live.attach(new, 1, "test")
    assert old.closed == TAKEN_OVER
    live.detach(old, "taken_over")  # the old connection's end does not detach the new one
    assert live.link is new and not live.over


async def test_the_session_limit_finalizes_and_closes_with_a_reason() -> None:
    async for ctx in _context(max_session_s=0.5):
        live = _open(ctx)
        link = FakeLink()
        live.attach(link, None, "test")
        pcm = _pcm()
        await _feed(live, pcm[: len(pcm) // 3])
        await _until_over(live)
        errors = [e for e in link.events if isinstance(e, Error)]
        assert [e.code for e in errors] == ["timeout"]
        assert isinstance(link.events[-1], End)
        assert link.closed is not None and link.closed[0] == 1000 and "limit" in link.closed[1]
        live.audio(pcm[:CHUNK])  # audio after the end changes nothing
        assert isinstance(link.events[-1], End)


async def test_shutdown_finalizes_attached_and_detached_sessions(ctx: ServerContext) -> None:
    attached, detached = _open(ctx), LiveSession("other", StreamParams(), ctx)
    detached.open()
    link, gone = FakeLink(), FakeLink()
    attached.attach(link, None, "test")
    detached.attach(gone, None, "test")
    pcm = _pcm()
    await _feed(attached, pcm[: len(pcm) // 4])
    await _feed(detached, pcm[: len(pcm) // 4])
    detached.detach(gone, "connection_lost")
    for live in (attached, detached):
        live.go_away()
    async with asyncio.timeout(10):
        await asyncio.gather(attached.wait_closed(), detached.wait_closed())
    assert link.closed == (1001, "server shutting down") and isinstance(link.events[-1], End)
    assert isinstance(detached.events.replay(0)[-1], End)
    attached.detach(link, "closed")
    assert not ctx.sessions


async def test_an_expiring_session_cannot_be_resumed_while_it_finalizes(
    ctx: ServerContext,
) -> None:
    live = _open(ctx)
    link = FakeLink()
    live.attach(link, None, "test")
    await _feed(live, _pcm()[: 16000 * 3])
    live.detach(link, "connection_lost")
    assert find_resumable(ctx, StreamParams(resume="sid", since=1)) is live
    live.expire_now()  # the window ended: finals are being decoded, audio would be lost
    with pytest.raises(BadRequest, match="unknown or expired"):
        find_resumable(ctx, StreamParams(resume="sid", since=1))
    await _until_over(live)
    with pytest.raises(BadRequest, match="unknown or expired"):
        find_resumable(ctx, StreamParams(resume="sid", since=1))


async def test_a_client_that_lost_its_connection_after_eos_can_still_read_the_end(
    ctx: ServerContext,
) -> None:
    live = _open(ctx)
    link = FakeLink()
    live.attach(link, None, "test")
    await _feed(live, _pcm())
    live.control("eos")
    live.detach(link, "connection_lost")  # before the last finals and `end` went out
    await _until_over(live)
    assert find_resumable(ctx, StreamParams(resume="sid", since=1)) is live
    again = FakeLink()
    replay = live.attach(again, 1, "test")
    assert isinstance(replay[-1], End)
    assert [e.seq for e in replay[1:]] == list(range(2, live.events.last_seq + 1))
    live.detach(again, "closed")
    assert "sid" not in ctx.sessions  # read once, then forgotten


async def test_waiting_sessions_do_not_count_against_admission_and_give_way() -> None:
    async for ctx in _context(max_sessions=2):
        sessions = []
        for n in range(3):
            live = LiveSession(f"s{n}", StreamParams(), ctx)
            live.open()
            link = FakeLink()
            live.attach(link, None, "test")
            await _feed(live, _pcm()[: 16000 * 2])
            assert ctx.connected_sessions == 1
            live.detach(link, "connection_lost")
            assert ctx.connected_sessions == 0 and live.awaiting_resume
            ctx.admit()  # waiting sessions leave room for new streams...
            sessions.append(live)
            # ...and past --max-sessions of them the oldest stops waiting
            assert sum(s.awaiting_resume for s in ctx.sessions.values()) < 2
        await _until_over(sessions[0])
        assert sessions[0].reason == "expired" and sessions[2].awaiting_resume


async def test_a_session_dropped_before_any_audio_is_not_kept(ctx: ServerContext) -> None:
    live = _open(ctx)
    link = FakeLink()
    live.attach(link, None, "test")
    live.detach(link, "connection_lost")
    assert live.over and not ctx.sessions


async def test_the_state_goes_streaming_ending_over_and_errors_are_reported(
        ctx: ServerContext) -> None:
    live = _open(ctx)
    link = FakeLink()
    live.attach(link, None, "test")
    assert live.state is State.STREAMING and live.taking_audio
    live.report(BadRequest("a word from the server"))
    assert isinstance(link.events[-1], Error) and link.events[-1].code == "bad_request"
    pcm = _pcm()
    await _feed(live, pcm[: len(pcm) // 4])
    live.control("eos")
    assert live.state in (State.ENDING, State.OVER) and not live.taking_audio
    await _until_over(live)
    assert live.state is State.OVER and isinstance(link.events[-1], End)


async def test_a_fatal_error_ends_the_stream_at_once(ctx: ServerContext) -> None:
    live = _open(ctx)
    link = FakeLink()
    live.attach(link, None, "test")
    live.fail(BadRequest("no"))
    assert live.state is State.OVER and link.closed is not None and link.closed[0] != 1000
