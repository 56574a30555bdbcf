"""The overlay page in a real headless Chromium, fed by real speech on a channel."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import pytest
from playwright.async_api import WebSocketRoute, async_playwright

from captioncast.protocol.events import Event, Final
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import speech_path
from tests.integration.conftest import ARTIFACTS, RunningServer

pytestmark = pytest.mark.model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "overlay.png"
PAGE_DEADLINE_MS = 60_000  # for what the page must show: a deadline for failure, not a wait


def _audio(name: str) -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
async def test_overlay_shows_the_captions_and_catches_up_after_a_drop(
    server: RunningServer,
) -> None:
    channel = f"obs-{secrets.token_hex(3)}"
    url = (f"http://127.0.0.1:{server.port}/overlay?channel={channel}"
           "&lines=3&size=34&chars=40&partial_color=%23ffe680")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # bypass_csp: the page forbids eval, which Playwright's string predicates use
            context = await browser.new_context(viewport={"width": 960, "height": 300},
                                                bypass_csp=True)
            page = await context.new_page()
            # Every caption socket goes through a proxy in the test, so the test can cut
            # the network under the page the way a dropped Wi-Fi would.
            network = {"up": True, "routes": []}

            async def proxy(ws: WebSocketRoute) -> None:
                if not network["up"]:
                    await ws.close(code=4000, reason="network down")
                    return
                ws.connect_to_server()
                network["routes"].append(ws)

            await page.route_web_socket("**/v1/captions*", proxy)
            await page.goto(url)
            await page.wait_for_function("document.body.dataset.state === 'open'",
                                         timeout=PAGE_DEADLINE_MS)
            box = page.locator("#box")
            # The page notes every partial it ever shows, however briefly: nothing is
            # missed between two looks from here.
            await page.evaluate("""() => {
                window.sawPartial = false;
                new MutationObserver(() => {
                    if (document.querySelector('#box .partial')) window.sawPartial = true;
                }).observe(document.body, {subtree: true, childList: true,
                                           characterData: true, attributes: true});
            }""")

            first = await stream(stream_url(server.url, channel=channel), _audio("whisper_jfk"))
            await page.wait_for_function(
                "document.querySelector('#box').textContent.toLowerCase()"
                ".includes('your country')", timeout=PAGE_DEADLINE_MS)
            if any(e["type"] == "partial" and e["text"] for e in first.events):
                assert await page.evaluate("window.sawPartial"), \
                    "the live partial is shown while someone speaks"
            lines = await box.locator(".line").all_text_contents()
            assert 1 <= len(lines) <= 3 and all(len(x) <= 40 for x in lines)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "overlay.png"))
            if not DOCS_SHOT.exists():  # delete it to refresh the README's picture
                DOCS_SHOT.parent.mkdir(exist_ok=True)
                await page.evaluate("document.body.style.background = "
                                    "'linear-gradient(135deg, #2b4162, #12100e)'")
                await page.screenshot(path=str(DOCS_SHOT))
                await page.evaluate("document.body.style.background = ''")
            assert first.finals

            # The network drops while the next speaker talks; the page reconnects with
            # since= and still shows the last words said during the drop.
            network["up"] = False
            for route in network["routes"]:
                await route.close(code=4000, reason="network down")
            await page.wait_for_function("document.body.dataset.state === 'closed'",
                                         timeout=PAGE_DEADLINE_MS)
            decided = asyncio.Event()

            def on_event(event: Event) -> None:
                if isinstance(event, Final) and event.text:
                    decided.set()

            second = asyncio.create_task(stream(stream_url(server.url, channel=channel),
                                                _audio("libri_dev_2412-153948-0000"),
                                                on_event=on_event))
            # the network stays down until a final has been decided while the page is
            # cut off, however long decoding takes
            await asyncio.wait_for(decided.wait(), 120)
            network["up"] = True
            result = await second
            last_words = " ".join(result.text.lower().split()[-3:]).strip(".,!?")
            await page.wait_for_function(
                f"document.querySelector('#box').textContent.toLowerCase()"
                f".includes({last_words!r})", timeout=PAGE_DEADLINE_MS)
            # every final reached the page, those decided during the drop included
            said = [f["text"] for f in first.finals + result.finals if f["text"]]
            shown = await page.evaluate("finals.map(f => f.text)")  # each with its speaker
            assert shown == said[-20:]
        finally:
            await browser.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
async def test_a_final_that_corrects_its_partial_leaves_no_stale_words(
    server: RunningServer,
) -> None:
    """Protocol 2: the final may change words the partial showed as stable."""
    import json

    url = f"http://127.0.0.1:{server.port}/overlay?channel=fix&lines=3"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = await browser.new_context(bypass_csp=True)
            page = await context.new_page()
            sockets: list[WebSocketRoute] = []

            async def scripted(ws: WebSocketRoute) -> None:
                sockets.append(ws)  # the test plays the server's part on this socket

            await page.route_web_socket("**/v1/captions*", scripted)
            await page.goto(url)
            await page.wait_for_function("document.body.dataset.state === 'open'")
            box = page.locator("#box")
            sockets[0].send(json.dumps({
                "type": "partial", "seq": 1, "utterance": 0, "start": 0.5, "end": 1.5,
                "text": "Alfa bravo char", "stable": "Alfa bravo"}))
            await page.wait_for_function(
                "document.querySelector('#box').textContent.includes('Alfa bravo char')")
            sockets[0].send(json.dumps({
                "type": "final", "seq": 2, "utterance": 0, "start": 0.5, "end": 2.0,
                "text": "Alpha, bravo, Charlie.", "language": "en", "words": []}))
            await page.wait_for_function(
                "document.querySelector('#box').textContent.includes('Alpha, bravo, Charlie.')")
            assert "Alfa" not in (await box.text_content() or "")
            assert await page.locator("#box .partial").count() == 0
            # an empty final (no speech after all) takes its partial away too
            sockets[0].send(json.dumps({
                "type": "partial", "seq": 3, "utterance": 1, "start": 3.0, "end": 3.5,
                "text": "uh", "stable": ""}))
            await page.wait_for_function(
                "document.querySelectorAll('#box .partial').length > 0")
            sockets[0].send(json.dumps({
                "type": "final", "seq": 4, "utterance": 1, "start": 3.0, "end": 3.5,
                "text": "", "language": "en", "words": []}))
            await page.wait_for_function(
                "document.querySelectorAll('#box .partial').length === 0")
            assert await box.text_content() == "Alpha, bravo, Charlie."
        finally:
            await browser.close()
