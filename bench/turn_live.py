"""Turn-taking live: end of turn and caption finals, turns on beside VAD-only endpointing.

Streams `turn_set.py`'s paused sentences (one recording, sentence after sentence: a
0.5-1.0 s pause after a function word mid-sentence, 1.0-1.5 s after each sentence) in
real time into a real `captioncast serve --no-store`, once per configuration, one stream
at a time, and records the receipt of every event against the wall clock at which each
audio chunk was sent (stream_bench's machinery):

- `turns=true` at the default thresholds and the swept ones: a turn "ends" at each
  `turn`/`end` event;
- VAD only (plain `/v1/stream`): a turn "ends" at each final (the segmenter's 0.5 s
  hangover);
- optionally Deepgram's `/v1/listen?endpointing=1000`: at each `speech_final`.

Per configuration: EndOfTurn latency (receipt minus the send time of the sentence's
last word's end), the share of mid-sentence pauses ended, the share of sentences that end
as a turn before the next one begins, the WER of the turn transcripts, the server's CPU
seconds per audio second, and the caption finals' latency and WER (also on stream_bench's
clean clips and continuous read speech, turns on and off).

Writes "## Turn-taking, live: end of turn and caption finals" of bench/RESULTS.md (the
measured part; notes by hand go below it), rows to bench/results/turn_live_<date>_*.tsv.

    python bench/turn_live.py [--configs vad,turns,turns_eot0.5,...] [--clips] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import csv
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import stream_bench as sb
import turn_set
from scoring import WordNormalizer
from turn_set import RATE, PausedSentence, Recording, Word

from captioncast.turns.tracker import ends_open
from captioncast_client.audio_files import rechunk
from captioncast_client.streaming import StreamResult, stream, stream_url

SECTION = "## Turn-taking, live: end of turn and caption finals"
CHUNK_BYTES = sb.CHUNK_BYTES  # 100 ms
LEAD_S = 0.5  # silence before the first sentence
TAIL_S = 1.0  # after the last sentence's own pause
EDGE_S = 0.15  # a final or turn ending this close after a pause's start ends at the pause


@dataclass(frozen=True)
class Config:
    """One way of streaming the set: the route's query and the server it runs on."""

    name: str
    query: dict[str, Any] = field(default_factory=dict)
    server: tuple[str, ...] = ()  # extra `serve` arguments (a second server)
    route: str = "native"  # or "deepgram"

    @property
    def turns(self) -> bool:
        return bool(self.query.get("turns"))


