"""The compatible APIs' pure parts: queries, settings, handshake refusals, G.711, HF parameters."""

from __future__ import annotations

import json

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast.api.realtime_config import RealtimeConfig, RealtimeWire, SessionFlavour
from captioncast.core.options import PolicyOptions
from captioncast.errors import BadRequest
from captioncast.transport import deepgram, openai_realtime
from captioncast.transport.compat import ALAW, ULAW, endpointing_policy, g711_decoder
from captioncast.transport.huggingface import parse_parameters
from captioncast.transport.security import SecurityOptions, presented_token
from captioncast.transport.server import ServerOptions
from captioncast.transport.server_context import ServerContext

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


def _request(path: str, **headers: str) -> Request:
    return Request(path, Headers(headers))


def _body(response: object) -> dict[str, object]:
    body = getattr(response, "body", b"")
    assert isinstance(body, bytes)
    return dict(json.loads(body))


def test_handshake_refusals_are_in_each_apis_shape() -> None:
    ctx = ServerContext(ServerOptions(security=SecurityOptions(tokens=("k",))))
    refused = deepgram.vet_upgrade(ctx, _request(RAW, Authorization="Token nope"))
    assert refused is not None and refused.status == 401
    assert _body(refused)["err_code"] == "INVALID_AUTH"
    refused = deepgram.vet_upgrade(ctx, _request("/v1/listen", Authorization="Token k"))
    assert refused is not None and refused.status == 400
    assert ("dg-error", _body(refused)["err_msg"]) in refused.headers
    loading = deepgram.vet_upgrade(ctx, _request(RAW, Authorization="Token k"))
    assert loading is not None and loading.status == 503  # no model loaded here
    refused = openai_realtime.vet_upgrade(
        ctx, _request("/v1/realtime?intent=transcription", Authorization="Bearer nope"))
    assert refused is not None and refused.status == 401
    assert _body(refused)["error"] == {"message": "the token is not valid for this server",
                                       "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}
    refused = openai_realtime.vet_upgrade(
        ctx, _request("/v1/realtime?model=gpt-realtime", Authorization="Bearer k"))
    assert refused is not None and refused.status == 400


def test_deepgrams_token_scheme_is_a_token() -> None:
    assert presented_token("/v1/listen", {"Authorization": "Token abc"}) == "abc"
    assert presented_token("/v1/listen", {"Authorization": "Bearer abc"}) == "abc"


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


def test_g711_tables() -> None:
    assert (ULAW[0xFF], ULAW[0x7F], ULAW[0x00], ULAW[0x80]) == (0, 0, -32124, 32124)
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)
    assert g711_decoder(ULAW)(b"\xff\x00") == b"\x00\x00" + (-32124).to_bytes(2, "little",
                                                                           signed=True)


def test_endpointing_sets_the_pause_within_bounds() -> None:
    policy = PolicyOptions()
    assert endpointing_policy(policy, None) is policy
    assert endpointing_policy(policy, 300).segmenter.end_hangover_s == 0.3
    assert endpointing_policy(policy, 10).segmenter.end_hangover_s == 0.2  # Deepgram's default
    longer = endpointing_policy(policy, 60000).segmenter
    assert longer.end_hangover_s == 3.0 and longer.long_hangover_s <= longer.end_hangover_s


def test_hf_parameters() -> None:
    params, chunks = parse_parameters({"return_timestamps": "word",
                                       "generate_kwargs": {"language": "de", "task": "translate"}})
    assert chunks == "word" and params.words
    assert params.audio.language == "de" and params.audio.task == "translate"
    assert parse_parameters(None)[1] is None and parse_parameters({"return_timestamps": True})[1]
    for bad in ({"top_k": 1}, {"return_timestamps": "char"}, {"generate_kwargs": {"beams": 5}}):
        with pytest.raises(BadRequest):
            parse_parameters(bad)
