"""Who said it: speaker labels of live finals, measured (WDER, DER, cpWER, cost).

Starts `captioncast serve --no-store` as a subprocess and streams, in real time (100 ms
chunks, then 1 s of digital silence; at most 2 streams at a time), the multi-speaker
recordings of `../shared/speech/diar/` (AMI headset-mix clips, a phone call; reference
`rttm/`, words only) and conversations built here from single-speaker recordings of
`../shared/speech/manifest.tsv` (speakers alternating with seeded 0.25-1.0 s gaps; two
conversations with every gap 0.25 s, where the VAD hears one utterance and only the
change-of-voice cut can split it). Each recording is streamed twice on one server,
`diarize=false` then `diarize=true`, for the cost: server CPU seconds per stream second
(`/proc/PID/stat`), final latency p50 (`stream_bench`'s definition), WER.

Scores, per group (built / AMI / call):
- WDER: of the finals' words that fall in a reference turn (the turn the word's span
  overlaps most), the share whose label, under the best one-to-one map of labels to
  reference speakers (Hungarian, on word counts), is not that turn's speaker. Labels are
  taken after the session's last `speakers` table (`same_as` merges applied).
- DER with pyannote.metrics (collar 0.25 s, overlap scored) of the finals' word spans
  labelled by speaker, as miss / false alarm / confusion; beside an oracle row (the
  reference speaker of each word on the same spans: what word spans cannot cover) and a
  one-speaker row (every word one label).
- speakers right: recordings whose number of (merged) labels is the reference's.
- cpWER beside WER on the built conversations (jiwer, `scoring.WordNormalizer`).
- offline: the same encoder on each live final's word span, clustered over the whole
  recording (average-link cosine, stopped at `same_voice`; spans under `reliable_s` of
  audio join the nearest cluster), on the same finals' words.

`--sweep` adds real-time runs of the built conversations only (AMI stays an untuned test)
with `speakers.roster.same_voice` and `speakers.track.change_below` varied.

Writes "## Who said it: speaker labels, measured" in bench/RESULTS.md and per-recording
rows to bench/results/diar_<date>.tsv. Needs the bench-only dependency
`pip install pyannote.metrics` (it pulls pandas, scipy and scikit-learn).

    python bench/diar_bench.py [--sweep] [--limit-built 8] [--speed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import math
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise, permutations
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate
from scipy.optimize import linear_sum_assignment
from scoring import WordNormalizer
from speaker_encoders import read_rttm, read_wav, speaker_of
from stream_bench import (
    CHUNK_BYTES,
    PAD_SECONDS,
    cpu_model,
    cpu_seconds,
    fmt,
    free_port,
    log,
    p50,
    sent_time,
    start_server,
    stop_server,
    write_results_md,
)

from captioncast.engine.speaker_encoder import load_speaker_encoder
from captioncast.errors import NoSpeakerAudio
from captioncast_client.audio_files import rechunk
from captioncast_client.errors import ServerRefused
from captioncast_client.streaming import stream, stream_url

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SPEECH = REPO_ROOT.parent / "shared" / "speech"
SECTION = "## Who said it: speaker labels, measured"
RATE = 16000
COLLAR = 0.25
SEED = 20261207
SAME_VOICE = 0.75  # RosterOptions.same_voice default: the offline clustering's stop
RELIABLE_S = 1.0  # RosterOptions.reliable_s
MIN_EMBED_S = 0.85  # resemblyzer embeds 0.8 s at least
SWEEP = (("speakers.roster.same_voice", (0.70, 0.80)),
         ("speakers.track.change_below", (0.60, 0.75)))

# A shared 2-core machine: other work's load must not make admission refuse a stream.
SERVER_ARGS = ["--set", "capacity.max_final_wait_s=5", "--set", "capacity.max_lag_s=5"]
REFUSED_RETRIES = 6

Turn = tuple[float, float, str]


@dataclass
class Conversation:
    id: str
    group: str  # "built", "AMI", "call"
    audio: np.ndarray = field(repr=False)
    turns: list[Turn]
    transcript: str  # time-ordered, whole
    by_speaker: dict[str, str] = field(default_factory=dict)  # built only: exact texts

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


@dataclass
class Word:
    text: str
    start: float
    end: float
    label: str | None
    final: int  # index of its final


@dataclass
class Run:
    """One recording streamed once."""

    conv: Conversation
    words: list[Word]
    finals: list[dict[str, Any]]
    latencies: list[float]
    n_errors: int
    offline_labels: list[str | None] = field(default_factory=list)  # per word
    filled: int = 0  # finals whose words were missing (see fill_missing_words)

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"]).strip()


# -- recordings ----------------------------------------------------------------------------


def voiced_extent(audio: np.ndarray) -> tuple[float, float]:
    """First and last 20 ms frame within 35 dB of the loudest one (and above -50 dBFS)."""
    n = len(audio) // 320
    if n == 0:
        return 0.0, len(audio) / RATE
    rms = np.sqrt(np.mean(audio[:n * 320].reshape(n, 320) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    voiced = np.flatnonzero(db > max(db.max() - 35, -50))
    return float(voiced[0] * 0.02), float((voiced[-1] + 1) * 0.02)


def build_conversations(count: int) -> list[Conversation]:
    with (SPEECH / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["language"] == "en"]
    pool: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if (spk := speaker_of(r["id"])) is not None:
            pool.setdefault(spk, []).append(r)
    several = sorted(s for s, rs in pool.items() if len(rs) >= 3)  # spk1, spk2, aew, axb
    extra = sorted(s for s, rs in pool.items() if len(rs) == 2)  # 61, ljspeech: a third voice
    rng = random.Random(SEED)
    out = []
    for k in range(count):
        speakers = rng.sample(several, 2) + ([rng.choice(extra)] if k % 3 == 2 else [])
        n_turns = rng.randint(6, 10)
        queues = {s: rng.sample(pool[s], len(pool[s])) for s in speakers}
        used: Counter[str] = Counter()
        order: list[str] = []
        while len(order) < n_turns:  # alternating, no recording twice in a conversation
            choices = [s for s in speakers if (not order or s != order[-1])
                       and used[s] + order.count(s) < len(queues[s])]
            if not choices:
                break
            most = max(len(queues[s]) - order.count(s) for s in choices)
            order.append(rng.choice([s for s in choices
                                     if len(queues[s]) - order.count(s) == most]))
        tight = k < 2  # every gap 0.25 s: the VAD merges the turns, the voice cut must split
        pieces: list[np.ndarray] = [np.zeros(int(0.3 * RATE), np.float32)]
        t = 0.3
        turns: list[Turn] = []
        texts: list[str] = []
        by_speaker: dict[str, list[str]] = {s: [] for s in speakers}
        for i, spk in enumerate(order):
            row = queues[spk][used[spk]]
            used[spk] += 1
            audio = read_wav(SPEECH / row["wav"])
            a, b = voiced_extent(audio)
            audio = audio[int(a * RATE):int(b * RATE)]  # the turn is the voice, exactly
            turns.append((t, t + len(audio) / RATE, spk))
            texts.append(row["transcript"])
            by_speaker[spk].append(row["transcript"])
            pieces.append(audio)
            t += len(audio) / RATE
            if i < len(order) - 1:
                gap = 0.25 if tight else round(rng.uniform(0.25, 1.0), 2)
                pieces.append(np.zeros(int(gap * RATE), np.float32))
                t += int(gap * RATE) / RATE
        out.append(Conversation(f"built_{k}{'_tight' if tight else ''}", "built",
                                np.concatenate(pieces), turns, " ".join(texts),
                                {s: " ".join(v) for s, v in by_speaker.items()}))
    return out


def diar_recordings() -> list[Conversation]:
    with (SPEECH / "diar" / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Conversation(r["id"], "AMI" if r["id"].startswith("ami_") else "call",
                         read_wav(SPEECH / "diar" / r["wav"]),
                         read_rttm(SPEECH / "diar" / "rttm" / f"{r['id']}.rttm"),
                         r["transcript"])
            for r in rows]


# -- streaming -----------------------------------------------------------------------------


def apply_table(events: list[dict[str, Any]]) -> dict[str, str]:
    """label -> the label it is, after the session's last `speakers` table."""
    tables = [e for e in events if e["type"] == "speakers"]
    if not tables:
        return {}
    same = {s["id"]: s.get("same_as") for s in tables[-1]["speakers"]}

    def root(label: str) -> str:
        seen = set()
        while same.get(label) and label not in seen:
            seen.add(label)
            label = str(same[label])
        return label

    return {label: root(label) for label in same}


