"""A final's words against its voiced audio: the skipped stretch found, its words put back."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from captioncast.core.coverage import CoverageOptions, Gap, find_gap, merge_gap
from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.hallucination import is_hallucination
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import CaptionSession
from captioncast.core.segmenter import SegmenterOptions
from captioncast.protocol.events import Final
from tests.conftest import read_wav
from tests.support.fake_decoder import Driver, ScriptedDecoder

FRAME_S = 0.02


def _voiced(seconds: float, silent: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
    mask = np.ones(int(seconds / FRAME_S), dtype=bool)
    for lo, hi in silent:
        mask[int(lo / FRAME_S): int(hi / FRAME_S)] = False
    return mask


def _words(*timed: tuple[str, float, float]) -> tuple[DecodedWord, ...]:
    return tuple(DecodedWord(" " + w, a, b, 0.9) for w, a, b in timed)


def test_words_covering_the_voice_leave_no_gap() -> None:
    words = _words(("one", 0.1, 0.5), ("two", 0.6, 1.0), ("three", 1.1, 1.6))
    assert find_gap(words, _voiced(1.8), FRAME_S, 1.8, CoverageOptions()) is None


def test_a_decode_that_ends_early_leaves_its_tail_uncovered() -> None:
    words = _words(("one", 0.1, 0.5), ("two", 0.6, 1.0))
    gap = find_gap(words, _voiced(4.0), FRAME_S, 4.0, CoverageOptions())
    assert gap is not None
    assert gap.before == 2 and gap.stretched == 0
    assert 0.85 <= gap.start <= 1.0 and gap.end == 4.0


def test_silence_after_the_words_is_no_gap() -> None:
    words = _words(("one", 0.1, 0.5), ("two", 0.6, 1.0))
    voiced = _voiced(4.0, silent=((1.1, 4.0),))
    assert find_gap(words, voiced, FRAME_S, 4.0, CoverageOptions()) is None


def test_a_word_stretched_over_skipped_speech_marks_the_gap() -> None:
    # "I" 0.0-4.9 and "said" 4.9-8.6: the alignment spread two words over 8 s of speech
    words = _words(("I", 0.0, 4.9), ("said", 4.9, 8.6), ("she", 8.6, 8.8), ("could", 8.8, 9.0))
    gap = find_gap(words, _voiced(9.2), FRAME_S, 9.2, CoverageOptions())
    assert gap is not None
    assert gap.before == 0 and gap.stretched == 2
    assert gap.start == 0.0 and 8.6 <= gap.end <= 8.8


def test_no_words_is_the_no_speech_rule_not_a_skip() -> None:
    assert find_gap((), _voiced(3.0), FRAME_S, 3.0, CoverageOptions()) is None


def test_the_gap_words_go_in_place_and_an_edge_word_heard_twice_is_kept_once() -> None:
    result = DecodeResult("What joy there is.", "en",
                          words=_words(("What", 0.1, 0.3), ("joy", 0.3, 0.5),
                                       ("there", 0.5, 0.7), ("is.", 0.7, 0.9)))
    gap = Gap(start=0.8, end=3.0, before=4, voiced_s=2.0)
    heard = DecodeResult("is. A thin sheet.", "en",
                         words=_words(("is.", 0.0, 0.1), ("A", 0.3, 0.4), ("thin", 0.4, 0.7),
                                      ("sheet.", 0.7, 1.0)))
    merged = merge_gap(result, gap, heard)
    assert merged.text == "What joy there is. A thin sheet."
    assert [round(w.start, 2) for w in merged.words] == [0.1, 0.3, 0.5, 0.7, 1.1, 1.2, 1.5]


def test_a_skipped_head_goes_before_the_stretched_words_which_are_kept() -> None:
    result = DecodeResult("I said she could.", "en",
                          words=_words(("I", 0.0, 4.9), ("said", 4.9, 8.6), ("she", 8.6, 8.8),
                                       ("could.", 8.8, 9.0)))
    gap = Gap(start=0.0, end=8.7, before=0, voiced_s=7.0, stretched=2)
    heard = DecodeResult("Hello Maria, how are you? I said", "en",
                         words=_words(("Hello", 0.5, 0.9), ("Maria,", 0.9, 1.4),
                                      ("how", 2.0, 2.2), ("are", 2.2, 2.4), ("you?", 2.4, 2.8),
                                      ("I", 7.9, 8.1), ("said", 8.1, 8.5)))
    merged = merge_gap(result, gap, heard)
    assert merged.text == "Hello Maria, how are you? I said she could."
    assert len(merged.words) == len(merged.text.split())


def test_a_gap_that_heard_nothing_changes_nothing() -> None:
    result = DecodeResult("one two", "en", words=_words(("one", 0.1, 0.5), ("two", 0.6, 1.0)))
    gap = Gap(start=0.9, end=3.0, before=2, voiced_s=1.5)
    assert merge_gap(result, gap, DecodeResult("", "en")) is result


def _rule(text: str, duration_s: float, no_speech: float = 0.44, logprob: float = -0.9) -> bool:
    return is_hallucination(DecodeResult(text, "en", avg_logprob=logprob,
                                         no_speech_prob=no_speech), 0.1,
                            no_speech_threshold=0.6, log_prob_threshold=-1.0,
                            compression_ratio_threshold=2.4, short_speech_s=1.0,
                            max_words_per_s=7.0, duration_s=duration_s)


def test_more_words_than_a_breath_could_hold_are_no_speech() -> None:
    # a 0.28 s breath after a client's Finalize, heard as "Thank you very much."
    assert _rule("Thank you very much.", 0.28)
    assert not _rule("No.", 0.2, no_speech=0.1)
    assert not _rule("Right then.", 0.64, no_speech=0.22)  # little voice, but time to say it
    assert not _rule("Thank you very much.", 1.5, no_speech=0.1)  # long enough to say it
    # a breath's decode that failed Whisper's own gibberish test after its fallbacks
    assert _rule("Thank you.", 0.28, logprob=-1.04)


class _EndsEarly(ScriptedDecoder):
    """A final's first decode hears only the first second; any other decode all its audio."""

    def decode(self, request: DecodeRequest) -> DecodeResult:
        result = super().decode(request)
        first_final = request.kind == "final" and request.duration > 3.0 and \
            not any(r.kind == "final" and r.utterance == request.utterance
                    for r in self.requests[:-1])
        if not first_final:
            return result
        words = result.words[:2]
        return DecodeResult(" ".join(w.word.strip() for w in words), "en", words=words)


