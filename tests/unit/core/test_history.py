"""The session's recent finals: the prompt they make and how long they are kept."""

from __future__ import annotations

from captioncast.core.context import Context, choose_context
from captioncast.core.history import FinalHistory

SECOND = 16000


def _history(prompt_chars: int = 40, context_s: float = 10.0) -> FinalHistory:
    return FinalHistory(prompt_chars, int(context_s * SECOND))


def test_the_prompt_is_the_end_of_the_transcript_cut_at_a_word() -> None:
    history = _history(prompt_chars=20)
    for i, text in enumerate(["one two three", "four five six", "seven eight nine"]):
        history.add(i * SECOND, (i + 1) * SECOND, text)
    prompt = history.prompt()
    assert len(prompt) <= 20 and prompt.endswith("seven eight nine")
    assert f" {prompt}" in " one two three four five six seven eight nine"  # whole words


def test_finals_a_context_holds_are_left_out_of_the_prompt() -> None:
    history = _history(prompt_chars=200)
    for i, text in enumerate(["alpha", "beta", "gamma"]):
        history.add(i * SECOND, (i + 1) * SECOND, text)
    context = Context(samples=2 * SECOND, text="beta gamma", finals=2)
    assert history.prompt(context) == "alpha"


def test_old_finals_are_dropped_once_neither_prompt_nor_context_reaches_them() -> None:
    history = _history(prompt_chars=10, context_s=5.0)
    for i in range(100):
        history.add(i * SECOND, i * SECOND + SECOND // 2, f"word{i}")
    assert len(history) <= 6  # five seconds of context: one final a second, plus the newest
    assert history.prompt().endswith("word99")
    history.clear()
    assert len(history) == 0 and history.prompt() == ""


def test_a_context_is_the_latest_finals_that_fit_the_window() -> None:
    history = _history(prompt_chars=200)
    for i in range(5):
        history.add(i * 2 * SECOND, i * 2 * SECOND + SECOND, f"f{i}")
    # utterance at 10 s ending at 12 s; window 7 s: finals starting at 6 and 8 s fit
    context = choose_context(history, 10 * SECOND, 0, 12 * SECOND, 7 * SECOND)
    assert context == Context(samples=4 * SECOND, text="f3 f4", finals=2)
    # nothing held from before the audio still buffered
    assert choose_context(history, 10 * SECOND, 9 * SECOND, 12 * SECOND, 7 * SECOND) == Context()
