"""api/deepgram.py: a `/v1/listen` query in, StreamParams out; messages in, JSON out; no socket."""

from __future__ import annotations

import pytest

from captioncast.api import deepgram
from captioncast.errors import BadRequest

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
    # filler words: Whisper writes them when the text it continues has them
    fillers = deepgram.parse_listen_query(RAW + "&filler_words=true&keyterm=gRPC")
    assert fillers.stream.prompt == f"{deepgram.FILLER_PROMPT} gRPC"
    assert deepgram.parse_listen_query(RAW + "&filler_words=false").stream.prompt == ""


@pytest.mark.parametrize(("query", "says"), [
    ("/v1/listen", "raw audio"),
    ("/v1/listen?encoding=flac&sample_rate=16000", "encoding=flac"),
    (RAW + "&diarize=true", "diarize"),
    (RAW + "&redact=pci", "redact"),
    (RAW + "&sample_rate=16000", "twice"),
    (RAW + "&interim_results=maybe", "interim_results"),
    (RAW + "&endpointing=soon", "endpointing"),
    (RAW + "&what=1", "what"),
])
def test_listen_refuses_what_it_cannot_honour(query: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        deepgram.parse_listen_query(query)