SPECULATE = ("--set", "policy.segmenter.speculate_after_s=0.15")
CONFIGS = {c.name: c for c in (
    Config("vad"),
    Config("turns", {"turns": True}),
    Config("turns_eot0.5", {"turns": True, "eot_threshold": 0.5}),
    Config("turns_eot0.85", {"turns": True, "eot_threshold": 0.85}),
    Config("turns_timeout1000", {"turns": True, "eot_timeout_ms": 1000}),
    Config("turns_eot0.5_timeout1000", {"turns": True, "eot_threshold": 0.5,
                                        "eot_timeout_ms": 1000}),
    Config("turns_eager", {"turns": True, "eot_threshold": 0.85, "eager_eot_threshold": 0.5}),
    Config("vad_spec0.15", {}, SPECULATE),
    Config("turns_spec0.15", {"turns": True}, SPECULATE),
    Config("deepgram_ep1000", {"endpointing": 1000}, route="deepgram"),
)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the set ------------------------------------------------------------------------------


def recordings(cache: Path | None) -> list[Recording]:
    """turn_set's recordings with whisper's word times, from `cache` when it has them."""
    if cache is not None and cache.exists():
        timed = json.loads(cache.read_text(encoding="utf-8"))
        out = []
        for rid, transcript, wav in turn_set.sentences():
            words = [None if w is None else Word(*w) for w in timed[rid]]
            out.append(Recording(rid, transcript, turn_set.read_wav(wav), words))
        return out
    out = turn_set.transcribe_all(turn_set.whisper_model())
    if cache is not None:
        cache.write_text(json.dumps({r.id: [None if w is None else [w.text, w.start, w.end]
                                            for w in r.words] for r in out}), encoding="utf-8")
    return out


@dataclass(frozen=True)
class Placed:
    """A paused sentence at its place in the stream, in seconds of stream audio."""

    sentence: PausedSentence
    begin: float
    mid: float  # the mid-sentence pause starts
    mid_end: float
    last_word: float  # the last word's end (the end-of-sentence pause starts)
    next: float  # the next sentence begins (or the stream ends)


def place(sentences: list[PausedSentence]) -> tuple[np.ndarray, list[Placed]]:
    audio = [np.zeros(int(LEAD_S * RATE), np.float32)]
    placed = []
    at = len(audio[0])
    for s in sentences:
        placed.append(Placed(s, at / RATE, (at + s.mid_start) / RATE,
                             (at + s.mid_start) / RATE + s.mid_pause_s,
                             (at + s.end_start) / RATE, (at + len(s.audio)) / RATE))
        audio.append(s.audio)
        at += len(s.audio)
    audio.append(np.zeros(int(TAIL_S * RATE), np.float32))
    return np.concatenate(audio), placed


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


# -- streaming ----------------------------------------------------------------------------


@dataclass
class Ended:
    """Something that ends a turn: a `turn`/`end`, a final, a Deepgram `speech_final`."""

    received_at: float
    start: float  # audio seconds
    end: float
    transcript: str


@dataclass
class Run:
    config: Config
    result: StreamResult
    cpu_s: float
    audio_s: float
    load: float = math.nan  # the machine's 1-minute load average after the stream

    def ends(self) -> list[Ended]:
        events = self.result.events
        if self.config.route == "deepgram":
            return [deepgram_ended(e) for e in events
                    if e.get("type") == "Results" and e.get("speech_final")]
        if self.config.turns:
            return [Ended(e["received_at"], e["start"], e["end"], e["transcript"])
                    for e in events
                    if e["type"] == "turn" and e["event"] == "end"]
        return self.finals()

    def finals(self) -> list[Ended]:
        if self.config.route == "deepgram":
            return [deepgram_ended(e) for e in self.result.events
                    if e.get("type") == "Results" and e.get("is_final")]
        return [Ended(f["received_at"], f["start"], f["end"], f["text"])
                for f in self.result.finals]


def deepgram_ended(e: dict[str, Any]) -> Ended:
    alternative = e["channel"]["alternatives"][0]
    return Ended(e["received_at"], e["start"], e["start"] + e["duration"],
                 alternative["transcript"])


async def stream_deepgram(port: int, query: dict[str, Any], chunks: list[bytes]) -> StreamResult:
    """Deepgram's route, raw: chunks at real-time pace, every message with its receipt."""
    from urllib.parse import urlencode

    from websockets.asyncio.client import connect

    params = {"encoding": "linear16", "sample_rate": 16000, "language": "en", **query}
    result = StreamResult()
    async with connect(f"ws://127.0.0.1:{port}/v1/listen?{urlencode(params)}") as ws:
        async def send() -> None:
            started, sent = time.monotonic(), 0
            for chunk in chunks:
                sent += len(chunk)
                await asyncio.sleep(max(0.0, started + sent / 32000 - time.monotonic()))
                await ws.send(chunk)
                result.sent_at.append((sent / 32000, time.monotonic()))
            await ws.send(json.dumps({"type": "CloseStream"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            if isinstance(message, str):
                result.events.append({**json.loads(message), "received_at": time.monotonic()})
        await sender
    return result


async def stream_set(port: int, config: Config, audio: bytes) -> StreamResult:
    chunks = list(rechunk(iter([audio]), CHUNK_BYTES))
    if config.route == "deepgram":
        return await stream_deepgram(port, config.query, chunks)
    return await stream(stream_url(f"127.0.0.1:{port}", **config.query), chunks, realtime=True)


@dataclass(frozen=True)
class Server:
    port: int
    pid: int

    def cpu(self) -> float:
        return sb.cpu_seconds(self.pid)


@contextlib.contextmanager
def serving(model: str, extra: tuple[str, ...]) -> Iterator[Server]:
    """`captioncast serve --no-store` (and extra arguments) on a free port."""
    port = sb.free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = sb.start_server(port, model, server_log, ["--no-store", *extra])
        try:
            yield Server(port, proc.pid)
        except BaseException:
            server_log.seek(0)
            log("server log tail:\n" + "\n".join(
                server_log.read().decode(errors="replace").splitlines()[-20:]))
            raise
        finally:
            sb.stop_server(proc)


# -- measuring the set --------------------------------------------------------------------


def audio_at(sent_at: list[tuple[float, float]], wall: float) -> float:
    """Stream audio sent by wall time `wall` (the last chunk sent before it)."""
    i = bisect.bisect_right([w for _, w in sent_at], wall)
    return sent_at[i - 1][0] if i else 0.0


def sentence_of(placed: list[Placed], audio_s: float) -> int | None:
    starts = [p.begin for p in placed]
    i = bisect.bisect_right(starts, audio_s) - 1
    return i if 0 <= i < len(placed) and audio_s < placed[i].next else None


@dataclass
class SentenceScore:
    placed: Placed
    mid_ended: bool = False
    other_ended: bool = False  # ended at one of the sentence's own pauses (not the inserted)
    ended: bool = False  # a turn ended after its last word, before the next sentence
    late: bool = False  # ended after its last word, but only once the next had begun
    latency: float = math.nan  # first end after the last word: receipt - send time
    hypothesis: str = ""  # the transcripts of the ends that fell in this sentence
    own: bool = True  # every end that fell here began after the sentence before it ended
    ends: list[tuple[str, float, Ended]] = field(default_factory=list)  # (kind, lat, end)


def score_ends(run: Run, placed: list[Placed], ends: list[Ended]) -> list[SentenceScore]:
    """Which pause each end fell in, per sentence; latency from the last word's send."""
    sent = run.result.sent_at
    scores = [SentenceScore(p) for p in placed]
    for e in ends:
        heard = audio_at(sent, e.received_at)
        i = sentence_of(placed, e.end - 0.05)  # a word's end may run 50 ms into the pause
        if i is None:
            continue
        p, s = placed[i], scores[i]
        # A turn over several sentences counts against the last (the others get nothing).
        s.hypothesis = " ".join(x for x in (s.hypothesis, e.transcript.strip()) if x)
        if i and e.start < placed[i - 1].last_word:
            s.own = False
        if e.end < p.mid + EDGE_S or p.mid <= heard < p.mid_end:
            s.mid_ended = True
            s.ends.append(("mid", e.received_at - sb.sent_time(sent, p.mid), e))
            continue
        lat = e.received_at - sb.sent_time(sent, p.last_word)
        if heard < p.last_word:  # before the sentence was over: another pause in it
            s.other_ended = True
            s.ends.append(("other", lat, e))
            continue
        if e.received_at < sb.sent_time(sent, p.next):  # the last: before the tail is sent
            s.ended = True
        else:
            s.late = True
        if math.isnan(s.latency):
            s.latency = lat
        s.ends.append(("end", lat, e))
    return scores


def share(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.0%} ({sum(flags)}/{len(flags)})" if flags else "n/a"


def wer(refs: list[str], hyps: list[str], normalize: WordNormalizer) -> float:
    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps)]
    pairs = [(r, h) for r, h in pairs if r.strip()]
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])) if pairs else math.nan


