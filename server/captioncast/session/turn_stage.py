"""Turn-taking for one live session (`turns`): between its events and their publication.

After every core call the stage looks at the open utterance and its pause: speech that
begins after silence says `speech_started` (from the VAD, before any word is decoded)
and starts or resumes a turn; a pause is put to the turn model once, on the scheduler
among the decodes; a turn the model ends is cut at its pause at once (the final decoded
when the pause began is its final), and `end` follows that final. Every event of the
session passes here and is numbered here, in the order it goes out.

Without turn settings (a stream with `speech_events` alone: a compatible API that ends
utterances by its own endpointing) the stage only says `speech_started`: no turn is
followed and the turn model is never asked.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.params import TurnSettings
from captioncast.core.policy import Action, CaptionSession
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.protocol.events import End, Event, Sequencer, SpeechStarted
from captioncast.turns.tracker import TurnTracker, Verdict, ends_open

log = logging.getLogger("captioncast.turns")
MODEL_AUDIO_S = 8.0  # what the turn model hears of a turn: its last 8 s
# Seconds of silence at which the model is asked: once as the pause begins (the moment the
# segmenter starts the pause's final), once more as it lasts, since the longer a silence
# the likelier a turn is over (bench/RESULTS.md, "the turn model on paused sentences").
ASK_AFTER_S = (0.2, 0.6)
ASK_BUDGET_S = 0.1  # the model's answer is due before the pause's final


class TurnJudge(Protocol):
    def complete_probability(self, audio: np.ndarray) -> float: ...


class TurnStage:
    def __init__(self, owner: str, core: CaptionSession, model: TurnJudge | None,
                 scheduler: DecodeScheduler, settings: TurnSettings | None,
                 publish: Callable[[Event], None],
                 dispatch: Callable[[list[Action]], None]) -> None:
        self.owner = owner
        self.core = core
        self.model = model
        self.scheduler = scheduler
        # None: speech_started alone (no turns), see the module's docstring.
        self.tracker = None if settings is None else TurnTracker(settings)
        self._say = publish
        self._dispatch = dispatch
        self._seq = Sequencer()
        self._open: tuple[int, int] | None = None
        self._ids = itertools.count(1)
        self._asks = (-1, 0)  # the voice end the model was asked about, and how often
        self._armed = -1  # the voice end whose timeout is waited on the clock
        self._timer: asyncio.TimerHandle | None = None
        self.asked = 0  # pauses put to the turn model

    def reconfigure(self, settings: TurnSettings) -> None:
        assert self.tracker is not None
        self.tracker.settings = settings

    # -- after every core call --------------------------------------------------------------

    def heard(self) -> None:
        core, tracker = self.core, self.tracker
        now = core.open_span()
        if now is not None and now != self._open:
            if self._open is None:  # speech after silence: `at` is where the VAD heard it
                at = max(now[1], core.speech_onset)
                started: list[Event] = [SpeechStarted(0, utterance=now[0],
                                                      at=at / MODEL_SAMPLE_RATE)]
                for event in started if tracker is None else tracker.speech_started(now[0], at):
                    self._publish(event)
            elif tracker is not None:
                tracker.continued(now[0])
        self._open = now
        if tracker is None:
            return
        pause = core.pause_start()
        tracker.heard(core.position if core.in_speech and pause is None else pause)
        voice_end = tracker.last_voice
        silence = core.position - voice_end
        asks = self._asks[1] if self._asks[0] == voice_end else 0
        if tracker.following and (pause is not None or not core.in_speech) \
                and asks < len(ASK_AFTER_S) and silence >= ASK_AFTER_S[asks] * MODEL_SAMPLE_RATE:
            self._asks = (voice_end, asks + 1)
            if not ends_open(tracker.said()):  # the answer could not end the turn anyway
                self._ask(voice_end)
        if tracker.timed_out(core.position):
            self._end()
        elif tracker.following and silence > 0 and self._armed not in (voice_end, -2):
            # A client that stops sending audio (no silence frames) still gets its turn's
            # end: the rest of the timeout is waited on the clock.
            self._armed = voice_end
            if self._timer is not None:
                self._timer.cancel()
            left = tracker.settings.eot_timeout_ms / 1000 - silence / MODEL_SAMPLE_RATE
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, left), self._timed_out, voice_end)

    def _timed_out(self, voice_end: int) -> None:
        self._timer = None
        if self.tracker is not None and self.tracker.following \
                and self.tracker.last_voice == voice_end:
            self._end()

    def _ask(self, voice_end: int) -> None:
        # The model hears the silence so far too, as it was trained to: its last 8 s.
        end = self.core.position
        audio = self.core.audio(max(0, end - int(MODEL_AUDIO_S * MODEL_SAMPLE_RATE)), end)
        self.asked += 1
        future = self.scheduler.submit_call(
            self.owner, -(10**9 + next(self._ids)),
            functools.partial(self._judge().complete_probability, audio), ASK_BUDGET_S)
        future.add_done_callback(functools.partial(self._answered, voice_end))

    def _judge(self) -> TurnJudge:
        assert self.model is not None, "a stage that follows turns is given the turn model"
        return self.model

    def _answered(self, voice_end: int, future: asyncio.Future[float]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.warning("event=turn_model_failed session=%s error=%r", self.owner, error)
            return
        if self.tracker is None or self.tracker.last_voice != voice_end:
            return  # speech went on: this pause is past
        verdict = self.tracker.judge(future.result())
        log.debug("event=turn_judged session=%s pause_s=%.2f probability=%.3f verdict=%s "
                  "words=%r", self.owner, voice_end / MODEL_SAMPLE_RATE, future.result(),
                  verdict.value, self.tracker.said()[-40:])
        if verdict is Verdict.END:
            self._end(tentative=True)
        elif verdict is Verdict.EAGER:
            for event in self.tracker.eager():
                self._publish(event)

    def _end(self, tentative: bool = False) -> None:
        assert self.tracker is not None
        # Cut the utterance at its pause now, rather than after the VAD's hangover.
        self._dispatch(self.core.end_at_pause())
        for event in self.tracker.end(tentative):
            self._publish(event)

    def force_end(self) -> None:
        """The client says the turn is over (Flux's ForceEndTurn): the utterance under way
        ends now, and the turn's `end` follows its final."""
        self._dispatch(self.core.flush())
        for event in [] if self.tracker is None else self.tracker.end():
            self._publish(event)

    def finish(self) -> None:
        """End of stream: the turn under way ends with its finals."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = -2  # nothing is waited on the clock any more
        if self.tracker is None:
            return
        for event in self.tracker.end():
            self._publish(event)

    # -- events -------------------------------------------------------------------------------

    def event(self, event: Event) -> None:
        if isinstance(event, End):
            self.finish()  # every final is out: the last turn's end goes before `end`
        self._publish(event)
        if self.tracker is not None:
            for said in self.tracker.event(event):
                self._publish(said)

    def _publish(self, event: Event) -> None:
        self._say(event.with_seq(self._seq.next()))
