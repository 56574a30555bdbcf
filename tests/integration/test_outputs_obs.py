"""The OBS output against an obs-websocket v5 server that follows the published protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from captioncast.outputs import DeliveryError, build_output
from captioncast.outputs.obs import ObsAuthError, ObsCaptions, ObsOutput
from captioncast.protocol.backoff import Backoff
from tests.integration.obs_server import FakeObs
from tests.support.waiting import until

FAST = Backoff(first_s=0.02, max_s=0.05)
LONG = ("so we went down to the river early in the morning and the fog was still lying on the "
        "water like a blanket when the first boats came out of the harbour")


def final(seq: int, text: str = "", start: float = 0.0, step: float = 0.3) -> dict[str, Any]:
    text = text or f"caption number {seq}"
    words = [{"word": w, "start": start + i * step, "end": start + i * step + 0.25}
             for i, w in enumerate(text.split())]
    return {"type": "final", "seq": seq, "utterance": seq - 1, "text": text, "start": start,
            "end": start + len(words) * step, "language": "en", "words": words}


async def test_standalone_client_authenticates_and_sends_a_caption() -> None:
    async with FakeObs(password="pw-1234") as obs, ObsCaptions(obs.url, "pw-1234") as captions:
        await captions.send("hello from the client side")
        await captions.send("and again on the same connection")
        assert await obs.wait_captions(2) == ["hello from the client side",
                                              "and again on the same connection"]
        assert obs.identified == 1 and captions.obs_version == "29.0.2"


async def test_no_password_server_and_unknown_requests() -> None:
    async with FakeObs(password=None) as obs, ObsCaptions(obs.url) as captions:
        await captions.send("open server")
        with pytest.raises(DeliveryError, match="204"):
            await captions.request("NoSuchRequest")
        assert await obs.wait_captions(1) == ["open server"]


async def test_wrong_password_is_visible_in_status_and_nothing_is_sent() -> None:
    async with FakeObs(password="right") as obs:
        out = ObsOutput(obs.url, "wrong", retry=FAST)
        out.offer(final(1))
        await until(lambda: out.status()["state"] == "retrying")  # after its first refusal
        status = out.status()
        assert status["sent"] == 0
        assert "refused the password" in status["last_error"] and obs.auth_failures >= 1
        await out.close(timeout=0.1)
        with pytest.raises(ObsAuthError):
            await ObsCaptions(obs.url, None).send("x")  # asks for one, none given


async def test_long_finals_become_608_captions_paced_by_their_words() -> None:
    async with FakeObs() as obs:
        out = ObsOutput(obs.url, obs.password, min_gap_s=0.0, retry=FAST)
        out.offer(final(1, LONG, step=0.05))
        out.offer(final(2, "short one"))
        await out.close(timeout=10)
    texts = [c.text for c in obs.captions]
    assert texts[-1] == "short one" and len(texts) >= 4
    rows = [row for t in texts for row in t.split("\n")]
    assert all(len(row) <= 32 for row in rows)
    assert all(len(t.split("\n")) <= 2 for t in texts)
    assert " ".join(rows[:-1]) == LONG  # every word, in order, once
    # The captions of the long final follow its word timings (0.05 s a word).
    long_captions = obs.captions[:-1]
    span = long_captions[-1].at - long_captions[0].at
    assert span >= 0.8 * (len(LONG.split()) - 8) * 0.05 - 0.05


async def test_not_streaming_waits_then_delivers_everything_in_order() -> None:
    async with FakeObs(streaming=False) as obs:
        out = build_output({"kind": "obs", "url": obs.url, "password": obs.password,
                            "min_gap_s": 0})
        out.retry = FAST
        for seq in (1, 2, 3):
            out.offer(final(seq))
        await until(lambda: out.status()["state"] == "waiting")  # OBS said it is not live
        status = out.status()
        assert "OUTPUT_NOT_RUNNING (501)" in status["last_error"]
        assert status["queued"] == 3 and status["connected"]
        obs.streaming = True  # the streamer presses Start Streaming
        assert await obs.wait_captions(3) == [f"caption number {n}" for n in (1, 2, 3)]
        await out.close(timeout=5)
    assert out.status()["sent"] == 3 and obs.identified == 1


async def test_obs_restart_mid_stream_reconnects_without_losing_or_repeating() -> None:
    obs = FakeObs()
    await obs.start()
    out = ObsOutput(obs.url, obs.password, min_gap_s=0.0, retry=FAST)
    out.offer(final(1))
    out.offer(final(2))
    await obs.wait_captions(2)
    await obs.stop()  # OBS quits
    out.offer(final(3))
    out.offer(final(4))
    await until(lambda: out.status()["state"] == "retrying")  # it noticed OBS is gone
    assert out.status()["queued"] == 2
    await obs.start()  # and comes back on the same port
    assert await obs.wait_captions(4) == [f"caption number {n}" for n in (1, 2, 3, 4)]
    await out.close(timeout=5)
    await obs.stop()
    assert obs.identified == 2 and out.status()["sent"] == 4 and out.status()["dropped"] == 0


async def test_a_caption_in_flight_when_obs_drops_resumes_after_what_was_shown() -> None:
    obs = FakeObs()
    await obs.start()
    out = ObsOutput(obs.url, obs.password, min_gap_s=0.0, retry=FAST)
    out.offer(final(1, LONG, step=0.05))  # several captions, paced 0.05 s a word
    await obs.wait_captions(1)
    await obs.stop()
    await asyncio.sleep(0.2)
    await obs.start()
    await out.close(timeout=10)
    await obs.stop()
    rows = [row for c in obs.captions for row in c.text.split("\n")]
    assert " ".join(rows) == LONG  # nothing repeated, nothing lost
