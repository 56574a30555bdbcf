"""Caption outputs in the real server: the routes, a real recording to signed webhooks (one of
them broken, then back), status in /v1/channels and /metrics, and `watch`/`stream --obs`."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from captioncast.cli import main
from captioncast.outputs.webhook import SIGNATURE_HEADER, verify
from captioncast.transport.security import SecurityOptions
from captioncast_client.access import Access
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import speech_path
from tests.integration.conftest import start_server, stop_server
from tests.integration.http_recorder import Answer, HttpRecorder, Recorded
from tests.integration.inprocess import InProcessServer, held_server
from tests.integration.obs_server import FakeObs

pytestmark = pytest.mark.model

TOKEN = "outputs-test-token"
SECRET = "webhook-secret-0123456789"
RECORDING = "libri_dev_2412-153948-0000"  # 12 s: several finals


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with held_server(security=SecurityOptions(tokens=(TOKEN,))) as running:
        yield running


def _http(server: InProcessServer, method: str, path: str, body: object = None,
          token: str | None = TOKEN) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data,
                                     method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    text = raw.decode()
    try:
        return status, json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return status, text


async def _call(server: InProcessServer, method: str, path: str, body: object = None,
                token: str | None = TOKEN) -> tuple[int, Any]:
    return await asyncio.to_thread(_http, server, method, path, body, token)


def _audio() -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(RECORDING))), 3200), silence(1.0)]


async def _stream(server: InProcessServer, channel: str) -> list[dict[str, Any]]:
    result = await stream(stream_url(server.url, channel=channel), _audio(), realtime=False,
                          access=Access(token=TOKEN))
    finals = [f for f in result.finals if f["text"].strip()]
    assert len(finals) >= 2, result.finals
    return list(result.finals)


async def test_routes_answer_201_400_404_and_want_the_token(server: InProcessServer) -> None:
    channel = f"routes-{secrets.token_hex(3)}"
    path = f"/v1/channels/{channel}/outputs"
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": SECRET}
    assert (await _call(server, "POST", path, hook, token=None))[0] == 401
    assert (await _call(server, "POST", path, hook, token="wrong"))[0] == 401
    assert (await _call(server, "GET", path, token=None))[0] == 401
    for bad, message in [({"kind": "fax"}, "'kind' must be one of"),
                         ({"kind": "webhook", "url": "http://h/x"}, "'secret' is required"),
                         ({**hook, "sekret": "x"}, "unknown setting(s) sekret"),
                         (b"{not json", "JSON")]:
        status, body = await _call(server, "POST", path, bad)
        assert status == 400 and message in body["message"], (bad, body)
    status, body = await _call(server, "POST", "/v1/channels/bad%20name!/outputs", hook)
    assert status == 400, body

    status, created = await _call(server, "POST", path, {**hook, "id": "notes"})
    assert status == 201 and created["id"] == "notes" and created["state"] == "idle", created
    assert created["url"] == "http://127.0.0.1:9"  # a webhook's origin only: no secret path
    status, again = await _call(server, "POST", path, {**hook, "id": "notes"})
    assert status == 400 and "already has an output 'notes'" in again["message"]
    status, generated = await _call(server, "POST", path, {"kind": "obs"})
    assert status == 201 and generated["id"]

    status, listed = await _call(server, "GET", path)
    assert status == 200 and [o["id"] for o in listed["outputs"]] == ["notes", generated["id"]]
    # Outputs of a channel nobody has spoken on yet are in the channel list too.
    _, channels = await _call(server, "GET", "/v1/channels")
    entry = next(c for c in channels["channels"] if c["channel"] == channel)
    assert [o["kind"] for o in entry["outputs"]] == ["webhook", "obs"] and not entry["live"]

    assert (await _call(server, "DELETE", f"{path}/nope"))[0] == 404
    assert (await _call(server, "DELETE", f"{path}/notes", token=None))[0] == 401
    assert (await _call(server, "DELETE", f"{path}/notes"))[0] == 204
    assert (await _call(server, "DELETE", f"{path}/notes"))[0] == 404
    status, body = await _call(server, "PUT", path, hook)
    assert status == 405, body
    assert (await _call(server, "DELETE", f"{path}/{generated['id']}"))[0] == 204
    assert (await _call(server, "GET", path))[1]["outputs"] == []


async def test_every_final_to_signed_webhooks_in_order_a_broken_one_recovers(
        server: InProcessServer) -> None:
    channel = f"hooks-{secrets.token_hex(3)}"
    path = f"/v1/channels/{channel}/outputs"
    broken = True

    def good(request: Recorded) -> Answer:
        signed = verify(request.body, SECRET, request.headers[SIGNATURE_HEADER.lower()])
        return (200, b"") if signed else (401, b"bad signature")

    def flaky(request: Recorded) -> Answer:
        return (404, b"no such hook") if broken else good(request)

    async with HttpRecorder(good) as receiver, HttpRecorder(flaky) as down:
        for output_id, recorder in (("good", receiver), ("flaky", down)):
            spec = {"kind": "webhook", "id": output_id, "secret": SECRET,
                    "url": recorder.url("/hook", "key=k")}
            assert (await _call(server, "POST", path, spec))[0] == 201

        finals = await _stream(server, channel)
        delivered = await receiver.wait_accepted(len(finals), timeout=30)
        bodies = [json.loads(r.body) for r in delivered]
        assert [b["text"] for b in bodies] == [f["text"] for f in finals]
        assert all(b["type"] == "final" for b in bodies)
        seqs = [b["seq"] for b in bodies]
        assert seqs == sorted(set(seqs)), seqs  # the channel's seq, rising: in order, once
        assert len(receiver.requests) == len(finals)  # every signature checked out

        # The broken one says so, and keeps every final queued meanwhile.
        _, listed = await _call(server, "GET", path)
        flaky_status = next(o for o in listed["outputs"] if o["id"] == "flaky")
        assert flaky_status["state"] == "retrying", flaky_status
        assert flaky_status["last_error"].startswith("HTTP 404"), flaky_status
        assert flaky_status["failed"] >= 1 and flaky_status["sent"] == 0
        assert flaky_status["queued"] == len(finals) and flaky_status["dropped"] == 0
        _, channels = await _call(server, "GET", "/v1/channels")
        entry = next(c for c in channels["channels"] if c["channel"] == channel)
        assert {o["id"]: o["sent"] for o in entry["outputs"]} == {"good": len(finals),
                                                                "flaky": 0}

        broken = False  # the endpoint is back: the queue drains, nothing lost, in order
        recovered = await down.wait_accepted(len(finals), timeout=70)
        assert [json.loads(r.body)["seq"] for r in recovered] == seqs
        _, listed = await _call(server, "GET", path)
        flaky_status = next(o for o in listed["outputs"] if o["id"] == "flaky")
        assert flaky_status["sent"] == len(finals) and flaky_status["queued"] == 0
        assert flaky_status["dropped"] == 0 and flaky_status["state"] == "idle"

        _, metrics = await _call(server, "GET", "/metrics")
        labels = f'channel="{channel}",kind="webhook",output="flaky"'
        assert f"captioncast_output_sent_total{{{labels}}} {float(len(finals))}" in metrics
        assert f"captioncast_output_queued{{{labels}}} 0.0" in metrics
        assert f"captioncast_output_failed_total{{{labels}}}" in metrics
        for output_id in ("good", "flaky"):
            assert (await _call(server, "DELETE", f"{path}/{output_id}"))[0] == 204
        _, metrics = await _call(server, "GET", "/metrics")
        assert labels not in metrics


async def test_watch_and_stream_send_their_finals_to_obs(server: InProcessServer) -> None:
    channel = f"obs-{secrets.token_hex(3)}"
    async with FakeObs(password="obs-pass") as watch_obs, FakeObs(password="obs-pass") as own:
        _, health = await _call(server, "GET", "/healthz")
        watcher = asyncio.create_task(asyncio.to_thread(main, [
            "watch", channel, "--server", server.url, "--token", TOKEN,
            "--obs", watch_obs.url, "--obs-password", "obs-pass"]))
        for _ in range(200):  # until the watcher is subscribed (not listed before a speaker)
            _, now = await _call(server, "GET", "/healthz")
            if now["viewers"] > health["viewers"]:
                break
            await asyncio.sleep(0.05)
        streamer = await asyncio.to_thread(main, [
            "stream", str(speech_path(RECORDING)), "--fast", "--channel", channel,
            "--server", server.url, "--token", TOKEN, "--obs", own.url,
            "--obs-password", "obs-pass", "--json"])
        assert streamer == 0
        assert await asyncio.wait_for(watcher, 60) == 0
        for obs in (watch_obs, own):
            words = " ".join(c.text for c in obs.captions).lower()
            assert obs.identified >= 1 and obs.auth_failures == 0
            # Every word of the reader's opening sentence reached OBS as a caption.
            for word in ("reader", "excuse", "antecedents"):
                assert word in words, words
            assert all(len(row) <= 32 for c in obs.captions for row in c.text.split("\n"))


async def test_serve_output_and_config_outputs_are_drained_at_shutdown(tmp_path: Path) -> None:
    """`captioncast serve --output` and `[[outputs]]` in --config: SIGTERM right after the
    stream still delivers every final a slow receiver had not taken yet."""
    channel = "shutdown-show"

    async def slow(request: Recorded) -> Answer:
        await asyncio.sleep(0.2)
        signed = verify(request.body, SECRET, request.headers[SIGNATURE_HEADER.lower()])
        return (200, b"") if signed else (401, b"bad signature")

    async with HttpRecorder(slow) as flag_hook, HttpRecorder(slow) as file_hook:
        toml = tmp_path / "captioncast.toml"
        toml.write_text(f'[[outputs]]\nchannel = "{channel}"\nkind = "webhook"\n'
                        f'url = "{file_hook.url("/file")}"\nsecret = "{SECRET}"\n')
        running = await asyncio.to_thread(
            start_server, "--config", str(toml), "--output",
            f"{channel}=webhook:url={flag_hook.url('/flag')},secret={SECRET}",
            name="outputs")
        try:
            result = await stream(stream_url(running.url, channel=channel), _audio(),
                                  realtime=False)
            running.process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(running.process.wait, 30) == 0
        finally:
            if running.process.poll() is None:
                await asyncio.to_thread(stop_server, running)
        texts = [f["text"] for f in result.finals]
        assert len(texts) >= 2
        for hook in (flag_hook, file_hook):
            assert [json.loads(r.body)["text"] for r in hook.accepted] == texts
