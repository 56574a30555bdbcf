"""A browser's WebSocket to /v1/listen and /v1/realtime: the key as Deepgram's and
OpenAI's subprotocols (a browser cannot set headers), in a real headless Chromium."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from tests.conftest import reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CLIP, TOKEN, pcm_chunks

pytestmark = pytest.mark.model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytest.importorskip("playwright")
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

# Sends 100 ms chunks 4x faster than real time and reports what came back. `ready` is
# the message to send first (OpenAI's session.update) and `wrap` turns a chunk into
# what the API takes (Deepgram: the bytes; OpenAI: an append event, base64).
STREAM_JS = """
async ({url, protocols, audio, api, seconds}) => {
  const bytes = Uint8Array.from(atob(audio), c => c.charCodeAt(0));
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const seen = [];
  const closed = new Promise(res => { ws.onclose = e => res(e.code); });
  ws.onmessage = m => seen.push(JSON.parse(m.data));
  const opened = await new Promise(res => { ws.onopen = () => res(true);
                                            ws.onerror = () => res(false); });
  if (!opened) return {opened, code: await closed, protocol: ws.protocol, seen};
  const step = api === "openai" ? 4800 : 3200;  // 100 ms of s16le at 24 / 16 kHz
  if (api === "openai") ws.send(JSON.stringify({type: "session.update", session: {
      type: "transcription", audio: {input: {format: {type: "audio/pcm", rate: 24000},
      transcription: {model: "gpt-4o-transcribe", language: "en"},
      turn_detection: {type: "server_vad"}}}}}));
  for (let i = 0; i < bytes.length; i += step) {
    const chunk = bytes.slice(i, i + step);
    if (api === "openai") {
      let s = ""; for (const b of chunk) s += String.fromCharCode(b);
      ws.send(JSON.stringify({type: "input_audio_buffer.append", audio: btoa(s)}));
    } else ws.send(chunk);
    await new Promise(r => setTimeout(r, 25));
  }
  if (api === "deepgram") ws.send(JSON.stringify({type: "CloseStream"}));
  const until = Date.now() + seconds * 1000;
  while (api === "openai" && Date.now() < until &&
         seen.filter(e => e.type.endsWith("transcription.completed")).length < 4)
    await new Promise(r => setTimeout(r, 100));
  if (api === "openai") ws.close(1000);
  return {opened, code: await closed, protocol: ws.protocol, seen};
}
"""


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-browser")
    yield running
    stop_server(running)


async def _stream(server: RunningServer, path: str, protocols: list[str], api: str,
                  rate: int) -> dict[str, Any]:
    audio = base64.b64encode(b"".join(pcm_chunks(rate=rate))).decode()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page: Page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/")  # the page's own origin
            result: dict[str, Any] = await page.evaluate(STREAM_JS, {
                "url": f"ws://127.0.0.1:{server.port}{path}", "protocols": protocols,
                "audio": audio, "api": api, "seconds": 120})
        finally:
            await browser.close()
    return result


@needs_chromium
async def test_a_browser_streams_to_listen_with_the_key_as_subprotocol(
        compat_server: RunningServer) -> None:
    result = await _stream(compat_server, "/v1/listen?encoding=linear16&sample_rate=16000"
                           "&punctuate=true", ["token", TOKEN], "deepgram", 16000)
    assert result["opened"] and result["protocol"] == "token"
    finals = [e for e in result["seen"] if e.get("type") == "Results" and e["is_final"]]
    said = " ".join(e["channel"]["alternatives"][0]["transcript"] for e in finals)
    assert wer(reference(CLIP), said) <= 0.15, said
    assert result["seen"][-1]["type"] == "Metadata" and result["code"] == 1000


@needs_chromium
async def test_a_browser_streams_to_realtime_with_the_insecure_key_subprotocol(
        compat_server: RunningServer) -> None:
    protocols = ["realtime", f"openai-insecure-api-key.{TOKEN}"]
    result = await _stream(compat_server, "/v1/realtime?intent=transcription", protocols,
                           "openai", 24000)
    assert result["opened"] and result["protocol"] == "realtime"
    kinds = [e["type"] for e in result["seen"]]
    assert kinds[0] == "session.created" and "session.updated" in kinds
    said = " ".join(e["transcript"] for e in result["seen"]
                    if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert wer(reference(CLIP), said) <= 0.15, said


@needs_chromium
async def test_a_wrong_key_in_the_subprotocol_is_refused(compat_server: RunningServer) -> None:
    result = await _stream(compat_server, "/v1/listen?encoding=linear16&sample_rate=16000",
                           ["token", "not-the-key"], "deepgram", 16000)
    assert not result["opened"] and result["code"] == 1006  # a 401 before the upgrade
