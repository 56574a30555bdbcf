"""The turn-taking set: read sentences with a pause inserted mid-sentence and after each.

From the single-sentence English recordings of ../shared/speech/manifest.tsv (never
copied here): LibriSpeech, CMU ARCTIC, TIMIT, the SpeechBrain samples (Harvard
sentences), DeepSpeech's sample and Common Voice (whose one-word clips drop out: no
function word with words on both sides). Each sentence gets

- a mid-sentence pause of 0.5-1.0 s (seeded) after a function word ("the", "of", "to",
  ...) with words before and after it, the one nearest the sentence's middle in time,
  cut between that word and the next by faster-whisper's word timings (the bundled
  tiny.en, beam 5), snapped to the quietest 10 ms within 80 ms of the boundary, where
  the gap between the words is, so no word is clipped;
- an end-of-sentence pause of 1.0-1.5 s after its last word (speech ends at the last
  10 ms frame within 35 dB of the loudest and above -55 dBFS, plus 50 ms of its decay).

Pauses are digital silence. Reference words come from the manifest's exact transcript;
whisper's words only give times, matched to the reference's by `difflib` (a reference
word whisper missed cannot be a cut). `every_cut=True` gives a sentence per function
word instead of one (more mid-sentence pauses, the same ends).
"""

from __future__ import annotations

import csv
import difflib
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
SPEECH = BENCH.parent.parent / "shared" / "speech"
RATE = 16000
SOURCES = ("libri_", "arctic_", "timit_", "speechbrain_", "deepspeech_", "cv_")
# LibriSpeech utterances are not sentences: this one is two (no punctuation to say so).
MULTI_SENTENCE = frozenset({"libri_dev_2412-153948-0000"})
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "to", "of", "and", "in", "for", "with", "on", "at", "from", "by",
    "into", "about", "over", "under", "than", "as", "or", "but", "if", "because", "that",
    "which", "who", "my", "your", "his", "her", "their", "our", "its", "is", "was",
    "are", "were", "be", "been", "have", "has", "had", "will", "would", "can", "could",
    "not", "so",
})
MID_PAUSE_S = (0.5, 1.0)
END_PAUSE_S = (1.0, 1.5)
SNAP_S = 0.08  # how far from whisper's boundary the cut may move to find the gap
FRAME = RATE // 100  # 10 ms


@dataclass(frozen=True)
class Word:
    text: str  # the reference's spelling
    start: float  # seconds, whisper's
    end: float


@dataclass(frozen=True)
class Recording:
    id: str
    reference: str
    audio: np.ndarray
    words: list[Word | None]  # per reference word; None where whisper has no match


@dataclass(frozen=True)
class PausedSentence:
    id: str
    reference: str
    cut_after: int  # index of the function word in the reference's words
    audio: np.ndarray  # the sentence with both pauses inserted
    mid_start: int  # sample where the mid-sentence pause starts
    mid_pause_s: float
    end_start: int  # sample where the end-of-sentence pause starts
    end_pause_s: float

    @property
    def head(self) -> str:
        """What the speaker said before the mid-sentence pause."""
        return " ".join(self.reference.split()[:self.cut_after + 1])


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def sentences() -> list[tuple[str, str, Path]]:
    """(id, transcript, wav) of every single-sentence English recording of the sources."""
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r["id"], r["transcript"], SPEECH / r["wav"]) for r in rows
            if r["language"] == "en" and r["id"].startswith(SOURCES)
            and r["id"] not in MULTI_SENTENCE]


