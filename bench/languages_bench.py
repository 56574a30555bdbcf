"""Many languages, measured: the multilingual `base` model on the non-English recordings.

For every non-English recording of ../shared/speech/manifest.tsv:
- streaming: streamed in real time (100 ms chunks, then 1 s of silence) to a
  `captioncast serve --model base` with language=auto, partials on, as a live client;
- HTTP file: the same server, POST /v1/transcribe?language=auto (the file route);
- offline: faster-whisper's own transcribe() on the whole file, beam 5, language detected.
Scores per language: WER for languages written with spaces, CER for zh/ja/ko (both sides
normalized with whisper-normalizer's BasicTextNormalizer; spaces dropped for CER), and
language-detection accuracy (streaming: share of non-empty finals; HTTP and offline: per file).

Writes the section "## Languages, multilingual base (issue 6)" of bench/RESULTS.md and
per-recording rows to bench/results/languages_<date>.tsv.  Usage:
    python bench/languages_bench.py [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
from stream_bench import cpu_model, free_port, start_server, stop_server
from whisper_normalizer.basic import BasicTextNormalizer

from captioncast_client.audio_files import decode_pcm, rechunk
from captioncast_client.streaming import stream, stream_url

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEECH = REPO_ROOT.parent / "shared" / "speech"
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
SECTION = "## Languages, multilingual base (issue 6)"
CHARACTER_SCRIPTS = ("zh", "ja", "ko")  # no spaces between words: score characters
CHUNK_BYTES = 3200
PAD_SECONDS = 1.0
NAMES = {"es": "Spanish", "de": "German", "fr": "French", "it": "Italian", "pt": "Portuguese",
         "sv": "Swedish", "ru": "Russian", "ja": "Japanese", "ko": "Korean", "zh": "Chinese"}


@dataclass
class Row:
    id: str
    language: str
    duration_s: float
    reference: str
    streaming: str = ""
    streaming_languages: list[str] = field(default_factory=list)
    http: str = ""
    http_language: str = ""
    offline: str = ""
    offline_language: str = ""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recordings(limit: int | None) -> list[Row]:
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        rows = [Row(r["id"], r["language"], float(r["duration_s"]), r["transcript"])
                for r in csv.DictReader(f, delimiter="\t") if r["language"] != "en"]
    return rows[:limit] if limit else rows


normalizer = BasicTextNormalizer()


def prepare(text: str, language: str) -> str:
    out = normalizer(text).strip()
    return out.replace(" ", "") if language in CHARACTER_SCRIPTS else " ".join(out.split())


def error_rate(language: str, refs: list[str], hyps: list[str]) -> float:
    refs = [prepare(r, language) for r in refs]
    hyps = [prepare(h, language) for h in hyps]
    if language in CHARACTER_SCRIPTS:
        return float(jiwer.cer(refs, hyps))
    return float(jiwer.wer(refs, hyps))


async def streaming_pass(port: int, rows: list[Row]) -> None:
    url = stream_url(f"ws://127.0.0.1:{port}", language="auto")
    for n, row in enumerate(rows, 1):
        chunks = list(rechunk(decode_pcm(str(SPEECH / "wav" / f"{row.id}.wav")), CHUNK_BYTES))
        chunks += [bytes(CHUNK_BYTES)] * round(PAD_SECONDS * 10)
        result = await stream(url, chunks, realtime=True)
        finals = [f for f in result.finals if f["text"]]
        row.streaming = " ".join(f["text"] for f in finals)
        row.streaming_languages = [f["language"] for f in finals]
        log(f"[stream {n}/{len(rows)}] {row.id}: {row.streaming_languages} {row.streaming!r}")


def http_pass(port: int, rows: list[Row]) -> None:
    for n, row in enumerate(rows, 1):
        data = (SPEECH / "wav" / f"{row.id}.wav").read_bytes()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/transcribe?language=auto", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read())
        row.http, row.http_language = answer["text"], answer["language"]
        log(f"[http {n}/{len(rows)}] {row.id}: {row.http_language} {row.http!r}")


def offline_pass(rows: list[Row]) -> None:
    from faster_whisper import WhisperModel

    from captioncast.engine.models import resolve_model

    model = WhisperModel(resolve_model("base").path, device="cpu", compute_type="int8")
    for n, row in enumerate(rows, 1):
        segments, info = model.transcribe(str(SPEECH / "wav" / f"{row.id}.wav"), beam_size=5)
        row.offline = " ".join(s.text.strip() for s in segments).strip()
        row.offline_language = info.language
        log(f"[offline {n}/{len(rows)}] {row.id}: {row.offline_language} {row.offline!r}")


def render(rows: list[Row], seconds: float, command: str) -> str:
    by_language: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_language[row.language].append(row)
    lines = [
        SECTION, "",
        f"- Date: {dt.date.today().isoformat()}",
        f"- Machine: 2 CPUs, {cpu_model()}",
        "- Model: base (multilingual; server: `captioncast serve --model base`, CPU int8)",
        f"- Recordings: the {len(rows)} non-English ones of shared/speech/manifest.tsv, "
        f"{sum(r.duration_s for r in rows):.1f} s of audio",
        f"- Command: `{command}` ({seconds / 60:.1f} min)",
        "",
        "| language | files | audio s | metric | streaming | HTTP file | offline "
        "| detected, streaming finals | detected, HTTP files | detected, offline files |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for language in sorted(by_language, key=lambda c: (c in CHARACTER_SCRIPTS, c)):
        group = by_language[language]
        refs = [r.reference for r in group]
        metric = "CER" if language in CHARACTER_SCRIPTS else "WER"
        finals = [x for r in group for x in r.streaming_languages]
        lines.append(
            f"| {NAMES.get(language, language)} ({language}) | {len(group)} "
            f"| {sum(r.duration_s for r in group):.1f} | {metric} "
            f"| {error_rate(language, refs, [r.streaming for r in group]):.3f} "
            f"| {error_rate(language, refs, [r.http for r in group]):.3f} "
            f"| {error_rate(language, refs, [r.offline for r in group]):.3f} "
            f"| {sum(x == language for x in finals)}/{len(finals)} "
            f"| {sum(r.http_language == language for r in group)}/{len(group)} "
            f"| {sum(r.offline_language == language for r in group)}/{len(group)} |")
    finals = [(r.language, x) for r in rows for x in r.streaming_languages]
    lines += [
        f"| **all** | {len(rows)} | {sum(r.duration_s for r in rows):.1f} | | | | "
        f"| {sum(a == b for a, b in finals)}/{len(finals)} "
        f"| {sum(r.http_language == r.language for r in rows)}/{len(rows)} "
        f"| {sum(r.offline_language == r.language for r in rows)}/{len(rows)} |",
        "",
        "Error rates are corpus rates over a language's recordings (jiwer), both sides "
        "normalized with whisper-normalizer's BasicTextNormalizer (lower case, punctuation "
        "removed; for CER, spaces removed too). Streaming: each recording streamed in real "
        "time in 100 ms chunks, then 1 s of silence, language=auto, partials on; language "
        "detected per utterance, counted per non-empty final. HTTP file: the same server, "
        "POST /v1/transcribe?language=auto (the streaming core without partials, at "
        "background priority); its language is the one spoken longest. Offline: "
        "faster-whisper's transcribe() on the whole file, beam 5, language detected once from "
        "the first 30 s. Chinese references are in simplified characters; an answer in "
        "traditional characters counts as errors. Whisper writes spoken numbers as digits "
        "where the references spell them out (Swedish `nst_sv_u0016002` counts one to "
        "eight), which counts as errors too. Per-recording rows: "
        f"`bench/results/languages_{dt.date.today().isoformat()}.tsv`.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        RESULTS.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    tail = "".join(lines[end:])
    RESULTS.write_text("".join(lines[:start]) + section + ("\n" + tail if tail else ""),
                       encoding="utf-8")


def write_tsv(rows: list[Row]) -> None:
    path = REPO_ROOT / "bench" / "results" / f"languages_{dt.date.today().isoformat()}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow(["id", "language", "duration_s", "streaming_languages", "http_language",
                      "offline_language", "streaming", "http", "offline", "reference"])
        for r in rows:
            out.writerow([r.id, r.language, r.duration_s, " ".join(r.streaming_languages),
                          r.http_language, r.offline_language, r.streaming, r.http, r.offline,
                          r.reference])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    args = parser.parse_args()
    rows = recordings(args.limit)
    started = time.monotonic()
    port = free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = start_server(port, "base", server_log)
        try:
            asyncio.run(streaming_pass(port, rows))
            http_pass(port, rows)
        finally:
            stop_server(proc)
    offline_pass(rows)
    command = "python bench/languages_bench.py" + (f" --limit {args.limit}" if args.limit else "")
    section = render(rows, time.monotonic() - started, command)
    write_section(section)
    write_tsv(rows)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
