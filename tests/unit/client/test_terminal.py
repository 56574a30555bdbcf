"""The terminal printer: a final that corrects its partial leaves no stale words."""

from __future__ import annotations

import io

from captioncast.protocol.events import Final, Partial
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
