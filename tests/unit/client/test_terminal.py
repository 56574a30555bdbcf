"""The terminal printer: a final that corrects its partial leaves no stale words; speakers
named where they change. And the caption files a client writes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from captioncast.protocol.events import Final, Partial, SpeakerEntry, Speakers
from captioncast_client.caption_files import write_captions
from captioncast_client.terminal import CaptionPrinter


def _screen(raw: str) -> list[str]:
    """What a terminal shows: `\\r` + erase-line rewrites the current line; styles dropped."""
    lines = [""]
    i = 0
    while i < len(raw):
        if raw.startswith("\r\x1b[2K", i):
            lines[-1] = ""
            i += len("\r\x1b[2K")
        elif raw.startswith("\x1b[", i):
            i = raw.index("m", i) + 1
        elif raw[i] == "\n":
            lines.append("")
            i += 1
        else:
            lines[-1] += raw[i]
            i += 1
    return [line for line in lines if line]


def test_a_final_that_corrects_stable_words_replaces_the_whole_partial() -> None:
    out = io.StringIO()
    show = CaptionPrinter(out, show_partials=True)
    show(Partial(1, utterance=0, start=0.5, end=1.5, text="Alfa bravo char", stable="Alfa bravo"))
    assert _screen(out.getvalue()) == ["Alfa bravo char"]
    show(Final(2, utterance=0, start=0.5, end=2.0, text="Alpha, bravo, Charlie.", language="en"))
    assert _screen(out.getvalue()) == ["[00:00:00.500 --> 00:00:02.000] Alpha, bravo, Charlie."]
    show(Partial(3, utterance=1, start=2.5, end=3.0, text="delta", stable=""))
    show(Final(4, utterance=1, start=2.5, end=3.0, text="", language="en"))
    # an empty final (no speech after all) takes its partial away and prints nothing
    assert _screen(out.getvalue()) == ["[00:00:00.500 --> 00:00:02.000] Alpha, bravo, Charlie."]


def test_the_speaker_is_named_where_it_changes_after_the_newest_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    show = CaptionPrinter(out, show_partials=False)

    def said(seq: int, text: str, speaker: str) -> Final:
        return Final(seq, utterance=seq, start=float(seq), end=seq + 0.5, text=text,
                     language="en").labelled(speaker)

    show(said(1, "Hello.", "S1"))
    show(said(2, "Still me.", "S1"))
    show(Speakers(3, speakers=(SpeakerEntry("S1", "Alice"), SpeakerEntry("S2"),
                               SpeakerEntry("S3", same_as="S1"))))
    show(said(4, "Hi Alice.", "S2"))
    show(said(5, "Hi.", "S3"))
    assert [line.split("] ", 1)[1] for line in _screen(out.getvalue())] == [
        "S1: Hello.", "Still me.", "S2: Hi Alice.", "Alice: Hi."]
    assert "speakers: S1 is Alice, S3 is S1" in capsys.readouterr().err


def test_caption_files_name_speakers(tmp_path: Path) -> None:
    finals = [Final(1, utterance=0, start=0.0, end=1.0, text="Hello.", language="en"
                    ).labelled("S1").to_dict()]
    table = Speakers(2, speakers=(SpeakerEntry("S1", "Alice"),))
    write_captions(tmp_path / "a.vtt", finals, table)
    write_captions(tmp_path / "a.srt", finals, table)
    assert "<v Alice>Hello." in (tmp_path / "a.vtt").read_text()
    assert "Alice: Hello." in (tmp_path / "a.srt").read_text()
