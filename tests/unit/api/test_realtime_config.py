"""api/realtime_config.py: OpenAI Realtime settings in both shapes, all or nothing."""

from __future__ import annotations

import json

import pytest

from captioncast.api.realtime_config import (
    EAGERNESS,
    RealtimeConfig,
    RealtimeWire,
    SessionFlavour,
)
from captioncast.core.params import Configure
from captioncast.errors import BadRequest


def test_realtime_settings_in_both_shapes() -> None:
    config = RealtimeConfig(SessionFlavour.GA, "tiny.en")
    assert config.server_vad and config.format == "audio/pcm"
    config.update({"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcmu"},
        "transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": "Ort"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}}})
    assert (config.format, config.language, config.prompt) == ("audio/pcmu", "de", "Ort")
    assert config.silence_ms == 800
    config.update({"input_audio_format": "g711_alaw", "turn_detection": None})
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
                      )
    assert config.language is None  # the language of the refused update was not kept
    with pytest.raises(BadRequest, match="transcription sessions only"):
        config.update({"type": "realtime"})
    changes: list[Configure] = []
    with pytest.raises(BadRequest, match="once audio"):
        config.update({"audio": {"input": {"format": {"type": "audio/pcmu"},
                                           "transcription": {"language": "fr"}}}},
                      changes.append)
    with pytest.raises(BadRequest, match="once audio"):
        config.update({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
                      changes.append)
    assert changes == [] and config.language is None
    config.update({"include": ["item.input_audio_transcription.logprobs"]}, changes.append)
    assert changes == []  # nothing the running session does changed


def test_a_running_session_takes_language_prompt_and_eagerness() -> None:
    config = RealtimeConfig(SessionFlavour.GA, "tiny")
    config.update({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}})
    assert config.turns == EAGERNESS["medium"] and config.silence_ms is None
    assert config.as_ga()["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "auto"}
    changes: list[Configure] = []
    config.update({"audio": {"input": {
        "transcription": {"language": "fr", "prompt": "Paris"},
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}, changes.append)
    assert changes == [Configure(prompt="Paris", language="fr",
                                 turns={"eot_threshold": 0.5, "eot_timeout_ms": 2000})]
    assert config.turns == EAGERNESS["high"] and config.language == "fr"
    config.update({"audio": {"input": {"transcription": {"language": None}}}}, changes.append)
    assert changes[-1] == Configure(language="auto")  # back to detecting it


def test_semantic_vad_eagerness_is_checked_and_mapped_to_openais_timeouts() -> None:
    config = RealtimeConfig(SessionFlavour.GA, "tiny")
    with pytest.raises(BadRequest, match="eagerness"):
        config.update({"audio": {"input": {"turn_detection": {"type": "semantic_vad",
                                                              "eagerness": "eager"}}}})
    timeouts = {name: EAGERNESS[name].eot_timeout_ms for name in ("low", "medium", "high")}
    assert timeouts == {"low": 8000, "medium": 4000, "high": 2000}  # OpenAI's max timeouts
    assert EAGERNESS["auto"] == EAGERNESS["medium"]
