"""The captioning page `/` and the reader page `/watch` in a real headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import secrets
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import srt
from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright
from whisper_normalizer.english import EnglishTextNormalizer

from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import SPEECH, speech_path
from tests.integration.conftest import ARTIFACTS, RunningServer, start_server, stop_server

pytestmark = pytest.mark.model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
DEADLINE_MS = 120_000  # for what a page must show: a deadline for failure, not a wait
# Three utterances with pauses between them, so that the cut falls between finals.
TALK = ["libri_dev_2412-153948-0000", "libri_test_61-70968-0000", "libri_dev_1272-128104-0000"]
PAUSE_S = 1.2
# The page streams what Chromium's fake microphone plays (resampled to 48 kHz and back):
# its WER may exceed the same audio streamed by the Python client by this much.
WER_MARGIN = 0.10
WER_BOUND = 0.25  # and never more than this against the reference transcript
TAB_WER_BOUND = 0.35
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def _reference() -> str:
    with (SPEECH / "manifest.tsv").open() as f:
        rows = {r["id"]: r["transcript"] for r in csv.DictReader(f, delimiter="\t")}
    return " ".join(rows[name] for name in TALK)


@pytest.fixture(scope="module")
def talk_wav() -> tuple[Path, float]:
    """The talk as one 16 kHz WAV, for Chromium's fake microphone; and its duration."""
    pause = np.zeros(int(PAUSE_S * 16000), dtype=np.int16)
    parts: list[np.ndarray] = []
    for name in TALK:
        with wave.open(str(speech_path(name))) as w:
            parts += [np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), pause]
    pcm = np.concatenate(parts)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "web-talk.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path, len(pcm) / 16000


def _wer(hypothesis: str) -> float:
    normalize = EnglishTextNormalizer()
    return float(jiwer.wer(normalize(_reference()), normalize(hypothesis)))


async def _launch(p: object, *args: str) -> Browser:
    return await p.chromium.launch(  # type: ignore[attr-defined, no-any-return]
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required", *args])


async def _finals(page: Page) -> list[str]:
    return list(await page.locator("#finals li .text").all_text_contents())


async def _screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / name))
    shot = DOCS / name
    if not shot.exists():  # delete it to refresh the README's picture
        await page.screenshot(path=str(shot))


@needs_chromium
async def test_the_page_captions_a_microphone_through_a_drop_and_the_reader_follows(
    server: RunningServer, talk_wav: tuple[Path, float],
) -> None:
    wav, duration = talk_wav
    channel = f"class-{secrets.token_hex(3)}"
    base = f"http://127.0.0.1:{server.port}"
    async with async_playwright() as p:
        browser = await _launch(p, "--use-fake-ui-for-media-stream",
                                "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-audio-capture={wav}%noloop")
        try:
            # bypass_csp: the pages forbid eval, which Playwright's string predicates use
            speaker = await browser.new_context(viewport={"width": 1100, "height": 760},
                                                bypass_csp=True, accept_downloads=True)
            page = await speaker.new_page()
            # The page's audio socket goes through a proxy in the test, so that the test
            # can cut the network under it the way a dropped Wi-Fi would.
            network: dict[str, list[WebSocketRoute]] = {"routes": []}

            async def proxy(ws: WebSocketRoute) -> None:
                ws.connect_to_server()
                network["routes"].append(ws)

            await page.route_web_socket("**/v1/stream*", proxy)
            await page.goto(f"{base}/?channel={channel}")
            await page.wait_for_function(
                "document.querySelector('#health').textContent.includes('model')")
            await page.evaluate("""() => {
                window.states = [];
                new MutationObserver(() => window.states.push(document.body.dataset.state))
                    .observe(document.body, {attributes: true, attributeFilter: ['data-state']});
            }""")

            reader_context = await browser.new_context(viewport={"width": 390, "height": 760},
                                                       bypass_csp=True)
            reader = await reader_context.new_page()
            await reader.goto(f"{base}/watch?channel={channel}")
            await reader.wait_for_function("document.body.dataset.state === 'open'")

            await page.click("#start")
            started = time.monotonic()
            await page.wait_for_function("document.body.dataset.state === 'live'")
            # the first final is in; the network drops while the second sentence is spoken
            await page.wait_for_function("document.querySelectorAll('#finals li').length >= 1",
                                         timeout=DEADLINE_MS)
            for route in network["routes"]:
                await route.close(code=4000, reason="network down")
            await page.wait_for_function("document.body.dataset.state === 'reconnecting'")
            await page.wait_for_function("document.body.dataset.state === 'live'",
                                         timeout=DEADLINE_MS)
            assert "resumed at" in (await page.text_content("#state") or "")
            await asyncio.sleep(max(0.0, duration + 0.5 - (time.monotonic() - started)))
            await _screenshot(page, "web-capture.png")
            await page.click("#stop")
            await page.wait_for_function("document.body.dataset.state === 'ended'",
                                         timeout=DEADLINE_MS)
            states = await page.evaluate("window.states")
            assert "reconnecting" in states and "refused" not in states, states

            shown = await _finals(page)
            finals = await page.evaluate("captioncast.transcript.finals")
            assert [f["text"] for f in finals] == shown
            # nothing lost and nothing twice: one final per utterance, in order, none missing
            utterances = [f["utterance"] for f in finals]
            assert utterances == sorted(set(utterances)), utterances
            spoken = await stream(stream_url(server.url),
                                  [*rechunk(decode_pcm(str(wav)), 3200), silence(1.0)])
            page_wer, client_wer = _wer(" ".join(shown)), _wer(spoken.text)
            (ARTIFACTS / "web-pages-wer.txt").write_text(
                f"page {page_wer:.3f} python client {client_wer:.3f}\n")
            assert page_wer <= min(WER_BOUND, client_wer + WER_MARGIN), (shown, spoken.text)

            # the reader page shows the same finals, in a live region for screen readers
            await reader.wait_for_function(
                f"document.querySelectorAll('#finals li').length >= {len(shown)}",
                timeout=DEADLINE_MS)
            assert await _finals(reader) == shown
            log = reader.locator("#finals")
            assert await log.get_attribute("role") == "log"
            assert await log.get_attribute("aria-live") == "polite"
            await _screenshot(reader, "web-watch.png")

            async with page.expect_download() as downloading:
                await page.click("[data-download=srt]")
            srt_path = await (await downloading.value).path()
            cues = list(srt.parse(Path(srt_path).read_text()))
            assert [c.content for c in cues] == shown
            assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
            assert cues[-1].end.total_seconds() <= duration + 1
        finally:
            await browser.close()