async def stream_one(url: str, conv: Conversation, speed: float) -> Run:
    pcm = (np.clip(conv.audio, -1, 1) * 32767).astype("<i2").tobytes()
    chunks = list(rechunk(iter([pcm]), CHUNK_BYTES))
    chunks += [bytes(CHUNK_BYTES)] * round(PAD_SECONDS * 10)
    for attempt in range(REFUSED_RETRIES):
        try:
            result = await stream(url, chunks, realtime=True, speed=speed)
            break
        except ServerRefused as exc:  # overloaded: the server says retry after 10 s
            log(f"  {conv.id}: refused ({exc}); retry {attempt + 1}")
            await asyncio.sleep(10)
    else:
        raise RuntimeError(f"{conv.id}: refused {REFUSED_RETRIES} times")
    merged = apply_table(result.events)
    words = []
    for i, final in enumerate(result.finals):
        for w in final.get("words", []):
            label = w.get("speaker", final.get("speaker"))
            words.append(Word(w["word"], float(w["start"]), float(w["end"]),
                              merged.get(label, label) if label else None, i))
    latencies = [f["received_at"] - sent_time(result.sent_at, f["end"]) for f in result.finals]
    run = Run(conv, words, result.finals, latencies, len(result.errors))
    fill_missing_words(run, merged)
    return run


def fill_missing_words(run: Run, merged: dict[str, str] | None = None) -> int:
    """Finals with text but no `words` (the server sends some): their tokens spread evenly
    over the final's span, with the final's label, so that no spoken word goes unscored.
    Without `merged`, the merge map is read off the run's other words."""
    if merged is None:
        merged = {}
        for w in run.words:
            raw = run.finals[w.final].get("speaker")
            if raw and w.label:
                merged[raw] = w.label
    have = {w.final for w in run.words}
    filled = 0
    for i, final in enumerate(run.finals):
        tokens = final["text"].split()
        if i in have or not tokens:
            continue
        filled += 1
        raw = final.get("speaker")
        label = merged.get(raw, raw) if raw else None
        step = (float(final["end"]) - float(final["start"])) / len(tokens)
        run.words += [Word(t, final["start"] + k * step, final["start"] + (k + 1) * step,
                           label, i) for k, t in enumerate(tokens)]
    run.words.sort(key=lambda w: (w.start, w.final))
    run.filled = filled
    return filled


