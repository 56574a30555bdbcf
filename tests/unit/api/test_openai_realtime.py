"""api/openai_realtime.py: client events in, session commands and server events out; no socket."""

from __future__ import annotations

import base64
import json
from typing import Any

from captioncast.api.g711 import ULAW, g711_decoder
from captioncast.api.openai_realtime import RealtimeTranslator
from captioncast.api.realtime_config import EAGERNESS, SessionFlavour
from captioncast.core.params import Configure, StreamParams
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.protocol.events import Error, Final
from tests.support.ports import RecordingPort

PCM = b"\x01\x00" * 2400  # 100 ms at 24 kHz


def _allow(params: StreamParams) -> None:
    pass


def _english_only(params: StreamParams) -> None:
    if params.language not in (None, "en", "auto"):
        raise BadRequest(f"model tiny.en is English-only: language={params.language}")


def _translator(check: Any = _allow) -> RealtimeTranslator:
    return RealtimeTranslator(SessionFlavour.GA, "tiny.en", check)


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def _append(audio: bytes) -> str:
    return _event("input_audio_buffer.append", audio=base64.b64encode(audio).decode())


def _parsed(messages: list[str]) -> list[dict[str, Any]]:
    return [json.loads(m) for m in messages]


def _opened(settings: dict[str, Any] | None = None) -> tuple[RealtimeTranslator, RecordingPort]:
    translator = _translator()
    if settings is not None:
        translator.settings(_event("session.update", session=settings))
    translator.settings(_append(PCM))
    translator.open()
    port = RecordingPort()
    translator.start(port)
    return translator, port


NO_TURNS = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}


