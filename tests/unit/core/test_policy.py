"""The caption session driven by a scripted decoder: event order, stable prefixes, finals."""

import numpy as np
import pytest

from captioncast.core.coverage import CoverageOptions
from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import CaptionSession
from captioncast.errors import BadAudio
from captioncast.protocol.events import End, Error, Final, Partial, Ready
from tests.conftest import read_wav
from tests.support.fake_decoder import WORD_S, WORDS, Driver, ScriptedDecoder


def _session(**config: object) -> CaptionSession:
    # No audio context: the scripted decoder would say the context's words again (its own
    # test is below).
    return CaptionSession(SessionConfig(session_id="s1", model="scripted", language="en",
                                        **config),  # type: ignore[arg-type]
                          PolicyOptions(context_s=0.0))


def _speech() -> np.ndarray:
    gap = np.zeros(16000, np.float32)
    return np.concatenate([gap, read_wav("whisper_jfk"), gap,
                           read_wav("libri_test_61-70968-0000"), gap])


def _check_stream(events: list[object]) -> list[Final]:
    assert isinstance(events[0], Ready)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # type: ignore[attr-defined]
    assert isinstance(events[-1], End)
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.utterance for f in finals] == list(range(len(finals)))
    assert events[-1].utterances == len(finals)
    by_utterance = {f.utterance: f for f in finals}
    last_stable: dict[int, str] = {}
    for event in events:
        if isinstance(event, Partial):
            assert event.text.startswith(event.stable)
            # stable only grows within an utterance (protocol 2: the final may correct it)
            assert event.stable.startswith(last_stable.get(event.utterance, ""))
            last_stable[event.utterance] = event.stable
            assert event.seq < by_utterance[event.utterance].seq
    for f in finals:
        assert f.start < f.end
        assert [w.start for w in f.words] == sorted(w.start for w in f.words)
    return finals


@pytest.mark.parametrize("delay", [0, 3, 8])
def test_every_utterance_gets_one_final_and_stable_only_grows(delay: int) -> None:
    driver = Driver(_session(), ScriptedDecoder(), delay_chunks=delay)
    driver.feed(_speech())
    driver.finish()
    finals = _check_stream(driver.events)
    assert len(finals) >= 3
    assert any(isinstance(e, Partial) and e.stable for e in driver.events)
    assert all(f.text for f in finals)
    # the scripted decoder hears the same words in partials and finals: nothing is revised
    assert driver.session.stable_words_shown > 0
    assert driver.session.stable_words_revised == 0


class _MishearsAtFirst(ScriptedDecoder):
    """Each utterance says other words; greedy partials mishear its first word, finals not."""

    def decode(self, request: DecodeRequest) -> DecodeResult:
        self.requests.append(request)
        count = int(request.duration / WORD_S)
        words = [WORDS[(3 * request.utterance + i) % len(WORDS)] for i in range(count)]
        if request.kind == "partial" and words:
            words[0] = "Alfa"
        prefix = request.prefix.split()
        words[: len(prefix)] = prefix
        timed = tuple(DecodedWord(" " + w, i * WORD_S, (i + 1) * WORD_S, 0.9)
                      for i, w in enumerate(words))
        return DecodeResult(" ".join(words), "en",
                            words=timed if request.word_timestamps else ())


@pytest.mark.parametrize("delay", [0, 3])
def test_the_final_corrects_a_stable_mistake_and_counts_it(delay: int) -> None:
    decoder = _MishearsAtFirst()
    driver = Driver(_session(), decoder, delay_chunks=delay)
    driver.feed(_speech())
    driver.finish()
    finals = _check_stream(driver.events)
    partials = [e for e in driver.events if isinstance(e, Partial)]
    wrong = {p.utterance for p in partials if p.stable.startswith("Alfa")}
    assert wrong  # the mistake was shown as stable ...
    for final in finals:
        if final.utterance in wrong:  # ... and every such final corrects it
            assert final.text.split()[0] == WORDS[(3 * final.utterance) % len(WORDS)]
    # finals are decoded with no forced prefix, whatever the partials agreed on
    assert all(r.prefix == "" for r in decoder.requests if r.kind == "final")
    assert driver.session.stable_words_revised == len(wrong)
    assert driver.session.stable_words_shown >= len(wrong)


