"""YouTube Live HTTP caption ingestion: timestamped caption POSTs with a rising `seq`.

The format (YouTube Live "Post captions over HTTP"): POST `text/plain` to the stream's
ingestion URL with `&seq=N` added, N rising by one per new post and kept on a retry; each
caption in the body is a line `YYYY-MM-DDTHH:MM:SS.mmm` (UTC) followed by its text, `<br>`
for a line break inside it. The timestamp says when the words were spoken, so YouTube can
place the caption against the video; we map the final's audio times to wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from captioncast.outputs.caption_chunks import ROWS_608, caption_chunks, utc_millis, wall_time
from captioncast.outputs.http import TEXT_PLAIN, HttpOutput
from captioncast.outputs.output import Delivery
from captioncast.outputs.speakers import lead_chunks, name_lead
from captioncast.outputs.spec import SpecReader, with_query

YOUTUBE_LINE_CHARS = 32  # YouTube renders HTTP captions into the stream's 608 track


@dataclass
class YouTubePost:
    body: str
    seq: int | None = None  # given on the first attempt, kept for its retries


class YouTubeOutput(HttpOutput[YouTubePost]):
    kind = "youtube"

    def __init__(self, url: str, *, seq_start: int = 1, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._next_seq = seq_start

    @classmethod
    def from_spec(cls, spec: SpecReader) -> YouTubeOutput:
        url = spec.url()
        seq_start = spec.integer("seq_start", 1, low=0, high=2**31)
        return cls(url, seq_start=seq_start, **spec.common())

    def prepare(self, delivery: Delivery) -> YouTubePost | None:
        lines = []
        chunks = lead_chunks(caption_chunks(delivery.event, width=YOUTUBE_LINE_CHARS),
                             name_lead(delivery.turn), YOUTUBE_LINE_CHARS, ROWS_608)
        for chunk in chunks:
            when = wall_time(chunk.start, delivery.event, delivery.received_at)
            lines += [utc_millis(when), "<br>".join(chunk.lines)]
        return YouTubePost("\n".join(lines) + "\n") if lines else None

    async def send(self, payload: YouTubePost) -> None:
        if payload.seq is None:
            payload.seq = self._next_seq
            self._next_seq += 1
        await self.request("POST", with_query(self.url, seq=payload.seq),
                           content=payload.body.encode(), headers={"Content-Type": TEXT_PLAIN})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seq": self._next_seq - 1}
