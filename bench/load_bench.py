"""Load benchmark: N simultaneous real-time streams on one server, beside silent sessions.

For each N (default 1 4 8 12 16 24) starts `captioncast serve` with admission off
(`--max-load 0`, so that all N run and the table shows what happens past capacity),
connects `--silent` sessions that stream digital silence in real time (muted
microphones), then streams N different sequences of the English recordings of
shared/speech (each about `--seconds` long, recordings separated by 1 s of silence) at
once in real time, and measures per N: final latency, partial word latency
(PROTOCOL.md "Latency"), partials per final, corpus WER, the server's CPU (cores busy)
and peak RSS. Stream i holds the same recordings whatever N is, and each stream is also
run alone (one at a time, at `--solo-speed` times real time): a row's "vs alone" WER
ratio is what that load costs the same audio. Then `--idle-run` (8 speakers with and
without that many silent sessions beside them) and one admission run: the server with
its default `--max-load`, the largest N, streams opened one by one beside the silent
sessions: who is admitted, who is refused, and how late the admitted ones' finals got.

Writes the section "## Load: simultaneous streams (issues 4, 19)" of bench/RESULTS.md
and rows to bench/results/load_<date>.tsv.

    python bench/load_bench.py                      # the table, about 20 minutes
    python bench/load_bench.py --n 16 --no-solo --no-admission --idle-run 0   # one row
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring import WordNormalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_bench as sb

from captioncast_client.audio_files import decode_pcm, rechunk
from captioncast_client.streaming import ServerRefused, stream, stream_url

SECTION = "## Load: simultaneous streams (issues 4, 19)"
GAP_S = 1.0  # silence between recordings: the speaker pauses


@dataclass
class StreamPlan:
    recordings: list[sb.Recording]
    chunks: list[bytes]

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self.chunks) / 32000

    @property
    def transcript(self) -> str:
        return " ".join(r.transcript for r in self.recordings)


@dataclass
class RunResult:
    n: int
    streams: list[sb.RecordingResult]
    refused: int
    silent: Silent
    cpu_cores: float
    cpu_per_audio_s: float
    rss_peak_mb: float
    wall_s: float


def plan_streams(recordings: list[sb.Recording], n: int, seconds: float,
                 spread: int | None = None) -> list[StreamPlan]:
    """N sequences of different recordings (rotated through the set), each about `seconds`.

    Stream i starts at recording i * len / `spread`: with the same `spread` for every N,
    stream i holds the same audio in every row.
    """
    plans: list[StreamPlan] = []
    step = max(1, len(recordings) // max(spread or n, 1))
    for i in range(n):
        chosen: list[sb.Recording] = []
        chunks: list[bytes] = []
        k = i * step
        while sum(len(c) for c in chunks) / 32000 < seconds:
            rec = recordings[k % len(recordings)]
            k += 1
            if rec.duration_s > seconds:  # one long monologue would be the whole stream
                continue
            chosen.append(rec)
            chunks += list(rechunk(decode_pcm(str(rec.wav)), sb.CHUNK_BYTES))
            chunks += [bytes(sb.CHUNK_BYTES)] * round(GAP_S * 10)
        plans.append(StreamPlan(chosen, chunks))
    return plans


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Silent:
    """Muted microphones beside the speakers: what they were sent back."""

    sessions: int = 0
    finals: int = 0
    partials: int = 0
    refused: int = 0


async def silent_sessions(url: str, n: int, seconds: float, out: Silent,
                          connected: asyncio.Event) -> None:
    """`n` sessions streaming digital silence in real time for `seconds`, then eos."""
    if n == 0:
        connected.set()
        return
    opened = 0

    def on_event(event: Any) -> None:
        nonlocal opened
        kind = type(event).__name__
        if kind == "Ready":
            opened += 1
            if opened == n:
                connected.set()
        out.finals += kind == "Final"
        out.partials += kind == "Partial"

    async def one() -> None:
        chunks = [bytes(sb.CHUNK_BYTES)] * round(seconds * 10)
        try:
            await stream(url, chunks, realtime=True, end_timeout=60, on_event=on_event)
            out.sessions += 1
        except ServerRefused:
            out.refused += 1
            connected.set()

    await asyncio.gather(*(one() for _ in range(n)))


async def run_streams(url: str, plans: list[StreamPlan], silent: int = 0,
                      speed: float = 1.0) -> tuple[list[sb.RecordingResult], int, Silent]:
    quiet, connected = Silent(), asyncio.Event()
    seconds = max((p.seconds for p in plans), default=0.0) + 5.0
    beside = asyncio.create_task(silent_sessions(url, silent, seconds, quiet, connected))
    await asyncio.wait_for(connected.wait(), 120)

    async def one(i: int, plan: StreamPlan) -> sb.RecordingResult | None:
        await asyncio.sleep(random.Random(i).uniform(0, 2.0))  # speakers do not start in step
        try:
            result = await stream(url, plan.chunks, realtime=True, end_timeout=300,
                                  speed=speed)
        except ServerRefused as exc:
            sb.log(f"  stream {i} refused: {exc}")
            return None
        rec = sb.Recording(f"stream{i}", Path(), plan.seconds, plan.transcript)
        return sb.measure(rec, result, plan.seconds)

    outcomes = await asyncio.gather(*(one(i, p) for i, p in enumerate(plans)))
    await beside
    done = [r for r in outcomes if r is not None]
    return done, len(outcomes) - len(done), quiet


# Every client of this bench comes from 127.0.0.1, where real ones come from many
# addresses: the per-address limits are lifted, the decode admission is not.
ONE_ADDRESS_FOR_ALL = ["--max-sessions", "1000", "--max-connections-per-ip", "0",
                       "--set", "security.max_idle_per_ip=0"]


def start(port: int, model: str, extra: list[str], server_log: Any) -> subprocess.Popen[bytes]:
    return sb.start_server(port, model, server_log, [*ONE_ADDRESS_FOR_ALL, *extra])


def run_n(n: int, plans: list[StreamPlan], model: str, extra: list[str], silent: int = 0,
          speed: float = 1.0) -> RunResult:
    port = sb.free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = start(port, model, extra, server_log)
        try:
            cpu0, wall0 = sb.cpu_seconds(proc.pid), time.monotonic()
            with RssSampler(proc.pid) as rss:
                streams, refused, quiet = asyncio.run(
                    run_streams(stream_url(f"127.0.0.1:{port}"), plans, silent, speed))
            cpu = sb.cpu_seconds(proc.pid) - cpu0
            wall = time.monotonic() - wall0
        finally:
            sb.stop_server(proc)
    if refused or quiet.refused:  # admission is off: a refusal is a broken run, not data
        raise SystemExit(f"load_bench: {refused} speakers and {quiet.refused} silent sessions "
                         "were refused with admission off")
    audio = sum(p.seconds for p in plans)
    return RunResult(n, streams, refused, quiet, cpu / wall, cpu / audio, rss.peak, wall)


def solo_texts(plans: list[StreamPlan], model: str, extra: list[str],
               speed: float) -> list[str]:
    """Each stream alone, one after another on one server: its finals' text."""
    async def each(url: str) -> list[str]:
        texts = []
        for i, plan in enumerate(plans):
            streams, _, _ = await run_streams(url, [plan], 0, speed)
            texts.append(streams[0].hypothesis if streams else "")
            sb.log(f"  alone {i}: {len(texts[-1].split())} words")
        return texts

    port = sb.free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = start(port, model, extra, server_log)
        try:
            return asyncio.run(each(stream_url(f"127.0.0.1:{port}")))
        finally:
            sb.stop_server(proc)


