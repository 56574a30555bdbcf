"""Shaping a final for a caption display: line wrapping, 608-sized captions, audio to wall time."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Mapping
from typing import Any

from captioncast.protocol.captions import Cue, split_final

LINE_CHARS_608 = 32  # CEA-608 shows at most 32 characters on a row
ROWS_608 = 2  # two rows: the usual roll-up depth, enough to read without covering the picture


Chunk = Cue


def wrap(text: str, width: int) -> list[str]:
    """Words into lines of at most `width` characters, as the caption files wrap them."""
    return textwrap.wrap(" ".join(text.split()), width=width, break_long_words=True,
                         break_on_hyphens=False)


def caption_chunks(event: Mapping[str, Any], width: int = LINE_CHARS_608,
                   rows: int = ROWS_608) -> list[Cue]:
    """A final as captions of at most `rows` lines of `width` characters, in order, each timed
    by its words, so a display can pace them as they were spoken. The same split as the
    channel's caption files (translate, never fork), at 608's size."""
    return split_final(event, width=width, max_lines=rows)


def wall_time(audio_s: float, event: Mapping[str, Any], received_at: float) -> float:
    """The wall time (epoch s) at which audio time `audio_s` was spoken: the final arrived when
    its last audio had been heard, so the end of the utterance maps to `received_at`."""
    end = float(event.get("end") or audio_s)
    return received_at - max(0.0, end - audio_s)


def utc_millis(epoch_s: float) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmm` in UTC, as YouTube's caption ingestion wants it."""
    t = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
