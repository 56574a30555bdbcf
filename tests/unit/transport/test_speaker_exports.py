"""Speakers in a channel's transcript and caption files: names applied after the finals,
merges followed, and both kept across a restart; in process, on SQLite, with no model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import srt
import webvtt

from captioncast.protocol.events import Event, Final, SpeakerEntry, Speakers, Word
from tests.unit.transport.test_store_wiring import _Server


def _said(seq: int, utterance: int, start: float, text: str, speaker: str) -> Final:
    return Final(seq, utterance=utterance, start=start, end=start + 1.0, text=text,
                 language="en", words=(Word(text, start, start + 1.0, 0.9),)
                 ).labelled(speaker)


TABLE = Speakers(0, speakers=(SpeakerEntry("S1", "Alice"), SpeakerEntry("S2"),
                              SpeakerEntry("S3", same_as="S1")))
TALK: list[Event] = [
    _said(1, 0, 0.0, "Good morning.", "S1"),
    _said(2, 1, 1.0, "Morning to you.", "S2"),
    Speakers(0, speakers=(SpeakerEntry("S1"), SpeakerEntry("S2"))),
    _said(3, 2, 2.0, "Shall we start?", "S3"),  # the same voice as S1, found later
    _said(4, 3, 3.0, "Yes, the agenda.", "S1"),
    TABLE,
]


async def test_names_and_merges_learned_later_apply_to_every_export(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", TALK)
    async with _Server(tmp_path) as server:  # a restart: only the store remembers
        status, body = await server.get("/v1/channels/talk/transcript?format=txt")
        assert status == 200
        assert body.decode() == ("Alice: Good morning.\nS2: Morning to you.\n"
                                 "Alice: Shall we start?\nYes, the agenda.\n")
        _, body = await server.get("/v1/channels/talk/transcript?format=srt")
        assert [s.content for s in srt.parse(body.decode())] == [
            "Alice: Good morning.", "S2: Morning to you.", "Alice: Shall we start?",
            "Yes, the agenda."]
        _, body = await server.get("/v1/channels/talk/captions.vtt")
        cues = webvtt.from_string(body.decode())
        assert [(c.voice, c.text) for c in cues] == [
            ("Alice", "Good morning."), ("S2", "Morning to you."),
            ("Alice", "Shall we start?"), ("Alice", "Yes, the agenda.")]
        _, body = await server.get("/v1/channels/talk/transcript")
        answer = json.loads(body)
        assert [(f["speaker"], f["text"]) for f in answer["finals"]][2] == (
            "S3", "Shall we start?")  # a final never changes: its label stays
        assert answer["speakers"] == [{"id": "S1", "name": "Alice"}, {"id": "S2"},
                                      {"id": "S3", "same_as": "S1"}]
        assert [(p["speaker"], p["name"], p["text"], p["finals"])
                for p in answer["paragraphs"]] == [
            ("S1", "Alice", "Good morning.", [1]), ("S2", "S2", "Morning to you.", [2]),
            ("S1", "Alice", "Shall we start? Yes, the agenda.", [4, 5])]


async def test_a_continued_channel_replays_its_stored_table_first(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        await server.speak("talk", "s1", TALK)
    async with _Server(tmp_path) as server:
        hub = server.ctx.channels
        await hub.prepare("talk")
        channel = hub.get("talk")
        assert channel is not None and channel.log.speakers is not None
        assert channel.log.speakers.speakers == TABLE.speakers
        hub.attach_speaker("talk", "s2")
        committed = hub.publish("talk", _said(1, 0, 0.0, "Back again.", "S2"))
        assert committed is not None and await committed
        viewer = hub.subscribe("talk", 0)
        events = await asyncio.wait_for(viewer.next_events(), 2)
        # the table comes first, and the final numbered below it still arrives
        assert isinstance(events[0], Speakers) and events[0].display_name("S3") == "Alice"
        assert [e.text for e in events if isinstance(e, Final)] == ["Back again."]
        late = hub.subscribe("talk", None)  # no since: the table still comes
        assert isinstance((await asyncio.wait_for(late.next_events(), 2))[0], Speakers)


async def test_without_speakers_the_transcript_is_as_before(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        plain = Final(1, utterance=0, start=0.0, end=1.0, text="Just words.", language="en")
        await server.speak("talk", "s1", [plain])
        _, body = await server.get("/v1/channels/talk/transcript")
        assert set(json.loads(body)) == {"channel", "finals"}
        _, body = await server.get("/v1/channels/talk/captions.vtt")
        assert body.decode().endswith("00:00:00.000 --> 00:00:01.000\nJust words.\n")


async def test_the_overlay_takes_a_speakers_mark(tmp_path: Path) -> None:
    async with _Server(tmp_path) as server:
        for mark in ("arrows", "names", "off"):
            assert (await server.get(f"/overlay?channel=a&speakers={mark}"))[0] == 200
        status, body = await server.get("/overlay?channel=a&speakers=loud")
        assert status == 400 and b"arrows, names, off" in body
