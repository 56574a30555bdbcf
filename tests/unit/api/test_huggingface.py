"""api/huggingface.py: HF's `parameters` onto file transcription's."""

import pytest

from captioncast.api.huggingface import parse_parameters
from captioncast.errors import BadRequest


def test_hf_parameters() -> None:
    params, chunks = parse_parameters({"return_timestamps": "word",
                                       "generate_kwargs": {"language": "de", "task": "translate"}})
    assert chunks == "word" and params.words
    assert params.audio.language == "de" and params.audio.task == "translate"
    assert parse_parameters(None)[1] is None and parse_parameters({"return_timestamps": True})[1]
    for bad in ({"top_k": 1}, {"return_timestamps": "char"}, {"generate_kwargs": {"beams": 5}}):
        with pytest.raises(BadRequest):
            parse_parameters(bad)