@dataclass
class Admission:
    admitted: int
    refused: int
    notes: list[str]
    late_p95: list[float]  # final latency p95 of each admitted stream, in order of opening
    silent: Silent


async def admission_probe(url: str, plans: list[StreamPlan], silent: int) -> Admission:
    """Open streams one by one, 1.5 s apart, beside `silent` muted sessions.

    Idle sessions are admitted at connect (issue 19): a speaker past capacity is refused
    when it starts speaking, with an `overloaded` error and close 1013. The admitted
    streams' final latency says whether admission came before finals got late.
    """
    quiet, connected = Silent(), asyncio.Event()
    seconds = max(p.seconds for p in plans) + 1.5 * len(plans) + 5.0
    beside = asyncio.create_task(silent_sessions(url, silent, seconds, quiet, connected))
    await asyncio.wait_for(connected.wait(), 120)
    tasks: list[asyncio.Task[Any]] = []
    for plan in plans:
        tasks.append(asyncio.create_task(
            stream(url, plan.chunks, realtime=True, end_timeout=300, reconnect=False)))
        await asyncio.sleep(1.5)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await beside
    notes: list[str] = []
    late: list[float] = []
    refused_ids: set[int] = set()
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            notes.append(f"stream {i + 1}: {result}")
            refused_ids.add(i)
            continue
        overloaded = [e["message"] for e in result.errors if e["code"] == "overloaded"]
        if overloaded:
            notes.append(f"stream {i + 1}: {overloaded[0]}")
            refused_ids.add(i)
            continue
        rec = sb.Recording(f"stream{i}", Path(), plans[i].seconds, plans[i].transcript)
        late.append(sb.p95(sb.measure(rec, result, plans[i].seconds).final_latencies))
    return Admission(len(plans) - len(refused_ids), len(refused_ids), notes, late, quiet)


