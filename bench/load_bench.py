"""Load benchmark: N simultaneous real-time streams on one server.

For each N (default 1 2 4 8 12 16) starts `captioncast serve` with admission off
(`--max-load 0`, so that all N run and the table shows what happens past capacity),
streams N different sequences of the English recordings of shared/speech (each
about `--seconds` long, recordings separated by 1 s of silence) at once in real
time, and measures per N: final latency, partial word latency (PROTOCOL.md
"Latency"), partials per final, corpus WER, the server's CPU (cores busy) and peak
RSS. Then one admission run: the server with its default `--max-load`, the largest
N asked for, streams opened one by one: how many are admitted before `overloaded`.

Writes the section "## Load: simultaneous streams (issue 4)" of bench/RESULTS.md and
rows to bench/results/load_<date>.tsv.

    python bench/load_bench.py --n 1 2 4 8 12 16
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

from whisper_normalizer.english import EnglishTextNormalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_bench as sb

from captioncast_client.audio_files import decode_pcm, rechunk
from captioncast_client.streaming import ServerRefused, stream, stream_url

SECTION = "## Load: simultaneous streams (issue 4)"
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
    cpu_cores: float
    cpu_per_audio_s: float
    rss_peak_mb: float
    wall_s: float


def plan_streams(recordings: list[sb.Recording], n: int, seconds: float) -> list[StreamPlan]:
    """N sequences of different recordings (rotated through the set), each about `seconds`."""
    plans: list[StreamPlan] = []
    step = max(1, len(recordings) // max(n, 1))
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


async def run_streams(url: str, plans: list[StreamPlan]) -> tuple[list[sb.RecordingResult], int]:
    async def one(i: int, plan: StreamPlan) -> sb.RecordingResult | None:
        await asyncio.sleep(random.Random(i).uniform(0, 2.0))  # speakers do not start in step
        try:
            result = await stream(url, plan.chunks, realtime=True, end_timeout=300)
        except ServerRefused as exc:
            sb.log(f"  stream {i} refused: {exc}")
            return None
        rec = sb.Recording(f"stream{i}", Path(), plan.seconds, plan.transcript)
        return sb.measure(rec, result, plan.seconds)

    outcomes = await asyncio.gather(*(one(i, p) for i, p in enumerate(plans)))
    done = [r for r in outcomes if r is not None]
    return done, len(outcomes) - len(done)


def start(port: int, model: str, extra: list[str], server_log: Any) -> subprocess.Popen[bytes]:
    return sb.start_server(port, model, server_log, ["--max-sessions", "1000", *extra])


def run_n(n: int, plans: list[StreamPlan], model: str, extra: list[str]) -> RunResult:
    port = sb.free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = start(port, model, extra, server_log)
        try:
            cpu0, wall0 = sb.cpu_seconds(proc.pid), time.monotonic()
            with RssSampler(proc.pid) as rss:
                streams, refused = asyncio.run(
                    run_streams(stream_url(f"127.0.0.1:{port}"), plans))
            cpu = sb.cpu_seconds(proc.pid) - cpu0
            wall = time.monotonic() - wall0
        finally:
            sb.stop_server(proc)
    audio = sum(p.seconds for p in plans)
    return RunResult(n, streams, refused, cpu / wall, cpu / audio, rss.peak, wall)


async def admission_probe(url: str, plans: list[StreamPlan]) -> tuple[int, int, list[str]]:
    """Open streams one by one, 1.5 s apart; count admitted and refused.

    Idle sessions are admitted at connect (issue 19): a speaker past capacity is refused
    when it starts speaking, with an `overloaded` error and close 1013.
    """
    tasks: list[asyncio.Task[Any]] = []
    for plan in plans:
        tasks.append(asyncio.create_task(
            stream(url, plan.chunks, realtime=True, end_timeout=300, reconnect=False)))
        await asyncio.sleep(1.5)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    notes: list[str] = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            notes.append(f"stream {i + 1}: {result}")
        else:
            notes.extend(f"stream {i + 1}: {e['message']}" for e in result.errors
                         if e["code"] == "overloaded")
    refused = len({note.split(":")[0] for note in notes})
    return len(plans) - refused, refused, notes


def offline_texts(model_spec: str, recordings: list[sb.Recording]) -> dict[str, str]:
    """faster-whisper on each whole recording, beam 5: the same audio's offline WER."""
    from faster_whisper import WhisperModel

    from captioncast.engine.models import resolve_model

    model = WhisperModel(resolve_model(model_spec).path, device="cpu", compute_type="int8")
    texts = {}
    for rec in recordings:
        segments, _ = model.transcribe(str(rec.wav), beam_size=5, language="en")
        texts[rec.id] = " ".join(seg.text.strip() for seg in segments)
    return texts


def offline_wer(plans: list[StreamPlan], texts: dict[str, str],
                normalize: EnglishTextNormalizer) -> float:
    refs = [normalize(p.transcript) for p in plans]
    hyps = [normalize(" ".join(texts[r.id] for r in p.recordings)) for p in plans]
    return sb.corpus_wer(refs, hyps)


