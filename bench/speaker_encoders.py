"""Which speaker encoder: verification EER, diarization turns, clustering, CPU cost.

Compares the encoders of `captioncast.engine.speaker_encoder` on the real speech in
../shared/speech (never copied here):

- verification on `manifest.tsv` English recordings whose speaker the id names (the rule
  is `speaker_of` below), on 1/1.5/2/3 s crops and whole recordings; a target trial is
  two different recordings of one speaker (crops of one recording are never paired, so
  the same session and words cannot help);
- on `diar/` (AMI headset-mix clips, a phone call; `rttm/`, words only): each reference
  turn's parts spoken by one speaker alone and >= 1 s long, embedded whole; same- and
  different-speaker cosine, EER, and an agglomerative clustering (cosine, average link)
  per recording, a threshold sweep against the true number of speakers;
- CPU time per second of audio, one thread, median of several runs.

Appends (or replaces) "## Speaker encoders: which one, measured" in bench/RESULTS.md.

    python bench/speaker_encoders.py [--no-write]
"""

from __future__ import annotations

# ruff: noqa: E402 (the thread limits below must be set before numpy loads)
import os

# One thread for numpy's BLAS too: the scheduler runs each embed on its own worker.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import csv
import re
import statistics
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioncast.engine.speaker_encoder import ENCODERS, SpeakerEncoder, load_speaker_encoder

BENCH = Path(__file__).resolve().parent
SPEECH = BENCH.parent.parent / "shared" / "speech"
RATE = 16000
CROPS_S = (1.0, 1.5, 2.0, 3.0)
MAX_CROPS = 4  # per recording and length: long recordings would outweigh the rest
MIN_TURN_S = 1.0
PIECES_S = (1.0, 1.5, 2.0)  # turns cut into windows as a live diarizer would see them
THRESHOLDS = np.round(np.arange(0.30, 0.96, 0.01), 2)
SECTION = "## Speaker encoders: which one, measured"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def speaker_of(recording: str) -> str | None:
    """The speaker a recording's id names, or None where the id does not say who speaks.

    LibriSpeech `libri_<set>_<speaker>-<chapter>-<utt>`; LJSpeech (one reader);
    CMU ARCTIC `arctic_<speaker>_a<nnnn>` (not `arctic_a0024_deepspeech`: its speaker
    is not named); SpeechBrain's `spk1`/`spk2` samples; the JFK clip. The MFA, Common
    Voice, TIMIT and other one-off recordings are left out: nothing says whether two of
    them share a voice (MFA's podcast clips have two speakers each).
    """
    patterns = (r"libri_[a-z]+_(\d+)-", r"(ljspeech)_", r"arctic_([a-z]{3})_a\d+$",
                r"speechbrain_(spk\d)_", r"whisper_(jfk)$")
    for pattern in patterns:
        if match := re.match(pattern, recording):
            return match.group(1)
    return None


def eer(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where false accepts meet false rejects."""
    candidates = np.unique(np.concatenate([same, different]))
    far = np.array([np.mean(different >= t) for t in candidates])
    frr = np.array([np.mean(same < t) for t in candidates])
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(candidates[k])


def trials(embeddings: np.ndarray, speakers: list[str],
           groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of same- and different-speaker pairs, never two items of one group."""
    sims = embeddings @ embeddings.T
    i, j = np.triu_indices(len(speakers), 1)
    spk, grp = np.array(speakers), np.array(groups)
    keep = grp[i] != grp[j]
    same = (spk[i] == spk[j]) & keep
    return sims[i, j][same], sims[i, j][~(spk[i] == spk[j]) & keep]


@dataclass
class Clip:
    audio: np.ndarray
    speaker: str
    group: str  # the recording it came from
    turn: int = 0  # which reference turn, in a diar recording


def verification_set() -> list[tuple[str, str, np.ndarray]]:
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["language"] == "en"]
    return [(r["id"], spk, read_wav(SPEECH / r["wav"]))
            for r in rows if (spk := speaker_of(r["id"])) is not None]