def offline_texts(model_spec: str, recordings: list[sb.Recording],
                  device: str = "cpu") -> dict[str, str]:
    """faster-whisper on each whole recording, beam 5: the same audio's offline WER."""
    from faster_whisper import WhisperModel

    from captioncast.engine.models import resolve_model

    model = WhisperModel(resolve_model(model_spec).path, device=device,
                         compute_type="int8" if device == "cpu" else "float16")
    texts = {}
    for rec in recordings:
        segments, _ = model.transcribe(str(rec.wav), beam_size=5, language="en")
        texts[rec.id] = " ".join(seg.text.strip() for seg in segments)
    return texts


def offline_wer(plans: list[StreamPlan], texts: dict[str, str],
                normalize: WordNormalizer) -> float:
    refs = [normalize(p.transcript) for p in plans]
    hyps = [normalize(" ".join(texts[r.id] for r in p.recordings)) for p in plans]
    return sb.corpus_wer(refs, hyps)


def score(run: RunResult, normalize: WordNormalizer,
          alone: list[str] | None = None) -> dict[str, Any]:
    refs = [normalize(s.rec.transcript) for s in run.streams]
    hyps = [normalize(s.hypothesis) for s in run.streams]
    finals = [x for s in run.streams for x in s.final_latencies]
    words = [x for s in run.streams for x in s.word_latencies]
    n_finals = sum(len(s.finals) for s in run.streams)
    n_partials = sum(s.n_partials for s in run.streams)
    return {
        "n": run.n, "refused": run.refused,
        "final_p50": sb.p50(finals), "final_p95": sb.p95(finals),
        "word_p50": sb.p50(words), "word_p95": sb.p95(words),
        "partials_per_final": n_partials / n_finals if n_finals else math.nan,
        "wer": sb.corpus_wer(refs, hyps), "cpu_cores": run.cpu_cores,
        "cpu_per_audio_s": run.cpu_per_audio_s, "rss_peak_mb": run.rss_peak_mb,
        "errors": sum(s.n_errors for s in run.streams), "finals": n_finals,
        "silent": run.silent.sessions, "silent_finals": run.silent.finals,
        "silent_refused": run.silent.refused,
        "wer_alone": (sb.corpus_wer(refs, [normalize(alone[int(s.rec.id[6:])])
                                           for s in run.streams]) if alone else math.nan),
    }


