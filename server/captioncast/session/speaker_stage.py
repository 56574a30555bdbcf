"""Who spoke: a session's speaker labelling between its core and its events (in progress)."""

from __future__ import annotations


class SpeakerStage:
    def name(self, label: str, name: str) -> None:
        raise NotImplementedError