def crops(recordings: list[tuple[str, str, np.ndarray]], length_s: float | None) -> list[Clip]:
    clips = []
    for rid, spk, audio in recordings:
        if length_s is None:
            clips.append(Clip(audio, spk, rid))
            continue
        n = round(length_s * RATE)
        clips += [Clip(audio[k * n:(k + 1) * n], spk, rid)
                  for k in range(min(MAX_CROPS, len(audio) // n))]
    return clips


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, dur = float(fields[3]), float(fields[4])
            turns.append((start, start + dur, fields[7]))
    return turns


def solo_parts(turns: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Each turn less the time anyone else speaks, the parts >= MIN_TURN_S."""
    parts = []
    for start, end, spk in turns:
        pieces = [(start, end)]
        for o_start, o_end, other in turns:
            if other == spk:
                continue
            pieces = [p for a, b in pieces
                      for p in ((a, min(b, o_start)), (max(a, o_end), b)) if p[1] > p[0]]
        parts += [(a, b, spk) for a, b in pieces if b - a >= MIN_TURN_S]
    return parts


def diar_set() -> dict[str, list[Clip]]:
    recordings: dict[str, list[Clip]] = {}
    for rttm in sorted((SPEECH / "diar" / "rttm").glob("*.rttm")):
        audio = read_wav(SPEECH / "diar" / "wav" / f"{rttm.stem}.wav")
        recordings[rttm.stem] = [
            Clip(audio[round(a * RATE):round(b * RATE)], spk, rttm.stem, turn)
            for turn, (a, b, spk) in enumerate(solo_parts(read_rttm(rttm)))]
    return recordings


def turn_pairs(embeddings: np.ndarray, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """Same- and different-speaker cosines of two turns of one recording.

    Within a recording only: AMI's en2006a/b and es2003a/b share speakers, but a live
    session compares the voices within itself; never two pieces of one turn.
    """
    i, j = np.triu_indices(len(clips), 1)
    rec = np.array([c.group for c in clips])
    turn = np.array([c.turn for c in clips])
    spk = np.array([c.speaker for c in clips])
    usable = (rec[i] == rec[j]) & (turn[i] != turn[j])
    sims = (embeddings @ embeddings.T)[i, j]
    return sims[usable & (spk[i] == spk[j])], sims[usable & (spk[i] != spk[j])]


def cluster_count(embeddings: np.ndarray, threshold: float) -> int:
    """Clusters left by average-link agglomeration merging while cosine >= threshold."""
    clusters = [[i] for i in range(len(embeddings))]
    sims = embeddings @ embeddings.T
    while len(clusters) > 1:
        best, pair = -2.0, (0, 0)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                link = float(sims[np.ix_(clusters[a], clusters[b])].mean())
                if link > best:
                    best, pair = link, (a, b)
        if best < threshold:
            break
        clusters[pair[0]] += clusters.pop(pair[1])
    return len(clusters)


def cpu_ms_per_s(encoder: SpeakerEncoder, audio: np.ndarray, runs: int = 5) -> float:
    encoder.embed(audio)  # warm up
    times = []
    for _ in range(runs):
        started = time.process_time()
        encoder.embed(audio)
        times.append(time.process_time() - started)
    return 1000 * statistics.median(times) / (len(audio) / RATE)


def windows_ms_per_s(encoder: SpeakerEncoder, audio: np.ndarray, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        encoder.embed_windows(audio, 1.5, 0.75)
        times.append(time.process_time() - started)
    return 1000 * statistics.median(times) / (len(audio) / RATE)


def embed_all(encoder: SpeakerEncoder, clips: list[Clip]) -> np.ndarray:
    return np.stack([encoder.embed(clip.audio) for clip in clips])


@dataclass(frozen=True)
class Scores:
    """Same- and different-speaker cosines, and where they cross."""

    same: np.ndarray
    different: np.ndarray

    @property
    def eer(self) -> tuple[float, float]:
        return eer(self.same, self.different)

    def cell(self, unit: str = "pairs") -> str:
        rate, threshold = self.eer
        return (f"{rate:.1%} (thr {threshold:.2f}; {len(self.same)}/{len(self.different)} "
                f"{unit})")

    def thresholds(self, rate: float = 0.05) -> tuple[float, float]:
        """Same speaker at or above the first (`rate` of different pairs reach it); new
        speaker below the second (`rate` of same pairs fall under it)."""
        return (float(np.quantile(self.different, 1 - rate)),
                float(np.quantile(self.same, rate)))


@dataclass
class Measured:
    load_s: float
    verification: dict[float | None, Scores]  # crop length (None: whole) -> trials
    turns: Scores
    pieces: dict[float, Scores]
    speakers: dict[str, int]  # recording -> speakers with a usable turn
    counts: dict[float, dict[str, int]]  # threshold -> recording -> clusters found
    cpu_ms_per_s: float
    windows_ms_per_s: float

    def accuracy(self, threshold: float) -> float:
        found = self.counts[threshold]
        return float(np.mean([found[rid] == n for rid, n in self.speakers.items()]))

    def best_thresholds(self) -> list[float]:
        top = max(self.accuracy(t) for t in self.counts)
        return [t for t in self.counts if self.accuracy(t) == top]


def measure(name: str) -> Measured:
    started = time.perf_counter()
    encoder = load_speaker_encoder(name)
    load_s = time.perf_counter() - started
    recordings = verification_set()
    verification = {}
    for length in (*CROPS_S, None):
        clips = crops(recordings, length)
        verification[length] = Scores(*trials(embed_all(encoder, clips),
                                              [c.speaker for c in clips],
                                              [c.group for c in clips]))
    diar = diar_set()
    per_recording = {rid: embed_all(encoder, clips) for rid, clips in diar.items()}
    every = [c for clips in diar.values() for c in clips]
    turns = Scores(*turn_pairs(np.concatenate(list(per_recording.values())), every))
    pieces = {}
    for length in PIECES_S:
        n = round(length * RATE)
        cut = [Clip(c.audio[k * n:(k + 1) * n], c.speaker, c.group, c.turn)
               for c in every for k in range(len(c.audio) // n)]
        pieces[length] = Scores(*turn_pairs(embed_all(encoder, cut), cut))
    counts = {float(t): {rid: cluster_count(e, float(t)) for rid, e in per_recording.items()}
              for t in THRESHOLDS}
    call = read_wav(SPEECH / "diar" / "wav" / "pyannote_sample.wav")[:10 * RATE]
    return Measured(load_s, verification, turns, pieces,
                    {rid: len({c.speaker for c in clips}) for rid, clips in diar.items()},
                    counts, cpu_ms_per_s(encoder, call), windows_ms_per_s(encoder, call))


def report(results: dict[str, Measured]) -> str:
    lines = [SECTION, "", "| | " + " | ".join(results) + " |",
             "|---|" + "---|" * len(results)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    measured = list(results.values())
    for length in (*CROPS_S, None):
        label = f"{length} s crops" if length else "whole recordings"
        row(f"verification EER, {label}", [m.verification[length].cell("trials")
                                           for m in measured])
    row("diar turns EER", [m.turns.cell() for m in measured])
    row("diar turns cosine, same / different speaker",
        [f"{m.turns.same.mean():.3f} / {m.turns.different.mean():.3f}" for m in measured])
    for length in PIECES_S:
        row(f"diar EER, turns cut in {length} s windows", [m.pieces[length].cell()
                                                          for m in measured])
    row("speaker count right (best threshold)",
        [f"{m.accuracy(m.best_thresholds()[0]):.0%} at {_span(m.best_thresholds())}"
         for m in measured])
    row("CPU ms per audio s, `embed` (1 thread)", [f"{m.cpu_ms_per_s:.1f}" for m in measured])
    row("CPU ms per audio s, `embed_windows` 1.5 s / 0.75 s hop",
        [f"{m.windows_ms_per_s:.1f}" for m in measured])
    row("load time", [f"{m.load_s:.2f} s" for m in measured])
    lines.append("")
    for name, m in results.items():
        same_thr, new_thr = m.turns.thresholds()
        best = m.best_thresholds()
        middle = best[len(best) // 2]
        lines.append(
            f"- {name}: same speaker at cosine >= {same_thr:.2f} (5 % of different-speaker "
            f"turn pairs reach it), new speaker below {new_thr:.2f} (5 % of same-speaker "
            f"pairs fall under it); clusters / speakers per recording at {middle:.2f}: "
            + ", ".join(f"{rid} {m.counts[middle][rid]}/{n}" for rid, n in m.speakers.items()))
    return "\n".join(lines) + "\n"


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}" if len(values) == 1 else f"{min(values):.2f}-{max(values):.2f}"


def write(section: str) -> None:
    path = BENCH / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    results = {name: measure(name) for name in args.encoders}
    section = report(results)
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