@dataclass
class SetRow:
    config: Config
    scores: list[SentenceScore]
    finals: list[SentenceScore]  # the same, counting caption finals as the ends
    cpu_per_audio_s: float
    load: float
    final_latencies: list[float]
    caption_wer: float
    hypothesis_wer: float  # of the turn transcripts, per sentence
    own_wer: float  # the same, only sentences that ended as turns of their own
    own: int
    run: Run
    placed: list[Placed]


def eager_latencies(run: Run, placed: list[Placed]) -> list[float]:
    """Per sentence with one, its first `eager_end` after its last word (the model's
    answer, sent without waiting for a final), from the last word's send time."""
    sent = run.result.sent_at
    out = []
    for p in placed:
        for e in run.result.events:
            if e["type"] == "turn" and e["event"] == "eager_end" and \
                    p.last_word <= audio_at(sent, e["received_at"]) < p.next:
                out.append(e["received_at"] - sb.sent_time(sent, p.last_word))
                break
    return out


def caption_latencies(run: Run) -> list[float]:
    return [f.received_at - sb.sent_time(run.result.sent_at, f.end) for f in run.finals()]


def set_row(run: Run, placed: list[Placed], normalize: WordNormalizer) -> SetRow:
    scores = score_ends(run, placed, run.ends())
    finals = score_ends(run, placed, run.finals())
    refs = [p.sentence.reference for p in placed]
    caption = " ".join(f.transcript for f in run.finals())
    own = [s for s in scores if s.own and (s.ended or s.late)]
    return SetRow(run.config, scores, finals, run.cpu_s / run.audio_s, run.load,
                  caption_latencies(run),
                  wer([" ".join(refs)], [caption], normalize),
                  wer(refs, [s.hypothesis for s in scores], normalize),
                  wer([s.placed.sentence.reference for s in own], [s.hypothesis for s in own],
                      normalize), len(own), run, placed)