@pytest.mark.parametrize("delay", [0, 40])
def test_finals_are_prompted_with_every_earlier_final(delay: int) -> None:
    """Also when decodes lag far behind the audio (a file sent fast): finals wait their turn."""
    decoder = _MishearsAtFirst()  # each utterance says other words
    driver = Driver(_session(prompt="Kennedy"), decoder, delay_chunks=delay)
    driver.feed(_speech())
    driver.finish()
    finals = [e for e in driver.events if isinstance(e, Final)]
    # the last decode of each utterance is its final's (a speculative one may come before)
    last = {r.utterance: r for r in decoder.requests if r.kind == "final"}
    requests = [last[f.utterance] for f in finals]
    assert requests[0].prompt == "Kennedy"
    for request, before in zip(requests[1:], finals):
        assert request.prompt.startswith("Kennedy ") and request.prompt.endswith(before.text)


def test_no_partials_when_interim_is_off() -> None:
    decoder = ScriptedDecoder()
    driver = Driver(_session(interim=False), decoder)
    driver.feed(_speech())
    driver.finish()
    assert not any(isinstance(e, Partial) for e in driver.events)
    assert all(r.kind == "final" for r in decoder.requests)
    _check_stream(driver.events)


def test_silence_gives_no_utterance_and_still_ends() -> None:
    driver = Driver(_session(), ScriptedDecoder())
    driver.feed(np.zeros(16000 * 10, np.float32))
    driver.finish()
    assert [type(e) for e in driver.events] == [Ready, End]
    assert driver.events[-1].utterances == 0


def test_flush_ends_the_utterance_mid_speech() -> None:
    driver = Driver(_session(), ScriptedDecoder())
    audio = read_wav("libri_dev_2412-153948-0000")
    driver.feed(audio[: 16000 * 3])
    driver.handle(driver.session.flush())
    driver.feed(audio[16000 * 3 :])
    driver.finish()
    finals = _check_stream(driver.events)
    assert finals[0].end == pytest.approx(3.0, abs=0.05)


def test_errors_take_their_place_in_the_sequence() -> None:
    driver = Driver(_session(), ScriptedDecoder())
    driver.handle(driver.session.error(BadAudio("odd bytes")))
    driver.feed(_speech()[: 16000 * 4])
    driver.finish()
    assert isinstance(driver.events[1], Error) and driver.events[1].code == "bad_audio"
    _check_stream(driver.events)


def test_final_timings_are_on_the_stream_clock() -> None:
    driver = Driver(_session(), ScriptedDecoder())
    driver.feed(np.concatenate([np.zeros(16000 * 5, np.float32), read_wav("whisper_jfk")]))
    driver.finish()
    finals = _check_stream(driver.events)
    assert finals[0].start >= 4.5
    assert finals[0].words and finals[0].words[0].start >= 4.5
    assert finals[-1].end <= 16.1


def test_memory_is_bounded_over_a_long_stream() -> None:
    session = _session()
    driver = Driver(session, ScriptedDecoder())
    speech = _speech()
    for _ in range(6):
        driver.feed(speech)
    driver.finish()
    _check_stream(driver.events)
    assert session.samples_held < 16000 * (20 + session.options.context_s)
    # the prompt keeps only what prompt_chars can use, not every final of the stream
    finals = [e for e in driver.events if isinstance(e, Final)]
    assert len(finals) > 10
    longest = max(len(f.text) + 1 for f in finals)
    prompt = session.history.prompt_texts()
    assert sum(len(t) + 1 for t in prompt) <= session.options.prompt_chars + longest
    # and the history only what the prompt or a context can still reach
    assert len(session.history) < len(finals)


class _ThankYou(ScriptedDecoder):
    """tiny.en on a breath: "Thank you." that Whisper itself thinks is no speech."""

    def decode(self, request):  # type: ignore[no-untyped-def]
        from captioncast.core.decoding import DecodeResult

        self.requests.append(request)
        return DecodeResult(text="Thank you.", language="en", avg_logprob=-0.7,
                            no_speech_prob=0.88)


@pytest.mark.parametrize(("seconds", "kept"), [(0.45, False), (3.0, True)])
def test_no_speech_decodes_of_very_short_utterances_are_dropped(seconds: float,
                                                                kept: bool) -> None:
    gap = np.zeros(16000, np.float32)
    burst = read_wav("whisper_jfk")[int(0.3 * 16000):int((0.3 + seconds) * 16000)]
    driver = Driver(_session(), _ThankYou())
    driver.feed(np.concatenate([gap, burst, gap]))
    driver.finish()
    finals = _check_stream(driver.events)
    assert len(finals) >= 1
    # A fraction of a second: the no-speech probability decides. Seconds of voice with a
    # log-prob above the threshold: Whisper's usual rule keeps the words.
    assert any(f.text for f in finals) is kept