async def stream_lanes(url: str, convs: list[Conversation], speed: float,
                       lanes: int = 2) -> list[Run]:
    async def lane(items: list[Conversation]) -> list[Run]:
        out = []
        for conv in items:
            out.append(await stream_one(url, conv, speed))
            log(f"  {conv.id}: {len(out[-1].finals)} finals, {len(out[-1].words)} words")
        return out

    results = await asyncio.gather(*(lane(convs[i::lanes]) for i in range(lanes)))
    by_id = {r.conv.id: r for rs in results for r in rs}
    return [by_id[c.id] for c in convs]


@dataclass
class Phase:
    runs: list[Run]
    cpu_s: float
    streamed_s: float


def run_phase(port: int, proc: subprocess.Popen[bytes], convs: list[Conversation],
              diarize: bool, speed: float) -> Phase:
    url = stream_url(f"127.0.0.1:{port}", diarize=diarize)
    before = cpu_seconds(proc.pid)
    runs = asyncio.run(stream_lanes(url, convs, speed))
    streamed = sum(c.duration_s + PAD_SECONDS for c in convs)
    return Phase(runs, cpu_seconds(proc.pid) - before, streamed)


# -- offline clustering --------------------------------------------------------------------


def agglomerate(embeddings: np.ndarray, threshold: float) -> list[int]:
    """Average-link clustering on cosine similarity, merging while the best pair's mean
    similarity is at least `threshold`; cluster index per row."""
    n = len(embeddings)
    clusters: list[list[int]] = [[i] for i in range(n)]
    sims = embeddings @ embeddings.T
    while len(clusters) > 1:
        best, pair = -2.0, (0, 0)
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                s = float(sims[np.ix_(clusters[i], clusters[j])].mean())
                if s > best:
                    best, pair = s, (i, j)
        if best < threshold:
            break
        i, j = pair
        clusters[i] += clusters.pop(j)
    out = [0] * n
    for k, members in enumerate(clusters):
        for m in members:
            out[m] = k
    return out


def offline_labels(run: Run, embed: Any, threshold: float) -> list[str | None]:
    """Each final's word span embedded, clustered over the whole recording."""
    spans: dict[int, tuple[float, float]] = {}
    for w in run.words:
        a, b = spans.get(w.final, (w.start, w.end))
        spans[w.final] = (min(a, w.start), max(b, w.end))
    finals = sorted(spans)
    if not finals:
        return []
    vectors, lengths = [], []
    for i in finals:
        a, b = spans[i]
        a, b = max(0.0, min(a, run.conv.duration_s - MIN_EMBED_S)), min(b, run.conv.duration_s)
        if b - a < MIN_EMBED_S:  # the encoder needs 0.8 s: widen short spans, centred
            mid = (a + b) / 2
            a = max(0.0, min(mid - MIN_EMBED_S / 2, run.conv.duration_s - MIN_EMBED_S))
            b = a + MIN_EMBED_S
        audio = run.conv.audio[int(a * RATE):int(b * RATE)]
        try:
            v = np.asarray(embed(audio), np.float32)
        except NoSpeakerAudio:  # silence: no voice to cluster, joins the nearest (any) one
            v, b = np.zeros(256, np.float32), a
        vectors.append(v / (np.linalg.norm(v) or 1.0))
        lengths.append(b - a)
    vecs = np.stack(vectors)
    reliable = [k for k, s in enumerate(lengths) if s >= RELIABLE_S] or list(range(len(finals)))
    clusters = agglomerate(vecs[reliable], threshold)
    label_of: dict[int, int] = {finals[k]: c for k, c in zip(reliable, clusters)}
    centroids = {c: vecs[[k for k, cc in zip(reliable, clusters) if cc == c]].mean(0)
                 for c in set(clusters)}
    for k, i in enumerate(finals):
        if i not in label_of:
            label_of[i] = max(centroids, key=lambda c: float(vecs[k] @ centroids[c]))
    return [f"C{label_of[w.final] + 1}" for w in run.words]


# -- scoring -------------------------------------------------------------------------------


def reference_of(word: Word, turns: list[Turn]) -> str | None:
    """The speaker whose turns the word's span overlaps most (midpoint for a point)."""
    best: dict[str, float] = {}
    mid = (word.start + word.end) / 2
    for a, b, spk in turns:
        overlap = min(b, word.end) - max(a, word.start)
        if overlap > 0 or a <= mid <= b:
            best[spk] = best.get(spk, 0.0) + max(overlap, 1e-6)
    return max(best, key=lambda s: best[s]) if best else None