def _token(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def timed_words(model: object, reference: str, audio: np.ndarray) -> list[Word | None]:
    """The reference's words, each with whisper's times where whisper heard it."""
    segments, _ = model.transcribe(  # type: ignore[attr-defined]
        audio, language="en", beam_size=5, word_timestamps=True,
        condition_on_previous_text=False, vad_filter=False)
    heard = [w for segment in segments for w in segment.words or []]
    ref_words = reference.split()
    matcher = difflib.SequenceMatcher(a=[_token(w) for w in ref_words],
                                      b=[_token(w.word) for w in heard], autojunk=False)
    timed: list[Word | None] = [None] * len(ref_words)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            w = heard[block.b + k]
            timed[block.a + k] = Word(ref_words[block.a + k], float(w.start), float(w.end))
    return timed


def transcribe_all(model: object) -> list[Recording]:
    recordings = []
    for rid, transcript, wav in sentences():
        audio = read_wav(wav)
        recordings.append(Recording(rid, transcript, audio,
                                    timed_words(model, transcript, audio)))
    return recordings


def whisper_model() -> object:
    from faster_whisper import WhisperModel

    from captioncast.engine.models import resolve_model

    return WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8",
                        cpu_threads=2)


def _frame_db(audio: np.ndarray) -> np.ndarray:
    frames = audio[:len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def cut_between(audio: np.ndarray, left: Word, right: Word) -> int:
    """The sample to cut at between two words: the quietest 10 ms near their boundary."""
    boundary = (left.end + right.start) / 2
    lo = max(0, int((boundary - SNAP_S) * RATE))
    hi = min(len(audio), int((boundary + SNAP_S) * RATE))
    db = _frame_db(audio[lo:hi])
    if not len(db):
        return int(boundary * RATE)
    return lo + int(np.argmin(db)) * FRAME + FRAME // 2


def speech_end(audio: np.ndarray) -> int:
    """Where the last word's sound ends (50 ms of decay kept)."""
    db = _frame_db(audio)
    loud = np.flatnonzero(db >= max(db.max() - 35.0, -55.0))
    return min(len(audio), (int(loud[-1]) + 1) * FRAME + RATE // 20)


def cuts(recording: Recording) -> list[int]:
    """Reference indices of function words with a timed word before, itself and after."""
    w = recording.words
    return [i for i in range(1, len(w) - 1)
            if _token(recording.reference.split()[i]) in FUNCTION_WORDS
            and w[i - 1] is not None and w[i] is not None and w[i + 1] is not None]


def middle_cut(recording: Recording, candidates: list[int]) -> int:
    timed = [w for w in recording.words if w is not None]
    middle = (timed[0].start + timed[-1].end) / 2

    def distance(i: int) -> float:
        word = recording.words[i]
        assert word is not None
        return abs(word.end - middle)

    return min(candidates, key=distance)


def paused(recording: Recording, cut_after: int, rng: random.Random) -> PausedSentence:
    left, right = recording.words[cut_after], recording.words[cut_after + 1]
    assert left is not None and right is not None
    audio = recording.audio[:speech_end(recording.audio)]
    cut = cut_between(audio, left, right)
    mid_s = round(rng.uniform(*MID_PAUSE_S), 2)
    end_s = round(rng.uniform(*END_PAUSE_S), 2)
    mid = np.zeros(int(mid_s * RATE), np.float32)
    end = np.zeros(int(end_s * RATE), np.float32)
    built = np.concatenate([audio[:cut], mid, audio[cut:], end])
    return PausedSentence(recording.id, recording.reference, cut_after, built, cut, mid_s,
                          len(audio) + len(mid), end_s)


def build_set(recordings: list[Recording], seed: int = 0,
              every_cut: bool = False) -> list[PausedSentence]:
    """The paused sentences, pause lengths drawn from `random.Random(seed)`."""
    rng = random.Random(seed)
    built = []
    for recording in recordings:
        candidates = cuts(recording)
        if not candidates:
            continue
        chosen = candidates if every_cut else [middle_cut(recording, candidates)]
        built.extend(paused(recording, i, rng) for i in chosen)
    return built


def stream(sentences: list[PausedSentence]) -> np.ndarray:
    """The set as one recording, sentence after sentence (for a live replay)."""
    return np.concatenate([s.audio for s in sentences])
