"""api/flux.py: a `/v2/listen` query in, StreamParams out; messages in, Flux's JSON out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from captioncast.api.flux import FluxTranslator, parse_flux_query
from captioncast.core.params import Configure, TurnSettings
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.protocol import codes
from captioncast.protocol.events import End, Error, Final, Partial, SpeechStarted, Turn, Word
from tests.support.ports import RecordingPort

RAW = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000"
MULAW = "/v2/listen?model=flux-general-en&encoding=mulaw&sample_rate=8000"
WORDS = (Word(" Hello,", 0.5, 0.8, 0.91), Word(" there.", 0.8, 1.1, 0.82))


def turn(event: str, index: int = 0, text: str = "Hello, there.",
         confidence: float = 0.0) -> Turn:
    return Turn(0, event=event, turn=index, start=0.48, end=1.1, transcript=text,
                words=WORDS if text else (), confidence=confidence)


def said(translator: FluxTranslator, *events: Any) -> list[dict[str, Any]]:
    return [json.loads(m) for event in events for m in translator.render(event)]


def test_query_translates_onto_stream_params_with_turns() -> None:
    options = parse_flux_query(
        RAW + "&eot_threshold=0.8&eager_eot_threshold=0.5&eot_timeout_ms=3000"
        "&keyterm=Kubernetes&keyterm=gRPC&tag=a&tag=b&mip_opt_out=true&numerals=true")
    stream = options.stream
    assert stream.turns == TurnSettings(0.8, 0.5, 3000)
    assert stream.prompt == "Kubernetes, gRPC" and options.keyterms == ("Kubernetes", "gRPC")
    assert stream.language == "en" and stream.interim and stream.diarize is False
    defaults = parse_flux_query(RAW)
    assert defaults.stream.turns == TurnSettings() and defaults.decode is None
    # Flux's own top of the ranges: 1.0 leaves turns to the timeout or ForceEndTurn
    manual = parse_flux_query(RAW + "&eot_threshold=1.0&eot_timeout_ms=60000").turns
    assert not manual.model_ends_turns and manual.eot_timeout_ms == 60000
    assert parse_flux_query(MULAW).decode is not None
    multi = "/v2/listen?model=flux-general-multi&encoding=linear16&sample_rate=16000"
    assert parse_flux_query(multi).stream.language == "auto"
    assert parse_flux_query(multi + "&language_hint=es").stream.language == "es"
    assert parse_flux_query(multi + "&language_hint=es&language_hint=de").stream.language \
        == "auto"


@pytest.mark.parametrize(("query", "says"), [
    ("/v2/listen?model=flux-general-en", "raw audio"),
    (RAW + "&eot_threshold=0.4", "eot_threshold must be between 0.5 and 1"),
    (RAW + "&eot_threshold=1.5", "eot_threshold must be between 0.5 and 1"),
    (RAW + "&eager_eot_threshold=0.95", "eager_eot_threshold must be between 0.3 and 0.9"),
    (RAW + "&eot_timeout_ms=100", "eot_timeout_ms must be between 500 and 60000"),
    (RAW + "&eot_threshold=soon", "must be a number"),
    (RAW + "&eot_threshold=0.6&eager_eot_threshold=0.8", "must not be above"),
    (RAW.replace("flux-general-en", "nova-3"), "not a Flux model"),
    (RAW.replace("linear16", "opus"), "encoding=opus"),
    (RAW + "&language_hint=es", "only valid with model=flux-general-multi"),
    (RAW + "&redact=numbers", "redact"),
    (RAW + "&interim_results=true", "unknown query parameter"),
    (RAW + "&sample_rate=8000", "twice"),
])
def test_bad_queries_are_refused_with_a_reason(query: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_flux_query(query)


def test_connected_then_turn_info_in_flux_shape_numbered_in_order() -> None:
    translator = FluxTranslator(parse_flux_query(RAW))
    port = RecordingPort()
    translator.start(port)
    connected = json.loads(port.said()[0])
    assert connected == {"type": "Connected", "request_id": translator.request_id,
                         "sequence_id": 0}
    messages = said(translator, SpeechStarted(0, utterance=0, at=0.48),
                    turn("start", text=""),
                    Partial(0, utterance=0, text="Hello", stable="", start=0.48, end=0.9),
                    turn("update"), Final(0, utterance=0, text="Hello, there.", start=0.48,
                                          end=1.1, words=WORDS, language="en"),
                    turn("end", confidence=0.93), End(0, duration=2.0, utterances=1))
    assert [m["event"] for m in messages] == ["StartOfTurn", "Update", "EndOfTurn"]
    assert [m["sequence_id"] for m in messages] == [1, 2, 3]
    end = messages[-1]
    assert end == {
        "type": "TurnInfo", "request_id": translator.request_id, "sequence_id": 3,
        "event": "EndOfTurn", "turn_index": 0, "audio_window_start": 0.48,
        "audio_window_end": 1.1, "transcript": "Hello, there.",
        "words": [{"word": "Hello,", "confidence": 0.91, "start": 0.5, "end": 0.8},
                  {"word": "there.", "confidence": 0.82, "start": 0.8, "end": 1.1}],
        "end_of_turn_confidence": 0.93, "trigger": "model"}
    assert messages[0]["transcript"] == "" and messages[0]["words"] == []


def test_eager_end_resume_and_the_promise_that_an_end_matches_its_eager_end() -> None:
    translator = FluxTranslator(parse_flux_query(RAW + "&eager_eot_threshold=0.4"))
    kinds = [m["event"] for m in said(
        translator, turn("start", text=""), turn("eager_end", text="Hello,"),
        turn("resumed"), turn("eager_end", text="Hello, there"), turn("end", confidence=0.2))]
    # The end's words differ from the eager end's: a TurnResumed first, as Flux promises.
    assert kinds == ["StartOfTurn", "EagerEndOfTurn", "TurnResumed", "EagerEndOfTurn",
                     "TurnResumed", "EndOfTurn"]
    # An update whose words differ from the eager end's: resumed first, once.
    kinds = [m["event"] for m in said(
        translator, turn("start", index=2, text=""), turn("eager_end", index=2, text="Hi"),
        turn("update", index=2, text="Hi"), turn("update", index=2, text="Hi you"),
        turn("update", index=2, text="Hi you."), turn("end", index=2, text="Hi you."))]
    assert kinds == ["StartOfTurn", "EagerEndOfTurn", "Update", "TurnResumed", "Update",
                     "Update", "EndOfTurn"]
    # An eager end without words is not said, and neither is the resume that follows it.
    quiet = FluxTranslator(parse_flux_query(RAW))
    assert said(quiet, turn("eager_end", text=""), turn("resumed")) == []
    assert said(translator, turn("end", index=1, confidence=0.2))[0]["trigger"] == "timeout"


def test_control_messages() -> None:
    translator = FluxTranslator(parse_flux_query(MULAW))
    port = RecordingPort()
    translator.binary(b"\xff" * 160, port)
    translator.binary(b"", port)  # nothing to hear
    translator.text('{"type": "KeepAlive"}', port)
    said(translator, turn("start", index=4, text=""))
    translator.text('{"type": "ForceEndTurn"}', port)
    translator.text('{"type": "CloseStream"}', port)
    translator.text("not json", port)
    assert port.kinds() == ["audio", "control", "control", "report"]
    assert port.calls[0][1] == b"\x00\x00" * 160  # mu-law to pcm_s16le
    assert [value for kind, value in port.calls if kind == "control"] == ["end_turn", "eos"]
    assert isinstance(port.calls[-1][1], BadControlMessage)
    # The client ended turn 4: its EndOfTurn says so.
    assert said(translator, turn("end", index=4))[0]["trigger"] == "manual"


def test_configure_applies_thresholds_and_keyterms_and_answers_success() -> None:
    translator = FluxTranslator(parse_flux_query(RAW + "&keyterm=Phil"))
    port = RecordingPort()
    # The SDK sends every field of its model, the unset ones as null.
    translator.text(json.dumps({
        "type": "Configure", "thresholds": {"eot_threshold": 0.9, "eager_eot_threshold": 0.5,
                                            "eot_timeout_ms": None},
        "keyterms": ["Steels", "danger trail"], "language_hints": None, "numerals": None}),
        port)
    assert port.calls[0] == ("configure", Configure(
        prompt="Steels, danger trail", turns={"eot_threshold": 0.9,
                                              "eager_eot_threshold": 0.5}))
    success = json.loads(port.said()[0])
    assert success == {"type": "ConfigureSuccess", "request_id": translator.request_id,
                       "sequence_id": 0,
                       "thresholds": {"eot_threshold": 0.9, "eot_timeout_ms": 5000,
                                      "eager_eot_threshold": 0.5},
                       "keyterms": ["Steels", "danger trail"]}
    assert translator.settings == TurnSettings(0.9, 0.5, 5000)


@pytest.mark.parametrize("message", [
    {"type": "Configure", "thresholds": {"eot_threshold": 0.2}},
    {"type": "Configure", "thresholds": {"eager_eot_threshold": 0.8}},  # above eot 0.7
    {"type": "Configure", "thresholds": {"speed": 1}},
    {"type": "Configure", "keyterms": [1, 2]},
    {"type": "Configure", "language_hints": ["es"]},  # an English model
    {"type": "Configure", "profanity_filter": True},
])
def test_a_bad_configure_fails_and_changes_nothing(message: dict[str, Any]) -> None:
    translator = FluxTranslator(parse_flux_query(RAW))
    port = RecordingPort()
    translator.text(json.dumps(message), port)
    assert port.kinds() == ["say"]
    failure = json.loads(port.said()[0])
    assert failure["type"] == "ConfigureFailure" and failure["description"]
    assert translator.settings == TurnSettings()


def test_a_configure_the_session_refuses_fails() -> None:
    class Refusing(RecordingPort):
        def configure(self, change: Configure) -> None:
            raise BadControlMessage("not now")

    translator = FluxTranslator(parse_flux_query(RAW))
    port = Refusing()
    translator.text('{"type": "Configure", "thresholds": {"eot_threshold": 0.8}}', port)
    assert json.loads(port.said()[0])["description"] == "not now"
    assert translator.settings == TurnSettings()


def test_errors_are_warnings_unless_fatal_and_closes_are_deepgrams() -> None:
    translator = FluxTranslator(parse_flux_query(RAW))
    warning, error = said(translator, Error(0, code="bad_request", message="what?"),
                          Error(0, code="timeout", message="no audio for 10 s"))
    assert warning["type"] == "Warning" and warning["code"] == "BAD_REQUEST"
    assert error["type"] == "Error" and error["description"] == "no audio for 10 s"
    assert translator.close(codes.POLICY, "idle") == (codes.INTERNAL, "NET-0001")
    assert FluxTranslator(parse_flux_query(RAW)).close(codes.NORMAL, "end") == (
        codes.NORMAL, "end")