@dataclass
class Score:
    in_turn: int = 0
    wrong: int = 0
    unlabelled: int = 0
    words: int = 0
    miss: float = 0.0
    fa: float = 0.0
    confusion: float = 0.0
    total: float = 0.0
    count_right: int = 0
    recordings: int = 0
    cp_errors: int = 0
    ref_words: int = 0
    wer_errors: int = 0

    def add(self, other: Score) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def wder(self) -> float:
        return self.wrong / self.in_turn if self.in_turn else math.nan

    @property
    def der(self) -> float:
        return (self.miss + self.fa + self.confusion) / self.total if self.total else math.nan

    def share(self, value: float) -> float:
        return value / self.total if self.total else math.nan


def best_map(labels: list[str | None], refs: list[str | None]) -> dict[str, str]:
    pairs = [(h, r) for h, r in zip(labels, refs) if h is not None and r is not None]
    hyp = sorted({h for h, _ in pairs})
    ref = sorted({r for _, r in pairs})
    if not hyp or not ref:
        return {}
    counts = np.zeros((len(hyp), len(ref)))
    for h, r in pairs:
        counts[hyp.index(h), ref.index(r)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {hyp[i]: ref[j] for i, j in zip(rows, cols)}


def edits(ref: str, hyp: str) -> int:
    if not ref.split():
        return len(hyp.split())
    out = jiwer.process_words(ref, hyp)
    return int(out.substitutions + out.deletions + out.insertions)


def cp_errors(by_speaker: dict[str, str], words: list[Word], labels: list[str | None],
              normalize: WordNormalizer) -> int:
    """cpWER's numerator: min over maps of hypothesis speakers to reference speakers."""
    hyp: dict[str, list[str]] = {}
    for w, label in zip(words, labels):
        hyp.setdefault(label or "?", []).append(w.text)
    refs = [normalize(t) for t in by_speaker.values()]
    hyps = [normalize(" ".join(v)) for v in hyp.values()]
    size = max(len(refs), len(hyps))
    refs += [""] * (size - len(refs))
    hyps += [""] * (size - len(hyps))
    if size <= 6:
        return min(sum(edits(r, h) for r, h in zip(refs, perm)) for perm in permutations(hyps))
    cost = np.array([[edits(r, h) for h in hyps] for r in refs])
    rows, cols = linear_sum_assignment(cost)
    return int(cost[rows, cols].sum())


def score(run: Run, labels: list[str | None], normalize: WordNormalizer) -> Score:
    words = run.words
    refs = [reference_of(w, run.conv.turns) for w in words]
    mapping = best_map(labels, refs)
    s = Score(recordings=1, words=len(words), unlabelled=sum(lb is None for lb in labels))
    for label, ref in zip(labels, refs):
        if ref is None:
            continue
        s.in_turn += 1
        s.wrong += int(label is None or mapping.get(label) != ref)
    reference = Annotation()
    for a, b, spk in run.conv.turns:
        reference[Segment(a, b)] = spk
    hypothesis = Annotation()
    for k, (w, label) in enumerate(zip(words, labels)):
        if w.end > w.start:
            hypothesis[Segment(w.start, w.end), k] = label or "?"
    detail = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)(
        reference, hypothesis, uem=Timeline([Segment(0, run.conv.duration_s)]), detailed=True)
    s.miss, s.fa = detail["missed detection"], detail["false alarm"]
    s.confusion, s.total = detail["confusion"], detail["total"]
    s.count_right = int(len({lb for lb in labels if lb}) == len({t[2] for t in run.conv.turns}))
    if run.conv.transcript.strip():
        ref_text = normalize(run.conv.transcript)
        s.ref_words = len(ref_text.split())
        s.wer_errors = edits(ref_text, normalize(run.text))
        if run.conv.by_speaker:
            s.cp_errors = cp_errors(run.conv.by_speaker, words, labels, normalize)
    return s


def systems(run: Run) -> dict[str, list[str | None]]:
    refs = [reference_of(w, run.conv.turns) for w in run.words]
    majority: dict[int, Counter[str]] = {}
    for w, ref in zip(run.words, refs):
        if ref is not None:
            majority.setdefault(w.final, Counter())[ref] += 1
    per_final = [majority[w.final].most_common(1)[0][0] if w.final in majority else None
                 for w in run.words]
    return {
        "live": [w.label for w in run.words],
        "offline": run.offline_labels,
        "oracle per final": per_final,
        "oracle": refs,
        "one speaker": ["S1"] * len(run.words),
    }


# -- report --------------------------------------------------------------------------------

GROUPS = (("built", "built conversations (clean read)"), ("AMI", "AMI meeting clips"),
          ("call", "phone call (pyannote sample)"))


def ratio(num: float, den: int) -> float:
    return num / den if den else math.nan


def group_scores(runs: list[Run], normalize: WordNormalizer) -> dict[tuple[str, str], Score]:
    out: dict[tuple[str, str], Score] = {}
    for run in runs:
        for system, labels in systems(run).items():
            out.setdefault((run.conv.group, system), Score()).add(score(run, labels, normalize))
    return out


