"""Streaming benchmark: accuracy of finals against offline, latency, stable revisions.

Starts `captioncast serve` as a subprocess on a free port and streams, in real time
(100 ms chunks, then 1.0 s of digital silence so that the server's end-of-speech
detection, not `eos`, ends the last utterance), in phases:

- `one`: the English recordings of `../shared/speech/manifest.tsv`, one stream at a time;
- `continuous`: three recordings with few pauses (the lecture case), at the same time;
- `eight`: the English recordings dealt onto 8 simultaneous streams;
- `read`: continuous read speech, one stream at a time: consecutive clean recordings of
  one source (LibriSpeech, CMU ARCTIC, SpeechBrain) end to end, 25-30 s each.

It measures the latencies defined in PROTOCOL.md ("Latency"), a word's partial latency
by its identity, and how many words shown as `stable` the finals changed; stops the
server, then transcribes the same audio offline with faster-whisper (same model,
beam 5) in this process for the WER comparison, reported on clean read speech and
on all English separately.

Writes its section of bench/RESULTS.md (other sections are kept), per-recording rows
to bench/results/stream_<date>.tsv beside it, and prints the section. Progress goes
to stderr.

    python bench/stream_bench.py [--phases one,continuous,eight] [--limit 3]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import datetime as dt
import difflib
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from scoring import WordNormalizer

from captioncast.core.text import revised_words
from captioncast_client.audio_files import decode_pcm, rechunk
from captioncast_client.streaming import StreamResult, stream, stream_url

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_SPEECH_DIR = REPO_ROOT.parent / "shared" / "speech"
SECTION = "## Streaming: accuracy and latency of finals (issues 2, 13)"
CHUNK_BYTES = 3200  # 100 ms of 16 kHz s16le mono
PAD_SECONDS = 1.0  # trailing silence so end-of-speech, not eos, closes the last utterance
EOS_TOLERANCE_S = 0.03  # a final forced by eos ends exactly at the end of the stream


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Recording:
    id: str
    wav: Path
    duration_s: float
    transcript: str
    approximate: bool = False  # approx.tsv: for latency only, never scored
    parts: tuple[Path, ...] = ()  # several recordings end to end (`wav` is the first)

    def pcm(self) -> bytes:
        return b"".join(b"".join(decode_pcm(str(p))) for p in self.parts or (self.wav,))


@dataclass
class RecordingResult:
    rec: Recording
    streamed_s: float
    finals: list[dict[str, Any]]
    n_partials: int
    n_eos_finals: int
    n_errors: int
    final_latencies: list[float]
    word_latencies: list[float]  # by identity: the first partial whose aligned word is it
    hypothesis: str
    stable_shown: int = 0
    stable_revised: int = 0
    offline: str = ""
    position_latencies: list[float] = field(default_factory=list)  # by position, as before
    flicker: int = 0  # words a partial showed that the next partial or the final changed


# -- inputs --------------------------------------------------------------------------------


def read_manifest(speech_dir: Path, ids: list[str] | None, limit: int | None) -> list[Recording]:
    with (speech_dir / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["language"] == "en"]
    if ids:
        by_id = {r["id"]: r for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise SystemExit(f"stream_bench: not English recordings of the manifest: {missing}")
        rows = [by_id[i] for i in ids]
    if limit is not None:
        rows = rows[:limit]
    return [Recording(r["id"], speech_dir / r["wav"], float(r["duration_s"]), r["transcript"])
            for r in rows]


# Read speech whose offline WER is low: where the damage a streaming policy does shows.
CLEAN_PREFIXES = ("libri_", "ljspeech_", "timit_", "arctic_", "speechbrain_",
                  "cv_common_voice_en", "whisper_jfk", "deepspeech_new_home",
                  "speechrecognition_english")
# Speech with few pauses, the lecture case: the 78 s monologue (exact transcript) and two
# recordings of approx.tsv (latency only).
CONTINUOUS = ("long_mfa_spontaneous_3", "lucier_sitting_in_a_room", "wts_apollo11")


def is_clean(recording_id: str) -> bool:
    return recording_id.startswith(CLEAN_PREFIXES)


# Continuous read speech: consecutive clean recordings of one source, end to end.
READ_SOURCES = ("libri_", "arctic_", "speechbrain_spk1", "speechbrain_spk2")


def read_concatenated(speech_dir: Path) -> list[Recording]:
    with (speech_dir / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["language"] == "en"]
    out = []
    for prefix in READ_SOURCES:
        group = [r for r in rows if r["id"].startswith(prefix)]
        parts = tuple(speech_dir / r["wav"] for r in group)
        out.append(Recording(f"read_{prefix.rstrip('_')}", parts[0],
                             sum(float(r["duration_s"]) for r in group),
                             " ".join(r["transcript"] for r in group), parts=parts))
    return out


def read_continuous(speech_dir: Path) -> list[Recording]:
    out = []
    for name, exact in (("manifest.tsv", True), ("approx.tsv", False)):
        with (speech_dir / name).open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if r["id"] in CONTINUOUS:
                    out.append(Recording(r["id"], speech_dir / r["wav"], float(r["duration_s"]),
                                         r.get("transcript", ""), approximate=not exact))
    return sorted(out, key=lambda r: CONTINUOUS.index(r.id))


# -- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, model: str, server_log: Any,
                 extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "captioncast.cli", "serve", "--port", str(port),
               "--model", model, *(extra or [])]
    proc = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT,
                            cwd=REPO_ROOT)
    deadline = time.monotonic() + 180
    url = f"http://127.0.0.1:{port}/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("server did not report healthy within 180 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# -- measuring ---------------------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: list[float]) -> float:
    return nearest_rank(values, 0.95) if values else math.nan


def norm_word(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower()).strip("'")


def sent_time(sent_at: list[tuple[float, float]], audio_s: float) -> float:
    """Wall clock at which the audio at `audio_s` had been sent (first entry reaching it)."""
    i = bisect.bisect_left([a for a, _ in sent_at], audio_s - 1e-6)
    return sent_at[min(i, len(sent_at) - 1)][1]


def measure(rec: Recording, result: StreamResult, streamed_s: float) -> RecordingResult:
    events = result.events
    finals = result.finals
    partials = [e for e in events if e["type"] == "partial"]
    final_lat = [f["received_at"] - sent_time(result.sent_at, f["end"]) for f in finals]
    word_lat: list[float] = []
    position_lat: list[float] = []
    flicker = 0
    for final in finals:
        candidates = [p for p in partials if p["utterance"] == final["utterance"]]
        candidates.sort(key=lambda e: e["received_at"])
        split = [[norm_word(w) for w in p["text"].split()] for p in candidates]
        final_words = [norm_word(w["word"]) for w in final.get("words", [])]
        mappings = [aligned(words, final_words) for words in split]
        for i, word in enumerate(final.get("words", [])):
            target = final_words[i]
            by_identity = by_position = final["received_at"]
            for partial, mapping in zip(candidates, mappings):
                if mapping.get(i) == target:
                    by_identity = min(by_identity, partial["received_at"])
                    break
            for partial, words in zip(candidates, split):
                if i < len(words) and words[i] == target:
                    by_position = min(by_position, partial["received_at"])
                    break
            spoken = sent_time(result.sent_at, word["end"])
            word_lat.append(by_identity - spoken)
            position_lat.append(by_position - spoken)
        shown = [p["text"].split() for p in candidates] + [final["text"].split()]
        flicker += sum(revised_words(a, b) for a, b in pairwise(shown))
    end = next((e for e in events if e["type"] == "end"), None)
    total = end["duration"] if end else streamed_s
    n_eos = sum(1 for f in finals if f["end"] >= total - EOS_TOLERANCE_S)
    last_stable = {p["utterance"]: p["stable"] for p in partials}
    final_text = {f["utterance"]: f["text"] for f in finals}
    shown = sum(len(stable.split()) for stable in last_stable.values())
    revised = sum(revised_words(stable.split(), final_text.get(u, "").split())
                  for u, stable in last_stable.items())
    return RecordingResult(
        rec, streamed_s, finals, len(partials), n_eos, len(result.errors), final_lat, word_lat,
        " ".join(f["text"] for f in finals if f["text"]).strip(), shown, revised,
        position_latencies=position_lat, flicker=flicker,
    )


def aligned(partial: list[str], final: list[str]) -> dict[int, str]:
    """The final's word index -> the partial's word aligned to it (matching blocks)."""
    matcher = difflib.SequenceMatcher(a=partial, b=final, autojunk=False)
    return {block.b + k: partial[block.a + k] for block in matcher.get_matching_blocks()
            for k in range(block.size)}


async def stream_all(url: str, recordings: list[Recording]) -> list[RecordingResult]:
    out: list[RecordingResult] = []
    for n, rec in enumerate(recordings, 1):
        chunks = list(rechunk(iter([rec.pcm()]), CHUNK_BYTES))
        chunks += [bytes(CHUNK_BYTES)] * round(PAD_SECONDS * 10)
        streamed_s = sum(len(c) for c in chunks) / 32000
        result = await stream(url, chunks, realtime=True)
        r = measure(rec, result, streamed_s)
        for error in result.errors:
            log(f"  server error in {rec.id}: {error.get('code')}: {error.get('message')}")
        log(f"[{n}/{len(recordings)}] {rec.id}: {rec.duration_s:.1f} s, {len(r.finals)} finals "
            f"({r.n_eos_finals} by eos), {r.n_partials} partials, final latency p50 "
            f"{p50(r.final_latencies):.3f} s")
        out.append(r)
    return out


def offline_pass(model_spec: str, results: list[RecordingResult]) -> None:
    from faster_whisper import WhisperModel

    from captioncast.engine.models import resolve_model

    model = WhisperModel(resolve_model(model_spec).path, device="cpu", compute_type="int8")
    for n, r in enumerate(results, 1):
        audio = np.frombuffer(r.rec.pcm(), "<i2").astype(np.float32) / 32768
        segments, _ = model.transcribe(audio, beam_size=5, language="en")
        r.offline = " ".join(s.text.strip() for s in segments).strip()
        log(f"[offline {n}/{len(results)}] {r.rec.id}")


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    return float(jiwer.wer(refs, hyps)) if refs else math.nan


# -- reporting -----------------------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.{digits}f}"


def met(value: float, bound: float) -> str:
    return "n/a" if math.isnan(value) else ("yes" if value <= bound else "NO")


@dataclass
class Row:
    """One line of the table: a phase (how streamed) and a set of recordings (what)."""

    phase: str
    subset: str
    results: list[RecordingResult]


def row_values(row: Row, normalize: WordNormalizer) -> dict[str, Any]:
    results = row.results
    scored = [(normalize(r.rec.transcript), r) for r in results if not r.rec.approximate]
    scored = [(ref, r) for ref, r in scored if ref.strip()]
    refs = [ref for ref, _ in scored]
    wer_s = corpus_wer(refs, [normalize(r.hypothesis) for _, r in scored])
    wer_o = corpus_wer(refs, [normalize(r.offline) for _, r in scored])
    ratio = (wer_s / wer_o if wer_o else (1.0 if wer_s == 0 else math.inf)) if refs else math.nan
    finals = [x for r in results for x in r.final_latencies]
    words = [x for r in results for x in r.word_latencies]
    positions = [x for r in results for x in r.position_latencies]
    minutes = sum(r.rec.duration_s for r in results) / 60
    n_finals = sum(len(r.finals) for r in results)
    shown = sum(r.stable_shown for r in results)
    revised = sum(r.stable_revised for r in results)
    return {
        "recordings": len(results), "audio_s": sum(r.rec.duration_s for r in results),
        "scored": len(refs), "wer": wer_s, "offline": wer_o, "ratio": ratio,
        "final_p50": p50(finals), "final_p95": p95(finals),
        "word_p50": p50(words), "word_p95": p95(words), "words": len(words),
        "position_p95": p95(positions),
        "flicker": sum(r.flicker for r in results) / minutes if minutes else math.nan,
        "revised": revised / shown if shown else math.nan, "shown": shown,
        "partials_per_final": sum(r.n_partials for r in results) / n_finals if n_finals
        else math.nan,
        "eos": sum(r.n_eos_finals for r in results), "finals": n_finals,
    }


def render(rows: list[Row], summary: dict[str, Any], normalize: WordNormalizer) -> str:
    s = summary
    table = [
        "| phase | recordings | audio s | WER | offline WER | ratio | final p50 | final p95 "
        "| word p50 | word p95 | by position p95 | flicker/min | stable revised "
        "| partials/final |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for row in rows:
        v = row_values(row, normalize)
        table.append(
            f"| {row.phase} | {row.subset}: {v['recordings']} | {v['audio_s']:.0f} "
            f"| {fmt(v['wer'])} | {fmt(v['offline'])} | {fmt(v['ratio'], 2)} "
            f"| {fmt(v['final_p50'], 2)} | {fmt(v['final_p95'], 2)} | {fmt(v['word_p50'], 2)} "
            f"| {fmt(v['word_p95'], 2)} | {fmt(v['position_p95'], 2)} "
            f"| {fmt(v['flicker'], 1)} | {fmt(100 * v['revised'], 1)} % of {v['shown']} "
            f"| {fmt(v['partials_per_final'], 1)} |")
        continuous = row.subset.startswith("continuous")
        if not math.isnan(v["ratio"]):
            checks.append((f"{row.phase}, {row.subset}: WER ratio", v["ratio"], 1.05))
        if not continuous:
            checks.append((f"{row.phase}, {row.subset}: final p50", v["final_p50"], 0.6))
            checks.append((f"{row.phase}, {row.subset}: final p95", v["final_p95"], 1.0))
        else:
            checks.append((f"{row.phase}, {row.subset}: final p95", v["final_p95"], 1.2))
        checks.append((f"{row.phase}, {row.subset}: word p50", v["word_p50"], 0.3))
        checks.append((f"{row.phase}, {row.subset}: word p95", v["word_p95"], 1.0))
        checks.append((f"{row.phase}, {row.subset}: by position p95", v["position_p95"], 1.5))
        checks.append((f"{row.phase}, {row.subset}: stable revised", v["revised"], 0.02))
    lines = [
        SECTION, "",
        f"- Date: {s['date']}",
        f"- Machine: {s['nproc']} CPUs, {cpu_model()}",
        f"- Model: {s['model']} (server: `captioncast serve` defaults, protocol 2; "
        "offline: faster-whisper `transcribe()` of the whole file, beam 5, CPU int8)",
        f"- Command: `{s['command']}` ({s['minutes']:.0f} min)",
        "",
        *table,
        "",
        "| target (issue 13) | measured | bound | met |",
        "|---|---|---|---|",
        *(f"| {name} | {fmt(value, 3)} | <= {bound} | {met(value, bound)} |"
          for name, value, bound in checks),
        "",
        "How it was measured. *one stream*: every English recording of "
        "`shared/speech/manifest.tsv` streamed alone, one after another, in real time in "
        f"100 ms chunks, then {PAD_SECONDS:.1f} s of digital silence so that end-of-speech, "
        "not `eos`, ends the last utterance. *8 streams*: the same recordings dealt round-robin "
        "onto 8 simultaneous real-time streams. *3 streams, continuous*: "
        f"{', '.join(CONTINUOUS)} (78-101 s of speech with few pauses) streamed at the same "
        "time; only the first has an exact transcript, so their WER is that recording's. "
        "*clean read*: LibriSpeech, LJSpeech, TIMIT, CMU ARCTIC, SpeechBrain's read "
        "sentences, Common Voice, JFK (offline WER low); *all English* adds the "
        "spontaneous, accented and whispered MFA recordings and the digits. Latencies as in "
        "PROTOCOL.md: receipt minus the wall clock at which the audio at the final's `end` "
        "(a word's `end`, from the final's word timings) was sent. A word's partial latency "
        "is by identity: the first partial of its utterance whose word aligned to it "
        "(difflib matching blocks, normalized words) is the final's word, else the final "
        "itself; *by position*: the first partial whose word at that position is the "
        "final's word. *flicker/min*: words shown by a partial that the next partial or the "
        "final changed or dropped (aligned, `core.text.revised_words`), per minute of audio. "
        "*continuous read*: consecutive LibriSpeech, CMU ARCTIC and SpeechBrain recordings "
        "of `manifest.tsv` end to end (25-30 s each), one stream at a time. "
        "p95 by nearest rank. "
        "*stable revised*: of the words shown as `stable` in each utterance's last partial, "
        "the share its final changed or dropped (aligned, `core.text.revised_words`). "
        "WER: corpus WER, both sides normalized with whisper-normalizer's "
        "EnglishTextNormalizer (tokens without a letter or digit dropped, `bench/scoring.py`). "
        f"Per-recording rows: `{s['tsv']}`.",
        "",
    ]
    return "\n".join(lines)


def write_results_md(path: Path, section: str) -> None:
    """Replace the section with the same `## ` heading as `section`, or append it."""
    heading = section.splitlines()[0].rstrip()
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")


def write_tsv(path: Path, rows: list[Row], normalize: WordNormalizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["phase", "id", "duration_s", "finals", "finals_by_eos", "partials", "errors",
               "final_latency_p50_s", "final_latency_max_s", "word_latency_p50_s",
               "word_latency_p95_s", "stable_shown", "stable_revised", "wer_stream",
               "wer_offline", "reference", "streaming", "offline"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(columns)
        seen: set[tuple[str, str]] = set()
        for row in rows:
            for r in row.results:
                if (row.phase, r.rec.id) in seen:
                    continue
                seen.add((row.phase, r.rec.id))
                ref = "" if r.rec.approximate else normalize(r.rec.transcript)
                wer_s = jiwer.wer(ref, normalize(r.hypothesis)) if ref.strip() else math.nan
                wer_o = jiwer.wer(ref, normalize(r.offline)) if ref.strip() else math.nan
                writer.writerow([
                    row.phase, r.rec.id, f"{r.rec.duration_s:.3f}", len(r.finals),
                    r.n_eos_finals, r.n_partials, r.n_errors, fmt(p50(r.final_latencies)),
                    fmt(max(r.final_latencies, default=math.nan)), fmt(p50(r.word_latencies)),
                    fmt(p95(r.word_latencies)), r.stable_shown, r.stable_revised, fmt(wer_s),
                    fmt(wer_o), r.rec.transcript, r.hypothesis, r.offline,
                ])


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="first N English recordings")
    parser.add_argument("--ids", nargs="+", default=None,
                        help="recording ids (space or comma separated)")
    parser.add_argument("--phases", default="one,read,continuous,eight",
                        help="comma-separated: one (a stream at a time), read, continuous, "
                        "eight")
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument("--model", default="tiny.en", help="model for the server and offline")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for `captioncast serve` (repeatable)")
    parser.add_argument("--speech-dir", type=Path, default=DEFAULT_SPEECH_DIR)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.ids:
        args.ids = [i for item in args.ids for i in item.split(",") if i]
    return args


async def stream_lanes(url: str, lanes: list[list[Recording]]) -> list[RecordingResult]:
    """Several real-time streams at once, each lane's recordings one after the other."""
    results = await asyncio.gather(*(stream_all(url, lane) for lane in lanes))
    return [r for lane in results for r in lane]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    recordings = read_manifest(args.speech_dir, args.ids, args.limit)
    if not recordings:
        raise SystemExit("stream_bench: no recordings selected")
    continuous = read_continuous(args.speech_dir) if "continuous" in phases else []
    concatenated = read_concatenated(args.speech_dir) if "read" in phases else []
    port = args.port or free_port()
    date = dt.date.today().isoformat()
    began = time.monotonic()
    log(f"stream_bench: {len(recordings)} recordings, "
        f"{sum(r.duration_s for r in recordings):.1f} s of audio; server on port {port}")
    measured: dict[str, list[RecordingResult]] = {}
    with tempfile.TemporaryFile() as server_log:
        proc = start_server(port, args.model, server_log, args.server_arg)
        url = stream_url(f"127.0.0.1:{port}")
        try:
            if "one" in phases:
                measured["one stream"] = asyncio.run(stream_all(url, recordings))
            if concatenated:
                measured["one stream, read"] = asyncio.run(stream_all(url, concatenated))
            if continuous:
                measured["3 streams"] = asyncio.run(stream_lanes(url, [[c] for c in continuous]))
            if "eight" in phases:
                lanes = [recordings[i::8] for i in range(8)]
                measured["8 streams"] = asyncio.run(stream_lanes(url, lanes))
        except BaseException:
            server_log.seek(0)
            tail = server_log.read().decode(errors="replace").splitlines()[-20:]
            log("stream_bench: failed; server log tail:\n" + "\n".join(tail))
            raise
        finally:
            stop_server(proc)
    log("stream_bench: server stopped; offline pass")
    offline_pass(args.model, [r for results in measured.values() for r in results])

    normalize = WordNormalizer()
    rows: list[Row] = []
    for phase, results in measured.items():
        if phase == "3 streams":
            rows.append(Row(phase, "continuous", results))
            continue
        if phase == "one stream, read":
            rows.append(Row("one stream", "continuous read", results))
            continue
        rows.append(Row(phase, "clean read", [r for r in results if is_clean(r.rec.id)]))
        rows.append(Row(phase, "all English", results))
    tsv = args.out.parent / "results" / f"stream_{date}.tsv"  # beside the results file
    summary = {
        "date": date, "nproc": len(os.sched_getaffinity(0)), "model": args.model,
        "tsv": tsv.relative_to(REPO_ROOT) if tsv.is_relative_to(REPO_ROOT) else tsv,
        "minutes": (time.monotonic() - began) / 60,
        "command": " ".join(["python bench/stream_bench.py", *(sys.argv[1:] if argv is None
                                                               else argv)]),
    }
    write_tsv(tsv, rows, normalize)
    section = render(rows, summary, normalize)
    write_results_md(args.out, section)
    log(f"stream_bench: wrote {args.out} and {tsv}")
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
