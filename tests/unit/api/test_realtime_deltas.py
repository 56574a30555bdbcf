"""api/realtime_deltas.py: words shown once stable or seen twice, never retracted."""

from __future__ import annotations

from captioncast.api.realtime_deltas import ItemText


def test_words_go_out_once_stable_or_in_two_partials_in_a_row() -> None:
    text = ItemText()
    assert text.partial(0, "And so", "") == ""  # seen once: not yet
    assert text.partial(0, "And so my fellow", "") == "And so"  # seen twice
    assert text.partial(0, "And so, my fellow Americans", "") == " my fellow"
    assert text.partial(0, "And so, my fellow Americans, ask", "And so, my fellow Americans,"
                        ) == " Americans,"
    assert text.final(0, " And so, my fellow Americans, ask not.") == " ask not."


def test_a_word_said_is_never_contradicted() -> None:
    text = ItemText()
    text.partial(0, "ask what your", "")
    assert text.partial(0, "ask what your country", "") == "ask what your"
    assert text.partial(0, "ask not what", "") == ""  # disagrees with what was said
    assert text.final(0, "Ask not what your country can do.") == ""  # stays unsaid
    assert text.transcript == "Ask not what your country can do."  # `completed` says it


def test_an_items_utterances_are_said_in_order() -> None:
    text = ItemText()
    text.partial(0, "a table", "a table")
    assert text.partial(1, "for two", "for two") == ""  # utterance 0 is not final yet
    assert text.final(0, "A table,") == " for two"  # "a table" was said: same words
    assert text.final(1, "for two please.") == " please."
    assert text.transcript == "A table, for two please."
