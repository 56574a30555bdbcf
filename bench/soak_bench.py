"""Soak benchmark: one session of 60 minutes of speech at 4x real time; memory, latency, WER.

Starts `captioncast serve` on a free port and streams one long session through the
normal client (`captioncast_client.streaming.stream`, partials on): the English
recordings of `../shared/speech/manifest.tsv` and `approx.tsv`, shuffled anew on each
pass and separated by 1-4 s of digital silence, looped until `--minutes` of audio,
paced at `--speed` times real time. Every 5 s it samples the server's resident memory
(VmRSS). Per minute of wall time it reports RSS, the latency of the finals received
in that minute (receipt minus the wall clock at which the audio at the final's `end`
was sent: at 4x, audio is sent 4x sooner, so this is what the server adds), the
finals, and the WER of the recordings whose audio ended in that minute (exact
transcripts only: approx.tsv is for load, not scoring). Overall: RSS growth after
warm-up, latency drift, and repeated phrases in the output against the references.

Writes "## Soak (issue 5)" in bench/RESULTS.md and bench/results/soak_<date>.tsv.

    python bench/soak_bench.py                 # 60 min of audio, ~16 min of wall time
    python bench/soak_bench.py --minutes 4     # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import datetime as dt
import itertools
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
from scoring import WordNormalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import (  # bench/ is not a package
    DEFAULT_SPEECH_DIR,
    cpu_model,
    cpu_seconds,
    fmt,
    free_port,
    p50,
    p95,
    start_server,
    stop_server,
    write_results_md,
)

from captioncast.protocol.events import Event, Final
from captioncast_client.streaming import StreamResult, stream, stream_url

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SECTION = "## Soak (issue 5)"
CHUNK_BYTES = 3200  # 100 ms of 16 kHz s16le mono
BYTES_PER_SECOND = 32000
GAP_S = (1.0, 4.0)  # silences between recordings: long enough to end an utterance
RSS_EVERY_S = 5.0
WARMUP_MINUTES = 2  # model pages, allocator pools and caches settle in the first minutes
NGRAM = 3  # "repeats" counts repeated 3-grams within one recording's output
TARGETS = {"rss_growth": 0.05}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Recording:
    id: str
    pcm: bytes
    transcript: str
    exact: bool  # manifest.tsv (exact) or approx.tsv (approximate)


@dataclass
class Placed:
    """One recording's place in the stream, on the audio clock."""

    rec: Recording
    start: float
    end: float
    words: list[str] = field(default_factory=list)  # the output assigned to it


def read_recordings(speech_dir: Path) -> list[Recording]:
    out = []
    for name, exact in (("manifest.tsv", True), ("approx.tsv", False)):
        with (speech_dir / name).open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row["language"] != "en":
                    continue
                with wave.open(str(speech_dir / row["wav"])) as w:
                    assert w.getframerate() == 16000 and w.getnchannels() == 1
                    pcm = w.readframes(w.getnframes())
                out.append(Recording(row["id"], pcm, row["transcript"], exact))
    return out


def plan(recordings: list[Recording], minutes: float, seed: int) -> list[tuple[Placed, float]]:
    """Recordings and the silence after each, until `minutes` of audio."""
    rng = random.Random(seed)
    placed: list[tuple[Placed, float]] = []
    at, total = 0.0, minutes * 60
    while at < total:
        order = recordings[:]
        rng.shuffle(order)
        for rec in order:
            duration = len(rec.pcm) / BYTES_PER_SECOND
            gap = round(rng.uniform(*GAP_S), 1)
            placed.append((Placed(rec, at, at + duration), gap))
            at += duration + gap
            if at >= total:
                break
    return placed


def chunks(placed: list[tuple[Placed, float]]) -> Iterator[bytes]:
    buffer = bytearray()
    for item, gap in placed:
        buffer += item.rec.pcm
        buffer += bytes(int(gap * 16000) * 2)
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (wall clock, MiB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), rss_mib(self.pid)))
            self.stop.wait(RSS_EVERY_S)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# -- scoring ------------------------------------------------------------------------------


def assign_words(result: StreamResult, placed: list[Placed]) -> None:
    """Each output word to the recording its timing falls in (nearest one)."""
    starts = [p.start for p in placed]
    for final in result.finals:
        timed = final.get("words") or []
        items = [(w["word"], (w["start"] + w["end"]) / 2) for w in timed]
        if not timed and final["text"]:
            middle = (final["start"] + final["end"]) / 2
            items = [(word, middle) for word in final["text"].split()]
        for word, t in items:
            i = max(0, bisect.bisect_right(starts, t) - 1)
            if i + 1 < len(placed) and t - placed[i].end > placed[i + 1].start - t:
                i += 1
            placed[i].words.append(word)


