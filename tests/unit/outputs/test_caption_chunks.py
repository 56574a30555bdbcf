"""outputs/caption_chunks.py: finals shaped into platform captions, timed by their words."""

from __future__ import annotations

from captioncast.outputs.caption_chunks import caption_chunks, utc_millis, wall_time, wrap
from tests.support.scripted_output import final


def test_long_finals_split_into_608_captions_timed_by_their_words() -> None:
    text = ("so we went down to the river early in the morning and the fog was still lying "
            "on the water like a blanket when the first boats came out")
    chunks = caption_chunks(final(1, text, start=10.0))
    assert len(chunks) > 1
    assert all(len(c.lines) <= 2 and all(len(line) <= 32 for line in c.lines) for c in chunks)
    assert " ".join(" ".join(c.lines) for c in chunks) == text
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert chunks[0].start == 10.0 and chunks[1].start > 10.0


def test_wrap_keeps_every_line_within_its_width() -> None:
    lines = wrap("a " * 100 + "supercalifragilisticexpialidocious", 20)
    assert all(len(line) <= 20 for line in lines)


def test_audio_time_maps_to_wall_time_and_youtube_format() -> None:
    event = {"start": 12.0, "end": 16.5}
    assert wall_time(12.0, event, received_at=1000.0) == 995.5
    assert utc_millis(0.0) == "1970-01-01T00:00:00.000"
    assert utc_millis(1_700_000_000.1234) == "2023-11-14T22:13:20.123"
