"""`multichannel=true`: a stereo interview or two-mic podcast, each channel its own speaker.

Each channel is captioned apart by a `CaptionSession` of its own (crosstalk on one mic
never garbles the other's words); `DualCore` stands where a session's core stands and
merges the two into one stream of events: one utterance numbering in order of start,
finals in that order, one `end`. The label is the channel (`S1`, `S2`) with its
`source_channel`; `ChannelLabels` gives them names. The session is admitted and costs
as two streams would: two cores, two utterances decoding at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.policy import Action, Cancel, CaptionSession
from captioncast.core.quality import CaptionQuality
from captioncast.errors import CaptioncastError
from captioncast.protocol.events import End, Event, Final, Partial, Ready, SpeakerEntry, Speakers
from captioncast.speakers.roster import SpeakerRoster

CHANNELS = 2


class DualCore:
    """Two channels' cores behind one core's face (what LiveSession and the driver use)."""

    def __init__(self, make: Callable[[], CaptionSession]) -> None:
        self.cores = [make() for _ in range(CHANNELS)]
        self._numbers: dict[tuple[int, int], int] = {}  # (channel, utterance) -> ours
        self._finals: dict[int, Final] = {}  # ours, waiting for the ones before them
        self._next_final = 0
        self._ended = [False] * CHANNELS
        self.finished = False

    # -- what a session reads ------------------------------------------------------------

    @property
    def position(self) -> int:
        return self.cores[0].position

    @property
    def duration(self) -> float:
        return self.cores[0].duration

    @property
    def speaking(self) -> bool:
        return any(core.speaking for core in self.cores)

    @property
    def in_speech(self) -> bool:
        return any(core.in_speech for core in self.cores)

    @property
    def open_utterance(self) -> int | None:
        opened = [self._number(k, core.open_utterance) for k, core in enumerate(self.cores)
                  if core.open_utterance is not None]
        return min(opened) if opened else None

    @property
    def utterances_begun(self) -> int:
        return len(self._numbers)

    @property
    def finals_sent(self) -> int:
        return self._next_final

    @property
    def partials_sent(self) -> int:
        return sum(core.partials_sent for core in self.cores)

    @property
    def loops_caught(self) -> int:
        return sum(core.loops_caught for core in self.cores)

    def quality(self) -> CaptionQuality:
        total = CaptionQuality()
        for core in self.cores:
            total += core.quality()
        return total

    # -- what a session asks -------------------------------------------------------------

    def start(self) -> list[Action]:
        return [self.ready(1)]

    def ready(self, seq: int = 1, audio_received: float | None = None) -> Ready:
        return self.cores[0].ready(seq, audio_received)

    def feed(self, audio: np.ndarray) -> list[Action]:
        """Audio of both channels, (samples, 2)."""
        actions: list[Action] = []
        for k, core in enumerate(self.cores):
            actions += self._from(k, core.feed(np.ascontiguousarray(audio[:, k])))
        return actions

    def flush(self) -> list[Action]:
        return [a for k, core in enumerate(self.cores) for a in self._from(k, core.flush())]

    def eos(self) -> list[Action]:
        return [a for k, core in enumerate(self.cores) for a in self._from(k, core.eos())]

    def error(self, error: CaptioncastError) -> list[Action]:
        return self.cores[0].error(error)

    def shed_partials(self, shed: bool = True) -> list[Action]:
        return [a for k, core in enumerate(self.cores)
                for a in self._from(k, core.shed_partials(shed))]

    def on_result(self, request_id: int, result: DecodeResult) -> list[Action]:
        k, own = request_id % CHANNELS, request_id // CHANNELS
        return self._from(k, self.cores[k].on_result(own, result))

    def on_failure(self, request_id: int, message: str) -> list[Action]:
        k, own = request_id % CHANNELS, request_id // CHANNELS
        return self._from(k, self.cores[k].on_failure(own, message))

    # -- merging --------------------------------------------------------------------------

    def _number(self, k: int, utterance: int) -> int:
        key = (k, utterance)
        if key not in self._numbers:
            self._numbers[key] = len(self._numbers)
        return self._numbers[key]

    def _from(self, k: int, actions: list[Action]) -> list[Action]:
        """Channel k's actions as this stream's: request ids and utterances renumbered."""
        core = self.cores[k]
        if core.open_utterance is not None:
            self._number(k, core.open_utterance)  # numbered by when it began
        out: list[Action] = []
        for action in actions:
            if isinstance(action, DecodeRequest):
                out.append(dataclasses.replace(
                    action, request_id=action.request_id * CHANNELS + k,
                    utterance=self._number(k, action.utterance)))
            elif isinstance(action, Cancel):
                out.append(Cancel(action.request_id * CHANNELS + k))
            elif isinstance(action, Partial):
                out.append(dataclasses.replace(action, utterance=self._number(k, action.utterance),
                                               speaker=f"S{k + 1}"))
            elif isinstance(action, Final):
                number = self._number(k, action.utterance)
                labelled = dataclasses.replace(action, utterance=number)
                self._finals[number] = labelled.labelled(f"S{k + 1}", source_channel=k)
                out += self._ready_finals()
            elif isinstance(action, End):
                self._ended[k] = True
                out += self._ready_finals()
            else:
                out.append(action)
        return out

    def _ready_finals(self) -> list[Action]:
        """Finals in the order their utterances began; `end` once both channels ended."""
        out: list[Action] = []
        while self._next_final in self._finals:
            out.append(self._finals.pop(self._next_final))
            self._next_final += 1
        if all(self._ended) and not self._finals and not self.finished:
            self.finished = True
            out.append(End(0, duration=self.duration, utterances=len(self._numbers)))
        return out


class ChannelLabels:
    """The labelling of a multichannel session: the label is the channel; names are given
    as for voices, and the table goes out before the first final and at every change."""

    cuts: int | None = None

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self._say = publish
        self.roster = SpeakerRoster()
        self.roster.restore(SpeakerEntry(f"S{k + 1}") for k in range(CHANNELS))
        self._said = -1
        self._seq = 0

    def heard(self, audio: np.ndarray | None = None) -> None:
        pass

    def event(self, event: Event) -> None:
        if isinstance(event, Final) and event.speaker is not None:
            self.say_table()
            event = dataclasses.replace(event, speaker_name=self.roster.display_name(
                event.speaker))
        self._publish(event)

    def _publish(self, event: Event) -> None:
        self._seq += 1
        self._say(event.with_seq(self._seq))

    def say_table(self) -> None:
        if self.roster.version != self._said:
            self._said = self.roster.version
            self._publish(Speakers(0, speakers=self.roster.table()))

    def when_said(self, then: Callable[[], None]) -> None:
        then()

    def name(self, label: str, name: str) -> None:
        self.roster.name(label, name)
        self.say_table()

    def close(self) -> None:
        pass
