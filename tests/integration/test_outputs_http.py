"""YouTube, Zoom, Teams and webhook outputs against local servers that check each platform's
documented rules and answer with its documented errors."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from typing import Any

from captioncast.outputs import build_output
from captioncast.outputs.caption_chunks import utc_millis
from captioncast.outputs.teams import TeamsOutput
from captioncast.outputs.webhook import WebhookOutput
from captioncast.outputs.youtube import YouTubeOutput
from captioncast.outputs.zoom import ZoomOutput
from captioncast.protocol.backoff import Backoff
from tests.integration.http_recorder import Answer, HttpRecorder, Recorded

FAST = Backoff(first_s=0.01, max_s=0.05)
SECRET = "a-webhook-secret-of-some-length"
LONG = ("so we went down to the river early in the morning and the fog was still lying on the "
        "water like a blanket when the first boats came out of the harbour and the gulls "
        "followed them crying all the way past the lighthouse")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$")


def final(seq: int, text: str = "", start: float = 0.0, step: float = 0.3) -> dict[str, Any]:
    text = text or f"caption number {seq}"
    words = [{"word": w, "start": round(start + i * step, 3),
              "end": round(start + i * step + 0.25, 3), "p": 0.9}
             for i, w in enumerate(text.split())]
    return {"type": "final", "seq": seq, "utterance": seq - 1, "text": text, "start": start,
            "end": round(start + len(words) * step, 3), "language": "en", "words": words}


def is_text_plain_utf8(r: Recorded) -> bool:
    return r.headers.get("content-type", "").replace(" ", "").lower() == \
        "text/plain;charset=utf-8"


# -- YouTube ----------------------------------------------------------------------------------


async def test_youtube_posts_timestamped_captions_with_seq_rising_once_per_post() -> None:
    failures = {2: 2}  # the second post fails twice: its retries keep seq=2

    def youtube(r: Recorded) -> Answer:
        assert r.method == "POST" and is_text_plain_utf8(r)
        seq = int(r.query["seq"])
        if failures.get(seq, 0):
            failures[seq] -= 1
            return 503, b"try later"
        return 200, b"2026-12-01T22:00:00.000\n"

    async with HttpRecorder(youtube) as server:
        out = YouTubeOutput(server.url("/closedcaption", "cid=abc-123"), retry=FAST)
        received = 1_800_000_000.0
        out.offer(final(1, "hello there", start=10.0), received_at=received)
        out.offer(final(2, LONG, start=20.0), received_at=received + 20)
        out.offer(final(3, "Ça va très bien", start=60.0), received_at=received + 60)
        await out.close(timeout=10)
    seqs = [int(r.query["seq"]) for r in server.requests]
    assert seqs == [1, 2, 2, 2, 3]
    assert all(r.query["cid"] == "abc-123" for r in server.requests)
    posts = [r.body.decode() for r in server.accepted]
    lines = posts[0].splitlines()
    # The utterance began 0.6 s of audio before its end, which arrived at `received`.
    assert lines == [utc_millis(received - 0.6), "hello there"]
    long_lines = posts[1].splitlines()
    stamps, texts = long_lines[0::2], long_lines[1::2]
    assert len(stamps) > 1 and all(TIMESTAMP.match(s) for s in stamps) and stamps == sorted(stamps)
    assert all(len(row) <= 32 for t in texts for row in t.split("<br>"))
    assert " ".join(t.replace("<br>", " ") for t in texts) == LONG
    assert posts[2].splitlines()[1] == "Ça va très bien"
    status = out.status()
    assert status["sent"] == 3 and status["failed"] == 2 and status["last_error"].startswith(
        "HTTP 503") and status["url"].endswith("/closedcaption")  # the cid stays out of status


# -- Zoom -------------------------------------------------------------------------------------


ZOOM_QUERY = "id=200610693&ns=GZHkEA==&expire=86400&spparams=id%2Cns%2Cexpire&signature=nYtXJq"


async def test_zoom_resumes_seq_retries_every_code_and_waits_for_the_meeting() -> None:
    state = {"started": False, "answers": [400, 400, 403, 500]}

    def zoom(r: Recorded) -> Answer:
        assert r.raw_query.startswith(ZOOM_QUERY)  # the signed part, byte for byte
        if r.method == "GET":
            assert r.path == "/closedcaption/seq"
            return 200, b"41"
        assert r.method == "POST" and r.path == "/closedcaption" and is_text_plain_utf8(r)
        assert r.query["lang"] == "en-US"
        if state["answers"]:
            code = state["answers"].pop(0)
            return code, {400: b"Bad request. The meeting has not started.",
                          403: b"Unauthorized."}.get(code, b"")
        return 200, b""

    async with HttpRecorder(zoom) as server:
        out = build_output({"kind": "zoom", "url": server.url("/closedcaption", ZOOM_QUERY)})
        assert isinstance(out, ZoomOutput)
        out.retry = Backoff(first_s=0.05, max_s=0.05)
        out.offer(final(1, "first line"))
        await asyncio.sleep(0.03)
        assert out.status()["state"] == "waiting"
        assert "meeting has not started" in out.status()["last_error"]
        for seq in (2, 3):
            out.offer(final(seq))
        await out.close(timeout=10)
    posts = [r for r in server.requests if r.method == "POST"]
    assert [int(r.query["seq"]) for r in posts] == [42] * 5 + [43, 44]
    assert [r.body.decode() for r in server.accepted[1:]] == [
        "first line\n", "caption number 2\n", "caption number 3\n"]
    assert out.status()["sent"] == 3 and out.status()["seq"] == 44


async def test_zoom_maps_the_language_and_takes_an_explicit_one() -> None:
    async with HttpRecorder() as server:
        out = ZoomOutput(server.url("/closedcaption", "id=1"), retry=FAST)
        out.offer({**final(1), "language": "ja"})
        await out.close(timeout=5)
        fixed = ZoomOutput(server.url("/closedcaption", "id=1"), lang="de-DE", retry=FAST)
        fixed.offer(final(2))
        await fixed.close(timeout=5)
    posts = [r for r in server.requests if r.method == "POST"]
    assert [r.query["lang"] for r in posts] == ["jp-JP", "de-DE"]


# -- Teams ------------------------------------------------------------------------------------


async def test_teams_posts_finals_as_lines_of_80_to_120_characters() -> None:
    answers = [404, 200]

    def teams(r: Recorded) -> Answer:
        assert r.method == "POST" and r.path == "/cartcaption" and is_text_plain_utf8(r)
        assert r.query["token"] == "tkb8kvx" and r.query["lang"] == "en-us"
        return (answers.pop(0) if answers else 200), b""

    async with HttpRecorder(teams) as server:
        out = TeamsOutput(server.url("/cartcaption", "meetingid=%7b%22tId%22%7d&token=tkb8kvx"),
                          retry=FAST)
        out.offer(final(1, LONG))
        out.offer(final(2, "Yes."))
        out.offer({**final(3), "text": ""})  # nothing to show: Teams gets no empty line
        await out.close(timeout=5)
    posts = server.accepted
    assert [int(r.query["seq"]) for r in server.requests] == [1, 1, 2]
    lines = posts[0].body.decode().splitlines()
    assert len(lines) >= 2 and all(len(line) <= 120 for line in lines)
    assert all(len(line) >= 80 for line in lines[:-1])
    assert " ".join(lines) == LONG
    assert posts[1].body == b"Yes.\n"
    assert out.status()["skipped"] == 1 and out.status()["sent"] == 2


# -- webhook ----------------------------------------------------------------------------------


def signed(r: Recorded) -> bool:
    want = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(r.headers.get("x-captioncast-signature", ""), want)


async def test_webhook_signs_each_final_and_survives_an_endpoint_down_then_up() -> None:
    def receiver(r: Recorded) -> Answer:
        assert r.headers["content-type"] == "application/json" and signed(r)
        return 204, b""

    server = HttpRecorder(receiver)
    await server.start()
    out = WebhookOutput(server.url("/hook"), secret=SECRET,
                        retry=Backoff(first_s=0.02, max_s=0.1))
    out.offer(final(1))
    await server.wait_accepted(1)
    await server.stop()  # down: connections refused
    for seq in range(2, 7):
        out.offer(final(seq))
    await asyncio.sleep(0.3)
    status = out.status()
    assert status["state"] == "retrying" and status["failed"] >= 1 and status["queued"] == 5
    assert "Connect" in status["last_error"]
    await server.start()  # up again on the same port
    await server.wait_accepted(6)
    await out.close(timeout=5)
    await server.stop()
    bodies = [json.loads(r.body) for r in server.accepted]
    assert [b["seq"] for b in bodies] == [1, 2, 3, 4, 5, 6]
    assert bodies[0] == final(1)  # the protocol's final event, as it was
    assert [r.headers["x-captioncast-delivery"] for r in server.accepted] == [
        f"{out.id}-{n}" for n in range(1, 7)]
    assert out.status()["sent"] == 6 and out.status()["dropped"] == 0


async def test_webhook_404_shows_in_status_and_recovers_without_losing_finals() -> None:
    route = {"ready": False}

    def receiver(r: Recorded) -> Answer:
        return (200, b"") if route["ready"] else (404, b"no such hook")

    async with HttpRecorder(receiver) as server:
        out = build_output({"kind": "webhook", "url": server.url("/hook"), "secret": SECRET,
                            "queue_size": 10})
        out.retry = FAST
        for seq in range(1, 4):
            out.offer(final(seq))
        await asyncio.sleep(0.2)
        assert out.status()["last_error"] == "HTTP 404: no such hook"
        assert out.status()["sent"] == 0
        route["ready"] = True
        await server.wait_accepted(3)
        await out.close(timeout=5)
    assert [json.loads(r.body)["seq"] for r in server.accepted] == [1, 2, 3]
    assert out.status()["last_success_at"] >= out.status()["last_error_at"]


async def test_a_slow_endpoint_never_slows_the_caller() -> None:
    async def slow(_: Recorded) -> Answer:
        await asyncio.sleep(1)
        return 200, b""

    async with HttpRecorder(slow) as server:
        out = WebhookOutput(server.url("/hook"), secret=SECRET, retry=FAST, timeout_s=0.2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for seq in range(1, 201):
            out.offer(final(seq))
        assert loop.time() - began < 0.2
        await asyncio.sleep(0.5)
        assert out.status()["last_error"].startswith("timeout")
        await out.close(timeout=0.1)
    assert out.status()["dropped"] == 200
