"""Zoom third-party closed captions: plain-text POSTs to the meeting's API token URL.

Zoom's "Closed Captioning with REST API" (support.zoom.com, KB0060368, "Integrating a
third-party closed captioning service") says:
- add `seq` and `lang` to the token URL of every POST; `seq` rises by one per new caption post
  and must not rise on a retry; "the seq number of the last successful send can be obtained
  through the API: /closedcaption/seq [GET]" (the token URL's path `/closedcaption` with
  `/seq` added, same query), which we read once so a restarted server continues the count;
- the body is only the caption text, `text/plain` UTF-8, not form-encoded; `\\n` breaks a line;
- answers 400 (the meeting has not started), 403 (missing or expired parameters), 405;
  "Zoom recommends that you retry all codes" (and 408, 500, 502, 503, 504), and every POST
  "should be performed with a timeout" and retried when it times out.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

from captioncast.outputs.http import TEXT_PLAIN, HttpOutput
from captioncast.outputs.output import Delivery
from captioncast.outputs.speakers import name_lead
from captioncast.outputs.spec import SpecReader, with_query

log = logging.getLogger("captioncast.outputs")

# Zoom's own examples of `lang`; note Japanese is `jp-JP` there, not `ja-JP`.
ZOOM_LANGS = {"de": "de-DE", "en": "en-US", "ja": "jp-JP", "es": "es-ES", "fr": "fr-FR",
              "zh": "zh-CN"}
MEETING_NOT_STARTED = 400


def zoom_lang(language: str | None, default: str = "en-US") -> str:
    if not language:
        return default
    return ZOOM_LANGS.get(language, language if "-" in language else default)


def seq_url(url: str) -> str:
    """The `/closedcaption/seq` endpoint beside a token URL (`.../closedcaption?id=...`)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/seq"))


@dataclass
class ZoomPost:
    text: str
    lang: str
    seq: int | None = None


class ZoomOutput(HttpOutput[ZoomPost]):
    kind = "zoom"

    def __init__(self, url: str, *, lang: str | None = None, resume: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.lang = lang
        self._seq: int | None = None if resume else 0  # the last seq Zoom accepted

    @classmethod
    def from_spec(cls, spec: SpecReader) -> ZoomOutput:
        url = spec.url()
        return cls(url, lang=spec.string("lang"), **spec.common())

    def is_waiting(self, response: httpx.Response) -> bool:
        return response.status_code == MEETING_NOT_STARTED

    def prepare(self, delivery: Delivery) -> ZoomPost | None:
        if not delivery.text:
            return None
        # One final is one caption line: the trailing break ends it, as in Zoom's example.
        return ZoomPost(name_lead(delivery.turn) + delivery.text + "\n",
                        self.lang or zoom_lang(delivery.language))

    async def _last_seq(self) -> int:
        response = await self.request("GET", seq_url(self.url))
        try:
            return int(response.text.strip() or 0)
        except ValueError:
            log.warning("output=%s kind=zoom seq_answer=%r starting_at=1", self.id,
                        response.text[:40])
            return 0

    async def send(self, payload: ZoomPost) -> None:
        if self._seq is None:
            self._seq = await self._last_seq()
        if payload.seq is None:
            self._seq += 1
            payload.seq = self._seq
        await self.request("POST", with_query(self.url, seq=payload.seq, lang=payload.lang),
                           content=payload.text.encode(), headers={"Content-Type": TEXT_PLAIN})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seq": self._seq}
