"""api/realtime_config.py: OpenAI Realtime settings in both shapes, all or nothing."""

from __future__ import annotations

import json

import pytest

from captioncast.api.realtime_config import RealtimeConfig, RealtimeWire, SessionFlavour
from captioncast.errors import BadRequest


def test_realtime_settings_in_both_shapes() -> None:
    config = RealtimeConfig(SessionFlavour.GA, "tiny.en")
    assert config.server_vad and config.format == "audio/pcm"
    config.update({"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcmu"},
        "transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": "Ort"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}}}, locked=False)
    assert (config.format, config.language, config.prompt) == ("audio/pcmu", "de", "Ort")
    assert config.silence_ms == 800
    config.update({"input_audio_format": "g711_alaw", "turn_detection": None}, locked=False)
    assert config.format == "audio/pcma" and not config.server_vad
    echoed = json.loads(config.updated(RealtimeWire(), "transcription_session.update"))
    assert echoed["type"] == "transcription_session.updated"
    assert echoed["session"]["input_audio_format"] == "g711_alaw"
    assert echoed["session"]["turn_detection"] is None


def test_realtime_settings_are_all_or_nothing_and_fixed_once_audio_flows() -> None:
    config = RealtimeConfig(SessionFlavour.GA, "tiny.en")
    with pytest.raises(BadRequest, match="24000"):
        config.update({"audio": {"input": {"transcription": {"language": "fr"},
                                           "format": {"type": "audio/pcm", "rate": 16000}}}},
                      locked=False)
    assert config.language is None  # the language of the refused update was not kept
    with pytest.raises(BadRequest, match="transcription sessions only"):
        config.update({"type": "realtime"}, locked=False)
    with pytest.raises(BadRequest, match="once audio"):
        config.update({"audio": {"input": {"transcription": {"language": "fr"}}}}, locked=True)
    config.update({"include": ["item.input_audio_transcription.logprobs"]}, locked=True)