def ratio(a: float, b: float) -> float:
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def render(rows: list[dict[str, Any]], idle: list[dict[str, Any]], admission: Admission | None,
           meta: dict[str, Any]) -> str:
    f = sb.fmt
    lines = [
        meta["section"], "",
        f"- Date: {meta['date']}; commit {meta['commit']}; machine: {meta['nproc']} CPUs, "
        f"{sb.cpu_model()} (load "
        f"average {meta['load_before']} before the runs); model {meta['model']}; server "
        f"defaults otherwise ({meta['workers']})",
        f"- Each stream: about {meta['seconds']:.0f} s of different English recordings of "
        "shared/speech, 1 s of silence between them, in real time in 100 ms chunks; speakers "
        f"start within 2 s of each other, after {meta['silent']} silent sessions (digital "
        "silence in real time, muted microphones) have connected; the clients run on the "
        "same machine",
        f"- Command: `{meta['command']}`",
        "",
        "| streams | final p50 s | final p95 s | word p50 s | word p95 s | partials/final "
        "| WER | WER, each stream alone | ratio vs alone | offline WER | ratio vs offline "
        "| finals | silent sessions (finals) | server CPU cores | CPU s/audio s "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {f(r['final_p50'])} | {f(r['final_p95'])} | {f(r['word_p50'])} | "
            f"{f(r['word_p95'])} | {f(r['partials_per_final'], 2)} | {f(r['wer'])} | "
            f"{f(r['wer_alone'])} | {f(ratio(r['wer'], r['wer_alone']), 2)} | "
            f"{f(r['wer_offline'])} | {f(ratio(r['wer'], r['wer_offline']), 2)} | {r['finals']} | "
            f"{r['silent']} ({r['silent_finals']}) | {f(r['cpu_cores'], 2)} | "
            f"{f(r['cpu_per_audio_s'])} | {f(r['rss_peak_mb'], 0)} |")
    lines += [
        "",
        "Table runs use `--max-load 0` (admission off) so that every N runs, also past "
        "capacity. Latencies as in PROTOCOL.md (receipt minus when the audio at the final's, "
        "or word's, end was sent); a word's latency is by identity (the first partial whose "
        "word at that position is the final's word, else the final); p95 by nearest rank "
        "over all streams. WER: corpus WER of each stream's finals against its recordings' "
        "transcripts, whisper-normalizer EnglishTextNormalizer (tokens without a letter or "
        "digit dropped, `bench/scoring.py`). *Alone*: the same streams, "
        f"each on the server by itself, one after another at {meta['solo_speed']:g}x real "
        "time: the ratio is what the load costs the same audio. *Offline*: faster-whisper "
        "(beam 5) on each whole recording. Server CPU cores: server CPU seconds per wall "
        "second.",
    ]
    if idle:
        lines += [
            "",
            "Silent sessions beside 8 speakers (same 8 streams, same server defaults, "
            "`--max-load 0`):",
            "",
            "| silent sessions | final p50 s | final p95 s | word p50 s | word p95 s | WER "
            "| finals to silent sessions | server CPU cores | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in idle:
            lines.append(
                f"| {r['silent']} | {f(r['final_p50'])} | {f(r['final_p95'])} | "
                f"{f(r['word_p50'])} | {f(r['word_p95'])} | {f(r['wer'])} | "
                f"{r['silent_finals']} | {f(r['cpu_cores'], 2)} | {f(r['rss_peak_mb'], 0)} |")
    if admission is not None:
        late = admission.late_p95
        worst = max(late) if late else math.nan
        lines += [
            "",
            f"Admission (server defaults, `--max-load {meta['max_load']}`): "
            f"{admission.admitted + admission.refused} streams opened 1.5 s apart beside "
            f"{admission.silent.sessions} silent sessions: **{admission.admitted} admitted, "
            f"{admission.refused} refused** with `overloaded` / close 1013; the admitted "
            f"streams' final latency p95, in order of opening: "
            f"{', '.join(f(x, 2) for x in late)} s (worst {f(worst, 2)} s)."
            + (f" First refusal: {admission.notes[0]}" if admission.notes else ""),
        ]
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                             for k, v in row.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 8, 12, 16, 24])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    parser.add_argument("--silent", type=int, default=32,
                        help="silent sessions beside the speakers in every row")
    parser.add_argument("--idle-run", type=int, default=200,
                        help="8 speakers with this many silent sessions beside, and without")
    parser.add_argument("--solo-speed", type=float, default=4.0)
    parser.add_argument("--no-solo", action="store_true", help="skip the streams alone")
    parser.add_argument("--section", default=SECTION, help="the RESULTS.md heading to replace")
    parser.add_argument("--offline-cache", type=Path,
                        help="keep the offline pass's texts here between runs (JSON)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu", help="the server's and the offline pass's")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `captioncast serve` flag (repeat), e.g. --decode-workers=1")
    parser.add_argument("--no-admission", action="store_true", help="skip the admission run")
    parser.add_argument("--speech-dir", type=Path, default=sb.DEFAULT_SPEECH_DIR)
    parser.add_argument("--out", type=Path, default=sb.BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    load_before = f"{os.getloadavg()[0]:.1f}"
    recordings = sb.read_manifest(args.speech_dir, None, None)
    normalize = WordNormalizer()
    spread = max([*args.n, 8 if args.idle_run else 1])
    plans = plan_streams(recordings, spread, args.seconds, spread)
    used = {r.id: r for p in plans for r in p.recordings}
    sb.log(f"load_bench: offline pass over {len(used)} recordings")
    cache = args.offline_cache
    cached = json.loads(cache.read_text()) if cache and cache.exists() else {}
    missing = [r for r in used.values() if f"{args.model}:{r.id}" not in cached]
    fresh = offline_texts(args.model, missing, args.device) if missing else {}
    cached.update({f"{args.model}:{k}": v for k, v in fresh.items()})
    if cache:
        cache.write_text(json.dumps(cached))
    texts = {r.id: cached[f"{args.model}:{r.id}"] for r in used.values()}
    args.server_arg = ["--device", args.device, *args.server_arg]
    table_args = ["--max-load", "0", *args.server_arg]
    alone = None
    if not args.no_solo:
        sb.log(f"load_bench: {len(plans)} streams alone at {args.solo_speed:g}x")
        alone = solo_texts(plans, args.model, table_args, args.solo_speed)

    def row(n: int, silent: int) -> dict[str, Any]:
        sb.log(f"load_bench: N={n} beside {silent} silent, "
               f"{sum(p.seconds for p in plans[:n]):.0f} s of audio")
        run = run_n(n, plans[:n], args.model, table_args, silent)
        scored = score(run, normalize, alone)
        scored["wer_offline"] = offline_wer(plans[:n], texts, normalize)
        sb.log("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                  for k, v in scored.items()}))
        return scored

    rows = [row(n, args.silent) for n in args.n]
    idle = [row(8, 0), row(8, args.idle_run)] if args.idle_run else []
    admission = None
    if not args.no_admission:
        n = max(args.n)
        port = sb.free_port()
        with tempfile.TemporaryFile() as server_log:
            proc = start(port, args.model, list(args.server_arg), server_log)
            try:
                admission = asyncio.run(admission_probe(stream_url(f"127.0.0.1:{port}"),
                                                        plans[:n], args.silent))
            finally:
                sb.stop_server(proc)
        sb.log(f"load_bench: admission: {admission.admitted} admitted, "
               f"{admission.refused} refused, p95 {admission.late_p95}")
    date = dt.date.today().isoformat()
    meta = {
        "date": date, "nproc": len(os.sched_getaffinity(0)), "model": args.model,
        "load_before": load_before, "silent": args.silent, "solo_speed": args.solo_speed,
        "seconds": statistics.fmean(p.seconds for p in plans),
        "workers": " ".join(args.server_arg) or "decode workers: min(2, cores)",
        "section": args.section, "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=sb.REPO_ROOT).stdout.strip() or "unknown",
        "max_load": 0.7, "command": " ".join(["python bench/load_bench.py",
                                              *(sys.argv[1:] if argv is None else argv)]),
    }
    # Rows go beside the results file, so that a trial run with --out keeps off bench/results.
    write_tsv(args.out.parent / "results" / f"load_{date}.tsv", rows + idle)
    section = render(rows, idle, admission, meta)
    sb.write_results_md(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