def test_a_final_that_skipped_its_tail_gets_it_back_from_a_second_decode() -> None:
    decoder = _EndsEarly()
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en",
                                           interim=False), PolicyOptions())
    driver = Driver(session, decoder)
    gap = np.zeros(16000, np.float32)
    driver.feed(np.concatenate([gap, read_wav("whisper_jfk"), gap]))
    driver.finish()
    finals = [e for e in driver.events if isinstance(e, Final) and e.text]
    assert session.gaps.asked >= 1 and session.gaps.filled >= 1
    first = finals[0]
    assert len(first.text.split()) > 2, first.text
    assert len(first.words) == len(first.text.split())
    assert [w.start for w in first.words] == sorted(w.start for w in first.words)
    gap_requests = [r for r in decoder.requests if r.kind == "final" and r.duration < 3.0]
    assert all(r.word_timestamps and not r.prefix for r in gap_requests)


def test_coverage_off_leaves_the_early_end_as_it_was() -> None:
    decoder = _EndsEarly()
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en",
                                           interim=False),
                             PolicyOptions(coverage=CoverageOptions(enabled=False)))
    driver = Driver(session, decoder)
    gap = np.zeros(16000, np.float32)
    driver.feed(np.concatenate([gap, read_wav("whisper_jfk"), gap]))
    driver.finish()
    assert session.gaps.asked == 0


def _cut_every_3s(overlap: float) -> tuple[list[Final], list[DecodeRequest]]:
    # Cuts every 3 s, never a pause long enough to end an utterance: the lecture case.
    options = PolicyOptions(cut_overlap_s=overlap,
                            segmenter=SegmenterOptions(max_utterance_s=3.0,
                                                       long_utterance_s=60.0,
                                                       end_hangover_s=5.0),
                            coverage=CoverageOptions(enabled=False))
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en",
                                           interim=False), options)
    decoder = ScriptedDecoder()
    driver = Driver(session, decoder)
    driver.feed(read_wav("libri_dev_2412-153948-0000"))
    driver.finish()
    finals = [e for e in driver.events if isinstance(e, Final) and e.words]
    return finals, [r for r in decoder.requests if r.kind == "final"]


def test_around_a_cut_without_a_pause_each_word_goes_to_one_side() -> None:
    finals, requests = _cut_every_3s(0.3)
    assert len(finals) >= 3, "the speech was cut"
    for earlier, later in pairwise(finals):
        # each word's middle lies on its own side of the cut between them
        assert all((w.start + w.end) / 2 < earlier.end + 1e-6 for w in earlier.words)
        assert all((w.start + w.end) / 2 >= earlier.end - 1e-6 for w in later.words)
    # both sides heard the audio past the cut
    _, without = _cut_every_3s(0.0)
    assert max(r.duration for r in requests) > max(r.duration for r in without) + 0.25
