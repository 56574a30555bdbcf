"""Who is who: online clustering of voices into labels S1, S2, ... with names and merges.

A roster lives as long as the labels it hands out mean something: one session's, or a
channel's across the sessions that speak on it. Pure: embeddings in, labels out. A
label once on a final is never taken back; what is learned later (a name, two labels
that are one voice) changes the table, which the session says as a `speakers` event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from captioncast.errors import BadControlMessage
from captioncast.protocol.events import SpeakerEntry


@dataclass(frozen=True)
class RosterOptions:
    # Cosine similarity of an utterance to a voice's centroid at which it is that voice.
    # Set from bench/speaker_encoders.py (same- and other-speaker similarity on real
    # speech); a new voice is cheaper to merge later than two voices are to pull apart.
    same_voice: float = 0.70
    merge: float = 0.86  # two centroids this alike are one voice: the later is `same_as`
    known_voice: float = 0.78  # an enrolled voiceprint names a voice at this similarity
    # Under this much voice an embedding is too noisy to found or move a voice: it goes to
    # the nearest voice there is ("Yes." after a question), and only founds one when none is.
    reliable_s: float = 1.0
    max_voices: int = 64  # past it the least heard voice's label is reused


@dataclass(frozen=True)
class KnownVoice:
    """An enrolled voice: a name and its voiceprint (personal data: never logged)."""

    name: str
    embedding: np.ndarray = field(repr=False)


@dataclass
class Voice:
    label: str
    total: np.ndarray = field(repr=False)  # weighted sum of the embeddings it was given
    weight: float
    name: str | None = None
    same_as: str | None = None
    # Handed out before any voice was heard (a wordless first final): the first voice
    # founded takes it over, so labels still count voices from S1.
    placeholder: bool = False

    @property
    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total


@dataclass(frozen=True)
class Assignment:
    label: str  # the label as it was handed out (a merged label's own, never rewritten)
    name: str | None
    confidence: float  # similarity to the voice it joined (1.0 for the first)


class UnknownSpeaker(BadControlMessage):
    """A label this session or channel never handed out."""


def _unit(embedding: np.ndarray) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class SpeakerRoster:
    def __init__(self, options: RosterOptions | None = None,
                 known: Iterable[KnownVoice] = ()) -> None:
        self.options = options or RosterOptions()
        self.voices: list[Voice] = []
        self.known = [KnownVoice(k.name, _unit(k.embedding)) for k in known]
        self.version = 0  # rises whenever the table a display needs changes

    def set_known(self, known: Iterable[KnownVoice]) -> None:
        self.known = [KnownVoice(k.name, _unit(k.embedding)) for k in known]

    # -- the table ------------------------------------------------------------------------

    def table(self) -> tuple[SpeakerEntry, ...]:
        return tuple(SpeakerEntry(v.label, v.name, v.same_as) for v in self.voices)

    def name(self, label: str, name: str) -> None:
        """Give a voice a name; a merged label names the voice it is part of."""
        voice = self._voice(label)
        if voice is None:
            raise UnknownSpeaker(f"no speaker {label!r} here yet: labels come on finals")
        target = self._voice(self.resolve(label)) or voice
        if target.name != name:
            target.name = name
            self.version += 1

    def resolve(self, label: str) -> str:
        seen = {label}
        voice = self._voice(label)
        while voice is not None and voice.same_as is not None and voice.same_as not in seen:
            seen.add(voice.same_as)
            voice = self._voice(voice.same_as)
        return voice.label if voice is not None else label

    def display_name(self, label: str) -> str | None:
        voice = self._voice(self.resolve(label))
        return None if voice is None else voice.name

    def restore(self, entries: Iterable[SpeakerEntry]) -> None:
        """Labels and names known before (a restarted server's channel): new voices go on
        from the next label; without their voiceprints the old labels match nothing."""
        known = {v.label for v in self.voices}
        for entry in entries:
            if entry.id not in known:
                self.voices.append(Voice(entry.id, np.zeros(0, np.float32), 0.0,
                                         entry.name, entry.same_as))
        self.version += 1

    # -- clustering -----------------------------------------------------------------------

    def peek(self, embedding: np.ndarray) -> str | None:
        """The voice an embedding is nearest, changing nothing (a partial's guess)."""
        best = self._nearest(_unit(embedding))
        return None if best is None else best[0].label

    def assign(self, embedding: np.ndarray, voiced_s: float) -> Assignment:
        """The voice of an utterance with this embedding and this much voice in it."""
        opts = self.options
        vector = _unit(embedding)
        nearest = self._nearest(vector)
        reliable = voiced_s >= opts.reliable_s
        if nearest is not None and (nearest[1] >= opts.same_voice or not reliable
                                    or self._full()):
            voice, similarity = nearest
            if reliable:
                voice.total = voice.total + vector * voiced_s
                voice.weight += voiced_s
                self._name_from_known(voice)
                self._merge_into_others(voice)
            return Assignment(voice.label, self.display_name(voice.label), similarity)
        if not vector.size or voiced_s <= 0:
            voice = next((v for v in self.voices if v.placeholder), None) or \
                Voice(f"S{len(self.voices) + 1}", vector, 0.0, placeholder=True)
            if voice not in self.voices:
                self.voices.append(voice)
                self.version += 1
            return Assignment(voice.label, voice.name, 0.0)
        voice = next((v for v in self.voices if v.placeholder), None) or \
            Voice(f"S{len(self.voices) + 1}", vector, 0.0)
        voice.total, voice.weight, voice.placeholder = vector * voiced_s, voiced_s, False
        if voice not in self.voices:
            self.voices.append(voice)
        self._name_from_known(voice)
        self.version += 1
        return Assignment(voice.label, voice.name, 1.0)

    def _voice(self, label: str) -> Voice | None:
        return next((v for v in self.voices if v.label == label), None)

    def _full(self) -> bool:
        return sum(1 for v in self.voices if v.same_as is None) >= self.options.max_voices

    def _nearest(self, vector: np.ndarray) -> tuple[Voice, float] | None:
        live = [v for v in self.voices
                if v.same_as is None and v.weight > 0 and v.total.shape == vector.shape]
        if not live:
            return None
        scores = np.stack([v.centroid for v in live]) @ vector
        best = int(np.argmax(scores))
        return live[best], float(scores[best])

    def _name_from_known(self, voice: Voice) -> None:
        if voice.name is not None or not self.known:
            return
        centroid = voice.centroid
        scores = [float(k.embedding @ centroid) if k.embedding.shape == centroid.shape
                  else -1.0 for k in self.known]
        best = int(np.argmax(scores))
        # A name heard here is taken; a restored label's is not: without its voiceprint it
        # matches nobody again, so its speaker comes back as a new label that needs it.
        taken = {v.name for v in self.voices if v.same_as is None and v.weight > 0}
        if scores[best] >= self.options.known_voice and self.known[best].name not in taken:
            voice.name = self.known[best].name
            self.version += 1

    def _merge_into_others(self, voice: Voice) -> None:
        """A voice that grew to sound like an older one is that one: its label points
        there (its finals keep their label; the table says `same_as`)."""
        centroid = voice.centroid
        for other in self.voices:
            if other is voice or other.same_as is not None or other.weight <= 0 \
                    or other.total.shape != centroid.shape:
                continue
            if float(other.centroid @ centroid) < self.options.merge:
                continue
            older, newer = (other, voice) if self.voices.index(other) < \
                self.voices.index(voice) else (voice, other)
            older.total = older.total + newer.total
            older.weight += newer.weight
            older.name = older.name or newer.name
            newer.same_as = older.label
            self.version += 1
            return
