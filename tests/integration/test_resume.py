"""Streams that outlive their connection: cut mid-utterance, resumed, every final once."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import srt
from websockets.asyncio.client import ClientConnection, connect

from captioncast.protocol.events import Event, Final, Partial, Ready
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import StreamResult, stream, stream_url
from tests.conftest import reference, speech_path, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.inprocess import held_server
from tests.integration.proxy import CuttableProxy
from tests.integration.test_streaming import check_protocol

pytestmark = pytest.mark.model

LONG = "long_mfa_spontaneous_3"  # 78 s of unscripted speech: many utterances to cut into


def _audio(name: str) -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]


def check_once(result: StreamResult) -> None:
    """Every final exactly once, in order, none covering audio another one covered."""
    check_protocol(result)
    finals = result.finals
    for before, after in itertools.pairwise(finals):
        assert after["start"] >= before["end"] - 0.05, (before, after)


async def _watch(url: str, channel: str, events: list[dict[str, Any]]) -> None:
    async with connect(f"{url}/v1/captions?channel={channel}&since=0") as viewer:
        async for message in viewer:
            events.append(json.loads(message))
            if events[-1]["type"] == "end":
                return


async def test_a_connection_cut_mid_utterance_resumes_and_every_final_arrives_once(
    server: RunningServer,
) -> None:
    audio = _audio(LONG)
    baseline = await stream(stream_url(server.url), audio, speed=4.0)
    check_once(baseline)

    viewed: list[dict[str, Any]] = []
    viewer = asyncio.create_task(_watch(server.url, "resume-test", viewed))
    async with CuttableProxy(server.port) as proxy:
        cut_in: list[dict[str, Any]] = []

        def cut_mid_utterance(event: Event) -> None:
            # A partial means an utterance is open: the audio it is made of is cut off.
            if not proxy.cuts and isinstance(event, Partial) and event.end > 30:
                cut_in.append(event.to_dict())
                proxy.cut()

        async def cut_anyway() -> None:
            # A machine too busy for partials (each one waits behind the finals) may send
            # none past 30 s: then the cut comes at 50 s of audio, wherever speech is.
            await proxy.until_upstream(50 * 32000)
            if not proxy.cuts:
                proxy.cut()

        fallback = asyncio.create_task(cut_anyway())
        result = await stream(stream_url(proxy.url, channel="resume-test"), audio, speed=4.0,
                              on_event=cut_mid_utterance)
        fallback.cancel()
        assert proxy.connections == 2
    await asyncio.wait_for(viewer, 60)

    check_once(result)
    assert not result.errors
    assert [r["new_session"] for r in result.resumes] == [False]
    assert result.resumes[0]["audio_received"] >= 30
    # the utterance that was being spoken at the cut got one final, not two
    if cut_in:
        cut_utterance = cut_in[0]["utterance"]
        assert sum(f["utterance"] == cut_utterance for f in result.finals) == 1
    print(f"uninterrupted: {baseline.text}\nresumed:       {result.text}")
    assert wer(reference(LONG), result.text) <= 0.35
    # decoding is timing-dependent (partials fix stable prefixes), so not word-identical
    assert wer(baseline.text, result.text) <= 0.15
    # the channel's viewers never saw the speaker leave: one end, every final once
    assert [e["type"] for e in viewed].count("end") == 1
    assert [e["text"] for e in viewed if e["type"] == "final"] == [
        f["text"] for f in result.finals
    ]


def test_the_stream_command_resumes_by_itself(server: RunningServer, tmp_path: Path) -> None:
    srt_path = tmp_path / "jfk.srt"

    async def run() -> tuple[int, str, str]:
        async with CuttableProxy(server.port) as proxy:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "captioncast.cli", "stream",
                str(speech_path("whisper_jfk")), "--server", proxy.url, "--srt", str(srt_path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
            # Cut once 6 s of audio went through: mid-sentence, "ask not what your
            # country...", however long the command took to start.
            await asyncio.wait_for(proxy.until_upstream(6 * 32000), 60)
            proxy.cut()
            out, err = await asyncio.wait_for(process.communicate(), 120)
        return process.returncode or 0, out.decode(), err.decode()

    code, out, err = asyncio.run(run())
    assert code == 0, err
    assert "resumed at" in err
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if line.strip()]
    assert len(lines) == len(set(lines))  # printed once each
    assert wer(reference("whisper_jfk"), " ".join(lines)) <= 0.15
    assert " ".join(c.content for c in srt.parse(srt_path.read_text())) == " ".join(lines)


async def test_a_resume_takes_over_a_connection_the_server_still_holds(
    server: RunningServer,
) -> None:
    name = "libri_dev_2412-153948-0000"
    audio = _audio(name)
    pcm = b"".join(audio)
    async with connect(f"{server.url}/v1/stream") as old:
        ready = json.loads(await old.recv())
        for chunk in audio[:20]:  # 2 s, then the client's network "dies" (it stops reading)
            await old.send(chunk)
        # The pong comes once the server has read every frame before the ping: the 2 s
        # are the server's when the resume arrives, however busy the machine is.
        await asyncio.wait_for(await old.ping(), 30)
        url = f"{server.url}/v1/stream?resume={ready['session']}&since=1"
        async with connect(url) as new:
            again = json.loads(await asyncio.wait_for(new.recv(), 10))
            await asyncio.wait_for(old.wait_closed(), 15)
            assert old.close_code == 1008 and "resumed" in (old.close_reason or "")
            assert again["type"] == "ready" and again["seq"] == 1 and again["resumed"]
            assert again["session"] == ready["session"]
            assert again["audio_received"] == pytest.approx(2.0)
            offset = round(again["audio_received"] * 16000) * 2
            for i in range(offset, len(pcm), 3200):
                await new.send(pcm[i : i + 3200])
            await new.send('{"type":"eos"}')
            events = [again]
            async for message in new:
                events.append(json.loads(message))
        assert new.close_code == 1000
    assert [e["seq"] for e in events[1:]] == list(range(2, len(events) + 1))
    result = StreamResult(events=events)
    finals = result.finals
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert events[-1]["type"] == "end" and events[-1]["utterances"] == len(finals)
    assert wer(reference(name), result.text) <= 0.2
    # `end` was read and the connection closed cleanly: the session is not kept (it is
    # forgotten before the server's close frame goes out, so no wait is needed here)
    gone, _ = await _refusal(f"{server.url}/v1/stream?resume={ready['session']}&since=1")
    assert "unknown or expired session" in gone["message"]


async def _refusal(url: str) -> tuple[dict[str, Any], int | None]:
    async with connect(url) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await asyncio.wait_for(ws.wait_closed(), 10)
    return event, ws.close_code


async def test_resuming_what_cannot_be_resumed_is_a_bad_request(server: RunningServer) -> None:
    event, code = await _refusal(f"{server.url}/v1/stream?resume=NoSuchSession0123&since=3")
    assert event["code"] == "bad_request" and code == 1008
    assert "unknown or expired session" in event["message"]
    assert "start a new stream" in event["message"]
    async with connect(f"{server.url}/v1/stream") as live:
        session = json.loads(await live.recv())["session"]
        ahead, code = await _refusal(f"{server.url}/v1/stream?resume={session}&since=99")
        assert ahead["code"] == "bad_request" and "since=99" in ahead["message"]
        other, code = await _refusal(
            f"{server.url}/v1/stream?resume={session}&since=1&sample_rate=8000")
        assert other["code"] == "bad_request" and "same stream parameters" in other["message"]
        await live.send('{"type":"eos"}')
        assert json.loads(await live.recv())["type"] == "end"


@pytest.fixture(scope="module")
def short_window() -> Iterator[RunningServer]:
    running = start_server("--resume-window-s", "1", "--max-session-s", "8",
                           "--idle-timeout-s", "2", name="short-window")
    yield running
    stop_server(running)


async def _until_logged(server: RunningServer, text: str, deadline_s: float = 60) -> None:
    """Until the server's log holds `text` (it is written line by line, as it happens)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while text not in server.log.read_text():
        assert loop.time() < deadline, f"the server never logged {text!r}"
        await asyncio.sleep(0.05)


