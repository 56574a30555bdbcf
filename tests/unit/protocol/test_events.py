"""captioncast.protocol.events and codes: every event survives its wire form unchanged."""

from __future__ import annotations

import json

import pytest

from captioncast.errors import BadRequest, CaptioncastError, TooLarge, Unauthorized
from captioncast.protocol import codes
from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import (
    End,
    Error,
    Event,
    Final,
    Partial,
    ProtocolError,
    Ready,
    Word,
    parse_event,
)

EVENTS: list[Event] = [
    Ready(1, session="abc", model="tiny.en", sample_rate=16000, language="en",
          resume_until=600),
    Ready(1, session="abc", model="tiny.en", sample_rate=16000, language="auto",
          resume_until=600, audio_received=12.345678),
    Partial(7, utterance=3, start=12.34, end=14.02, text="going along slushy",
            stable="going along"),
    Final(8, utterance=3, start=12.34, end=16.8, text="Going along slushy country roads.",
          language="en", words=(Word("Going", 12.36, 12.61, 0.93),
                                Word(" along", 12.61, 12.9, 0.88))),
    Final(9, utterance=4, start=17.0, end=18.0, text="", language="en"),
    Final(10, utterance=5, start=18.0, end=19.5, text="No words.", language="en",
          include_words=False),
    Error(11, code=ErrorCode.BAD_AUDIO, message="odd number of bytes"),
    End(42, duration=63.2, utterances=17),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type}-{e.seq}")
def test_every_event_round_trips_through_json(event: Event) -> None:
    text = event.to_json()
    assert parse_event(text) == event
    assert type(event).from_json(text) == event
    assert Event.from_json(text) == event
    assert parse_event(parse_event(text).to_json()).to_json() == text


def test_the_wire_form_is_protocol_2s() -> None:
    ready, resumed, partial, final, _, wordless, error, end = (
        json.loads(e.to_json()) for e in EVENTS)
    assert ready == {"type": "ready", "seq": 1, "session": "abc", "protocol": 2,
                     "model": "tiny.en", "sample_rate": 16000, "language": "en",
                     "resume_until": 600}
    assert resumed["resumed"] is True and resumed["audio_received"] == 12.345678
    assert list(partial) == ["type", "seq", "utterance", "start", "end", "text", "stable"]
    assert final["words"][0] == {"word": "Going", "start": 12.36, "end": 12.61, "p": 0.93}
    assert "words" not in wordless
    assert error == {"type": "error", "seq": 11, "code": "bad_audio",
                     "message": "odd number of bytes"}
    assert end == {"type": "end", "seq": 42, "duration": 63.2, "utterances": 17}


def test_times_go_out_with_three_decimals() -> None:
    partial = Partial(1, utterance=0, start=1.23456, end=2.00049, text="a", stable="")
    assert json.loads(partial.to_json())["start"] == 1.235
    assert Partial.from_json(partial.to_json()).end == 2.0


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"type": "nope", "seq": 1}',
                                  '{"type": "final", "seq": 1}'])
def test_what_is_not_an_event_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_event(text)


def test_from_json_of_one_type_refuses_another() -> None:
    with pytest.raises(ProtocolError):
        Final.from_json(EVENTS[-1].to_json())


def test_errors_carry_the_protocols_codes_and_close_codes() -> None:
    assert {c.value for c in ErrorCode} == {"bad_request", "bad_audio", "unauthorized",
                                             "overloaded", "too_large", "timeout",
                                             "internal"}
    assert (BadRequest.code, BadRequest.close_code) == ("bad_request", 1008)
    assert (TooLarge.code, TooLarge.close_code) == ("too_large", 1009)
    assert (Unauthorized.code, Unauthorized.close_code) == ("unauthorized", 4001)
    assert CaptioncastError.close_code == codes.INTERNAL == 1011
    assert codes.OVERLOADED == 1013 and codes.NORMAL == 1000 and codes.GOING_AWAY == 1001
    assert json.dumps({"code": ErrorCode.TIMEOUT}) == '{"code": "timeout"}'