def test_the_settings_phase_answers_until_the_first_audio() -> None:
    translator = _translator()
    assert json.loads(translator.greeting())["type"] == "session.created"
    [updated] = _parsed(translator.settings(_event("session.update", event_id="e1", session={
        "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})))
    assert updated["type"] == "session.updated"
    [empty] = _parsed(translator.settings(_event("input_audio_buffer.commit", event_id="e2")))
    assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
    assert "0.00ms" in empty["error"]["message"] and empty["error"]["event_id"] == "e2"
    [cleared] = _parsed(translator.settings(_event("input_audio_buffer.clear")))
    assert cleared["type"] == "input_audio_buffer.cleared"
    [binary] = _parsed(translator.settings(b"\x00\x01"))
    assert binary["error"]["code"] == "invalid_event"
    [garbage] = _parsed(translator.settings("{"))
    assert garbage["error"]["code"] == "invalid_value"
    [unknown] = _parsed(translator.settings(_event("response.create", event_id="e3")))
    assert unknown["error"]["code"] == "invalid_event"
    assert translator.settings(_append(b"")) == [] and translator.first_audio is None
    assert translator.settings(_append(b"\xff\x7f")) == []
    assert translator.first_audio == b"\xff\x7f"  # the session opens with it
    params = translator.open()
    assert (params.sample_rate, params.interim, params.language) == (8000, True, "auto")


def test_a_language_the_model_cannot_do_is_refused_before_audio() -> None:
    translator = _translator(_english_only)
    [refused] = _parsed(translator.settings(_event("session.update", event_id="e1", session={
        "type": "transcription", "audio": {"input": {"transcription": {"language": "de"}}}})))
    assert refused["error"]["code"] == "invalid_value" and "English-only" in refused[
        "error"]["message"]


def test_the_first_audio_is_fed_once_attached_and_g711_is_decoded() -> None:
    translator = _translator()
    translator.settings(_event("session.update", session={
        "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}))
    translator.settings(_append(b"\x00\xff"))
    translator.open()
    port = RecordingPort()
    translator.start(port)
    assert port.calls == [("audio", g711_decoder(ULAW)(b"\x00\xff"))]
    translator.start(port)  # only once
    assert len(port.calls) == 1


def test_in_session_binary_frames_are_reported_and_the_format_is_fixed() -> None:
    translator, port = _opened()
    translator.binary(b"\x00", port)
    kind, error = port.calls[-1]
    assert kind == "report" and isinstance(error, BadControlMessage)
    translator.text(_event("session.update", event_id="e9", session={
        "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}),
        port)
    [refused] = _parsed(port.said())
    assert refused["error"]["code"] == "invalid_value" and "once audio" in refused[
        "error"]["message"]
    translator.text("{", port)
    assert json.loads(port.said()[-1])["error"]["code"] == "invalid_event"


def test_a_session_update_mid_session_configures_the_running_session() -> None:
    translator, port = _opened()
    translator.text(_event("session.update", session={"type": "transcription", "audio": {
        "input": {"transcription": {"language": "de", "prompt": "Ort"}}}}), port)
    assert port.calls[-2] == ("configure", Configure(prompt="Ort", language="de"))
    updated = json.loads(port.said()[-1])
    assert updated["session"]["audio"]["input"]["transcription"]["language"] == "de"


def test_a_refused_configuration_leaves_the_settings_as_they_were() -> None:
    translator = RealtimeTranslator(SessionFlavour.GA, "tiny.en", _english_only)
    translator.settings(_append(PCM))
    translator.open()
    port = RecordingPort()
    translator.text(_event("session.update", event_id="e2", session={
        "type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}}),
        port)
    [refused] = _parsed(port.said())
    assert "English-only" in refused["error"]["message"] and "configure" not in port.kinds()
    assert translator.config.language is None


def test_semantic_vad_opens_a_session_that_follows_turns_by_eagerness() -> None:
    translator = _translator()
    translator.settings(_event("session.update", session={"type": "transcription", "audio": {
        "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}}))
    translator.settings(_append(PCM))
    params = translator.open()
    assert params.turns == EAGERNESS["low"] and params.interim and not params.speech_events
    server_vad = _translator()
    server_vad.settings(_append(PCM))
    assert server_vad.open().speech_events  # its speech_started from the VAD
    port = RecordingPort()
    translator.text(_event("session.update", session={"type": "transcription", "audio": {
        "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}), port)
    assert port.calls[0] == ("configure", Configure(
        turns={"eot_threshold": 0.5, "eot_timeout_ms": 2000}))


def test_with_vad_a_commit_flushes_the_utterance_under_way() -> None:
    translator, port = _opened()
    translator.text(_event("input_audio_buffer.commit", event_id="c1"), port)
    [empty] = _parsed(port.said())  # nothing under way
    assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
    port = RecordingPort(open_utterance=0)
    translator.text(_event("input_audio_buffer.commit"), port)
    assert port.calls == [("control", "flush")]


def test_without_turn_detection_a_commit_ends_the_turn() -> None:
    translator, port = _opened(NO_TURNS)
    assert port.calls == [("audio", PCM)]
    port = RecordingPort(utterances_begun=1)
    translator.text(_event("input_audio_buffer.commit"), port)
    assert port.kinds() == ["say", "say", "control"]
    assert [m["type"] for m in _parsed(port.said())] == [
        "input_audio_buffer.committed", "conversation.item.added"]
    final = Final(2, utterance=0, start=0.0, end=0.1, text=" Hello.", language="en")
    out = _parsed(translator.render(final))
    assert [m["type"] for m in out][:2] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed"]
    translator.text(_event("input_audio_buffer.commit", event_id="c2"), port)
    empty = json.loads(port.said()[-1])
    assert empty["error"]["code"] == "input_audio_buffer_commit_empty"  # nothing appended


def test_a_clear_drops_the_open_turn() -> None:
    translator, port = _opened(NO_TURNS)
    port = RecordingPort(utterances_begun=1)
    translator.text(_event("input_audio_buffer.clear"), port)
    assert port.calls[0] == ("control", "flush")
    assert json.loads(port.said()[-1])["type"] == "input_audio_buffer.cleared"
    translator.text(_event("input_audio_buffer.commit"), port)
    assert json.loads(port.said()[-1])["error"]["code"] == "input_audio_buffer_commit_empty"


def test_errors_render_as_openais_and_rendering_is_eager() -> None:
    translator, _ = _opened()
    assert translator.eager
    [internal] = _parsed(translator.render(Error(5, code="internal", message="boom")))
    assert internal["error"]["type"] == "server_error"
    [bad] = _parsed(translator.render(Error(6, code="bad_audio", message="odd")))
    assert bad["error"]["type"] == "invalid_request_error"
    refusal = json.loads(translator.refusal("no room", "overloaded", server_side=True))
    assert refusal["error"]["type"] == "server_error"
