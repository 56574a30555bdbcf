"""Guards against Whisper's looping failure, inside one final and across consecutive finals.

Whisper sometimes repeats a phrase until its token limit ("I'm going to go. I'm going
to go. I'm going to go. …"), or copies the previous caption, which it was given as
its prompt, into the next one. Fed back as the prompt, a loop feeds itself: every later
utterance starts repeating too. The guard finds such repeats in a final's words, says
which words to keep, and tells the session to reset its prompt.

Speech repeats itself too ("no no no", "words words words words", a refrain said
twice), so the thresholds ask for more repetition than people produce.
"""

from __future__ import annotations

from dataclasses import dataclass

from captioncast.core.text import norm_word


@dataclass(frozen=True)
class LoopOptions:
    max_ngram: int = 6  # longer looping phrases are caught by Whisper's compression ratio
    min_repeats: int = 3  # a phrase said three times back to back...
    # ...spanning this many words is a loop: one word 7 times ("okay, okay, …" that tiny.en
    # heard in radio noise), two words 4 times, three or more 3 times. People hesitate
    # ("montreal uh uh uh uh uh uh forced aligner" is in our test speech) but rarely longer.
    min_loop_words: int = 7
    # Whisper also says a whole sentence twice. A phrase of 10+ words repeated at once is
    # that, not speech (the soak benchmark: "So this is the sick corpus. I have a cold…"
    # twice over audio that says it once).
    min_echo_words: int = 10
    min_copied_words: int = 6  # a final that opens with the previous one's last 6+ words copied it
    # The same words said again take about as long; over half the audio or less, the
    # decoder copied its prompt (the soak benchmark: a 15-word final over 0.4 s of "uh").
    min_same_duration_ratio: float = 0.5


@dataclass(frozen=True)
class Verdict:
    keep: tuple[int, ...]  # indices of the words to keep, in order
    looped: bool  # words were cut: a loop (and the prompt must be reset)
    reason: str = ""
    reset_prompt: bool = False  # even with nothing cut, the prompt may be feeding a loop


def _run_length(tokens: list[str], i: int, size: int) -> int:
    """How many times tokens[i:i+size] occurs back to back from i."""
    gram = tokens[i : i + size]
    if len(gram) < size or not any(gram):
        return 1
    count = 1
    while tokens[i + count * size : i + (count + 1) * size] == gram:
        count += 1
    return count


def collapse_loops(words: list[str], options: LoopOptions | None = None) -> list[int]:
    """Indices of `words` to keep when every looping run is cut to its first occurrence."""
    opts = options or LoopOptions()
    tokens = [norm_word(w) for w in words]
    keep: list[int] = []
    i = 0
    while i < len(tokens):
        best_size, best_count = 0, 1
        for size in range(1, opts.max_ngram + 1):
            count = _run_length(tokens, i, size)
            if (count >= opts.min_repeats and count * size >= opts.min_loop_words
                    and count * size > best_count * best_size):
                best_size, best_count = size, count
        for size in range(opts.min_echo_words, (len(tokens) - i) // 2 + 1):
            if tokens[i + size] != tokens[i]:
                continue  # cheap test first: an echo starts with the same word
            count = _run_length(tokens, i, size)
            spoken = sum(1 for t in tokens[i : i + size] if t)
            if count >= 2 and spoken >= opts.min_echo_words and count * size > (
                    best_count * best_size):
                best_size, best_count = size, count
        if best_size:
            keep.extend(range(i, i + best_size))
            i += best_size * best_count
        else:
            keep.append(i)
            i += 1
    return keep


def _copied_prefix(previous: list[str], current: list[str], min_words: int) -> int:
    """How many opening words of `current` repeat the closing words of `previous`."""
    for n in range(min(len(previous), len(current)), min_words - 1, -1):
        if previous[-n:] == current[:n]:
            return n
    return 0


class RepetitionGuard:
    """Remembers the previous final of a session and judges each new one.

    Across finals: a final that opens with a copy of the previous final's ending and
    goes on has that copy cut (Whisper re-read its prompt). A final identical to the
    previous one over much shorter audio is a copy and is dropped; over as much audio
    it is kept, since people do repeat themselves, but the prompt is reset: if the
    prompt made it, the next decode cannot be made by it again.
    """

    def __init__(self, options: LoopOptions | None = None) -> None:
        self.options = options or LoopOptions()
        self._previous: list[str] = []
        self._previous_duration = 0.0
        self.loops = 0

    def copies_previous(self, words: list[str]) -> bool:
        """True when a hypothesis repeats the previous final or opens with its ending.

        Such a partial must not make its words `stable`, which no final could then cut.
        """
        tokens = [norm_word(w) for w in words]
        if any(tokens) and tokens == self._previous:
            return True
        return bool(_copied_prefix(self._previous, tokens, self.options.min_copied_words))

    def check(self, words: list[str], protected: int = 0, duration: float = 0.0) -> Verdict:
        """Judge a final's words; the first `protected` ones (already shown as stable) stay.

        `duration` is the seconds of audio the final was decoded from.
        """
        opts = self.options
        tokens = [norm_word(w) for w in words]
        keep = list(range(len(words)))
        reason = ""
        same = bool(tokens) and tokens == self._previous
        if same and duration < opts.min_same_duration_ratio * self._previous_duration:
            keep, reason = [], "copied the previous final over shorter audio"
        # Words already shown as stable were agreed by two decodes: not a one-off copy.
        elif not same and not protected:
            copied = _copied_prefix(self._previous, tokens, opts.min_copied_words)
            if copied:
                keep, reason = keep[copied:], "copied the previous final"
        collapsed = collapse_loops([words[i] for i in keep], opts)
        if len(collapsed) < len(keep):
            keep, reason = [keep[i] for i in collapsed], reason or "phrase loop"
        if any(tokens) and not reason.startswith("copied the previous final over"):
            self._previous, self._previous_duration = tokens, duration
        if protected:
            keep = sorted(set(range(min(protected, len(words)))) | set(keep))
        looped = len(keep) < len(words)
        if looped:
            self.loops += 1
        return Verdict(tuple(keep), looped, reason if looped else "",
                       reset_prompt=looped or same)
