"""The repetition-loop guard: Whisper's loops are cut, people's own repetitions are kept."""

from __future__ import annotations

import numpy as np

from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import CaptionSession
from captioncast.core.repetition import RepetitionGuard, collapse_loops
from captioncast.protocol.events import Final
from tests.conftest import read_wav
from tests.support.fake_decoder import Driver, ScriptedDecoder


def _kept(text: str) -> str:
    words = text.split()
    return " ".join(words[i] for i in collapse_loops(words))


def test_a_phrase_looping_to_the_end_is_cut_to_one() -> None:
    loop = "And so my fellow Americans, " + "I'm going to go. " * 6
    assert _kept(loop) == "And so my fellow Americans, I'm going to go."


def test_a_loop_in_the_middle_keeps_what_follows() -> None:
    text = "we said " + "thank you " * 5 + "and then we left"
    assert _kept(text) == "we said thank you and then we left"


def test_a_sentence_said_twice_at_once_is_said_once() -> None:
    # From the soak benchmark: tiny.en on mfa_cold_corpus, which says it once.
    said = "So this is the sick purpose. I have a cold, so I apply something different."
    assert _kept(f"{said} {said} Let's take four bits.") == f"{said} Let's take four bits."
    short = "Bonjour ! Est-ce que vous allez bien ?"  # said twice in shared/speech
    assert _kept(f"{short} {short}") == f"{short} {short}"


def test_a_single_word_loop_needs_many_repeats() -> None:
    assert _kept("the " * 9 + "end") == "the end"
    # tiny.en on NASA air-to-ground radio noise (the soak benchmark)
    assert _kept("All right, " + "okay, " * 7 + "they think") == "All right, okay, they think"


def test_what_people_repeat_is_kept() -> None:
    for text in (
        "here's some more words words words words um and that should be all",  # MFA corpus
        "no no no no I said tomorrow",
        "Bonjour ! Est-ce que vous allez bien ? Bonjour ! Est-ce que vous allez bien ?",
        "I I I think so",
        "going going gone",
        "montreal uh uh uh uh uh uh forced aligner",  # shared/speech mfa_uhuh
    ):
        assert _kept(text) == text


def test_a_final_that_copies_the_previous_one_has_the_copy_cut() -> None:
    guard = RepetitionGuard()
    first, then = ("we choose to go to the moon in this decade",
                   "to go to the moon in this decade and do the other things")
    words = then.split()
    guard.check(first.split())
    verdict = guard.check(words)
    assert verdict.looped and verdict.reset_prompt
    assert " ".join(words[i] for i in verdict.keep) == "and do the other things"


def test_an_identical_final_is_kept_but_resets_the_prompt() -> None:
    guard = RepetitionGuard()
    assert not guard.check(["Thank", "you."], duration=0.8).reset_prompt
    again = guard.check(["thank", "you"], duration=0.7)
    assert not again.looped and again.reset_prompt and again.keep == (0, 1)


def test_the_previous_final_copied_over_a_short_snippet_is_dropped() -> None:
    # From the soak benchmark (mfa_cold_corpus after other recordings): the first final,
    # then the prompt copied word for word as the final of 0.4 s of the next breath.
    said = "So this is the sick purpose. I have a cold, so I apply something different."
    guard = RepetitionGuard()
    guard.check(said.split(), duration=5.6)
    assert guard.copies_previous(said.split())  # as a partial: never made stable
    copy = guard.check(said.split(), duration=0.44)
    assert copy.looped and copy.keep == () and copy.reset_prompt
    # the copy is not what the next final is compared with
    assert not guard.check(["Let's", "take", "four", "bits."], duration=1.5).looped


def test_words_shown_as_stable_are_never_cut() -> None:
    guard = RepetitionGuard()
    words = ("thank you " * 6).split()
    verdict = guard.check(words, protected=6)
    assert verdict.keep == (0, 1, 2, 3, 4, 5)


class LoopingDecoder(ScriptedDecoder):
    """Loops in the final of the second utterance, as Whisper does on a bad window."""

    def decode(self, request: DecodeRequest) -> DecodeResult:
        result = super().decode(request)
        if request.kind == "final" and request.utterance == 1:
            words = ["over", "and", "out"] * 6
            timed = tuple(DecodedWord(" " + w, i * 0.2, i * 0.2 + 0.2, 0.9)
                          for i, w in enumerate(words))
            return DecodeResult(" ".join(words), "en",
                                words=timed if request.word_timestamps else ())
        return result


def test_the_session_cuts_the_loop_and_does_not_prompt_with_it() -> None:
    decoder = LoopingDecoder()
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en",
                                           interim=False), PolicyOptions(context_s=0.0))
    driver = Driver(session, decoder)
    gap = np.zeros(16000, np.float32)
    clip = read_wav("libri_test_61-70968-0000")
    driver.feed(np.concatenate([clip, gap, clip, gap, clip, gap]))
    driver.finish()
    finals = [e for e in driver.events if isinstance(e, Final)]
    assert finals[1].text == "over and out"
    assert [w.word for w in finals[1].words] == ["over", "and", "out"]
    later = [r for r in decoder.requests if r.kind == "final" and r.utterance > 1]
    assert later and all("over and out" not in r.prompt for r in later)
    assert session.loops_caught == 1
