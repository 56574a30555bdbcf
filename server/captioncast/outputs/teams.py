"""Microsoft Teams CART captions: finals as text/plain lines POSTed to the meeting's CART URL.

The CART URL (`https://api.captions.office.microsoft.com/cartcaption?meetingid=...&token=...`,
from "Provide CART Captions" in the meeting options) takes the same POSTs as Zoom's caption
API: `seq` rising by one per new post and `lang` in the query, the caption text as the
`text/plain` body. Teams shows a line as it arrives and cannot correct it, so only finals go
there, wrapped into whole lines of at most 120 characters (80 or more but for a final's last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from captioncast.outputs.caption_chunks import wrap
from captioncast.outputs.http import TEXT_PLAIN, HttpOutput
from captioncast.outputs.output import Delivery
from captioncast.outputs.speakers import name_lead
from captioncast.outputs.spec import SpecReader, with_query

TEAMS_LINE_CHARS = 120  # longer lines are cut in the caption bar; greedy wrap fills each to 80+
NOT_FOUND = 404  # the meeting has not started (or has ended)


@dataclass
class TeamsPost:
    body: str
    lang: str
    seq: int | None = None


class TeamsOutput(HttpOutput[TeamsPost]):
    kind = "teams"

    def __init__(self, url: str, *, lang: str | None = None,
                 line_chars: int = TEAMS_LINE_CHARS, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.lang = lang
        self.line_chars = line_chars
        self._next_seq = 1

    @classmethod
    def from_spec(cls, spec: SpecReader) -> TeamsOutput:
        url = spec.url()
        line_chars = spec.integer("line_chars", TEAMS_LINE_CHARS, low=80, high=120)
        return cls(url, lang=spec.string("lang"), line_chars=line_chars, **spec.common())

    def is_waiting(self, response: httpx.Response) -> bool:
        return response.status_code == NOT_FOUND

    def prepare(self, delivery: Delivery) -> TeamsPost | None:
        lines = wrap(name_lead(delivery.turn) + delivery.text, self.line_chars)
        if not lines:
            return None
        lang = self.lang or _teams_lang(delivery.language)
        return TeamsPost("\n".join(lines) + "\n", lang)

    async def send(self, payload: TeamsPost) -> None:
        if payload.seq is None:
            payload.seq = self._next_seq
            self._next_seq += 1
        await self.request("POST", with_query(self.url, seq=payload.seq, lang=payload.lang),
                           content=payload.body.encode(), headers={"Content-Type": TEXT_PLAIN})


def _teams_lang(language: str | None) -> str:
    # Teams matches the captions' language against the meeting's spoken language, `en-us` form.
    if not language:
        return "en-us"
    return language.lower() if "-" in language else {"en": "en-us"}.get(language, language)