# -- caption finals on stream_bench's sets ----------------------------------------------------


@dataclass
class ClipRow:
    config: Config
    subset: str
    results: list[sb.RecordingResult]
    cpu_per_audio_s: float


def clip_values(row: ClipRow, normalize: WordNormalizer) -> dict[str, float]:
    scored = [r for r in row.results if not r.rec.approximate]
    lat = [x for r in row.results for x in r.final_latencies]
    return {"wer": wer([r.rec.transcript for r in scored], [r.hypothesis for r in scored],
                       normalize) if scored else math.nan,
            "p50": sb.p50(lat), "p95": sb.p95(lat), "finals": len(lat),
            "audio_s": sum(r.rec.duration_s for r in row.results)}


# -- where the time goes ---------------------------------------------------------------------


def pauses(audio: np.ndarray, extra: tuple[str, ...] = ()) -> list[tuple[float, float]]:
    """(voice stopped, pause seen) in stream seconds for every pause the server's segmenter
    reports (the turn model is asked at such pauses), 100 ms chunks as streamed."""
    from captioncast.core.segmenter import Segmenter, SegmenterOptions, SpeechPause

    options = SegmenterOptions()
    if SPECULATE[1] in " ".join(extra):
        options = SegmenterOptions(speculate_after_s=0.15)
    segmenter = Segmenter(options)
    out = []
    step = CHUNK_BYTES // 2
    for at in range(0, len(audio), step):
        for boundary in segmenter.push(audio[at:at + step]):
            if isinstance(boundary, SpeechPause):
                out.append((boundary.speech_end / RATE, min(at + step, len(audio)) / RATE))
    return out


def model_ms(audio: np.ndarray, runs: int = 20) -> float:
    """Median CPU ms of one turn-model call in this process (one thread), after a warm-up."""
    from captioncast.engine.turn_model import load_turn_model

    model = load_turn_model()
    clip = audio[:8 * RATE]
    model.complete_probability(clip)
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        model.complete_probability(clip)
        times.append(time.process_time() - t0)
    return float(np.median(times)) * 1000


def detection(placed: list[Placed], seen: list[tuple[float, float]]) -> tuple[float, float]:
    """Median, over sentences, of the VAD's voice end and of the pause being seen (when
    the model is asked), both after the last word's end."""
    stops, asks = [], []
    for p in placed:
        after = [(v, a) for v, a in seen if p.last_word - 0.5 <= v < p.next]
        if after:
            stops.append(after[0][0] - p.last_word)
            asks.append(after[0][1] - p.last_word)
    return sb.p50(stops), sb.p50(asks)


# -- reporting ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return sb.fmt(value, digits)


def latencies(scores: list[SentenceScore], missing: float = math.inf) -> list[float]:
    """Per sentence, the first end after its last word; `missing` where none came."""
    return [s.latency if not math.isnan(s.latency) else missing for s in scores]


