"""captioncast.protocol.captions: cues split for reading, SRT and WebVTT their libraries read."""

from __future__ import annotations

import itertools

import srt
import webvtt

from captioncast.protocol.captions import (
    MAX_LINE_CHARS,
    MAX_LINES,
    by_speaker,
    render_srt,
    render_txt,
    render_vtt,
    split_final,
    to_srt,
    to_vtt,
)
from captioncast.protocol.events import Final, SpeakerEntry, Speakers

LONG = ("so we went down to the river early in the morning and the fog was still lying on "
        "the water like a blanket when the first boats came out of the harbour")


def timed(text: str, start: float = 10.0, step: float = 0.3) -> dict[str, object]:
    words = [{"word": w, "start": start + i * step, "end": start + i * step + 0.25}
             for i, w in enumerate(text.split())]
    return {"start": start, "end": start + len(words) * step, "text": text, "words": words}


def test_short_final_is_one_cue_with_its_own_times() -> None:
    cues = split_final({"start": 1.0, "end": 2.5, "text": " Hello there. "})
    assert len(cues) == 1 and cues[0].lines == ("Hello there.",)
    assert (cues[0].start, cues[0].end) == (1.0, 2.5)


def test_long_final_splits_by_word_timings_within_limits() -> None:
    final = timed(LONG)
    cues = split_final(final)
    assert len(cues) > 1
    assert " ".join(" ".join(c.lines) for c in cues) == LONG
    for cue in cues:
        assert len(cue.lines) <= MAX_LINES
        assert all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
        assert cue.start < cue.end
    assert cues[0].start == final["start"] and cues[-1].end == final["end"]
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(cues))
    words = final["words"]
    second_first_word = cues[1].lines[0].split()[0]
    index = LONG.split().index(second_first_word)
    assert cues[1].start == words[index]["start"]  # type: ignore[index]


def test_long_final_without_words_shares_time_by_length() -> None:
    cues = split_final({"start": 0.0, "end": 12.0, "text": LONG})
    assert len(cues) > 1 and cues[0].start == 0.0 and abs(cues[-1].end - 12.0) < 1e-9


def test_files_parse_with_their_libraries() -> None:
    cues = split_final(timed(LONG)) + split_final(timed("and then silence", start=40.0))
    parsed = list(srt.parse(render_srt(cues)))
    assert [p.content for p in parsed] == [c.text for c in cues]
    vtt = webvtt.from_string(render_vtt(cues))
    assert [c.text for c in vtt] == [c.text for c in cues]
    assert vtt.captions[-1].start == "00:00:40.000"


def test_a_transcript_answer_is_one_cue_per_segment_as_decoded() -> None:
    from captioncast.core.transcript import Segment, Transcript
    from captioncast.protocol.events import Final

    finals = [Final(1, utterance=0, start=0.5, end=2.25, text=" Hello there.", language="en"),
              Final(2, utterance=1, start=3.0, end=3.5, text="", language="en"),
              Final(3, utterance=2, start=4.0, end=70.0, text=LONG, language="en")]
    transcript = Transcript(tuple(Segment(f) for f in finals), duration=70.0)
    assert transcript.to_srt() == (
        "1\n00:00:00,500 --> 00:00:02,250\n Hello there.\n\n"
        f"2\n00:00:04,000 --> 00:01:10,000\n{LONG}\n\n")
    vtt = webvtt.from_string(transcript.to_vtt())
    assert [(c.start, c.end, c.text) for c in vtt] == [
        ("00:00:00.500", "00:00:02.250", " Hello there."),
        ("00:00:04.000", "00:01:10.000", LONG)]


def test_finals_and_their_json_split_alike() -> None:
    from captioncast.protocol.events import Final, Word

    data = timed(LONG)
    final = Final(1, utterance=0, start=float(data["start"]), end=float(data["end"]),  # type: ignore[arg-type]
                  text=LONG, language="en",
                  words=tuple(Word(str(w["word"]), w["start"], w["end"], 0.9)  # type: ignore[index]
                              for w in data["words"]))  # type: ignore[attr-defined]
    assert split_final(final) == split_final(data)


