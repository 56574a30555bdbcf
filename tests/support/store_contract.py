"""What every transcript store does, written once: test modules subclass `StoreContract`
and give it a `make_store` fixture (a callable that opens, or reopens, the same store)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from captioncast.protocol.events import SpeakerEntry
from captioncast.store import (
    AsyncStore,
    Mark,
    StoredFinal,
    StoredVoice,
    StoredWord,
    TranscriptStore,
    WriterOptions,
)
from captioncast_client.caption_files import to_srt

MakeStore = Callable[[], TranscriptStore]
T0 = 1_780_000_000.0  # a wall clock in 2026


def final(seq: int, utterance: int | None = None, start: float | None = None,
          text: str | None = None, channel: str = "lecture", session: str = "s1",
          received: float | None = None) -> StoredFinal:
    utterance = seq - 1 if utterance is None else utterance
    start = 2.0 * utterance if start is None else start
    text = text or f"utterance number {utterance}."
    words = tuple(StoredWord(w, start + 0.3 * i, start + 0.3 * i + 0.25, 0.9)
                  for i, w in enumerate(text.split()))
    return StoredFinal(channel=channel, seq=seq, utterance=utterance, start=start,
                       end=start + 1.5, text=text, language="en", words=words,
                       session=session, received=T0 + start if received is None else received)


class StoreContract:
    def test_a_final_reads_back_exactly(self, make_store: MakeStore) -> None:
        store = make_store()
        # Whisper's tokens are " flower" and "-fattened": joined with spaces, they are wrong.
        hyphen = StoredFinal(
            channel="lecture", seq=3, utterance=0, start=1.25, end=3.5,
            text="The flower-fattened bees, café.", language="en",
            words=(StoredWord(" The", 1.25, 1.5, 0.99), StoredWord(" flower", 1.5, 2.0, 0.9),
                   StoredWord("-fattened", 2.0, 2.6, 0.8), StoredWord(" bees,", 2.6, 3.0, 0.95),
                   StoredWord(" café.", 3.0, 3.5, 0.7)),
            session="sess-a", received=T0)
        store.write([hyphen])
        [back] = store.finals("lecture")
        assert back == hyphen
        assert back.to_dict()["text"] == "The flower-fattened bees, café."
        assert back.to_dict()["words"][2] == {"word": "-fattened", "start": 2.0, "end": 2.6,
                                              "p": 0.8}
        assert "The flower-fattened bees, café." in to_srt([back.to_dict()])
        assert store.finals("nobody") == []

    def test_a_final_keeps_its_speaker(self, make_store: MakeStore) -> None:
        store = make_store()
        plain = final(1)
        spoken = final(2, text="Hello from the second voice.")
        spoken = dataclasses.replace(
            spoken, speaker="S2", speaker_name="Bob", source_channel=1,
            words=tuple(dataclasses.replace(w, speaker="S2") for w in spoken.words))
        store.write([plain, spoken])
        back_plain, back_spoken = make_store().finals("lecture")
        assert back_plain == plain and back_plain.speaker is None
        assert back_spoken == spoken
        assert back_spoken.to_dict(words=False) == {
            "type": "final", "seq": 2, "utterance": 1, "start": 2.0, "end": 3.5,
            "text": "Hello from the second voice.", "language": "en", "speaker": "S2",
            "speaker_name": "Bob", "source_channel": 1}

    def test_the_newest_speaker_table_is_kept(self, make_store: MakeStore) -> None:
        store = make_store()
        older = (SpeakerEntry("S1"), SpeakerEntry("S2"))
        newer = (SpeakerEntry("S1", "Alice"), SpeakerEntry("S2", same_as="S1"))
        store.write([final(1), Mark("lecture", T0 + 1, 2, "s1", speakers=newer)])
        store.write([Mark("lecture", T0 + 2, 1, "s1", speakers=older)])  # a late repeat
        position = make_store().position("lecture")
        assert position is not None
        assert position.speakers == newer and position.speakers_seq == 2
        assert position.seq == 2
        store.write([Mark("lecture", T0 + 3, 3)])  # a mark without a table keeps it
        assert make_store().position("lecture").speakers == newer  # type: ignore[union-attr]
        assert make_store().position("lecture").speakers_seq == 2  # type: ignore[union-attr]

    def test_a_channel_without_speakers_has_no_table(self, make_store: MakeStore) -> None:
        store = make_store()
        store.write([final(1)])
        position = store.position("lecture")
        assert position is not None and position.speakers is None

    def test_since_and_limit(self, make_store: MakeStore) -> None:
        store = make_store()
        store.write([final(seq) for seq in range(1, 21)])
        assert [f.seq for f in store.finals("lecture", since=15)] == [16, 17, 18, 19, 20]
        assert [f.seq for f in store.finals("lecture", since=3, limit=2)] == [4, 5]
        assert store.finals("lecture", since=20) == []

    def test_time_range_takes_the_finals_that_overlap_it(self, make_store: MakeStore) -> None:
        store = make_store()
        store.write([final(seq) for seq in range(1, 11)])  # utterance u spans [2u, 2u + 1.5]
        assert [f.utterance for f in store.finals("lecture", start=5.0, end=9.0)] == [2, 3, 4]
        assert [f.utterance for f in store.finals("lecture", start=16.0)] == [8, 9]
        assert [f.utterance for f in store.finals("lecture", end=2.0)] == [0]
        assert [f.seq for f in store.finals("lecture", since=4, start=5.0, end=9.0)] == [5]

    def test_numbering_continues_after_reopening(self, make_store: MakeStore) -> None:
        store = make_store()
        assert store.position("lecture") is None
        store.write([final(seq, utterance=seq - 1) for seq in range(1, 6)])
        store.write([Mark("lecture", at=T0 + 60, seq=9, session="s1")])  # partials, an end
        store.close()
        position = make_store().position("lecture")
        assert position is not None
        assert (position.seq, position.utterances, position.end) == (9, 5, 8.0 + 1.5)

    def test_a_retried_batch_is_stored_once(self, make_store: MakeStore) -> None:
        store = make_store()
        batch = [final(seq) for seq in range(1, 4)]
        store.write(batch)
        store.write([*batch, final(4)])
        info = store.channel("lecture")
        assert info is not None
        assert [f.seq for f in store.finals("lecture")] == [1, 2, 3, 4]
        assert (info.finals, info.words) == (4, 12)

    def test_channel_metadata(self, make_store: MakeStore) -> None:
        store = make_store()
        store.write([final(1, session="first", received=T0 + 10),
                     final(2, session="first", received=T0 + 12)])
        store.write([Mark("lecture", at=T0 + 100, seq=3, session="second")])
        store.write([final(4, utterance=2, session="second", received=T0 + 200)])
        info = store.channel("lecture")
        assert info is not None
        assert (info.name, info.created, info.last_live) == ("lecture", T0 + 10, T0 + 200)
        assert info.sessions == ("first", "second")
        assert (info.finals, info.words, info.last_seq) == (3, 9, 4)
        assert info.duration == 4.0 + 1.5
        assert abs(info.speech - 3 * 1.5) < 1e-9
        assert store.channel("nobody") is None

    def test_channels_page_by_name(self, make_store: MakeStore) -> None:
        store = make_store()
        names = [f"room-{i}" for i in range(7)]
        store.write([final(1, channel=name) for name in reversed(names)])
        seen, after = [], None
        for _ in range(4):
            page = store.channels(limit=3, after=after)
            seen.append([c.name for c in page.channels])
            after = page.next_after
            if after is None:
                break
        assert seen == [names[0:3], names[3:6], names[6:7]]

    def test_delete_and_retention(self, make_store: MakeStore) -> None:
        store = make_store()
        store.write([final(1, channel="old", received=T0 - 40 * 86_400),
                     final(1, channel="recent", received=T0 - 2 * 86_400),
                     final(1, channel="gone", received=T0)])
        assert store.delete("gone") is True
        assert store.delete("gone") is False
        assert store.finals("gone") == [] and store.channel("gone") is None
        assert store.delete_older_than(30, now=T0) == ["old"]
        assert [c.name for c in store.channels().channels] == ["recent"]
        # A deleted channel's name starts again from nothing.
        store.write([final(1, channel="gone", received=T0)])
        info = store.channel("gone")
        assert info is not None and info.finals == 1

    def test_an_enrolled_voice_reads_back_and_is_deleted_for_good(
            self, make_store: MakeStore) -> None:
        store = make_store()
        print_ = bytes(range(256)) * 4  # 256 float32s: every byte value survives
        alice = StoredVoice("v_a", "Alice", T0, 4.25, print_)
        bob = StoredVoice("v_b", "Bob Ó", T0 + 1, 2.0, b"\x00\x00\x80?" * 256)
        store.add_voice(alice)
        store.add_voice(bob)
        assert make_store().voices() == [alice, bob]
        assert "embedding" not in repr(alice) and str(print_[:8]) not in repr(alice)
        assert store.delete_voice("v_a") is True
        assert store.delete_voice("v_a") is False
        assert make_store().voices() == [bob]

    def test_the_async_facade_stores_what_it_accepts(self, make_store: MakeStore) -> None:
        async def scenario() -> None:
            async with AsyncStore(make_store()) as store:
                assert await store.write(final(1), wait=10)
                accepted = sum(store.put(final(seq, channel=f"s{seq % 16}"))
                               for seq in range(2, 2002))
                assert accepted == 2000
                assert await store.flush(timeout=60)
                health = store.health()
                assert (health.status, health.queued, health.dropped) == ("ok", 0, 0)
                assert health.written == 2001
                page = await store.channels(limit=100)
                assert sum(c.finals for c in page.channels) == 2001
                assert await store.delete("s3") is True
                assert await store.channel("s3") is None
                assert [f.seq for f in await store.finals("lecture")] == [1]
                await store.add_voice(StoredVoice("v_1", "Alice", T0, 3.0, b"1234"))
                assert [v.name for v in await store.voices()] == ["Alice"]
                assert await store.delete_voice("v_1") is True
                assert await store.voices() == []
        asyncio.run(scenario())

    def test_overflow_is_refused_and_counted_never_silently_lost(
            self, make_store: MakeStore) -> None:
        async def scenario() -> None:
            options = WriterOptions(max_queued=8, max_batch=4)
            async with AsyncStore(make_store(), options) as store:
                results = [store.put(final(seq)) for seq in range(1, 501)]
                assert await store.flush(timeout=60)
                stored = {f.seq for f in await store.finals("lecture")}
                accepted = {seq for seq, ok in zip(range(1, 501), results) if ok}
                assert stored == accepted
                assert store.health().dropped == 500 - len(accepted) > 0
        asyncio.run(scenario())