def diar_table(scores: dict[tuple[str, str], Score]) -> list[str]:
    lines = ["| recordings | system | words in a turn | WDER | DER | miss | false alarm "
             "| confusion | speakers right | WER | cpWER |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for group, title in GROUPS:
        for system in ("live", "offline", "oracle per final", "oracle", "one speaker"):
            s = scores.get((group, system))
            if s is None:
                continue
            wer = ratio(s.wer_errors, s.ref_words)
            cp = ratio(s.cp_errors, s.ref_words) if group == "built" else math.nan
            lines.append(
                f"| {title}: {s.recordings} | {system} | {s.in_turn} | {fmt(s.wder)} "
                f"| {fmt(s.der)} | {fmt(s.share(s.miss))} | {fmt(s.share(s.fa))} "
                f"| {fmt(s.share(s.confusion))} | {s.count_right}/{s.recordings} "
                f"| {fmt(wer)} | {fmt(cp)} |")
    return lines


def wer_of(runs: list[Run], normalize: WordNormalizer) -> float:
    scored = [r for r in runs if r.conv.transcript.strip()]
    errors = sum(edits(normalize(r.conv.transcript), normalize(r.text)) for r in scored)
    return ratio(errors, sum(len(normalize(r.conv.transcript).split()) for r in scored))


def final_latencies_by_end(runs: list[Run]) -> tuple[list[float], list[float]]:
    """Final latencies of finals that ended at a pause, and of those cut where the next
    final begins (a change of voice, or an utterance's longest): a cut can only be made
    once some of the next voice is heard, so those finals are said later after their end."""
    paused: list[float] = []
    cut: list[float] = []
    for run in runs:
        for i, (final, latency) in enumerate(zip(run.finals, run.latencies, strict=False)):
            following = run.finals[i + 1] if i + 1 < len(run.finals) else None
            at_cut = following is not None and abs(following["start"] - final["end"]) < 0.05
            (cut if at_cut else paused).append(latency)
    return paused, cut


def cost_rows(off: Phase, on: Phase, normalize: WordNormalizer) -> list[str]:
    lines = ["| recordings | diarize | final p50 s | of finals ended at a pause | of finals "
             "ended at a change of voice (how many) | WER | finals | finals with text, no words "
             "| words without speaker |", "|---|---|---|---|---|---|---|---|---|"]
    for group, title in (*GROUPS, ("", "all")):
        for name, phase in (("off", off), ("on", on)):
            runs = [r for r in phase.runs if r.conv.group == group or not group]
            missing = str(sum(w.label is None for r in runs for w in r.words))
            paused, cut = final_latencies_by_end(runs)
            lines.append(f"| {title} | {name} | {fmt(p50([x for r in runs for x in r.latencies]))}"
                         f" | {fmt(p50(paused))} | {fmt(p50(cut)) if cut else '-'} ({len(cut)})"
                         f" | {fmt(wer_of(runs, normalize))} | {sum(len(r.finals) for r in runs)}"
                         f" | {sum(r.filled for r in runs)}"
                         f" | {missing if name == 'on' else '-'} |")
    lines += ["", "| diarize | server CPU s | stream s | CPU s per stream s |", "|---|---|---|---|",
              *(f"| {name} | {phase.cpu_s:.1f} | {phase.streamed_s:.0f} "
                f"| {fmt(phase.cpu_s / phase.streamed_s)} |"
                for name, phase in (("off", off), ("on", on)))]
    return lines


def target_rows(scores: dict[tuple[str, str], Score], off: Phase, on: Phase,
                normalize: WordNormalizer) -> list[str]:
    def get(group: str, system: str = "live") -> Score:
        return scores.get((group, system), Score())

    rows: list[tuple[str, float, str, bool]] = []
    for group, wder_bound, conf_bound in (("AMI", 0.10, 0.08), ("built", 0.03, 0.02)):
        s = get(group)
        rows.append((f"{group}: WDER", s.wder, f"<= {wder_bound}", s.wder <= wder_bound))
        c = s.share(s.confusion)
        rows.append((f"{group}: confusion", c, f"<= {conf_bound}", c <= conf_bound))
    live = [get(g) for g, _ in GROUPS]
    right = ratio(sum(s.count_right for s in live), sum(s.recordings for s in live))
    rows.append(("speakers right, all recordings", right, ">= 0.80", right >= 0.80))
    for group, _ in GROUPS:
        live_s, offline_s = get(group), get(group, "offline")
        r = live_s.wder / offline_s.wder if offline_s.wder else (
            1.0 if live_s.wder == 0 else math.inf)
        rows.append((f"{group}: live WDER / offline WDER", r, "<= 1.25", r <= 1.25))
    missing = sum(w.label is None for r in on.runs for w in r.words)
    rows.append(("final words without a speaker", float(missing), "0", missing == 0))
    cpu = (on.cpu_s / on.streamed_s) / (off.cpu_s / off.streamed_s)
    rows.append(("CPU per stream, on / off", cpu, "<= 1.20", cpu <= 1.20))
    lat = p50([x for r in on.runs for x in r.latencies]) - p50(
        [x for r in off.runs for x in r.latencies])
    rows.append(("final p50, on - off (s)", lat, "<= 0.050", lat <= 0.050))
    paused = p50(final_latencies_by_end(on.runs)[0]) - p50(final_latencies_by_end(off.runs)[0])
    rows.append(("the same, of finals ended at a pause (s)", paused, "<= 0.050", paused <= 0.050))
    wer = wer_of(on.runs, normalize) - wer_of(off.runs, normalize)
    rows.append(("WER, on - off (all scored)", wer, "<= 0.005", wer <= 0.005))
    return ["| target | measured | bound | met |", "|---|---|---|---|",
            *(f"| {name} | {fmt(v)} | {bound} | {'yes' if ok else 'NO'} |"
              for name, v, bound, ok in rows)]


CUT_TOLERANCE_S = 0.5


def check_rows(sweeps: dict[str, Phase], scores: dict[tuple[str, str], Score]) -> list[str]:
    """Settings chosen on the built conversations, tried once on AMI and the call."""
    checks = {k.removeprefix("check "): p for k, p in sweeps.items() if k.startswith("check ")}
    if not checks:
        return []
    lines = ["Held out: the settings chosen on the built conversations, streamed once on "
             "AMI and the call (never tuned on):", "",
             "| setting | recordings | WDER | DER | confusion | speakers right |",
             "|---|---|---|---|---|---|"]
    for setting, phase in (("defaults", None), *checks.items()):
        got = scores if phase is None else group_scores(phase.runs, WordNormalizer())
        for group, title in GROUPS[1:]:
            s = got.get((group, "live"), Score())
            lines.append(f"| {setting} | {title} | {fmt(s.wder)} | {fmt(s.der)} "
                         f"| {fmt(s.share(s.confusion))} | {s.count_right}/{s.recordings} |")
    return [*lines, ""]


def boundary_rows(runs: list[Run]) -> list[str]:
    """Where finals begin and end against where the voice changes (built only: exact)."""
    lines = ["| recordings | voice changes | found by a final boundary (±0.5 s) "
             "| of them by a voice cut | voice cuts | cuts at a change | cut offset p50 s |",
             "|---|---|---|---|---|---|---|"]
    for group, title in GROUPS[:1]:
        changes = found = found_by_cut = cuts = good = 0
        offsets: list[float] = []
        for run in (r for r in runs if r.conv.group == group):
            turns = run.conv.turns
            points = [(a[1] + b[0]) / 2 for a, b in pairwise(turns) if a[2] != b[2]]
            spoken = [f for f in run.finals if f["text"].strip()]
            bounds = [((x["end"] + y["start"]) / 2, y["start"] - x["end"] < 0.01)
                      for x, y in pairwise(spoken)]
            changes += len(points)
            for p in points:
                near = [cut for b, cut in bounds if abs(b - p) <= CUT_TOLERANCE_S]
                found += bool(near)
                found_by_cut += any(near)
            for b, cut in bounds:
                if cut:
                    cuts += 1
                    if points:
                        offset = min(points, key=lambda p: abs(b - p))
                        offsets.append(b - offset)
                        good += abs(b - offset) <= CUT_TOLERANCE_S
        lines.append(f"| {title} | {changes} | {found} | {found_by_cut} | {cuts} | {good} "
                     f"| {fmt(p50(offsets), 2)} |")
    return lines


HOW = (
    "How it was measured. *built conversations*: `manifest.tsv` recordings whose id names "
    "the speaker (`speaker_encoders.speaker_of`: CMU ARCTIC aew/axb, SpeechBrain spk1/spk2, "
    "LibriSpeech 61, LJSpeech), 2-3 speakers, 6-10 turns, no recording twice in a "
    "conversation, each recording trimmed to its voice (first to last 20 ms frame within "
    "35 dB of the loudest) so that the turn is exactly the voice, joined with seeded gaps "
    "of 0.25-1.0 s (`built_0_tight`, `built_1_tight`: every gap 0.25 s); reference words "
    "are the recordings' transcripts. *AMI*: the six 30 s headset-mix clips of "
    "`shared/speech/diar/` scored against `rttm/` (words only); *call*: pyannote's sample "
    "(its shipped RTTM); the AMI clips have no transcript here, so no WER. The AMI "
    "clips are public and are pyannote's own test data (its "
    "segmentation model, which the server uses to find changes of voice, was trained on "
    "AMI: its cuts there are optimistic; the built conversations are free of that). "
    "Each recording is streamed twice on one server (`diarize=false`, then "
    "`diarize=true`, after a warm-up stream), in real time, 100 ms chunks and 1 s of "
    "silence after, 2 streams at a time; the server's admission limits are raised "
    "(`capacity.max_final_wait_s=5`, `capacity.max_lag_s=5`) because other work shares "
    "the 2 cores. *WDER*: a word is in a turn when its span overlaps one (the most "
    "overlapped turn's speaker is its reference); labels after the last `speakers` table "
    "(`same_as` applied), mapped one-to-one to reference speakers by the Hungarian method "
    "on word counts; an unmapped label is wrong. *DER*: pyannote.metrics "
    "`DiarizationErrorRate(collar=0.25, skip_overlap=False)`, uem the whole recording, "
    "hypothesis = each final word's span with its label; shares of the reference speech "
    "time. *oracle per final*: each live final labelled with the reference speaker of "
    "most of its words: the error left by where the finals begin and end (a missed or "
    "misplaced change-of-voice cut), with perfect clustering. *oracle*: the reference "
    "speaker on the same word spans (its miss and false "
    "alarm are what word spans cannot cover: pauses inside turns, overlap, words the "
    "recognizer missed). *offline*: the same encoder (`auto`) embeds each live final's "
    "word span; average-link cosine clustering over the whole recording, merging while "
    "similarity >= 0.75 (`same_voice`), finals under 1.0 s (`reliable_s`) joined to the "
    "nearest cluster; it keeps the live finals' boundaries, so only the labels differ. "
    "*speakers right*: number of labels = number of reference speakers. *cpWER*: "
    "per-speaker concatenations of reference transcripts against per-label "
    "concatenations of final words, minimum over one-to-one maps (padding with empty "
    "speakers); WER and cpWER normalized with `scoring.WordNormalizer`. *final p50*: "
    "receipt minus the wall clock at which the audio at the final's `end` was sent. "
    "*CPU*: utime+stime of the server process over each phase (/proc/PID/stat) over the "
    "stream seconds of the phase."
)


def write_tsv(path: Path, phases: dict[str, list[Run]], normalize: WordNormalizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["run", "id", "group", "duration_s", "ref_speakers", "system", "labels",
               "finals", "words", "words_in_turn", "wder", "der", "miss", "false_alarm",
               "confusion", "wer", "cpwer", "final_p50_s", "hypothesis_speakers"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for name, runs in phases.items():
            for run in runs:
                for system, labels in systems(run).items():
                    if name != "diarize on" and system != "live":
                        continue
                    s = score(run, labels, normalize)
                    if name == "diarize off":  # no labels: only the words count
                        s.wrong, s.miss, s.fa, s.confusion = 0, math.nan, math.nan, math.nan
                    seq: list[str] = []
                    for label in labels:
                        if not seq or seq[-1] != (label or "-"):
                            seq.append(label or "-")
                    writer.writerow([
                        name, run.conv.id, run.conv.group, f"{run.conv.duration_s:.2f}",
                        len({t[2] for t in run.conv.turns}), system,
                        len({lb for lb in labels if lb}), len(run.finals), s.words, s.in_turn,
                        fmt(s.wder), fmt(s.der), fmt(s.share(s.miss)), fmt(s.share(s.fa)),
                        fmt(s.share(s.confusion)), fmt(ratio(s.wer_errors, s.ref_words)),
                        fmt(ratio(s.cp_errors, s.ref_words)) if run.conv.by_speaker else "",
                        fmt(p50(run.latencies)), " ".join(str(x) for x in seq)])


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--limit-built", type=int, default=8, help="built conversations")
    parser.add_argument("--only", choices=("all", "built", "diar"), default="all")
    parser.add_argument("--speed", type=float, default=1.0, help="1 = real time")
    parser.add_argument("--sweep", action="store_true", help="threshold sweep on built")
    parser.add_argument("--sweep-speed", type=float, default=1.0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--raw", type=Path, default=Path(tempfile.gettempdir()) / "diar_runs.pkl",
                        help="every run, pickled, for --rescore")
    parser.add_argument("--sweep-point", action="append", default=[],
                        help="with --rescore: stream the built conversations once more "
                        "with these settings (KEY=VALUE,KEY=VALUE[#tag: a repeat]) and add "
                        "them to the sweep")
    parser.add_argument("--check", action="append", default=[],
                        help="with --rescore: stream AMI and the call once with settings "
                        "chosen on the built conversations (KEY=VALUE,KEY=VALUE)")
    parser.add_argument("--rescore", action="store_true",
                        help="score and report the runs of --raw again, without streaming")
    return parser.parse_args(argv)


def with_server(extra: list[str], body: Any) -> Any:
    port = free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = start_server(port, MODEL, server_log, ["--no-store", *SERVER_ARGS, *extra])
        try:
            return body(port, proc)
        except BaseException:
            server_log.seek(0)
            log("diar_bench: server log tail:\n"
                + "\n".join(server_log.read().decode(errors="replace").splitlines()[-20:]))
            raise
        finally:
            stop_server(proc)


MODEL = "tiny.en"


def main(argv: list[str] | None = None) -> int:
    global MODEL
    args = parse_args(argv)
    MODEL = args.model
    began = time.monotonic()
    convs: list[Conversation] = []
    if args.only in ("all", "built"):
        convs += build_conversations(args.limit_built)
    if args.only in ("all", "diar"):
        convs += diar_recordings()
    log(f"diar_bench: {len(convs)} recordings, {sum(c.duration_s for c in convs):.0f} s")
    warm = Conversation("warmup", "warmup", convs[0].audio[:3 * RATE], [], "")

    def both(port: int, proc: subprocess.Popen[bytes]) -> tuple[Phase, Phase]:
        run_phase(port, proc, [warm], True, args.speed)  # load the model and the encoder
        log("diar_bench: diarize off")
        off = run_phase(port, proc, convs, False, args.speed)
        log("diar_bench: diarize on")
        on = run_phase(port, proc, convs, True, args.speed)
        return off, on

    if args.rescore:
        with args.raw.open("rb") as f:
            off, on, sweeps = pickle.load(f)
        built = [r.conv for r in on.runs if r.conv.group == "built"]
        for point in args.sweep_point:  # more sweep points, added to the kept runs
            log(f"diar_bench: sweep {point}")
            extra = [x for kv in point.split("#")[0].split(",") for x in ("--set", kv)]
            sweeps[point] = with_server(
                extra, lambda port, proc: run_phase(port, proc, built, True, args.sweep_speed))
            with args.raw.open("wb") as f:
                pickle.dump((off, on, sweeps), f)
        held_out = [r.conv for r in on.runs if r.conv.group != "built"]
        for point in args.check:  # settings chosen on built, once on AMI and the call
            log(f"diar_bench: held-out check {point}")
            extra = [x for kv in point.split("#")[0].split(",") for x in ("--set", kv)]
            sweeps[f"check {point}"] = with_server(
                extra, lambda port, proc: run_phase(port, proc, held_out, True, args.speed))
            with args.raw.open("wb") as f:
                pickle.dump((off, on, sweeps), f)
        for run in [r for phase in (off, on, *sweeps.values()) for r in phase.runs]:
            if not getattr(run, "filled", 0):
                fill_missing_words(run)
        if any(len(r.offline_labels) != len(r.words) for r in on.runs):
            encoder = load_speaker_encoder()
            for run in on.runs:
                run.offline_labels = offline_labels(run, encoder.embed, SAME_VOICE)
    else:
        off, on = with_server([], both)
        sweeps: dict[str, Phase] = {}
        with args.raw.open("wb") as f:
            pickle.dump((off, on, sweeps), f)
        built = [c for c in convs if c.group == "built"]
        for key, values in SWEEP if args.sweep and built else ():
            for value in values:
                log(f"diar_bench: sweep {key}={value}")
                sweeps[f"{key}={value}"] = with_server(
                    ["--set", f"{key}={value}"],
                    lambda port, proc: run_phase(port, proc, built, True, args.sweep_speed))
                with args.raw.open("wb") as f:
                    pickle.dump((off, on, sweeps), f)
        log("diar_bench: offline clustering")
        encoder = load_speaker_encoder()
        for run in on.runs:
            run.offline_labels = offline_labels(run, encoder.embed, SAME_VOICE)
        with args.raw.open("wb") as f:
            pickle.dump((off, on, sweeps), f)
    normalize = WordNormalizer()
    scores = group_scores(on.runs, normalize)

    sweep_lines: list[str] = []
    tsv_phases = {"diarize on": on.runs, "diarize off": off.runs}
    if sweeps:
        sweep_lines = ["| setting | built: WDER | DER | confusion | speakers right | cpWER |",
                       "|---|---|---|---|---|---|"]
        s = scores[("built", "live")]
        sweep_lines.append(f"| defaults (this run's main table) | {fmt(s.wder)} "
                           f"| {fmt(s.der)} | {fmt(s.share(s.confusion))} "
                           f"| {s.count_right}/{s.recordings} "
                           f"| {fmt(ratio(s.cp_errors, s.ref_words))} |")
        for setting, phase in sweeps.items():
            tsv_phases[f"sweep {setting}"] = phase.runs
            for run in phase.runs:
                run.offline_labels = [None] * len(run.words)
            if setting.startswith("check "):
                continue
            s = group_scores(phase.runs, normalize)[("built", "live")]
            again = ""
            sweep_lines.append(
                f"| {setting}{again} | {fmt(s.wder)} | {fmt(s.der)} "
                f"| {fmt(s.share(s.confusion))} | {s.count_right}/{s.recordings} "
                f"| {fmt(ratio(s.cp_errors, s.ref_words))} |")

    date = dt.date.today().isoformat()
    tsv = args.out.parent / "results" / f"diar_{date}.tsv"
    write_tsv(tsv, tsv_phases, normalize)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO_ROOT).stdout.strip()
    lines = [
        SECTION, "",
        f"- Date: {date}, commit {commit}; {len(os.sched_getaffinity(0))} CPUs, {cpu_model()}",
        f"- Model {MODEL}, speaker encoder `auto`, server defaults; streamed at "
        f"{args.speed:g}x real time, 2 streams at a time"
        + ("; scored again from the kept runs" if args.rescore
           else f"; {(time.monotonic() - began) / 60:.0f} min"),
        "- Rerun: `pip install pyannote.metrics`, `python bench/diar_bench.py` (keeps every "
        "run in /tmp/diar_runs.pkl; `--sweep` adds the threshold sweep), then settings side "
        "by side, on the built conversations and once on AMI and the call: `python "
        "bench/diar_bench.py --rescore --sweep-point speakers.segmentation=off --check "
        "speakers.segmentation=off` (any `--set` key: `KEY=VALUE,KEY=VALUE`)",
        "", *diar_table(scores), "", *cost_rows(off, on, normalize), "",
        *target_rows(scores, off, on, normalize), "",
        "Finals' boundaries against the voice changes (diarize on; a *voice cut* is a "
        "boundary with no gap between the finals, where the server cut at a change of "
        "voice; offset = cut minus the nearest change, positive = late):", "",
        *boundary_rows(on.runs), "",
        *(["Sweep (built conversations only; AMI untuned; each row one run, and the "
           "defaults run twice shows the run-to-run spread):", "", *sweep_lines, ""]
          if sweep_lines else []),
        *check_rows(sweeps, scores),
        HOW + f" Per-recording rows: `{tsv.relative_to(REPO_ROOT)}`.", "",
    ]
    section = "\n".join(lines)
    if not args.no_write:
        write_results_md(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH_DIR))
    raise SystemExit(main())