@needs_chromium
async def test_the_page_says_what_went_wrong(talk_wav: tuple[Path, float]) -> None:
    """A denied microphone and a bad token each get a message that says what to do."""
    token = secrets.token_hex(8)
    guarded = start_server("--token", token, name="web-token")
    base = f"http://127.0.0.1:{guarded.port}"
    try:
        async with async_playwright() as p:
            # no --use-fake-ui-for-media-stream: the permission prompt is refused
            browser = await _launch(p, "--use-fake-device-for-media-stream")
            try:
                context = await browser.new_context(bypass_csp=True)
                page = await context.new_page()
                # the page loads without the token; typed into its field, the token
                # opens the server's figures
                await page.goto(f"{base}/")
                await page.wait_for_function(
                    "document.querySelector('#health').textContent.startsWith('ready')")
                assert "model" not in (await page.text_content("#health") or "")
                await page.fill("#token", token)
                await page.dispatch_event("#token", "change")
                await page.wait_for_function(
                    "document.querySelector('#health').textContent.includes('model')")
                await page.click("#start")
                await page.wait_for_function("!document.querySelector('#message').hidden")
                assert "permission was denied" in (await page.text_content("#message") or "")
            finally:
                await browser.close()
            browser = await _launch(p, "--use-fake-ui-for-media-stream",
                                    "--use-fake-device-for-media-stream",
                                    f"--use-file-for-fake-audio-capture={talk_wav[0]}%noloop")
            try:
                page = await (await browser.new_context(bypass_csp=True)).new_page()
                await page.goto(f"{base}/?token={token}")
                await page.fill("#token", "not-the-token")
                await page.click("#start")
                await page.wait_for_function("document.body.dataset.state === 'refused'")
                assert "refused the token" in (await page.text_content("#message") or "")
            finally:
                await browser.close()
    finally:
        stop_server(guarded)


