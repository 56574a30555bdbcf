"""The session's recent finals: the prompt for the next decode and the audio context it may use."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from captioncast.core.context import Context, Remembered
from captioncast.core.text import prompt_tail


class FinalHistory:
    """Recent finals, oldest first, bounded so that a session of hours does not grow.

    A final is kept while the prompt can still use its text (`prompt_chars`) or a later
    utterance's context can still reach its audio (`context_samples` back from the
    newest final's end).
    """

    def __init__(self, prompt_chars: int, context_samples: int) -> None:
        self.prompt_chars = prompt_chars
        self.context_samples = context_samples
        self._finals: deque[Remembered] = deque()

    def __len__(self) -> int:
        return len(self._finals)

    def __iter__(self) -> Iterator[Remembered]:
        return iter(self._finals)

    def add(self, start: int, end: int, text: str) -> None:
        if not text:
            return
        self._finals.append(Remembered(start, end, text))
        while len(self._finals) > 1 and self._beyond_prompt(self._finals) \
                and end - self._finals[0].start > self.context_samples:
            self._finals.popleft()

    def clear(self) -> None:
        """Forget everything: after a loop, a prompt that holds it makes the next decode loop."""
        self._finals.clear()

    def prompt_texts(self) -> list[str]:
        """The finals' texts the prompt draws on: the fewest latest ones that fill it."""
        finals = deque(self._finals)
        while len(finals) > 1 and self._beyond_prompt(finals):
            finals.popleft()
        return [f.text for f in finals]

    def prompt(self, context: Context | None = None) -> str:
        """The end of the transcript, less the finals a context already holds as its prefix."""
        texts = self.prompt_texts()
        if context is not None and context.text:
            texts = texts[: max(0, len(texts) - context.finals)]
        return prompt_tail(texts, self.prompt_chars)

    def _beyond_prompt(self, finals: deque[Remembered]) -> bool:
        """The oldest final is not needed: the later ones alone fill the prompt."""
        later = sum(len(f.text) + 1 for f in finals) - len(finals[0].text) - 1
        return later >= self.prompt_chars
