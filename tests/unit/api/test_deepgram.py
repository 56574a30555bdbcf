"""api/deepgram.py: a `/v1/listen` query in, StreamParams out; messages in, JSON out; no socket."""

from __future__ import annotations

import hashlib
import json
from itertools import pairwise
from typing import Any

import pytest

from captioncast.api import deepgram
from captioncast.api.deepgram import DeepgramTranslator, interim_words
from captioncast.api.g711 import ULAW, g711_decoder
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.protocol import codes
from captioncast.protocol.events import (
    End,
    Error,
    Final,
    Partial,
    SpeakerEntry,
    Speakers,
    SpeechStarted,
    Word,
)
from tests.support.ports import RecordingPort

RAW = "/v1/listen?encoding=linear16&sample_rate=16000"


def test_listen_query_translates_onto_stream_params() -> None:
    options = deepgram.parse_listen_query(
        RAW + "&channels=2&language=en-US&interim_results=True&punctuate=true&vad_events=true"
        "&utterance_end_ms=1000&endpointing=300&keyterm=Kubernetes&keyterm=gRPC"
        "&keywords=captioncast:2&model=nova-3&tag=ours")
    assert options.stream.channels == 2 and options.stream.language == "en"
    assert options.stream.interim and options.punctuate and options.vad_events
    assert options.stream.prompt == "Kubernetes, gRPC, captioncast"
    assert options.utterance_end_ms == 1000 and options.endpointing_ms == 300


def test_listen_defaults_are_deepgrams() -> None:
    options = deepgram.parse_listen_query(RAW)
    assert not options.stream.interim and not options.punctuate and not options.vad_events
    assert options.endpointing_ms is None and options.decode is None
    assert deepgram.parse_listen_query(RAW + "&language=multi").stream.language == "auto"
    assert deepgram.parse_listen_query(RAW + "&smart_format=true").punctuate
    assert deepgram.parse_listen_query(RAW + "&diarize=false").stream.interim is False
    # diarize: absent follows the server's default, said is what the client asked
    assert deepgram.parse_listen_query(RAW).stream.diarize is None
    assert deepgram.parse_listen_query(RAW + "&diarize=false").stream.diarize is False
    assert deepgram.parse_listen_query(RAW + "&diarize=true").stream.diarize is True
    both = deepgram.parse_listen_query(RAW + "&multichannel=true&channels=2").stream
    assert both.multichannel and both.channels == 2
    # filler words: Whisper writes them when the text it continues has them
    fillers = deepgram.parse_listen_query(RAW + "&filler_words=true&keyterm=gRPC")
    assert fillers.stream.prompt == f"{deepgram.FILLER_PROMPT} gRPC"
    assert deepgram.parse_listen_query(RAW + "&filler_words=false").stream.prompt == ""


