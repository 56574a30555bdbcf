"""File transcription's parameters (core/transcript.py): the format names every route takes."""

from __future__ import annotations

import pytest

from captioncast.core.transcript import (
    Segment,
    Transcript,
    openai_speaker,
    parse_openai_form,
    parse_transcribe_query,
)
from captioncast.errors import BadRequest
from captioncast.protocol.events import Final, Word


@pytest.mark.parametrize("name", ["text", "txt"])
def test_plain_text_is_text_or_txt_on_both_file_routes(name: str) -> None:
    assert parse_transcribe_query({"format": name}).format == "text"
    form = {"model": ["whisper-1"], "response_format": [name]}
    assert parse_openai_form(form).format == "text"


def test_an_unknown_format_names_both_spellings() -> None:
    with pytest.raises(BadRequest, match=r"json, text \(or txt\), srt, vtt, ndjson, got 'docx'"):
        parse_transcribe_query({"format": "docx"})


def test_diarized_json_is_asked_for_by_the_format() -> None:
    form = {"model": ["gpt-4o-transcribe-diarize"], "response_format": ["diarized_json"]}
    params = parse_openai_form(form)
    assert params.format == "diarized_json" and params.audio.diarize is True
    assert parse_openai_form({"model": ["whisper-1"]}).audio.diarize is None
    assert parse_transcribe_query({"diarize": "true"}).audio.diarize is True
    with pytest.raises(BadRequest, match="diarize"):
        parse_transcribe_query({"diarize": "maybe"})
    with pytest.raises(BadRequest, match="diarized_json"):  # only the OpenAI form has it
        parse_transcribe_query({"format": "diarized_json"})


def _transcript() -> Transcript:
    def final(utterance: int, start: float, text: str, speaker: str) -> Segment:
        word = Word(text, start, start + 0.5, 0.9)
        return Segment(Final(utterance + 1, utterance=utterance, start=start, end=start + 1,
                             text=text, language="en", words=(word,)).labelled(speaker))
    return Transcript((final(0, 0.0, "Hello.", "S1"), final(1, 1.5, "Hi.", "S2"),
                       final(2, 3.0, "Bye.", "S1")), duration=4.0)


def test_diarized_json_has_openais_shape() -> None:
    body = _transcript().render(parse_openai_form(
        {"model": ["x"], "response_format": ["diarized_json"]}))
    assert isinstance(body, dict)
    assert body["task"] == "transcribe" and body["duration"] == 4.0
    assert body["text"] == "Hello. Hi. Bye."
    assert body["usage"] == {"type": "duration", "seconds": 4.0}
    assert body["segments"][1] == {"type": "transcript.text.segment", "id": "seg_1",
                                   "start": 1.5, "end": 2.5, "text": "Hi.", "speaker": "B"}
    assert [s["speaker"] for s in body["segments"]] == ["A", "B", "A"]


def test_native_json_carries_speakers_on_segments_and_words() -> None:
    body = _transcript().to_json(words=True)
    assert [s["speaker"] for s in body["segments"]] == ["S1", "S2", "S1"]
    assert body["segments"][1]["words"][0]["speaker"] == "S2"


@pytest.mark.parametrize(("label", "letters"), [
    ("S1", "A"), ("S2", "B"), ("S26", "Z"), ("S27", "AA"), (None, "A")])
def test_openai_speakers_are_letters(label: str | None, letters: str) -> None:
    assert openai_speaker(label) == letters


def test_a_file_asks_for_the_profanity_filter_as_a_stream_does() -> None:
    assert parse_transcribe_query({"profanity_filter": "true"}).audio.profanity_filter
    assert parse_transcribe_query({}).audio.profanity_filter is None