def spoken(seq: int, text: str, speaker: str | None, start: float,
           name: str | None = None) -> Final:
    final = Final(seq, utterance=seq, start=start, end=start + 1.0, text=text, language="en")
    return final.labelled(speaker, name) if speaker else final


TABLE = Speakers(9, speakers=(SpeakerEntry("S1", "Alice"), SpeakerEntry("S2"),
                              SpeakerEntry("S3", same_as="S1"), SpeakerEntry("S4", "Dr <Ng> & co")))
TALK = [spoken(1, "Good morning.", "S1", 0.0), spoken(2, "Morning.", "S2", 1.0),
        spoken(3, "Shall we?", "S3", 2.0), spoken(4, "We shall.", "S1", 3.0),
        spoken(5, "A point of order.", "S4", 4.0)]


def test_a_cue_keeps_its_finals_speaker_on_every_part() -> None:
    cues = split_final(dict(timed(LONG), speaker="S2", speaker_name="Bob"))
    assert len(cues) > 1 and {(c.speaker, c.speaker_name) for c in cues} == {("S2", "Bob")}
    assert split_final(timed("Hello."))[0].speaker is None


def test_srt_names_the_speaker_at_each_change_merges_followed() -> None:
    subtitles = list(srt.parse(to_srt(TALK, TABLE)))
    assert [s.content for s in subtitles] == [
        "Alice: Good morning.", "S2: Morning.", "Alice: Shall we?", "We shall.",
        "Dr <Ng> & co: A point of order."]
    # without a table: the names the finals carried, else their labels
    plain = list(srt.parse(to_srt([spoken(1, "Hi.", "S1", 0.0, "Ann"),
                                   spoken(2, "Hey.", "S2", 1.0)])))
    assert [s.content for s in plain] == ["Ann: Hi.", "S2: Hey."]


def test_a_name_that_no_longer_fits_is_wrapped_again() -> None:
    text = "x" * 38 + " " + "y" * 38  # two full lines: the name makes them three
    [subtitle] = srt.parse(to_srt([spoken(1, text, "S1", 0.0)], TABLE))
    assert subtitle.content.startswith("Alice:\nxxx")  # the name on a line of its own
    assert all(len(line) <= MAX_LINE_CHARS for line in subtitle.content.split("\n"))


def test_webvtt_voice_spans_on_every_cue_escaped() -> None:
    document = to_vtt(TALK, TABLE)
    assert "<v Dr &lt;Ng&gt; &amp; co>A point of order." in document
    cues = webvtt.from_string(document)
    assert [c.voice for c in cues] == ["Alice", "S2", "Alice", "Alice", "Dr &lt;Ng&gt; &amp; co"]
    assert [c.text for c in cues][:4] == ["Good morning.", "Morning.", "Shall we?", "We shall."]


def test_text_names_the_speaker_at_each_change() -> None:
    assert render_txt(TALK, TABLE) == ("Alice: Good morning.\nS2: Morning.\nAlice: Shall we?\n"
                                       "We shall.\nDr <Ng> & co: A point of order.\n")


def test_without_speakers_every_format_is_as_before() -> None:
    finals = [spoken(1, "One & <two>.", None, 0.0), spoken(2, "Three.", None, 1.0)]
    assert to_vtt(finals, TABLE) == to_vtt(finals) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nOne & <two>.\n\n"
        "00:00:01.000 --> 00:00:02.000\nThree.\n")
    assert to_srt(finals, TABLE) == to_srt(finals)
    assert render_txt(finals, TABLE) == "One & <two>.\nThree.\n"
    assert by_speaker(finals) == [
        {"speaker": None, "name": None, "start": 0.0, "end": 1.0, "text": "One & <two>.",
         "finals": [1]},
        {"speaker": None, "name": None, "start": 1.0, "end": 2.0, "text": "Three.",
         "finals": [2]}]
