"""The store wired into the server (fanout/archive.py, transcripts.py): options, durable
fan-out, numbering across restarts, replay, exports, listing, deletion, retention; in
process, on SQLite, with no model."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import srt
from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast import config
from captioncast.cli import build_parser
from captioncast.fanout.archive import Archive
from captioncast.options import ServerOptions, StoreOptions
from captioncast.protocol.captions import split_final
from captioncast.protocol.events import Event, Final, Partial, Word
from captioncast.store import Mark, SqliteStore, StoredFinal, StoreError
from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.http_exchange import Body, HttpRequest
from captioncast.transport.responses import HttpResponse
from captioncast.transport.routes import Routes
from captioncast.transport.server_context import ServerContext


def _store_options(argv: list[str], environ: dict[str, str] | None = None) -> StoreOptions:
    args = build_parser(environ or {}).parse_args(["serve", *argv])
    return config.from_arguments(args).store


def test_store_options_flags_and_environment(tmp_path: Path) -> None:
    home = {"HOME": "/home/ann"}
    assert _store_options([], home).where == str(Path("/home/ann/.local/share/captioncast"))
    assert _store_options([], {"XDG_DATA_HOME": "/xdg"}).where == str(Path("/xdg/captioncast"))
    assert _store_options(["--data-dir", str(tmp_path)]).where == str(tmp_path)
    assert _store_options([], {"CAPTIONCAST_DATA_DIR": "/srv/cc"}).where == "/srv/cc"
    url = "postgresql://cc@db/cc"
    assert _store_options(["--store", url]).where == url
    assert _store_options([], {"CAPTIONCAST_STORE": ":memory:"}).where == ":memory:"
    assert _store_options(["--no-store", "--store", url]).where is None
    assert _store_options([], {"CAPTIONCAST_NO_STORE": "1"}).where is None
    assert _store_options(["--retention-days", "30"]).retention_days == 30
    assert _store_options([], {"CAPTIONCAST_RETENTION_DAYS": "7"}).retention_days == 7
    options = config.from_arguments(build_parser({}).parse_args(
        ["serve", "--set", "store.durable_wait_s=0.1"]))
    assert options.store.durable_wait_s == 0.1
    with pytest.raises(config.ConfigError, match="--retention-days"):
        config.from_arguments(build_parser({}).parse_args(
            ["serve", "--set", "store.retention_days=3"]))


def test_cue_text_is_the_finals_own_text() -> None:
    tokens = [" The", " old", " flower", "-fattened", " bees", " were", " buzzing", " around",
              " the", " garden", " all", " afternoon", " long", " while", " we", " sat",
              " quietly", " under", " the", " tree", " reading", " (loudly)."]
    text = "".join(tokens).strip()
    words = tuple(Word(t, i * 0.5, i * 0.5 + 0.4, 0.9) for i, t in enumerate(tokens))
    cues = split_final(Final(1, utterance=0, start=0.0, end=11.0, text=text, language="en",
                             words=words))
    assert len(cues) > 1
    assert " ".join(c.text.replace("\n", " ") for c in cues) == text
    assert "flower-fattened" in cues[0].text
    assert [c.start for c in cues] == sorted(c.start for c in cues)


def _final(seq: int, utterance: int, start: float, text: str) -> Final:
    return Final(seq, utterance=utterance, start=start, end=start + 1.0, text=text,
                 language="en", words=(Word(text, start, start + 1.0, 0.9),))


def _partial(seq: int, utterance: int, text: str) -> Partial:
    return Partial(seq, utterance=utterance, start=0.0, end=0.5, text=text, stable="")


class _Server:
    """A context with an archive on one SQLite file, and its routes."""

    def __init__(self, path: Path | str, **store: object) -> None:
        options = ServerOptions(store=StoreOptions(where=str(path), **store))  # type: ignore[arg-type]
        self.ctx = ServerContext(options)
        self.routes = Routes(self.ctx, TranscribeRoutes(self.ctx, options.transcribe))
        self.archive = Archive.open(options.store)

    async def __aenter__(self) -> _Server:
        self.ctx.attach_store(await self.archive.__aenter__())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.archive.__aexit__()

    async def get(self, path: str) -> tuple[int, bytes]:
        answer = await self.routes.answer(Request(path, Headers()))
        assert answer is not None and isinstance(answer.body, bytes)
        return answer.status, answer.body

    async def delete(self, path: str) -> HttpResponse | None:
        request = HttpRequest("DELETE", path, path, [], Headers(), Body(None, 0))  # type: ignore[arg-type]
        return await self.routes.answer_delete(request)

    async def speak(self, channel: str, session: str, events: list[Event]) -> None:
        hub = self.ctx.channels
        await hub.prepare(channel)
        hub.attach_speaker(channel, session)
        for event in events:
            committed = hub.publish(channel, event)
            if committed is not None:
                assert await committed
        hub.detach_speaker(channel, session, None)
        assert await self.archive.store.flush(5)


async def test_finals_are_stored_before_viewers_get_them(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        hub = server.ctx.channels
        hub.attach_speaker("talk", "s1")
        viewer = hub.subscribe("talk", None)
        gate = asyncio.Event()
        store = server.archive.store.store
        write = store.write

        def slow_write(items: list[StoredFinal | Mark]) -> None:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)
            write(items)

        loop = asyncio.get_running_loop()
        store.write = slow_write  # type: ignore[method-assign]
        hub.publish("talk", _final(1, 0, 0.0, "one"))
        hub.publish("talk", _partial(2, 1, "tw"))  # behind the final, not before it
        await asyncio.sleep(0.05)
        assert len(viewer.backlog) == 0
        gate.set()
        events: list[Event] = []
        while len(events) < 2:
            events += await asyncio.wait_for(viewer.next_events(), 2)
        assert [type(e).__name__ for e in events] == ["Final", "Partial"]
        assert [f.text for f in await server.archive.finals("talk")] == ["one"]


async def test_a_slow_store_delays_captions_by_its_bound_only(tmp_path: Path) -> None:
    async with _Server(tmp_path, durable_wait_s=0.05) as server:
        hub = server.ctx.channels
        hub.attach_speaker("talk", "s1")
        viewer = hub.subscribe("talk", None)
        server.archive.store.store.write = lambda items: time.sleep(0.5)  # type: ignore[method-assign]
        started = time.monotonic()
        committed = hub.publish("talk", _final(1, 0, 0.0, "one"))
        assert committed is not None and await committed is False
        events = await asyncio.wait_for(viewer.next_events(), 2)
        assert events and time.monotonic() - started < 0.4
        assert server.archive.late == 1


async def test_numbering_continues_across_restarts_and_since_replays_the_store(
        tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", [_final(1, 0, 0.0, "one"), _partial(2, 1, "tw"),
                                          _final(3, 1, 1.0, "two")])
    async with _Server(tmp_path) as server:  # a new process on the same store
        hub = server.ctx.channels
        await server.speak("talk", "s2", [_final(1, 0, 0.0, "three")])
        stored = await server.archive.finals("talk")
        assert [(f.seq, f.utterance, f.text) for f in stored] == [
            (1, 0, "one"), (3, 1, "two"), (5, 2, "three")]  # 2: a partial, 4: the end
        assert stored[-1].start >= stored[1].end
        assert [f.session for f in stored] == ["s1", "s1", "s2"]
        # memory lost the first finals (a restart): a viewer's since replays them from the
        # store, then what memory holds, once each
        channel = hub.get("talk")
        assert channel is not None
        older = await server.archive.finals("talk", since=0, before=channel.log.first_held)
        assert [f.text for f in older] == ["one", "two"]
        status, body = await server.get("/v1/channels/talk/transcript?format=json")
        assert status == 200
        assert [f["text"] for f in json.loads(body)["finals"]] == ["one", "two", "three"]


async def test_transcript_formats_listing_paging_and_delete(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        for name in ("a", "b", "c"):
            await server.speak(name, f"s-{name}", [_final(1, 0, 0.0, f"{name} first"),
                                                   _final(2, 1, 5.0, f"{name} second")])
        for name in ("txt", "text"):  # as /v1/transcribe takes them
            status, body = await server.get(f"/v1/channels/a/transcript?format={name}")
            assert (status, body) == (200, b"a first\na second\n")
        status, body = await server.get("/v1/channels/a/transcript?format=srt&from=4")
        assert [s.content for s in srt.parse(body.decode())] == ["a second"]
        status, body = await server.get("/v1/channels/a/captions.vtt")
        assert status == 200 and b"a first" in body and b"a second" in body
        assert (await server.get("/v1/channels/a/transcript?format=doc"))[0] == 400
        assert (await server.get("/v1/channels/a/transcript?from=-1"))[0] == 400
        assert (await server.get("/v1/channels/zz/transcript"))[0] == 404

        status, body = await server.get("/v1/channels?limit=2")
        page = json.loads(body)
        assert [c["channel"] for c in page["channels"]] == ["a", "b"]
        assert page["next_after"] == "b"
        entry = page["channels"][0]
        assert entry["live"] is False and entry["finals"] == 2 and entry["duration"] == 6.0
        assert entry["last_active"] >= entry["created"] and entry["seq"] == 3
        status, body = await server.get("/v1/channels?limit=2&after=b")
        assert [c["channel"] for c in json.loads(body)["channels"]] == ["c"]
        assert "next_after" not in json.loads(body)
        assert (await server.get("/v1/channels?limit=0"))[0] == 400

        server.ctx.channels.attach_speaker("b", "live")
        refused = await server.delete("/v1/channels/b")
        assert refused is not None and refused.status == 409
        deleted = await server.delete("/v1/channels/a")
        assert deleted is not None and deleted.status == 200
        assert (await server.get("/v1/channels/a/transcript"))[0] == 404
        missing = await server.delete("/v1/channels/a")
        assert missing is not None and missing.status == 404
        assert await server.delete("/v1/elsewhere") is None


async def test_retention_deletes_old_channels(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    long_ago = time.time() - 40 * 86_400
    store.write([StoredFinal("old", 1, 0, 0.0, 1.0, "old", "en", received=long_ago),
                 StoredFinal("new", 1, 0, 0.0, 1.0, "new", "en", received=time.time())])
    store.close()
    async with _Server(tmp_path, retention_days=30) as server:
        await asyncio.sleep(0.2)  # the first expiry runs at start
        assert await server.archive.channel("old") is None
        assert await server.archive.channel("new") is not None


async def test_health_and_metrics_report_the_store(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", [_final(1, 0, 0.0, "one")])
        health = server.ctx.health()["store"]
        assert isinstance(health, dict)
        assert health["status"] == "ok" and health["backend"] == "sqlite"
        assert health["queued"] == 0 and health["written"] >= 1 and health["dropped"] == 0
        assert isinstance(health["commit_wait_p50_s"], float) and health["late"] == 0
        _, metrics = await server.get("/metrics")
        assert b"captioncast_store_written_total" in metrics
        assert b"captioncast_store_degraded 0.0" in metrics
    assert ServerContext(ServerOptions()).health()["store"] == {"status": "off"}



async def test_a_channel_first_seen_while_the_store_is_away_never_reuses_a_seq(
        tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", [_final(1, 0, 0.0, "one")])
    async with _Server(tmp_path) as server:
        async def away(channel: str) -> None:
            raise StoreError("the store is away")

        server.archive.position = away  # type: ignore[assignment,method-assign]
        await server.speak("talk", "s2", [_final(1, 0, 0.0, "two")])
        stored = await server.archive.finals("talk")
        assert [f.text for f in stored] == ["one", "two"]  # not refused as a repeat of seq 1
        assert stored[1].seq > stored[0].seq


async def test_a_deleted_channel_starts_afresh_for_the_viewers_still_on_it(
        tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", [_final(1, 0, 0.0, "old")])
        viewer = server.ctx.channels.subscribe("talk", None)
        deleted = await server.delete("/v1/channels/talk")
        assert deleted is not None and deleted.status == 200
        await server.speak("talk", "s2", [_final(1, 0, 0.0, "new")])
        events: list[Event] = []
        while not any(isinstance(e, Final) for e in events):
            events += await asyncio.wait_for(viewer.next_events(), 2)
        assert [e.text for e in events if isinstance(e, Final)] == ["new"]
        assert [f.text for f in await server.archive.finals("talk")] == ["new"]