def end_table(rows: list[SetRow], n: int) -> list[str]:
    lines = [f"| endpointing ({n} sentences) | EndOfTurn p50 | p95 | p50, p95 of those that "
             "ended | ended in time | "
             "ended late | mid-sentence pauses ended | other pauses ended | "
             "turn transcript WER, per sentence | "
             "the same, sentences ended as their own turn | caption WER | CPU s per audio s "
             "| load |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = latencies(r.scores)
        ended = [x for x in lat if not math.isinf(x)]
        lines.append(
            f"| {label(r.config)} | {fmt(sb.p50(lat))} | {fmt(sb.p95(lat))} | "
            f"{fmt(sb.p50(ended))}, {fmt(sb.p95(ended))} | "
            f"{share([s.ended for s in r.scores])} | {share([s.late for s in r.scores])} | "
            f"{share([s.mid_ended for s in r.scores])} | "
            f"{share([s.other_ended for s in r.scores])} | {fmt(r.hypothesis_wer, 3)} | "
            f"{fmt(r.own_wer, 3)} ({r.own}) | {fmt(r.caption_wer, 3)} | "
            f"{fmt(r.cpu_per_audio_s, 3)} | {fmt(r.load, 1)} |")
    return lines


def finals_table(rows: list[SetRow], clips: list[ClipRow], normalize: WordNormalizer,
                 n: int) -> list[str]:
    lines = ["| set | configuration | caption finals | final p50 | final p95 | "
             "sentence's final after its last word, p50 | WER | CPU s per audio s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.config.route != "native":
            continue
        after = [s.latency for s in r.finals if not math.isnan(s.latency)]
        lines.append(f"| paused sentences ({n}) | {label(r.config)} | "
                     f"{len(r.final_latencies)} | {fmt(sb.p50(r.final_latencies))} | "
                     f"{fmt(sb.p95(r.final_latencies))} | {fmt(sb.p50(after))} | "
                     f"{fmt(r.caption_wer, 3)} | {fmt(r.cpu_per_audio_s, 3)} |")
    for c in clips:
        v = clip_values(c, normalize)
        lines.append(f"| {c.subset} ({len(c.results)}, {v['audio_s']:.0f} s) | "
                     f"{label(c.config)} | {v['finals']} | {fmt(v['p50'])} | {fmt(v['p95'])} "
                     f"| | {fmt(v['wer'], 3)} | {fmt(c.cpu_per_audio_s, 3)} |")
    return lines


def label(config: Config) -> str:
    if config.route == "deepgram":
        return f"Deepgram route, endpointing={config.query['endpointing']} ms (speech_final)"
    if not config.turns:
        what = "VAD only (plain /v1/stream; a final ends the turn)"
    else:
        q = {k: v for k, v in config.query.items() if k != "turns"}
        what = "turns=true" + (", " + ", ".join(f"{k}={v}" for k, v in q.items()) if q
                               else " (eot_threshold 0.7, timeout 5000 ms)")
    return what + (f", `{' '.join(config.server)}`" if config.server else "")


def render(rows: list[SetRow], clips: list[ClipRow], meta: dict[str, Any],
           normalize: WordNormalizer) -> str:
    n = len(rows[0].scores) if rows else 0
    lines = [SECTION, "",
             f"- Date: {meta['date']}, commit {meta['commit']}; {meta['nproc']} CPUs "
             f"({sb.cpu_model()}), shared; model {meta['model']}",
             f"- Command: `{meta['command']}` ({meta['minutes']:.0f} min)", "",
             "### End of turn on the paused sentences", ""]
    lines += end_table(rows, n)
    for r in rows:
        eager = eager_latencies(r.run, r.placed)
        if eager:
            lines += ["", f"- {label(r.config)}: `eager_end` (the model's answer, no final "
                      f"awaited) after the last word in {len(eager)} of {n} sentences, p50 "
                      f"{fmt(sb.p50(eager))} s, p95 {fmt(sb.p95(eager))} s"]
    lines += ["", "### Caption finals, turns on and off", ""]
    lines += finals_table(rows, clips, normalize, n)
    lines += ["", *meta.get("where", []), "", f"Rows: `{meta['tsv']}`.", ""]
    return "\n".join(lines)


def write_tsvs(base: Path, rows: list[SetRow], clips: list[ClipRow],
               normalize: WordNormalizer) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    ends_path = base.with_name(base.name + "_sentences.tsv")
    with ends_path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["config", "sentence", "mid_pause_s", "end_pause_s", "mid_ended", "ended",
                    "late", "other_ended", "eot_latency_s", "final_after_last_word_s", "ends",
                    "wer",
                    "reference", "turn_transcripts"])
        for r in rows:
            for s, fs in zip(r.scores, r.finals):
                p = s.placed
                ends = "; ".join(f"{kind}@{lat:.2f}[{e.start:.2f}-{e.end:.2f}]"
                                 for kind, lat, e in s.ends)
                w.writerow([r.config.name, p.sentence.id, p.sentence.mid_pause_s,
                            p.sentence.end_pause_s, int(s.mid_ended), int(s.ended),
                            int(s.late), int(s.other_ended), fmt(s.latency, 3),
                            fmt(fs.latency, 3), ends,
                            fmt(wer([p.sentence.reference], [s.hypothesis], normalize), 3),
                            p.sentence.reference, s.hypothesis])
    clips_path = base.with_name(base.name + "_clips.tsv")
    with clips_path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["config", "subset", "id", "duration_s", "finals", "final_p50_s",
                    "final_max_s", "wer", "reference", "streaming"])
        for c in clips:
            for res in c.results:
                ref = "" if res.rec.approximate else res.rec.transcript
                w.writerow([c.config.name, c.subset, res.rec.id, f"{res.rec.duration_s:.2f}",
                            len(res.finals), fmt(sb.p50(res.final_latencies), 3),
                            fmt(max(res.final_latencies, default=math.nan), 3),
                            fmt(wer([ref], [res.hypothesis], normalize), 3), ref,
                            res.hypothesis])
    return [ends_path, clips_path]


