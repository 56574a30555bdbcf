"""A scripted decoder for core tests: one word per 0.4 s of audio, honouring the prefix."""

from __future__ import annotations

from collections import deque

from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.policy import Action, Cancel, CaptionSession

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    "hotel", "india", "juliet", "kilo", "lima", "mike",
]
WORD_S = 0.4


class ScriptedDecoder:
    name = "scripted"
    multilingual = False

    def __init__(self, garble_last_partial_word: bool = True) -> None:
        self.garble = garble_last_partial_word
        self.requests: list[DecodeRequest] = []

    def decode(self, request: DecodeRequest) -> DecodeResult:
        self.requests.append(request)
        prefix = request.prefix.split()
        count = max(len(prefix), int(request.duration / WORD_S))
        words = prefix + [WORDS[i % len(WORDS)] for i in range(len(prefix), count)]
        if request.kind == "partial" and self.garble and len(words) > len(prefix):
            words[-1] = words[-1][:2] + "-"  # the audio cut the last word short
        timed = tuple(
            DecodedWord(" " + w, i * WORD_S, min((i + 1) * WORD_S, request.duration), 0.9)
            for i, w in enumerate(words)
        )
        return DecodeResult(
            text=" ".join(words), language="en",
            words=timed if request.word_timestamps else (),
        )


class Driver:
    """Runs a session, answering each decode request `delay_chunks` feeds later."""

    def __init__(self, session: CaptionSession, decoder: ScriptedDecoder,
                 delay_chunks: int = 0) -> None:
        self.session = session
        self.decoder = decoder
        self.delay = delay_chunks
        self.events: list[object] = []
        self._queue: deque[tuple[int, DecodeRequest]] = deque()
        self._tick = 0
        self.cancelled: set[int] = set()
        self.handle(session.start())

    def handle(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, DecodeRequest):
                self._queue.append((self._tick + self.delay, action))
            elif isinstance(action, Cancel):
                self.cancelled.add(action.request_id)
            else:
                self.events.append(action)

    def _answer_due(self, everything: bool = False) -> None:
        while self._queue and (everything or self._queue[0][0] <= self._tick):
            _, request = self._queue.popleft()
            if request.request_id in self.cancelled:
                continue
            self.handle(self.session.on_result(request.request_id,
                                               self.decoder.decode(request)))

    def feed(self, audio, chunk: int = 1600) -> None:  # type: ignore[no-untyped-def]
        for i in range(0, len(audio), chunk):
            self.handle(self.session.feed(audio[i : i + chunk]))
            self._tick += 1
            self._answer_due()

    def finish(self) -> None:
        self.handle(self.session.eos())
        while self._queue:
            self._answer_due(everything=True)
