"""A scripted decoder for core tests: one word per 0.4 s of audio, honouring the prefix."""

from __future__ import annotations

from collections import deque

from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.policy import Action, CaptionSession
from captioncast.session.driver import Done, SessionDriver

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


class ScriptedDecodes:
    """Decodes answered by a ScriptedDecoder `delay` ticks (fed chunks) after they are asked."""

    def __init__(self, decoder: ScriptedDecoder, delay: int) -> None:
        self.decoder = decoder
        self.delay = delay
        self.tick = 0
        self.cancelled: set[int] = set()
        self._queue: deque[tuple[int, DecodeRequest, Done]] = deque()

    def submit(self, request: DecodeRequest, done: Done) -> None:
        self._queue.append((self.tick + self.delay, request, done))

    def cancel(self, request_id: int) -> None:
        self.cancelled.add(request_id)

    def drop(self) -> None:
        self._queue.clear()

    @property
    def waiting(self) -> bool:
        return bool(self._queue)

    def answer_due(self, everything: bool = False) -> None:
        while self._queue and (everything or self._queue[0][0] <= self.tick):
            _, request, done = self._queue.popleft()
            if request.request_id in self.cancelled:
                continue
            done(request, self.decoder.decode(request))


class Driver:
    """Runs a session through the server's SessionDriver, on scripted decodes."""

    def __init__(self, session: CaptionSession, decoder: ScriptedDecoder,
                 delay_chunks: int = 0) -> None:
        self.session = session
        self.decoder = decoder
        self.events: list[object] = []
        self.decodes = ScriptedDecodes(decoder, delay_chunks)
        self.driver = SessionDriver(session, self.decodes, on_event=self.events.append)
        self.handle(session.start())

    @property
    def cancelled(self) -> set[int]:
        return self.decodes.cancelled

    def handle(self, actions: list[Action]) -> None:
        self.driver.dispatch(actions)

    def feed(self, audio, chunk: int = 1600) -> None:  # type: ignore[no-untyped-def]
        for i in range(0, len(audio), chunk):
            self.handle(self.session.feed(audio[i : i + chunk]))
            self.decodes.tick += 1
            self.decodes.answer_due()

    def finish(self) -> None:
        self.handle(self.session.eos())
        while self.decodes.waiting:
            self.decodes.answer_due(everything=True)
