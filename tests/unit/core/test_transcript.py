"""File transcription's parameters (core/transcript.py): the format names every route takes."""

from __future__ import annotations

import pytest

from captioncast.core.transcript import parse_openai_form, parse_transcribe_query
from captioncast.errors import BadRequest


@pytest.mark.parametrize("name", ["text", "txt"])
def test_plain_text_is_text_or_txt_on_both_file_routes(name: str) -> None:
    assert parse_transcribe_query({"format": name}).format == "text"
    form = {"model": ["whisper-1"], "response_format": [name]}
    assert parse_openai_form(form).format == "text"


def test_an_unknown_format_names_both_spellings() -> None:
    with pytest.raises(BadRequest, match=r"json, text \(or txt\), srt, vtt, ndjson, got 'docx'"):
        parse_transcribe_query({"format": "docx"})


def test_a_file_asks_for_the_profanity_filter_as_a_stream_does() -> None:
    assert parse_transcribe_query({"profanity_filter": "true"}).audio.profanity_filter
    assert parse_transcribe_query({}).audio.profanity_filter is None