class _LoopingFinal(ScriptedDecoder):
    """Real speech, then the decoder loops on its last word (compression ratio over 2.4)."""

    def decode(self, request: DecodeRequest) -> DecodeResult:
        from captioncast.core.text import compression_ratio

        self.requests.append(request)
        text = "here are some more words" + " words" * 20
        return DecodeResult(text=text, language="en", avg_logprob=-0.3, no_speech_prob=0.01,
                            compression_ratio=compression_ratio(text))


def test_a_final_that_loops_keeps_what_was_said_before_the_loop() -> None:
    # Whisper's compression rule drops a looping partial, but a final is the transcript:
    # its loop is cut and the speech before it kept, never the whole utterance lost.
    gap = np.zeros(16000, np.float32)
    driver = Driver(_session(interim=False), _LoopingFinal())
    driver.feed(np.concatenate([gap, read_wav("whisper_jfk")[: 3 * 16000], gap]))
    driver.finish()
    finals = [f for f in _check_stream(driver.events) if f.text]
    assert finals, "the utterance was dropped whole"
    for final in finals:
        assert final.text.startswith("here are some more words")
        assert final.text.split().count("words") < 5, final.text


class _ContextDecoder(ScriptedDecoder):
    """Says the forced prefix, then two words of its own at the end of the audio."""

    def decode(self, request: DecodeRequest) -> DecodeResult:
        self.requests.append(request)
        mine = [f"u{request.utterance}a", f"u{request.utterance}b"]
        said = request.prefix.split()
        d = request.duration
        timed = [DecodedWord(" " + w, 0.05 * i, 0.05 * (i + 1), 0.9) for i, w in enumerate(said)]
        timed += [DecodedWord(" " + w, d - 0.8 + 0.4 * i, d - 0.4 + 0.4 * i, 0.9)
                  for i, w in enumerate(mine)]
        return DecodeResult(" ".join(said + mine), "en",
                            words=tuple(timed) if request.word_timestamps else ())


def test_a_final_hears_the_earlier_finals_audio_and_keeps_only_its_own_words() -> None:
    decoder = _ContextDecoder()
    # its words cover only the end of each utterance: coverage would decode the rest again
    options = PolicyOptions(context_s=10.0, context_prefix=True,
                            coverage=CoverageOptions(enabled=False))
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en",
                                           interim=False, words=False), options)
    driver = Driver(session, decoder)
    driver.feed(_speech())
    driver.finish()
    finals = _check_stream(driver.events)
    assert [f.text for f in finals] == [f"u{f.utterance}a u{f.utterance}b" for f in finals]
    assert all("words" not in f.to_dict() for f in finals)  # words=false: none sent
    requests = {r.utterance: r for r in decoder.requests}
    with_context = [r for u, r in requests.items() if u > 0 and r.prefix]
    assert with_context, "later finals are decoded with the earlier finals in front"
    for r in with_context:
        before = [f.text for f in finals if f.utterance < r.utterance]
        assert " ".join(before).endswith(r.prefix)  # the context is the latest finals' text
        assert r.prefix not in r.prompt and r.word_timestamps
        # its audio reaches back before the utterance, and fits the encoder window
        utterance = next(f for f in finals if f.utterance == r.utterance)
        assert r.duration > utterance.end - utterance.start + 0.5
        assert r.duration <= options.context_window_s


def test_a_silent_session_holds_its_pre_roll_not_the_context_room() -> None:
    options = PolicyOptions(context_s=10.0)
    session = CaptionSession(SessionConfig(session_id="s", model="m", language="en"), options)
    driver = Driver(session, _ContextDecoder())
    driver.feed(np.zeros(16000 * 30, np.float32))
    assert session.samples_held < 16000 * 1.0  # no final to give context: the pre-roll only
    driver.feed(_speech())
    # right after speech the earlier finals' audio is kept: the next utterance's context
    finals = [e for e in driver.events if isinstance(e, Final)]
    assert finals and session.samples_held > 16000 * 2
    driver.feed(np.zeros(16000 * 30, np.float32))
    assert session.samples_held < 16000 * 1.0  # the finals are out of reach again
    driver.finish()
