"""The server's speaker labelling: its encoder, each channel's roster, the known voices.

A channel's labels outlive the sessions that speak on it (PROTOCOL.md: the next speaker
session keeps the labels it can match), so its roster lives here, by channel name; a
session without a channel has a roster of its own. Naming a voice on a channel (`PUT
/v1/channels/NAME/speakers/ID`) reaches the session speaking there, or, when none is,
the channel's viewers directly.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from captioncast.core.policy import Action, CaptionSession
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.fanout.hub import ChannelHub
from captioncast.protocol.events import Event, SpeakerEntry, Speakers
from captioncast.session.speaker_stage import (
    Embedder,
    Labelling,
    Segmenter,
    SpeakerStage,
    Unlabelled,
)
from captioncast.speakers.enrollment import EnrolledVoice
from captioncast.speakers.options import SpeakerOptions
from captioncast.speakers.roster import KnownVoice, SpeakerRoster, UnknownSpeaker

MAX_ROOMS = 1000  # channels whose voices are remembered; the least recent are forgotten


class SpeakerRooms:
    def __init__(self, options: SpeakerOptions, load: Callable[[], Embedder],
                 hub: ChannelHub,
                 load_segmenter: Callable[[], Segmenter | None] = lambda: None) -> None:
        self.options = options
        self._load = load
        self._encoder: Embedder | None = None
        self._load_segmenter = load_segmenter
        self._segmenter: Segmenter | None = None
        self._segmenter_loaded = False
        self._lock = threading.Lock()
        self.hub = hub
        self.known: list[KnownVoice] = []
        self.enrolled: dict[str, EnrolledVoice] = {}  # by id, oldest first
        # Rosters of sessions without a channel: a deleted voiceprint leaves them too.
        self._loose: weakref.WeakSet[SpeakerRoster] = weakref.WeakSet()
        self._rosters: OrderedDict[str, SpeakerRoster] = OrderedDict()
        self._speaking: dict[str, SpeakerStage] = {}

    @property
    def encoder(self) -> Embedder:
        """The speaker encoder, loaded the first time a session needs it."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    @property
    def segmenter(self) -> Segmenter | None:
        """The speaker segmentation model, loaded with the encoder; None when not installed
        (or turned off)."""
        with self._lock:
            if not self._segmenter_loaded:
                self._segmenter = self._load_segmenter()
                self._segmenter_loaded = True
            return self._segmenter

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return self.encoder.embed(audio)

    def roster(self, channel: str | None) -> SpeakerRoster:
        if channel is None:
            loose = SpeakerRoster(self.options.roster, self.known)
            self._loose.add(loose)
            return loose
        roster = self._rosters.get(channel)
        if roster is None:
            roster = SpeakerRoster(self.options.roster, self.known)
            stored = self.hub.speakers(channel)
            if stored is not None:
                roster.restore(stored.speakers)
            self._rosters[channel] = roster
            while len(self._rosters) > MAX_ROOMS:
                self._rosters.popitem(last=False)
        self._rosters.move_to_end(channel)
        return roster

    def stage(self, owner: str, channel: str | None, core: CaptionSession,
              scheduler: DecodeScheduler, publish: Callable[[Event], None],
              dispatch: Callable[[list[Action]], None], on: bool) -> Labelling:
        """The labelling of a session that starts now; off costs nothing."""
        if not on:
            return Unlabelled(publish)
        stage = SpeakerStage(owner, core, self.encoder, scheduler, self.roster(channel),
                             publish, dispatch, self.options, self.segmenter)
        if channel is not None:
            self._speaking[channel] = stage
        return stage

    def release(self, channel: str | None, stage: Labelling) -> None:
        if channel is not None and self._speaking.get(channel) is stage:
            del self._speaking[channel]

    def table(self, channel: str) -> tuple[SpeakerEntry, ...]:
        roster = self._rosters.get(channel)
        if roster is not None:
            return roster.table()
        stored = self.hub.speakers(channel)
        return () if stored is None else stored.speakers

    def name(self, channel: str, label: str, name: str) -> tuple[SpeakerEntry, ...]:
        """Name a voice of a channel; UnknownSpeaker when the channel never had it."""
        if channel not in self._rosters and self.hub.speakers(channel) is None:
            raise UnknownSpeaker(f"channel {channel!r} has no speakers yet")
        stage = self._speaking.get(channel)
        if stage is not None:
            stage.name(label, name)
        else:
            roster = self.roster(channel)
            roster.name(label, name)
            self.hub.publish(channel, Speakers(0, speakers=roster.table()))
        return self.table(channel)

    # -- known voices ---------------------------------------------------------------------

    def set_known(self, voices: list[KnownVoice]) -> None:
        """The enrolled voices' prints: new rosters and live ones name them from now on."""
        self.known = list(voices)
        for roster in [*self._rosters.values(), *self._loose]:
            roster.set_known(voices)

    def set_enrolled(self, voices: list[EnrolledVoice]) -> None:
        """The enrolled voices (from the store at start, or memory)."""
        self.enrolled = {v.id: v for v in voices}
        self.set_known([v.known() for v in self.enrolled.values()])

    def enroll(self, voice: EnrolledVoice) -> None:
        self.set_enrolled([*self.enrolled.values(), voice])

    def forget(self, voice_id: str) -> bool:
        """Drop an enrolled voice's print from here and every roster; False if unknown.
        Names it already gave stay: a name is what was said on the captions."""
        if voice_id not in self.enrolled:
            return False
        self.set_enrolled([v for v in self.enrolled.values() if v.id != voice_id])
        return True