async def test_an_expired_session_is_continued_by_a_new_one(short_window: RunningServer) -> None:
    audio = _audio(LONG)[: 10 * 40]  # 40 s
    session: list[str] = []
    lifted: list[asyncio.Task[None]] = []
    async with CuttableProxy(short_window.port) as proxy:
        async def stay_down_until_expired() -> None:
            # the network stays down until the server has given up waiting for a resume
            # (its 1 s window), however long that takes it to notice
            await _until_logged(short_window, f"event=session_expired session={session[0]}")
            proxy.accept()

        def cut_and_stay_down(event: Event) -> None:
            if isinstance(event, Ready) and not session:
                session.append(event.session)
            if not proxy.cuts and isinstance(event, Final) and event.end > 8:
                proxy.refuse()
                proxy.cut()
                lifted.append(asyncio.get_running_loop().create_task(stay_down_until_expired()))

        # the 8 s session limit is wall time: at 8x, 40 s of audio take 5 s
        result = await stream(stream_url(proxy.url), audio, speed=8.0,
                              on_event=cut_and_stay_down)
        await lifted[0]
    check_once(result)
    assert [r["new_session"] for r in result.resumes] == [True]
    uninterrupted = (await stream(stream_url(short_window.url), audio, realtime=False)).finals
    # Nothing lost: the audio that has words in an uninterrupted stream of the same 40 s
    # has words in the continued one, but for the edges of utterances (they come from the
    # audio alone; a new session starts its first one where it starts). Nothing made up:
    # each final with words in the continued stream is over speech the uninterrupted one
    # found words in too.
    spoken = [f for f in uninterrupted if f["text"]]
    continued = [f for f in result.finals if f["text"]]
    for final in spoken:
        covered = sum(max(0.0, min(final["end"], c["end"]) - max(final["start"], c["start"]))
                      for c in continued)
        assert covered >= final["end"] - final["start"] - 0.6, (final, continued)
    for final in continued:
        assert any(final["start"] < f["end"] and f["start"] < final["end"] for f in spoken), \
            (final, spoken)
    # The words differ somewhat: the new session decodes without the first one's finals as
    # context, and a decode of unclear speech varies with when its audio came.
    reference_part = " ".join(f["text"] for f in uninterrupted)
    assert wer(reference_part, result.text) <= 0.35, (reference_part, result.text)