def repeated_ngrams(text: str, n: int = NGRAM) -> int:
    """n-gram occurrences beyond the first of each, within one text."""
    words = [re.sub(r"[^\w']", "", w.lower()) for w in text.split()]
    words = [w for w in words if w]
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return sum(c - 1 for c in counts.values())


@dataclass
class Minute:
    index: int
    rss_mib: float = math.nan
    latencies: list[float] = field(default_factory=list)
    finals: int = 0
    refs: list[str] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)

    @property
    def wer(self) -> float:
        pairs = [(r, h) for r, h in zip(self.refs, self.hyps) if r.strip()]
        return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])) if pairs \
            else math.nan


def per_minute(result: StreamResult, placed: list[Placed], rss: list[tuple[float, float]],
               started: float, normalize: WordNormalizer) -> list[Minute]:
    sent_audio = [a for a, _ in result.sent_at]
    sent_wall = [w for _, w in result.sent_at]

    def sent_time(audio_s: float) -> float:
        i = bisect.bisect_left(sent_audio, audio_s - 1e-6)
        return sent_wall[min(i, len(sent_wall) - 1)]

    last = max([f["received_at"] for f in result.finals] + [w for w, _ in rss] + [started])
    minutes = [Minute(i) for i in range(int((last - started) // 60) + 1)]
    for final in result.finals:
        m = minutes[int((final["received_at"] - started) // 60)]
        m.finals += 1
        m.latencies.append(final["received_at"] - sent_time(final["end"]))
    for wall, mib in rss:
        minutes[min(len(minutes) - 1, int((wall - started) // 60))].rss_mib = mib
    for p in placed:
        if p.rec.exact and p.end <= sent_audio[-1]:
            m = minutes[min(len(minutes) - 1, int((sent_time(p.end) - started) // 60))]
            m.refs.append(normalize(p.rec.transcript))
            m.hyps.append(normalize(" ".join(p.words)))
    return minutes


# -- reporting ------------------------------------------------------------------------------


def write_tsv(path: Path, minutes: list[Minute]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["minute", "rss_mib", "finals", "final_latency_p50_s",
                         "final_latency_p95_s", "recordings_scored", "wer"])
        for m in minutes:
            writer.writerow([m.index, fmt(m.rss_mib, 1), m.finals, fmt(p50(m.latencies)),
                             fmt(p95(m.latencies)), len(m.refs), fmt(m.wer)])


def write_recordings_tsv(path: Path, placed: list[Placed]) -> None:
    """Every recording in the stream with its output: where repeats and errors come from."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "start_s", "end_s", "exact", "repeats_output",
                         "repeats_reference", "output", "reference"])
        for p in placed:
            output = " ".join(p.words)
            writer.writerow([p.rec.id, f"{p.start:.1f}", f"{p.end:.1f}", int(p.rec.exact),
                             repeated_ngrams(output), repeated_ngrams(p.rec.transcript),
                             output, p.rec.transcript])


def render(minutes: list[Minute], s: dict[str, Any]) -> str:
    rows = [
        f"| {m.index} | {fmt(m.rss_mib, 1)} | {m.finals} | {fmt(p50(m.latencies))} | "
        f"{fmt(p95(m.latencies))} | {len(m.refs)} | {fmt(m.wer)} |"
        for m in minutes
    ]
    growth, bound = s["rss_growth"], TARGETS["rss_growth"]
    summary = [
        ("Server RSS after warm-up (minute "
         f"{WARMUP_MINUTES}) -> last sample (MiB)",
         f"{fmt(s['rss_warm'], 1)} -> {fmt(s['rss_last'], 1)} (max {fmt(s['rss_max'], 1)})",
         "", ""),
        ("RSS growth after warm-up", f"{growth * 100:+.1f} %", "< 5 %",
         "yes" if growth < bound else "NO"),
        ("Final latency p50, first / last third of the minutes (s)",
         f"{fmt(s['lat_first'])} / {fmt(s['lat_last'])}", "flat", s["lat_flat"]),
        ("Final latency p50 / p95, all (s)", f"{fmt(s['lat_p50'])} / {fmt(s['lat_p95'])}",
         "", ""),
        ("WER, all scored recordings (corpus)", fmt(s["wer"]), "", ""),
        ("WER, first / last third of the minutes", f"{fmt(s['wer_first'])} / "
         f"{fmt(s['wer_last'])}", "flat", ""),
        (f"Repeated {NGRAM}-grams within a recording: output / references",
         f"{s['rep_hyp']} / {s['rep_ref']}", "output <= references",
         "yes" if s["rep_hyp"] <= s["rep_ref"] else "NO"),
        ("Recordings whose output repeats more than their reference",
         f"{s['rep_worse']} of {s['placed']}", "", ""),
        ("Loops cut by the repetition guard (server log)", str(s["loops"]), "", ""),
        ("Finals / utterance numbers / seq gaps", f"{s['finals']} / 0..{s['finals'] - 1} / "
         f"{s['seq_gaps']}", "contiguous", "yes" if s["contiguous"] else "NO"),
    ]
    return "\n".join([
        s["section"], "",
        f"- Date: {s['date']}; machine: {s['nproc']} CPUs, {cpu_model()} (load average "
        f"{s['load_before']} before the run, {s['load_after']} after)",
        f"- Allocator: {s['allocator']}",
        f"- Model: {s['model']}, `captioncast serve` defaults (partials on); one session",
        f"- Audio: {s['audio_min']:.1f} min ({s['placed']} recordings: the "
        f"{s['distinct']} English ones of manifest.tsv and approx.tsv, reshuffled each pass, "
        f"1-4 s of silence between them), sent at {s['speed']:g}x real time in 100 ms "
        f"chunks; wall time {s['wall_min']:.1f} min; server CPU {fmt(s['cpu_per_audio'])} s "
        "per audio s",
        f"- Command: `{s['command']}`",
        "",
        "| metric | measured | target | met |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary),
        "",
        "Per minute of wall time:",
        "",
        "| minute | server RSS MiB | finals | final latency p50 s | p95 s | recordings scored "
        "| WER |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Latency: receipt of a final minus the wall clock at which the audio at its `end` was "
        f"sent; at {s['speed']:g}x that audio is sent {s['speed']:g}x sooner than in real "
        "time, so the latency is what the server adds, as in real time when it keeps up. "
        "WER: per minute, the exact-transcript recordings whose audio ended in that minute; "
        "each output word goes to the recording its timing falls in; whisper-normalizer's "
        "EnglishTextNormalizer on both sides (tokens without a letter or digit dropped, "
        "`bench/scoring.py`). Repeats: for every recording in the stream, the "
        f"{NGRAM}-gram occurrences beyond the first within its output, against the same count "
        "in its reference (references are verbatim, with the speakers' own repetitions). "
        f"RSS: VmRSS every {RSS_EVERY_S:g} s, the last sample of each minute. Per-minute "
        f"rows: `{s['tsv']}`; every recording with its output: `{s['recordings_tsv']}`.",
        "",
    ])


def shown(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def allocator_settings() -> str:
    """The environment the server inherited that changes how native memory is kept."""
    keys = ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", "MALLOC_CONF",
            "CT2_CUDA_ALLOCATOR")
    set_here = [f"`{k}={os.environ[k]}`" for k in keys if os.environ.get(k)]
    return ", ".join(set_here) if set_here else "glibc malloc defaults"


def thirds(values: list[float]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return p50(values[:third]), p50(values[-third:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio")
    parser.add_argument("--speed", type=float, default=4.0, help="times real time")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--speech-dir", type=Path, default=DEFAULT_SPEECH_DIR)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--section", default=SECTION, help="the RESULTS.md heading to replace")
    parser.add_argument("--server-log", type=Path, default=None,
                        help="keep the server's log here (for loops_caught and diagnosis)")
    args = parser.parse_args(argv)

    recordings = read_recordings(args.speech_dir)
    placed_gaps = plan(recordings, args.minutes, args.seed)
    placed = [p for p, _ in placed_gaps]
    audio_s = placed_gaps[-1][0].end + placed_gaps[-1][1]
    log(f"soak_bench: {len(recordings)} recordings, {len(placed)} placed, "
        f"{audio_s / 60:.1f} min of audio at {args.speed:g}x")
    load_before = f"{os.getloadavg()[0]:.1f}"
    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".log") as server_log:
        proc = start_server(port, args.model, server_log)
        sampler = RssSampler(proc.pid)
        try:
            cpu_before = cpu_seconds(proc.pid)
            sampler.start()
            started = time.monotonic()
            progress = {"finals": 0}

            def on_event(event: Event) -> None:
                if isinstance(event, Final):
                    progress["finals"] += 1
                    if progress["finals"] % 50 == 0:
                        log(f"  {(time.monotonic() - started) / 60:.1f} min: "
                            f"{progress['finals']} finals, audio at {event.end / 60:.1f} min, "
                            f"RSS {sampler.samples[-1][1]:.0f} MiB")

            result = asyncio.run(stream(stream_url(f"127.0.0.1:{port}"), chunks(placed_gaps),
                                        speed=args.speed, on_event=on_event,
                                        end_timeout=600))
            wall = time.monotonic() - started
            cpu_used = cpu_seconds(proc.pid) - cpu_before
        finally:
            sampler.stop.set()
            stop_server(proc)
        server_text = Path(server_log.name).read_text(errors="replace")
        if args.server_log is not None:
            args.server_log.write_text(server_text)
    loops = sum(int(x) for x in re.findall(r"loops_caught=(\d+)", server_text))

    normalize = WordNormalizer()
    assign_words(result, placed)
    minutes = per_minute(result, placed, sampler.samples, started, normalize)
    date = dt.date.today().isoformat()
    tsv = args.out.parent / "results" / f"soak_{date}.tsv"  # beside the results file
    write_tsv(tsv, minutes)
    write_recordings_tsv(tsv.with_name(f"soak_{date}_recordings.tsv"), placed)

    warm = [mib for wall_at, mib in sampler.samples if wall_at - started >= WARMUP_MINUTES * 60]
    rss_warm = warm[0] if warm else math.nan
    rss_last = sampler.samples[-1][1]
    lat_by_minute = [p50(m.latencies) for m in minutes if m.latencies]
    lat_first, lat_last = thirds(lat_by_minute)
    scored = [m for m in minutes if m.refs]
    wer_first, wer_last = thirds([m.wer for m in scored])
    finals = result.finals
    seqs = [e["seq"] for e in result.events]
    rep_pairs = [(repeated_ngrams(" ".join(p.words)), repeated_ngrams(p.rec.transcript))
                 for p in placed if p.end <= audio_s]
    refs = [r for m in scored for r in m.refs]
    hyps = [h for m in scored for h in m.hyps]
    summary: dict[str, Any] = {
        "section": args.section, "allocator": allocator_settings(),
        "date": date, "nproc": len(os.sched_getaffinity(0)), "model": args.model,
        "speed": args.speed, "audio_min": audio_s / 60, "wall_min": wall / 60,
        "placed": len(placed), "distinct": len(recordings),
        "load_before": load_before, "load_after": f"{os.getloadavg()[0]:.1f}",
        "cpu_per_audio": cpu_used / audio_s,
        "rss_warm": rss_warm, "rss_last": rss_last,
        "rss_max": max(mib for _, mib in sampler.samples),
        "rss_growth": (rss_last - rss_warm) / rss_warm if warm else math.nan,
        "lat_first": lat_first, "lat_last": lat_last,
        "lat_flat": "yes" if lat_last <= max(1.5 * lat_first, lat_first + 0.5) else "NO",
        "lat_p50": p50([x for m in minutes for x in m.latencies]),
        "lat_p95": p95([x for m in minutes for x in m.latencies]),
        "wer": float(jiwer.wer(refs, hyps)) if refs else math.nan,
        "wer_first": wer_first, "wer_last": wer_last,
        "rep_hyp": sum(h for h, _ in rep_pairs), "rep_ref": sum(r for _, r in rep_pairs),
        "rep_worse": sum(1 for h, r in rep_pairs if h > r), "loops": loops,
        "finals": len(finals),
        "seq_gaps": sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1),
        "contiguous": [f["utterance"] for f in finals] == list(range(len(finals)))
        and seqs == list(range(1, len(seqs) + 1)),
        "tsv": shown(tsv),
        "recordings_tsv": shown(tsv.with_name(f"soak_{date}_recordings.tsv")),
        "command": " ".join(["python bench/soak_bench.py", *(sys.argv[1:] if argv is None
                                                             else argv)]),
    }
    section = render(minutes, summary)
    write_results_md(args.out, section)
    log(f"soak_bench: wrote {args.out} and {tsv}")
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