def save_runs(path: Path, runs: list[Run], clips: list[ClipRow]) -> None:
    path.write_text(json.dumps({
        "runs": [{"config": r.config.name, "cpu_s": r.cpu_s, "audio_s": r.audio_s,
                  "load": r.load, "events": r.result.events, "sent_at": r.result.sent_at}
                 for r in runs],
        "clips": [{"config": c.config.name, "subset": c.subset, "cpu": c.cpu_per_audio_s,
                   "recordings": [{"id": x.rec.id, "duration_s": x.rec.duration_s,
                                   "transcript": x.rec.transcript,
                                   "approximate": x.rec.approximate,
                                   "streamed_s": x.streamed_s, "finals": x.finals,
                                   "final_latencies": x.final_latencies,
                                   "hypothesis": x.hypothesis} for x in c.results]}
                  for c in clips]}), encoding="utf-8")


def load_runs(path: Path) -> tuple[list[Run], list[ClipRow]]:
    saved = json.loads(path.read_text(encoding="utf-8"))
    runs = []
    for r in saved["runs"]:
        result = StreamResult()
        result.events = r["events"]
        result.sent_at = [tuple(x) for x in r["sent_at"]]
        runs.append(Run(CONFIGS[r["config"]], result, r["cpu_s"], r["audio_s"], r["load"]))
    clips = []
    for c in saved["clips"]:
        results = [sb.RecordingResult(
            sb.Recording(x["id"], Path(), x["duration_s"], x["transcript"], x["approximate"]),
            x["streamed_s"], x["finals"], 0, 0, 0, x["final_latencies"], [], x["hypothesis"])
            for x in c["recordings"]]
        clips.append(ClipRow(CONFIGS[c["config"]], c["subset"], results, c["cpu"]))
    return runs, clips


# -- main ---------------------------------------------------------------------------------


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=sb.REPO_ROOT, check=False)
    return out.stdout.strip() or "unknown"


