"""A recording Port (api/translator.py): what a translator asked of its session, in order."""

from __future__ import annotations

from captioncast.core.params import Configure
from captioncast.errors import CaptioncastError


class RecordingPort:
    """Stands for a session and its connection: records commands and messages said."""

    def __init__(self, in_speech: bool = False, open_utterance: int | None = None,
                 utterances_begun: int = 0) -> None:
        self.in_speech = in_speech
        self.open_utterance = open_utterance
        self.utterances_begun = utterances_begun
        self.calls: list[tuple[str, object]] = []

    def audio(self, pcm: bytes) -> None:
        self.calls.append(("audio", pcm))

    def control(self, kind: str) -> None:
        self.calls.append(("control", kind))

    def name_speaker(self, label: str, name: str) -> None:
        self.calls.append(("name_speaker", (label, name)))

    def configure(self, change: Configure) -> None:
        self.calls.append(("configure", change))

    def report(self, error: CaptioncastError) -> None:
        self.calls.append(("report", error))

    def say(self, message: str) -> None:
        self.calls.append(("say", message))

    def said(self) -> list[str]:
        return [str(value) for kind, value in self.calls if kind == "say"]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]
