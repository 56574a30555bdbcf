"""Who spoke, for one live session: between its core's events and their publication.

The session's `SpeakerTrack` says what to embed; the embeddings run on the shared
scheduler, among the decodes, due before the final they label. A window that hears
another voice cuts the open utterance there (the core ends it and goes on with the
rest). Each final is held until its utterance's voice is known (at most `max_hold_s`),
then goes out with its label on it and on its words; the speaker table, when it
changed, goes out just before it. Partials pass at once with the best guess so far.
Every event the session says passes here and is numbered here, in the order it goes out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.policy import Action, CaptionSession
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import BadControlMessage
from captioncast.protocol.events import End, Event, Final, Partial, Sequencer, Speakers
from captioncast.speakers.options import SpeakerOptions
from captioncast.speakers.roster import Assignment, SpeakerRoster
from captioncast.speakers.track import EmbedAsk, Heard, SpeakerTrack

log = logging.getLogger("captioncast.speakers")


class Embedder(Protocol):
    def embed(self, audio: np.ndarray) -> np.ndarray: ...


class Segmenter(Protocol):
    def local_speakers(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Labelling(Protocol):
    """What a live session asks of its speaker labelling, on or off."""

    cuts: int | None  # utterances ended at a change of voice; None: labelling is off

    def heard(self, audio: np.ndarray | None = None) -> None: ...

    def event(self, event: Event) -> None: ...

    def when_said(self, then: Callable[[], None]) -> None: ...

    def name(self, label: str, name: str) -> None: ...

    def close(self) -> None: ...


class Unlabelled:
    """Labelling off: events go out as the core says them, and nothing is embedded."""

    cuts: int | None = None

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self.event = publish

    def heard(self, audio: np.ndarray | None = None) -> None:
        pass

    def when_said(self, then: Callable[[], None]) -> None:
        then()

    def name(self, label: str, name: str) -> None:
        raise BadControlMessage("speakers are labelled only with diarize=true or "
                                "multichannel=true")

    def close(self) -> None:
        pass


class SpeakerStage:
    def __init__(self, owner: str, core: CaptionSession, embedder: Embedder,
                 scheduler: DecodeScheduler, roster: SpeakerRoster,
                 publish: Callable[[Event], None], dispatch: Callable[[list[Action]], None],
                 options: SpeakerOptions | None = None,
                 segmenter: Segmenter | None = None) -> None:
        self.owner = owner
        self.core = core
        self.embedder = embedder
        self.segmenter = segmenter
        self.scheduler = scheduler
        self.roster = roster
        self.options = options or SpeakerOptions()
        # Without the segmentation model, the embedding windows find changes of voice.
        self.track = SpeakerTrack(self.options.track, segmenting=segmenter is not None)
        self._say = publish
        # The session's events in the order they go out: a final held for its voice lets
        # the partials after it pass, and the speaker table comes between.
        self._seq = Sequencer()
        self._dispatch = dispatch
        self._held: deque[Event] = deque()  # finals (and what follows them) awaiting a voice
        # Each ended utterance's voice, put to the roster only when its final is said: a
        # final without words (noise, a cough) must neither found nor move a voice.
        self._voices: dict[int, tuple[np.ndarray, float]] = {}
        self._asked: set[int] = set()  # utterances whose embedding is on its way
        self._guess: tuple[int, str] | None = None  # the open utterance's voice so far
        self._last: Assignment | None = None
        self._said_version = -1
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._then: Callable[[], None] | None = None  # once everything held is said
        self.cuts: int | None = 0  # utterances ended at a change of voice

    # -- audio ----------------------------------------------------------------------------

    def heard(self, audio: np.ndarray | None = None) -> None:
        """After every core call (feed, flush, eos, a cut): embed what is due.

        Called before the core's actions are dispatched, so that an utterance's embedding
        is asked for before its final can be said.
        """
        if audio is not None and len(audio):
            self.track.push(audio)
        for ask in self.track.step(self.core.open_span(), self.core.voiced_mask):
            if isinstance(ask, Heard):
                self._assign(ask.utterance, ask.embedding, ask.voiced_s)
            else:
                self._submit(ask)

    def _submit(self, ask: EmbedAsk) -> None:
        log.debug("event=speaker_ask session=%s utterance=%d kind=%s voiced_s=%.2f", self.owner,
                  ask.utterance, ask.kind, ask.voiced_s)
        if ask.kind == "utterance":
            if ask.voiced_s < 0.3:
                return  # too little voice to tell: its final takes the last voice heard
            self._asked.add(ask.utterance)
        if ask.kind == "segment":
            assert self.segmenter is not None, "segments are asked only with a segmenter"
            segments = self.scheduler.submit_call(
                self.owner, -ask.ask_id,
                functools.partial(self.segmenter.local_speakers, ask.audio),
                self.options.embed_budget_s)
            segments.add_done_callback(functools.partial(self._segmented, ask))
            return
        future = self.scheduler.submit_call(
            self.owner, -ask.ask_id, functools.partial(self.embedder.embed, ask.audio),
            self.options.embed_budget_s)
        future.add_done_callback(functools.partial(self._embedded, ask))

    def _segmented(self, ask: EmbedAsk,
                   future: asyncio.Future[tuple[np.ndarray, np.ndarray]]) -> None:
        if self._closed or future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.warning("event=speaker_segmentation_failed session=%s error=%r",
                        self.owner, error)
            return
        self._cut(self.track.segment_done(ask, *future.result()))

    def _embedded(self, ask: EmbedAsk, future: asyncio.Future[np.ndarray]) -> None:
        if self._closed or future.cancelled():
            return
        error = future.exception()
        if ask.kind == "window":
            if error is None:
                self._window(ask, future.result())
            return
        self._asked.discard(ask.utterance)
        if error is not None:
            log.warning("event=speaker_embedding_failed session=%s error=%r", self.owner, error)
        else:
            self._assign(ask.utterance, future.result(), ask.voiced_s)
        self._release()

    def _assign(self, utterance: int, embedding: np.ndarray, voiced_s: float) -> None:
        self._voices[utterance] = (embedding, voiced_s)

    def _window(self, ask: EmbedAsk, embedding: np.ndarray) -> None:
        guess = self.roster.peek(embedding)
        if guess is not None:
            self._guess = (ask.utterance, guess)
        self._cut(self.track.window_done(ask, embedding))

    def _cut(self, cut: int | None) -> None:
        """Another voice from sample `cut` on: the open utterance ends there."""
        if cut is None:
            return
        log.debug("event=speaker_change session=%s at_s=%.2f", self.owner,
                  cut / MODEL_SAMPLE_RATE)
        self.cuts = (self.cuts or 0) + 1
        actions = self.core.cut_at(cut)
        self.heard()
        self._dispatch(actions)

    # -- events ---------------------------------------------------------------------------

    def event(self, event: Event) -> None:
        """An event of the core's, on its way out."""
        if isinstance(event, Partial) and not self._held:
            if self._guess is not None and self._guess[0] == event.utterance:
                event = dataclasses.replace(event, speaker=self._guess[1])
            self._publish(event)
            return
        if isinstance(event, Partial):
            self._publish(event)  # a partial never waits: the final it precedes may
            return
        if isinstance(event, Final | End) or self._held:
            self._held.append(event)
            self._release()
            if self._held and self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.options.max_hold_s, self._give_up)
            return
        self._publish(event)

    def _release(self) -> None:
        while self._held:
            head = self._held[0]
            if isinstance(head, Final):
                voice = self._voices.pop(head.utterance, None)
                if voice is None and head.utterance in self._asked:
                    return  # its voice is on its way
                self._say_final(head, voice)
            else:
                self._publish(head)
            self._held.popleft()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        then, self._then = self._then, None
        if then is not None:
            then()

    def when_said(self, then: Callable[[], None]) -> None:
        """Call `then` once every event held so far has gone out (now, if none is)."""
        self._then = then
        self._release()

    def _give_up(self) -> None:
        """A final waited its longest: it goes out with the last voice heard."""
        self._timer = None
        log.debug("event=speaker_hold_expired session=%s", self.owner)
        if self._held and isinstance(self._held[0], Final):
            self._asked.discard(self._held[0].utterance)
        self._release()

    def _say_final(self, final: Final, voice: tuple[np.ndarray, float] | None) -> None:
        assignment = None
        if voice is not None and final.text.strip():
            assignment = self.roster.assign(*voice)
            log.debug("event=speaker_assigned session=%s utterance=%d label=%s "
                      "similarity=%.3f voiced_s=%.2f", self.owner, final.utterance,
                      assignment.label, assignment.confidence, voice[1])
        if assignment is None:
            # No voice to tell (too short, late, or no words): the last voice heard.
            assignment = self._last or self.roster.assign(np.zeros(0, np.float32), 0.0)
        self._last = assignment
        self.say_table()
        name = self.roster.display_name(assignment.label)
        self._publish(final.labelled(assignment.label, name))

    def _publish(self, event: Event) -> None:
        self._say(event.with_seq(self._seq.next()))

    # -- the table ------------------------------------------------------------------------

    def say_table(self) -> None:
        """The speaker table, when it changed since it was last said."""
        if self.roster.version == self._said_version:
            return
        self._said_version = self.roster.version
        self._publish(Speakers(0, speakers=self.roster.table()))

    def name(self, label: str, name: str) -> None:
        self.roster.name(label, name)
        self.say_table()

    def close(self) -> None:
        """The session is over: what is held goes out as it is."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._asked.clear()
        self._release()
        self._closed = True