@pytest.mark.parametrize(("query", "says"), [
    ("/v1/listen", "raw audio"),
    ("/v1/listen?encoding=flac&sample_rate=16000", "encoding=flac"),
    (RAW + "&diarize=maybe", "diarize"),
    (RAW + "&multichannel=true", "channels=2"),
    (RAW + "&diarize_model=latest", "diarize_model"),
    (RAW + "&redact=pci", "redact"),
    (RAW + "&sample_rate=16000", "twice"),
    (RAW + "&interim_results=maybe", "interim_results"),
    (RAW + "&endpointing=soon", "endpointing"),
    (RAW + "&what=1", "what"),
])
def test_listen_refuses_what_it_cannot_honour(query: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        deepgram.parse_listen_query(query)


def test_interim_words_spread_over_the_partial() -> None:
    partial = Partial(3, utterance=0, start=1.0, end=3.0, text="ask not what", stable="ask")
    words = interim_words(partial)
    assert [w.word for w in words] == ["ask", "not", "what"]
    assert words[0].start == 1.0 and words[-1].end < 3.0
    assert all(a.end <= b.start for a, b in pairwise(words))
    assert words[2].end - words[2].start > words[1].end - words[1].start  # by length
    assert interim_words(Partial(4, utterance=0, start=1.0, end=2.0, text="", stable="")) == ()


# -- the translator: messages in, session commands out; events in, JSON out ---------------


def _translator(query: str = "", raw: str = RAW) -> DeepgramTranslator:
    return DeepgramTranslator(deepgram.parse_listen_query(raw + query), "tiny.en")


def _rendered(translator: DeepgramTranslator, event: Any) -> list[dict[str, Any]]:
    return [json.loads(message) for message in translator.render(event)]


def _final(text: str = "Hello, World.", utterance: int = 0) -> Final:
    words = (Word(" Hello,", 0.5, 0.9, 0.9), Word(" World.", 1.0, 1.4, 0.7))
    return Final(2, utterance=utterance, start=0.5, end=1.5, text=text, language="en",
                 words=words)


def test_audio_passes_through_and_an_empty_frame_closes_the_stream() -> None:
    translator, port = _translator(), RecordingPort()
    translator.binary(b"\x01\x02" * 160, port)
    translator.binary(b"", port)
    assert port.calls == [("audio", b"\x01\x02" * 160), ("control", "eos")]


def test_mulaw_is_decoded_before_the_session_and_hashed_as_sent() -> None:
    translator = _translator(raw="/v1/listen?encoding=mulaw&sample_rate=8000")
    port = RecordingPort()
    frame = bytes(range(256))
    translator.binary(frame, port)
    assert port.calls == [("audio", g711_decoder(ULAW)(frame))]
    [metadata] = _rendered(translator, End(9, duration=2.0, utterances=1))
    assert metadata["type"] == "Metadata"
    assert metadata["sha256"] == hashlib.sha256(frame).hexdigest()
    assert metadata["duration"] == 2.0 and metadata["channels"] == 1


def test_control_messages_become_keepalive_flush_and_eos() -> None:
    translator, port = _translator(), RecordingPort()
    translator.text('{"type": "KeepAlive"}', port)
    translator.text('{"type": "Finalize"}', port)
    translator.text('{"type": "CloseStream"}', port)
    assert port.calls == [("control", "flush"), ("control", "eos")]
    translator.text("not json", port)
    kind, error = port.calls[-1]
    assert kind == "report" and isinstance(error, BadControlMessage)


def test_a_finalize_in_speech_marks_the_next_final_from_finalize() -> None:
    translator = _translator()
    translator.text('{"type": "Finalize"}', RecordingPort(in_speech=True))
    [results] = _rendered(translator, _final())
    assert results["is_final"] and results["from_finalize"] and not results["speech_final"]
    [results] = _rendered(translator, _final(utterance=1))
    assert results["speech_final"] and not results["from_finalize"]
    translator.text('{"type": "Finalize"}', RecordingPort(in_speech=False))
    [results] = _rendered(translator, _final(utterance=2))
    assert not results["from_finalize"]  # nothing was under way: no final comes of it


def test_results_in_deepgrams_shape_plain_or_punctuated() -> None:
    [results] = _rendered(_translator(), _final())
    alternative = results["channel"]["alternatives"][0]
    assert results["type"] == "Results" and results["start"] == 0.5
    assert results["duration"] == 1.0 and results["channel_index"] == [0, 1]
    assert alternative["transcript"] == "hello world"  # Deepgram's default: no punctuation
    assert [w["word"] for w in alternative["words"]] == ["hello", "world"]
    assert [w["punctuated_word"] for w in alternative["words"]] == ["Hello,", "World."]
    assert alternative["confidence"] == 0.8
    assert results["metadata"]["model_info"]["name"] == "tiny.en"
    [results] = _rendered(_translator("&punctuate=true"), _final())
    assert results["channel"]["alternatives"][0]["transcript"] == "Hello, World."


def test_profanity_filter_is_the_streams_and_masked_words_render_as_deepgrams() -> None:
    assert deepgram.parse_listen_query(RAW + "&profanity_filter=true").stream.profanity_filter
    assert deepgram.parse_listen_query(RAW + "&profanity_filter=False").stream \
        .profanity_filter is False
    assert deepgram.parse_listen_query(RAW).stream.profanity_filter is None  # server's default
    # The session masks (text/profanity.py); a masked word is a word in Deepgram's shape.
    words = (Word(" ****,", 0.5, 0.9, 0.9), Word(" World.", 1.0, 1.4, 0.7))
    masked = Final(2, utterance=0, start=0.5, end=1.5, text="****, World.", language="en",
                   words=words)
    alternative = _rendered(_translator(), masked)[0]["channel"]["alternatives"][0]
    assert alternative["transcript"] == "**** world"
    assert [w["word"] for w in alternative["words"]] == ["****", "world"]
    assert [w["punctuated_word"] for w in alternative["words"]] == ["****,", "World."]
    partial = Partial(1, utterance=0, start=0.5, end=1.0, text="oh ****", stable="oh")
    interim = _rendered(_translator("&interim_results=true"), partial)[0]
    assert interim["channel"]["alternatives"][0]["transcript"] == "oh ****"


def test_vad_events_and_utterance_end_around_the_results() -> None:
    translator = _translator("&vad_events=true&utterance_end_ms=1000&interim_results=true")
    partial = Partial(1, utterance=0, start=0.5, end=1.0, text="Hello", stable="")
    assert [m["type"] for m in _rendered(translator, partial)] == ["SpeechStarted", "Results"]
    out = _rendered(translator, _final())
    assert [m["type"] for m in out] == ["Results", "UtteranceEnd"]  # speech started once
    assert out[1]["last_word_end"] == 1.4
    assert out[0]["channel"]["alternatives"][0]["confidence"] == 0.8


def test_a_failure_closes_with_deepgrams_codes() -> None:
    translator = _translator()
    assert translator.close(codes.NORMAL, "end of stream") == (codes.NORMAL, "end of stream")
    [error] = _rendered(translator, Error(3, code="timeout", message="no audio"))
    assert error["type"] == "Error" and error["description"] == "no audio"
    assert translator.close(codes.POLICY, "no audio") == deepgram.NET_ERROR
    _rendered(translator, Error(4, code="bad_audio", message="not audio"))
    assert translator.close(codes.POLICY, "bad") == deepgram.DATA_ERROR


def test_diarized_finals_number_speakers_from_zero() -> None:
    translator = _translator("&diarize=true")
    final = Final(5, utterance=0, start=0.0, end=1.0, text="Hello there.", language="en",
                  words=(Word(" Hello", 0.0, 0.4, 0.9), Word(" there.", 0.5, 0.9, 0.8)))
    first = json.loads(translator.render(final.labelled("S1"))[0])
    words = first["channel"]["alternatives"][0]["words"]
    assert [w["speaker"] for w in words] == [0, 0] and "speaker_confidence" not in words[0]
    second = json.loads(translator.render(final.labelled("S2"))[0])
    assert {w["speaker"] for w in second["channel"]["alternatives"][0]["words"]} == {1}
    # a label found to be another voice says that voice's number from then on
    translator.render(Speakers(6, speakers=(SpeakerEntry("S1"),
                                            SpeakerEntry("S2", same_as="S1"))))
    merged = json.loads(translator.render(final.labelled("S2"))[0])
    assert {w["speaker"] for w in merged["channel"]["alternatives"][0]["words"]} == {0}
    # an interim carries the best guess when there is one, nothing when there is none
    guess = Partial(7, utterance=1, start=1.0, end=2.0, text="so", stable="", speaker="S2")
    interim = json.loads(translator.render(guess)[0])["channel"]["alternatives"][0]
    assert interim["words"][0]["speaker"] == 0  # S2 is S1 now
    bare = Partial(8, utterance=1, start=1.0, end=2.0, text="so", stable="")
    interim = json.loads(translator.render(bare)[0])["channel"]["alternatives"][0]
    assert "speaker" not in interim["words"][0]
    # undiarized finals carry no speaker
    plain = json.loads(_translator().render(final)[0])["channel"]["alternatives"][0]
    assert "speaker" not in plain["words"][0]


def test_multichannel_finals_say_their_channel() -> None:
    translator = _translator("&multichannel=true&channels=2&vad_events=true")
    final = Final(5, utterance=0, start=0.0, end=1.0, text="Hi.", language="en",
                  words=(Word(" Hi.", 0.0, 0.4, 0.9),))
    rendered = [json.loads(m) for m in translator.render(final.labelled("S2", None, 1))]
    assert rendered[0] == {**rendered[0], "type": "SpeechStarted", "channel": [1, 2]}
    assert rendered[1]["channel_index"] == [1, 2]
    assert rendered[1]["channel"]["alternatives"][0]["words"][0]["speaker"] == 1
    mono = json.loads(_translator().render(final)[0])
    assert mono["channel_index"] == [0, 1]


def test_vad_events_come_from_the_vad_before_any_words() -> None:
    translator = _translator("&vad_events=true&interim_results=true")
    assert translator.options.stream.speech_events  # the session says SpeechStarted
    [started] = _rendered(translator, SpeechStarted(1, utterance=0, at=0.86))
    assert started == {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 0.86}
    partial = Partial(2, utterance=0, start=0.5, end=1.0, text="Hello", stable="")
    assert [m["type"] for m in _rendered(translator, partial)] == ["Results"]  # said once
    assert not _translator("&interim_results=true").options.stream.speech_events
    quiet = _translator("&interim_results=true")
    assert _rendered(quiet, SpeechStarted(1, utterance=0, at=0.86)) == []
