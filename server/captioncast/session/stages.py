"""What stands between a live session's audio and its published events, built once.

core (one `CaptionSession`, or a `DualCore` per channel) -> profanity masking ->
speaker labelling (on or off) -> turn-taking (with `turns`) -> the session's publish.
Each stage sees every core call's audio before the call's events go out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.params import Configure, StreamParams
from captioncast.core.policy import Action, CaptionSession
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.options import ServerOptions
from captioncast.protocol.events import Event
from captioncast.session.multichannel import ChannelLabels, DualCore
from captioncast.session.speaker_rooms import SpeakerRooms
from captioncast.session.speaker_stage import Labelling
from captioncast.session.turn_stage import TurnJudge, TurnStage
from captioncast.text.profanity import masking


class Hosts(Protocol):
    options: ServerOptions
    speaker_rooms: SpeakerRooms

    @property
    def scheduler(self) -> DecodeScheduler: ...

    @property
    def turn_model(self) -> TurnJudge: ...


@dataclass
class Stages:
    core: CaptionSession | DualCore
    speakers: Labelling
    turns: TurnStage | None
    on_event: Callable[[Event], None]  # where the core's events go

    def configure(self, change: Configure) -> None:
        """A client's new settings: the cores' from their next decode, the turns' now."""
        if change.turns and (self.turns is None or self.turns.tracker is None):
            raise BadControlMessage("turn settings need a stream with turns=true")
        cores = self.core.cores if isinstance(self.core, DualCore) else [self.core]
        for core in cores:
            config = core.config
            if change.prompt is not None:
                config = dataclasses.replace(config, prompt=change.prompt)
            if change.language is not None:
                config = dataclasses.replace(
                    config, language=None if change.language == "auto" else change.language)
            if change.interim is not None:
                config = dataclasses.replace(config, interim=change.interim)
            core.reconfigure(config)
        if self.turns is not None and self.turns.tracker is not None and change.turns:
            self.turns.reconfigure(self.turns.tracker.settings.changed(change.turns))

    def end_turn(self) -> None:
        """End the turn under way now, as the client says (a stream without turns: no-op)."""
        if self.turns is not None:
            self.turns.force_end()

    def heard(self, audio: np.ndarray | None) -> None:
        self.speakers.heard(audio)
        if self.turns is not None:
            self.turns.heard()


def build_stages(session_id: str, params: StreamParams, config: SessionConfig,
                 policy: PolicyOptions, ctx: Hosts, publish: Callable[[Event], None],
                 dispatch: Callable[[list[Action]], None]) -> Stages:
    options = ctx.options
    turns: TurnStage | None = None
    speakers: Labelling
    if params.multichannel:
        if params.turns is not None:
            raise BadRequest("turns are not followed on multichannel streams yet: each "
                             "channel is its own speaker; use one stream per speaker")
        core: CaptionSession | DualCore = DualCore(lambda: CaptionSession(config, policy))
        speakers = ChannelLabels(publish)
    else:
        core = CaptionSession(config, policy)
        # With `speech_events` alone the stage says speech_started and follows no turn.
        if params.turns is not None or params.speech_events:
            model = None if params.turns is None else ctx.turn_model  # loaded when needed
            turns = TurnStage(session_id, core, model, ctx.scheduler, params.turns, publish,
                              dispatch)
        speakers = ctx.speaker_rooms.stage(
            session_id, params.channel, core, ctx.scheduler,
            publish if turns is None else turns.event, dispatch,
            on=options.diarize if params.diarize is None else params.diarize)
    on_event = masking(speakers.event, options.profanity, params.profanity_filter,
                       params.channel)
    return Stages(core, speakers, turns, on_event)