async def clips_runs(server: Server, config: Config,
                     sets: dict[str, list[sb.Recording]]) -> list[ClipRow]:
    out = []
    url = stream_url(f"127.0.0.1:{server.port}", **config.query)
    for subset, recs in sets.items():
        before = server.cpu()
        results = await sb.stream_all(url, recs)
        audio = sum(r.streamed_s for r in results)
        out.append(ClipRow(config, subset, results, (server.cpu() - before) / audio))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="vad,turns,turns_eot0.5,turns_eot0.85,"
                        "turns_timeout1000",
                        help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--clips", default="vad,turns",
                        help="configurations also streamed on stream_bench's clean clips and "
                        "continuous read speech ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--words-cache", type=Path, default=None,
                        help="JSON of the set's word times (tiny.en's, made if missing)")
    parser.add_argument("--events", type=Path, default=None,
                        help="save every stream's events and send times here (JSON)")
    parser.add_argument("--replay", type=Path, default=None,
                        help="score the streams saved with --events instead of streaming")
    parser.add_argument("--tag", default="", help="suffix of the TSVs' names")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    clip_names = [c for c in args.clips.split(",") if c]
    unknown = [c for c in names + clip_names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"turn_live: unknown configurations {unknown}")
    began = time.monotonic()
    date = dt.date.today().isoformat()
    sentences = turn_set.build_set(recordings(args.words_cache), args.seed)
    audio, placed = place(sentences)
    data = pcm(audio)
    audio_s = len(data) / 32000
    log(f"turn_live: {len(placed)} sentences, {audio_s:.0f} s; configs {names}")
    sets: dict[str, list[sb.Recording]] = {}
    if clip_names:
        sets = {"clean clips": [r for r in sb.read_manifest(sb.DEFAULT_SPEECH_DIR, None, None)
                                if sb.is_clean(r.id)],
                "continuous read": sb.read_concatenated(sb.DEFAULT_SPEECH_DIR)}
    normalize = WordNormalizer()
    runs: list[Run] = []
    clips: list[ClipRow] = []
    servers = sorted({CONFIGS[c].server for c in names + clip_names})
    if args.replay is not None:
        runs, clips = load_runs(args.replay)
        names = [r.config.name for r in runs]
        servers = []
    for extra in servers:
        with serving(args.model, extra) as server:
            for name in names:
                config = CONFIGS[name]
                if config.server != extra:
                    continue
                before = server.cpu()
                result = asyncio.run(stream_set(server.port, config, data))
                run = Run(config, result, server.cpu() - before, audio_s, os.getloadavg()[0])
                runs.append(run)
                row = set_row(run, placed, normalize)
                log(f"  {name}: EndOfTurn p50 {fmt(sb.p50(latencies(row.scores)))} s, ended "
                    f"{share([s.ended for s in row.scores])}, mid ended "
                    f"{share([s.mid_ended for s in row.scores])}, CPU "
                    f"{row.cpu_per_audio_s:.3f} s/s, load {run.load:.1f}")
            for name in clip_names:
                if CONFIGS[name].server == extra:
                    clips += asyncio.run(clips_runs(server, CONFIGS[name], sets))
    if args.events is not None:
        save_runs(args.events, runs, clips)
    order = {n: i for i, n in enumerate(names)}
    rows = sorted((set_row(r, placed, normalize) for r in runs),
                  key=lambda r: order[r.config.name])
    base = sb.BENCH_DIR / "results" / f"turn_live_{date}{'_' + args.tag if args.tag else ''}"
    meta = {"date": date, "commit": commit(), "nproc": len(os.sched_getaffinity(0)),
            "model": args.model, "minutes": (time.monotonic() - began) / 60,
            "command": " ".join(["python bench/turn_live.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "tsv": f"bench/results/{base.name}_sentences.tsv, {base.name}_clips.tsv"}
    seen = pauses(audio)
    stop, ask = detection(placed, seen)
    ask_fast = detection(placed, pauses(audio, SPECULATE))[1]
    ms = model_ms(audio)
    vetoed = sum(ends_open(s.sentence.head) for s in placed)
    meta["where"] = [
        f"- The server's segmenter reports {len(seen)} pauses in the {audio_s:.0f} s stream "
        f"(the turn model is asked at 0.2 s and again at 0.6 s of a pause, never after an "
        f"open word): at {ms:.0f} ms CPU per call (median of 20, one thread, measured here), "
        f"at most {2 * len(seen) * ms / 1000 / audio_s:.3f} CPU s per audio s for the model.",
        f"- After a sentence's last word (median): the VAD hears voice stop "
        f"{stop * 1000:+.0f} ms from it; the pause is seen, and the model asked, "
        f"{ask:.2f} s after it (speculate_after_s 0.2 s and the 100 ms chunk it arrives "
        f"in), {ask_fast:.2f} s with speculate_after_s=0.15.",
        f"- {vetoed} of the {len(placed)} mid-sentence pauses follow a word of the turn "
        "tracker's `OPEN_ENDED` list, where no probability ends the turn (the set cuts "
        "after function words)."]
    section = render(rows, clips, meta, normalize)
    print(section)
    if not args.no_write:
        write_tsvs(base, rows, clips, normalize)
        sb.write_results_md(sb.BENCH_DIR / "RESULTS.md", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
