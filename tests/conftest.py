"""Shared test helpers: where the speech is, and how to read it.

The speech set lives beside the checkout (../shared/speech/), not in it: a test that
needs it and cannot find it is skipped, with the path it looked for, rather than failed.
"""

from __future__ import annotations

import csv
import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "speech"

# A server started without --data-dir keeps transcripts in the per-user data dir: never
# the real one from the tests (the servers they start inherit this).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="captioncast-test-data-")


MISSING = "../shared/speech is missing: {path} not found (tests read real speech from there)"


def skip_without_speech(path: Path) -> Path:
    """`path`, or the calling test skipped with the reason: the speech set is not here."""
    if not path.is_file():
        pytest.skip(MISSING.format(path=path))
    return path


def speech_path(name: str) -> Path:
    return skip_without_speech(SPEECH / "wav" / f"{name}.wav")


def read_wav(name: str) -> np.ndarray:
    """16 kHz mono float32 of a recording in ../shared/speech/wav."""
    with wave.open(str(speech_path(name))) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def reference(name: str) -> str:
    with skip_without_speech(SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["id"] == name:
                return row["transcript"]
    raise KeyError(name)


def wer(ref: str, hyp: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()

    def words(text: str) -> str:
        # The normalizer keeps the dots of an ellipsis after a number ("In 1813..." ->
        # "in 1813 ."): a token with no letter or digit is not a word.
        return " ".join(w for w in normalize(text).split() if any(c.isalnum() for c in w))

    return float(jiwer.wer(words(ref), words(hyp)))
