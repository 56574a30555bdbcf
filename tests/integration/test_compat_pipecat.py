"""Pipecat's Deepgram and OpenAI Realtime STT services on a real recording; real model.

Each service runs in pipecat's own test pipeline (`pipecat.tests.utils.run_test`: no
transport), fed the recording at real time with only its URL changed. For OpenAI's the
timing a voice agent lives on is measured in audio time: the audio pushed when each
frame came, so a slow machine does not move the onset it is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CHUNK_S, CLIP, LIVE_S, TOKEN, pcm_chunks

frames = pytest.importorskip("pipecat.frames.frames")
observers = pytest.importorskip("pipecat.observers.base_observer")
pipecat_utils = pytest.importorskip("pipecat.tests.utils")
pipeline_task = pytest.importorskip("pipecat.pipeline.task")
deepgram_stt = pytest.importorskip("pipecat.services.deepgram.stt")
openai_stt = pytest.importorskip("pipecat.services.openai.stt")

pytestmark = pytest.mark.model
ONSET_S = 0.86  # where Silero hears "And so" begin in the JFK clip
QUIET_S = 10.0  # after the audio: time for the last finals (and a turn's end), loaded or not


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-pipecat")
    yield running
    stop_server(running)


class Timeline(observers.BaseObserver):  # type: ignore[misc,name-defined]
    """Each frame the service pushes, with the seconds of audio pushed into it by then."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_s = 0.0
        self.seen: list[tuple[float, Any]] = []
        self._ids: set[int] = set()

    async def on_push_frame(self, data: Any) -> None:
        frame = data.frame
        if id(frame) in self._ids:
            return  # one frame passes several processors
        self._ids.add(id(frame))
        if isinstance(frame, frames.InputAudioRawFrame):
            self.audio_s += len(frame.audio) / 2 / frame.sample_rate
        else:
            self.seen.append((self.audio_s, frame))

    def first(self, kind: type) -> float | None:
        return next((at for at, frame in self.seen if isinstance(frame, kind)), None)

    def text(self) -> str:
        return " ".join(f.text for _, f in self.seen
                        if isinstance(f, frames.TranscriptionFrame))


async def _run(service: Any) -> Timeline:
    """The recording at real time, then silence until the last transcript is in."""
    timeline = Timeline()
    to_send: list[Any] = []
    for chunk in pcm_chunks():
        to_send += [frames.InputAudioRawFrame(audio=chunk, sample_rate=16000, num_channels=1),
                    pipecat_utils.SleepFrame(sleep=LIVE_S)]
    to_send.append(pipecat_utils.SleepFrame(sleep=QUIET_S))
    started = time.monotonic()
    await pipecat_utils.run_test(
        service, frames_to_send=to_send, observers=[timeline], start_timeout=10.0,
        pipeline_params=pipeline_task.PipelineParams(audio_in_sample_rate=16000))
    assert time.monotonic() - started >= len(pcm_chunks()) * CHUNK_S  # real time
    return timeline


async def test_pipecat_deepgram_stt_service(compat_server: RunningServer) -> None:
    service = deepgram_stt.DeepgramSTTService(
        api_key=TOKEN, base_url=f"http://127.0.0.1:{compat_server.port}", sample_rate=16000)
    timeline = await _run(service)
    assert wer(reference(CLIP), timeline.text()) <= 0.15, timeline.seen
    assert timeline.first(frames.InterimTranscriptionFrame) is not None


@pytest.mark.parametrize("turn_detection", [
    {"type": "server_vad", "silence_duration_ms": 500},
    {"type": "semantic_vad", "eagerness": "high"},
])
async def test_pipecat_openai_realtime_stt_service(compat_server: RunningServer,
                                                   turn_detection: dict[str, Any]) -> None:
    service = openai_stt.OpenAIRealtimeSTTService(
        api_key=TOKEN, base_url=f"ws://127.0.0.1:{compat_server.port}/v1/realtime",
        turn_detection=turn_detection, language=None)
    timeline = await _run(service)
    assert wer(reference(CLIP), timeline.text()) <= 0.15, timeline.seen
    started = timeline.first(frames.ProposedUserStartedSpeakingFrame)
    delta = timeline.first(frames.InterimTranscriptionFrame)
    assert started is not None and delta is not None, timeline.seen
    print(f"turn_detection={turn_detection['type']} speech_started_at={started:.2f}s "
          f"onset={ONSET_S}s first_delta_at={delta:.2f}s (audio time)")
    # Barge-in: the VAD's speech_started, not the first words' (1.31 s before). Our
    # webrtcvad opens the utterance on the noise before "And so": early, never late.
    assert started - ONSET_S <= 0.3, (started, timeline.seen[:5])
    # Words come before the speaker is done (deltas, not only the completed item); how
    # soon is measured in bench/, not here.
    done = timeline.first(frames.TranscriptionFrame)
    assert done is not None and delta <= done, (delta, done)