async def test_a_session_at_its_time_limit_is_finalized_and_closed(
    short_window: RunningServer,
) -> None:
    audio = _audio(LONG)
    events: list[dict[str, Any]] = []
    sent = 0
    connecting = time.monotonic()
    async with connect(f"{short_window.url}/v1/stream") as ws:
        async def send_in_real_time() -> None:
            nonlocal sent
            started = time.monotonic()
            for i, chunk in enumerate(audio):
                await asyncio.sleep(max(0.0, started + i * 0.1 - time.monotonic()))
                await ws.send(chunk)
                sent += len(chunk)

        sender = asyncio.create_task(send_in_real_time())
        async for message in ws:
            events.append(json.loads(message))
        closed_after = time.monotonic() - connecting
        sender.cancel()
    assert ws.close_code == 1000 and "limit of 8 s" in (ws.close_reason or "")
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["timeout"] and "limit" in errors[0]["message"]
    # The limit is wall time from the session's start, which came after we connected: the
    # server cannot have closed sooner. It captioned what it got by then, and the rest of
    # the 78 s was never captioned.
    assert closed_after >= 8, closed_after
    duration = events[-1]["duration"]
    assert events[-1]["type"] == "end" and 0 < duration <= sent / 32000 < 78, (duration, sent)
    finals = [e for e in events if e["type"] == "final"]
    assert finals and events[-1]["utterances"] == len(finals)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_keepalives_hold_a_quiet_stream_open_and_silence_closes_it(
    short_window: RunningServer,
) -> None:
    async with connect(f"{short_window.url}/v1/stream") as ws:
        await ws.recv()  # ready
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # no audio for longer than the 2 s timeout
            await ws.send('{"type":"keepalive"}')
            await asyncio.sleep(0.2)  # a tenth of the timeout: a stall of 1.8 s is allowed
        assert ws.close_code is None
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))  # now nothing is sent
        await asyncio.wait_for(ws.wait_closed(), 10)
    assert event["type"] == "error" and event["code"] == "timeout"
    assert "keepalive" in event["message"] and ws.close_code == 1008


async def _read_until_closed(ws: ClientConnection, events: list[dict[str, Any]]) -> None:
    async for message in ws:
        events.append(json.loads(message))


async def test_after_eos_the_client_owes_no_keepalive_while_finals_are_decoded() -> None:
    """The real model behind a gate that holds every decode: after eos the finals take as
    long as the test says, three times the server's idle timeout, on any machine; the
    client, having sent eos, sends nothing meanwhile."""
    idle_s = 0.5
    name = "whisper_jfk"
    events: list[dict[str, Any]] = []
    with held_server(idle_timeout_s=idle_s) as server:
        server.decoder.hold()  # nothing is decoded before the test says so
        async with connect(f"{server.url}/v1/stream") as ws:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            for chunk in _audio(name):
                await ws.send(chunk)
            await ws.send('{"type":"eos"}')
            # The pong comes once the server has read everything before the ping, eos too.
            await asyncio.wait_for(await ws.ping(), 30)
            reader = asyncio.create_task(_read_until_closed(ws, events))
            await asyncio.sleep(3 * idle_s)  # quiet, with the finals still to decode
            assert server.decoder.waiting >= 1  # decoding had not finished...
            assert not reader.done() and ws.close_code is None  # ...nor had the stream
            assert not [e for e in events if e["type"] == "error"], events
            server.decoder.release()
            await asyncio.wait_for(reader, 120)
        assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    result = StreamResult(events=events)
    check_protocol(result)
    assert not result.errors, result.errors
    assert server.decoder.held >= 1 and result.finals
    assert wer(reference(name), result.text) <= 0.15, result.text


async def test_the_mic_client_resumes_and_loses_nothing_it_captured(
    server: RunningServer,
) -> None:
    from captioncast_client.microphone import microphone_chunks
    from tests.integration.test_clients import FakeInputStream

    name = "libri_dev_1272-128104-0000"  # played at 48 kHz, 4x real time, by the fake device
    async with CuttableProxy(server.port) as proxy:
        async def cut_once() -> None:
            # 2 s into the one 5.9 s utterance, wherever decoding has got to (at 4x real
            # time a partial may or may not come back before the utterance ends)
            await proxy.until_upstream(2 * 96000)
            proxy.refuse_for(1.0)  # the device keeps capturing while the network is down
            proxy.cut()

        cutter = asyncio.create_task(cut_once())
        chunks = microphone_chunks(48000, stream_factory=FakeInputStream)
        result = await stream(stream_url(proxy.url, sample_rate=48000), chunks, realtime=False,
                              bytes_per_second=96000)
        assert cutter.done() and proxy.cuts == 1
    check_once(result)
    assert [r["new_session"] for r in result.resumes] == [False]
    assert wer(reference(name), result.text) <= 0.2