async def _text(page: Page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


@needs_chromium
async def test_every_page_says_what_it_waits_for_before_anyone_speaks(
        server: RunningServer) -> None:
    """The first minute on each page: the captioning page before Start, a reader and an
    overlay on a channel nobody speaks on, the channel list empty and not; a favicon, and
    no request that fails. Their pictures are the README's (docs/web-empty-*.png)."""
    channel = f"first-{secrets.token_hex(3)}"
    base = f"http://127.0.0.1:{server.port}"
    async with async_playwright() as p:
        browser = await _launch(p)
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 620},
                                                bypass_csp=True)
            failed: list[str] = []
            context.on("response", lambda r: failed.append(f"{r.status} {r.url}")
                       if r.status >= 400 else None)
            page = await context.new_page()

            await page.goto(f"{base}/?channel={channel}")
            await page.wait_for_function(
                "document.querySelector('#health').textContent.includes('model')")
            assert await page.is_visible("#empty")
            empty = await _text(page, "#empty")
            assert "Captions appear here. Press Start and speak" in empty, empty
            assert "Share the channel" in empty, empty
            await _screenshot(page, "web-empty-capture.png")

            # a reader on a channel nobody has spoken on: it says so, and how to speak on it
            await page.goto(f"{base}/watch?channel={channel}")
            await page.wait_for_function(
                "document.querySelector('#state').textContent.includes('nobody is speaking')",
                timeout=DEADLINE_MS)
            assert await _text(page, "#state") == f"{channel}: nobody is speaking yet"
            empty = await _text(page, "#empty")
            assert f"Nobody is speaking on “{channel}” yet" in empty, empty
            assert f"captioncast mic --channel {channel}" in empty, empty
            link = await page.get_attribute("#empty a", "href")
            assert link is not None and link.endswith(f"/?channel={channel}"), link
            await _screenshot(page, "web-empty-watch.png")

            # the overlay in a browser tab: a hint and a preview of where captions go
            await page.goto(f"{base}/overlay?channel={channel}&lines=2&size=40")
            await page.wait_for_function("document.body.dataset.state === 'open'",
                                         timeout=DEADLINE_MS)
            assert await page.is_visible("#hint")
            hint = await _text(page, "#hint")
            assert f"overlay of channel {channel}" in hint and "Browser Source" in hint, hint
            sample = await page.locator("#box .line.sample").all_text_contents()
            assert sample and f"Captions for “{channel}” appear here" in " ".join(sample)
            await _screenshot(page, "web-empty-overlay.png")
            # ... and in OBS (its browser source has window.obsstudio): transparent, no hint
            obs = await context.new_page()
            await obs.add_init_script("window.obsstudio = {pluginVersion: '30.2.3'}")
            await obs.goto(f"{base}/overlay?channel={channel}")
            await obs.wait_for_function("document.body.dataset.state === 'open'",
                                        timeout=DEADLINE_MS)
            assert not await obs.is_visible("#hint")
            assert await obs.locator("#box .line").count() == 0
            for element in ("document.documentElement", "document.body"):
                background = await obs.evaluate(
                    f"getComputedStyle({element}).backgroundColor + "
                    f"getComputedStyle({element}).backgroundImage")
                assert background == "rgba(0, 0, 0, 0)none", (element, background)

            # viewing never made the channel
            listed = await page.evaluate("fetch('/v1/channels').then((r) => r.json())")
            assert channel not in [c["channel"] for c in listed["channels"]]

            # the channel list, empty (as on a fresh server) ...
            lister = await context.new_page()
            await lister.route("**/v1/channels", lambda route: route.fulfill(
                json={"channels": []}))
            await lister.goto(f"{base}/watch")
            await lister.wait_for_selector("#none:not([hidden])")
            none = await _text(lister, "#none")
            assert none.startswith("No channels yet. A channel starts when someone speaks"), none
            await _screenshot(lister, "web-empty-channels.png")

            # ... and once someone has spoken: ended, with when; then the reader says so
            audio = [*rechunk(decode_pcm(str(speech_path("whisper_jfk"))), 3200), silence(1.0)]
            spoken = await stream(stream_url(server.url, channel=channel), audio)
            assert spoken.finals
            await page.goto(f"{base}/watch")
            row = page.locator("#channels li", has_text=channel)
            await row.wait_for()
            assert (await row.text_content() or "").startswith(f"{channel} ended, last caption")
            await _screenshot(page, "web-channels.png")
            await page.goto(f"{base}/watch?channel={channel}")
            await page.wait_for_function(
                "document.querySelector('#state').textContent.includes('nobody is speaking now')",
                timeout=DEADLINE_MS)
            assert "(last caption" in await _text(page, "#state")
            assert not await page.is_visible("#empty")  # the finals are there instead
            assert await _finals(page)
            assert failed == [], failed  # no favicon 404, nothing else failed
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """An X display: headless Chromium captures a tab's audio as silence, a headed one
    (here on Xvfb) captures what the tab plays."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("needs Xvfb (apt install xvfb) for a headed Chromium")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    process = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "1280x800x24",
                                "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.1)
    yield f":{number}"
    process.terminate()
    process.wait(10)


@needs_chromium
async def test_the_page_captions_the_audio_of_another_tab(
    server: RunningServer, talk_wav: tuple[Path, float], display: str,
) -> None:
    wav, duration = talk_wav
    base = f"http://127.0.0.1:{server.port}"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=False, env={**os.environ, "DISPLAY": display},
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required",
                  # the share picker chooses the tab titled "Lecture" and says yes
                  "--auto-select-tab-capture-source-by-title=Lecture",
                  "--auto-accept-this-tab-capture"])
        try:
            context = await browser.new_context(bypass_csp=True)
            lecture = await context.new_page()
            # a recorded lecture playing in a tab of its own (served by the test)
            await lecture.route("**/lecture", lambda route: route.fulfill(
                content_type="text/html",
                body="<title>Lecture</title><audio src='talk.wav' autoplay></audio>"))
            await lecture.route("**/talk.wav", lambda route: route.fulfill(
                path=str(wav), content_type="audio/wav"))
            page = await context.new_page()
            await page.goto(f"{base}/")
            await page.check("input[value=tab]")
            await lecture.goto(f"{base}/lecture")
            await page.click("#start")
            await page.wait_for_function("document.body.dataset.state === 'live'")
            await asyncio.sleep(duration + 0.5)
            await page.click("#stop")
            await page.wait_for_function("document.body.dataset.state === 'ended'",
                                         timeout=DEADLINE_MS)
            shown = await _finals(page)
            # the capture starts a moment after the lecture does: its first words may be
            # missed, so the bound is looser than the microphone's
            assert _wer(" ".join(shown)) <= TAB_WER_BOUND, shown
        finally:
            await browser.close()
