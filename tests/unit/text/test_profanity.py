"""text/profanity.py: listed words masked as Deepgram masks them, and nothing else."""

from __future__ import annotations

import pytest

from captioncast.protocol.events import End, Final, Partial, Word
from captioncast.text.profanity import Masker, ProfanityOptions, masker, masking

MASK = masker()


@pytest.mark.parametrize(("text", "masked"), [
    ("damn", "****"),  # Deepgram: every letter an asterisk, none kept
    ("Damn, that hurt.", "****, that hurt."),
    ("DAMN IT", "**** IT"),
    ("What the fuck?!", "What the ****?!"),
    ("fucking, fucked, fucker, fuckers, fucks", "*******, ******, ******, *******, *****"),
    ("shitting shitty bullshit", "******** ****** ********"),
    ("whored, whoring, arsed", "******, *******, *****"),
    ("crapped crapping", "******* ********"),
    ("bitches", "*******"),
    ("it's shit's end", "it's ****'s end"),  # the apostrophe and what follows stay
    ("fuckin' hell", "******' hell"),
    ("half-assed", "half-*****"),
    ("\"Bastard!\" he said", "\"*******!\" he said"),
    (" Asshole", " *******"),  # a Whisper word, its leading space kept
])
def test_listed_words_and_their_forms_are_masked(text: str, masked: str) -> None:
    assert MASK.mask(text) == masked


# Words holding a listed word, or looking like one of its forms, that must stay.
INNOCENT = (  # one string: a sentence of them is tested too
    "class classes classic assess assessment assassin assistant passage bass grass "
    "massive embassy Scunthorpe Essex Sussex cocktail peacock Dickens Dick dictionary "
    "hello shell hell Hell God goddess scrap scrappy scraps craps crapshoot damning "
    "damnation shiitake shift shirt shitake therapist analysis document pussycat "
    "cumin cumulative titter title tithe Titanic skill killer sextet Middlesex "
    "piston whorl prickly cocky snigger niggle bitcoin hitch arsenal arsenic parse "
    "sparse passed masses twatch wankel"
)


@pytest.mark.parametrize("word", INNOCENT.split())
def test_innocent_words_are_left_alone(word: str) -> None:
    assert MASK.mask(word) == word
    assert MASK.mask(f"The {word}, said twice: {word.upper()}.") == \
        f"The {word}, said twice: {word.upper()}."


def test_a_sentence_of_innocent_words_is_left_alone() -> None:
    assert MASK.mask(INNOCENT) == INNOCENT


def test_masking_keeps_every_character_that_is_not_a_masked_letter() -> None:
    text = "Well, d— damn it!  Twice: DAMN.\n"
    masked = MASK.mask(text)
    assert len(masked) == len(text)
    assert [c for c, m in zip(text, masked) if c != m] == list("damnDAMN")


def test_extra_words_and_kept_forms() -> None:
    custom = Masker(["apostle", "gosh"], keep=["goshes"])
    assert custom.mask("The Apostle's gospel, gosh!") == "The *******'s gospel, ****!"
    assert custom.mask("apostles goshes") == "******** goshes"
    assert masker(("apostle",)).mask("apostle damn") == "******* ****"
    assert masker(("apostle",)) is masker(("apostle",))  # one per server


def test_a_partials_stable_stays_the_prefix_of_its_text() -> None:
    partial = Partial(3, utterance=1, start=0.0, end=2.0,
                      text="Oh damn, the shitty assessment", stable="Oh damn, the shitty")
    masked = MASK.event(partial)
    assert isinstance(masked, Partial)
    assert masked.text == "Oh ****, the ****** assessment"
    assert masked.stable == "Oh ****, the ******"
    assert masked.text.startswith(masked.stable)
    assert masked.stable == MASK.mask(partial.stable)  # the same as masking it alone
    assert (masked.seq, masked.utterance, masked.start) == (3, 1, 0.0)


@pytest.mark.parametrize("words", [
    "the class damn assessed shit fucking piss",
    "Damn, damn. Classes. Shitting! ok",
])
def test_stable_prefix_holds_for_every_word_boundary(words: str) -> None:
    tokens = words.split()
    for cut in range(len(tokens) + 1):
        stable = " ".join(tokens[:cut])
        masked = MASK.event(Partial(1, 0, 0.0, 1.0, text=words, stable=stable))
        assert isinstance(masked, Partial)
        assert masked.text.startswith(masked.stable)
        assert masked.stable == MASK.mask(stable)


def test_a_finals_text_and_every_word_are_masked() -> None:
    final = Final(5, utterance=2, start=1.0, end=3.0, text=" Damn, the class fucked up.",
                  language="en", words=(Word(" Damn,", 1.0, 1.4, 0.9),
                                        Word(" the", 1.4, 1.6, 0.9),
                                        Word(" class", 1.6, 2.0, 0.8),
                                        Word(" fucked", 2.0, 2.5, 0.7),
                                        Word(" up.", 2.5, 3.0, 0.9)))
    masked = MASK.event(final)
    assert isinstance(masked, Final)
    assert masked.text == " ****, the class ****** up."
    assert [w.word for w in masked.words] == [" ****,", " the", " class", " ******", " up."]
    assert [(w.start, w.end, w.p) for w in masked.words] == \
        [(w.start, w.end, w.p) for w in final.words]
    assert "".join(w.word for w in masked.words) == masked.text


def test_clean_events_and_other_kinds_pass_unchanged() -> None:
    clean = Final(1, 0, 0.0, 1.0, text="A classic class.", language="en")
    assert MASK.event(clean) is clean
    end = End(9, duration=3.0, utterances=2)
    assert MASK.event(end) is end


def test_who_gets_the_filter() -> None:
    default = ProfanityOptions()
    assert not default.applies(None, "show") and default.applies(True, None)
    server = ProfanityOptions(on=True)
    assert server.applies(None) and not server.applies(False)
    family = ProfanityOptions(channels=("kids",))
    assert family.applies(None, "kids") and not family.applies(None, "show")
    assert not family.applies(None, None) and not family.applies(False, "kids")


def test_masking_wraps_what_says_events_only_when_it_applies() -> None:
    said: list[object] = []
    say = said.append
    assert masking(say, ProfanityOptions(), None) is say  # off: nothing in between
    masked = masking(say, ProfanityOptions(words=("gosh",)), True)
    masked(Final(1, 0, 0.0, 1.0, text="Oh gosh, damn.", language="en"))
    assert isinstance(said[0], Final) and said[0].text == "Oh ****, ****."