def score(run: RunResult, normalize: EnglishTextNormalizer) -> dict[str, Any]:
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
    }


def render(rows: list[dict[str, Any]], admission: tuple[int, int, list[str]] | None,
           meta: dict[str, Any]) -> str:
    f = sb.fmt
    lines = [
        SECTION, "",
        f"- Date: {meta['date']}; machine: {meta['nproc']} CPUs, {sb.cpu_model()}; "
        f"model {meta['model']}; server defaults otherwise ({meta['workers']})",
        f"- Each stream: about {meta['seconds']:.0f} s of different English recordings of "
        "shared/speech, 1 s of silence between them, in real time in 100 ms chunks; streams "
        "start within 2 s of each other",
        f"- Command: `{meta['command']}`",
        "",
        "| streams | final p50 s | final p95 s | word p50 s | word p95 s | partials/final "
        "| WER | offline WER, same audio | WER ratio | finals | server CPU cores "
        "| CPU s/audio s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {f(r['final_p50'])} | {f(r['final_p95'])} | {f(r['word_p50'])} | "
            f"{f(r['word_p95'])} | {f(r['partials_per_final'], 2)} | {f(r['wer'])} | "
            f"{f(r['wer_offline'])} | {f(r['wer'] / r['wer_offline'], 2)} | {r['finals']} | "
            f"{f(r['cpu_cores'], 2)} | {f(r['cpu_per_audio_s'])} | "
            f"{f(r['rss_peak_mb'], 0)} |")
    lines += [
        "",
        "Table runs use `--max-load 0` (admission off) so that every N runs, also past "
        "capacity. Latencies as in PROTOCOL.md (receipt minus when the audio at the final's, "
        "or word's, end was sent); p95 by nearest rank over all streams. WER: corpus WER of "
        "each stream's finals against its recordings' transcripts, whisper-normalizer "
        "EnglishTextNormalizer. More streams carry more (and harder) recordings, so each row's "
        "WER is set against offline faster-whisper (beam 5, whole recordings) on the same "
        "audio: the ratio is what streaming under that load costs. Server CPU cores: server "
        "CPU seconds per wall second.",
    ]
    if admission is not None:
        admitted, refused, notes = admission
        lines += [
            "",
            f"Admission (server defaults, `--max-load {meta['max_load']}`): {admitted + refused}"
            f" streams opened 1.5 s apart: **{admitted} admitted, {refused} refused** with "
            "`overloaded` / close 1013." + (f" First refusal: {notes[0]}" if notes else ""),
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
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `captioncast serve` flag (repeat), e.g. --decode-workers=1")
    parser.add_argument("--no-admission", action="store_true", help="skip the admission run")
    parser.add_argument("--speech-dir", type=Path, default=sb.DEFAULT_SPEECH_DIR)
    parser.add_argument("--out", type=Path, default=sb.BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    recordings = sb.read_manifest(args.speech_dir, None, None)
    normalize = EnglishTextNormalizer()
    rows = []
    all_plans = {n: plan_streams(recordings, n, args.seconds) for n in args.n}
    used = {r.id: r for plans in all_plans.values() for p in plans for r in p.recordings}
    sb.log(f"load_bench: offline pass over {len(used)} recordings")
    texts = offline_texts(args.model, list(used.values()))
    for n in args.n:
        plans = all_plans[n]
        sb.log(f"load_bench: N={n}, {sum(p.seconds for p in plans):.0f} s of audio")
        run = run_n(n, plans, args.model, ["--max-load", "0", *args.server_arg])
        row = score(run, normalize)
        row["wer_offline"] = offline_wer(plans, texts, normalize)
        sb.log("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                  for k, v in row.items()}))
        rows.append(row)
    admission = None
    if not args.no_admission:
        n = max(args.n)
        plans = plan_streams(recordings, n, args.seconds)
        port = sb.free_port()
        with tempfile.TemporaryFile() as server_log:
            proc = start(port, args.model, list(args.server_arg), server_log)
            try:
                admission = asyncio.run(admission_probe(stream_url(f"127.0.0.1:{port}"), plans))
            finally:
                sb.stop_server(proc)
        sb.log(f"load_bench: admission: {admission[0]} admitted, {admission[1]} refused")
    date = dt.date.today().isoformat()
    meta = {
        "date": date, "nproc": len(os.sched_getaffinity(0)), "model": args.model,
        "seconds": statistics.fmean(p.seconds for p in plan_streams(recordings, 1, args.seconds)),
        "workers": " ".join(args.server_arg) or "decode workers: min(2, cores)",
        "max_load": 0.7, "command": " ".join(["python bench/load_bench.py",
                                              *(sys.argv[1:] if argv is None else argv)]),
    }
    # Rows go beside the results file, so that a trial run with --out keeps off bench/results.
    write_tsv(args.out.parent / "results" / f"load_{date}.tsv", rows)
    section = render(rows, admission, meta)
    sb.write_results_md(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
