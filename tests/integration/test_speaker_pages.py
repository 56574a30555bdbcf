"""Speakers on the pages in a real headless Chromium: the reader names and colours voices,
applies a later speakers table to earlier lines, renames a voice with the token; the overlay
marks a change. The server is the real one (in process, scripted decoder); the channel's
events come through a socket the test serves in its place, so no model is needed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route, WebSocketRoute, async_playwright

from captioncast.protocol.events import Event, Final, SpeakerEntry, Speakers
from tests.support.inprocess import scripted_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGE_DEADLINE_MS = 15_000  # for what the page must show: a deadline for failure, not a wait
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def said(seq: int, utterance: int, text: str, speaker: str) -> Final:
    return Final(seq, utterance=utterance, start=float(utterance), end=utterance + 0.9,
                 text=text, language="en").labelled(speaker)


# As the channel replays them: the table first (its seq above the finals' below it).
TALK: list[Event] = [
    Speakers(4, speakers=(SpeakerEntry("S1"), SpeakerEntry("S2"))),
    said(1, 0, "Good morning everyone.", "S1"),
    said(2, 1, "Morning.", "S2"),
    said(3, 2, "Let us begin.", "S3"),
]
NAMED = Speakers(5, speakers=(SpeakerEntry("S1", "Alice"), SpeakerEntry("S2"),
                              SpeakerEntry("S3", same_as="S1")))


class FakeChannel:
    """Stands in for /v1/captions: says the test's events to each page that connects."""

    def __init__(self, events: Iterable[Event]) -> None:
        self.events = list(events)
        self.sockets: list[WebSocketRoute] = []

    async def __call__(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws)
        for event in self.events:
            ws.send(event.to_json())

    def say(self, event: Event) -> None:
        for ws in self.sockets:
            ws.send(event.to_json())


async def _speakers(page: Page) -> list[Any]:
    return await page.eval_on_selector_all(
        "#finals li", "rows => rows.map(r => [r.querySelector('.speaker')?.textContent ?? null,"
                      " r.dataset.speaker, r.style.getPropertyValue('--speaker-hue')])")


async def test_the_reader_names_voices_and_renames_one_with_the_token() -> None:
    async with scripted_server() as server, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            channel = FakeChannel(TALK)
            await page.route_web_socket("**/v1/captions*", channel)
            renames: list[dict[str, Any]] = []

            async def speakers_route(route: Route) -> None:
                request = route.request
                renames.append({"method": request.method, "url": request.url,
                                "body": json.loads(request.post_data or "{}"),
                                "auth": await request.header_value("authorization")})
                await route.fulfill(status=200, json={"id": "S2", "name": "Bob"})

            await page.route("**/v1/channels/*/speakers/*", speakers_route)
            await page.goto(f"{server.http_url}/watch?channel=talk&token=sesame")
            await page.wait_for_function("document.querySelectorAll('#finals li').length === 3",
                                         timeout=PAGE_DEADLINE_MS)
            rows = await _speakers(page)
            # a final numbered below the table is still shown; a name at each change
            assert [r[:2] for r in rows] == [["S1", "S1"], ["S2", "S2"], ["S3", "S3"]]
            assert len({r[2] for r in rows}) == 3  # a colour per voice

            channel.say(NAMED)  # S1 is Alice; S3 turns out to be her too
            await page.wait_for_function(
                "document.querySelector('#finals li .speaker').textContent === 'Alice'",
                timeout=PAGE_DEADLINE_MS)
            rows = await _speakers(page)
            assert [r[:2] for r in rows] == [["Alice", "S1"], ["S2", "S2"], ["Alice", "S1"]]
            assert rows[0][2] == rows[2][2] != rows[1][2]  # one voice, one colour

            await page.click("#finals li:nth-child(2) button.speaker")
            await page.fill("#finals input.rename", "Bob")
            await page.press("#finals input.rename", "Enter")
            await page.wait_for_function("document.querySelector('#finals li:nth-child(2) "
                                         ".speaker').textContent === 'Bob'",
                                         timeout=PAGE_DEADLINE_MS)
            assert renames == [{"method": "PUT", "url": f"{server.http_url}/v1/channels/talk/"
                                "speakers/S2", "body": {"name": "Bob"},
                                "auth": "Bearer sesame"}]
            channel.say(Speakers(6, speakers=(*NAMED.speakers[:1], SpeakerEntry("S2", "Bob"),
                                              NAMED.speakers[2])))
            await page.wait_for_timeout(200)
            assert [r[0] for r in await _speakers(page)] == ["Alice", "Bob", "Alice"]
            assert await page.locator("#message").is_hidden()
        finally:
            await browser.close()


async def test_a_reader_without_the_token_reads_names_only() -> None:
    async with scripted_server() as server, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.route_web_socket("**/v1/captions*", FakeChannel([*TALK, NAMED]))
            await page.goto(f"{server.http_url}/watch?channel=talk")
            await page.wait_for_function("document.querySelectorAll('#finals li').length === 3",
                                         timeout=PAGE_DEADLINE_MS)
            assert await page.locator("#finals button.speaker").count() == 0
            assert [r[0] for r in await _speakers(page)] == ["Alice", "S2", "Alice"]
        finally:
            await browser.close()


@pytest.mark.parametrize(("option", "shown"), [
    ("", ">> Good morning everyone. >> Morning. >> Let us begin."),
    ("&speakers=names", "Alice: Good morning everyone. S2: Morning. Alice: Let us begin."),
    ("&speakers=off", "Good morning everyone. Morning. Let us begin."),
])
async def test_the_overlay_marks_a_change_of_speaker(option: str, shown: str) -> None:
    async with scripted_server() as server, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.route_web_socket("**/v1/captions*", FakeChannel([*TALK, NAMED]))
            await page.goto(f"{server.http_url}/overlay?channel=talk&lines=6&chars=60{option}")
            await page.wait_for_function(
                "document.querySelector('#box').textContent.includes('begin')",
                timeout=PAGE_DEADLINE_MS)
            lines = await page.locator("#box .line").all_text_contents()
            assert " ".join(lines) == shown
        finally:
            await browser.close()
