"""How a session's captions read: flicker, empty finals, reading rate."""

from __future__ import annotations

import numpy as np

from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import CaptionSession
from captioncast.protocol.events import Final, Partial
from tests.conftest import read_wav
from tests.support.fake_decoder import Driver, ScriptedDecoder


def test_the_session_counts_how_its_captions_read() -> None:
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en"),
                             PolicyOptions())
    driver = Driver(session, ScriptedDecoder())
    gap = np.zeros(16000, np.float32)
    driver.feed(np.concatenate([gap, read_wav("whisper_jfk"), gap]))
    driver.finish()
    quality = session.quality()
    finals = [e for e in driver.events if isinstance(e, Final)]
    assert quality.finals == len(finals)
    assert quality.final_words == sum(len(f.text.split()) for f in finals)
    assert quality.empty_finals == sum(1 for f in finals if not f.text)
    # the scripted decoder garbles the last word of every partial: the next one changes it
    assert 0 < quality.shown_words_changed <= quality.shown_words
    assert quality.audio_s == session.duration
    data = quality.to_dict()
    assert data["words_per_min"] == round(quality.final_words * 60 / quality.audio_s, 1)
    assert (quality - quality).finals == 0 and (quality + quality).final_words == \
        2 * quality.final_words


def _partials(holdback: int) -> tuple[list[Partial], CaptionSession]:
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en"),
                             PolicyOptions(partial_holdback_words=holdback))
    driver = Driver(session, ScriptedDecoder())  # every partial's last word cut short
    gap = np.zeros(16000, np.float32)
    driver.feed(np.concatenate([gap, read_wav("whisper_jfk"), gap]))
    driver.finish()
    return [e for e in driver.events if isinstance(e, Partial)], session


def test_a_partial_holds_back_its_last_word_until_a_later_hypothesis_says_it_too() -> None:
    shown, held = _partials(1)
    everything, eager = _partials(0)
    # the scripted decoder's cut-off last word ("br-") is not shown with holdback, but for
    # an utterance's first word, which shows at once
    assert any(p.text.endswith("-") and len(p.text.split()) > 1 for p in everything)
    assert not any(p.text.endswith("-") and len(p.text.split()) > 1 for p in shown)
    assert all(p.text.split() for p in shown), "a caption starts at once"
    assert held.quality().shown_words_changed < eager.quality().shown_words_changed
