"""Final latency through /v1/listen (Deepgram) and /v1/realtime (OpenAI) against /v1/stream.

Starts `captioncast serve` on a free port and streams the same recordings, in real
time (100 ms chunks, then 1.5 s of silence so that end-of-speech detection ends the
last utterance), through each of the three protocols (and ours again with OpenAI's
24 kHz audio) in turn, one stream at a time, in a rotating order so that a slow
minute of a shared machine does not fall on one protocol only. Final latency is
PROTOCOL.md's: the wall clock at a final's receipt minus the wall clock at which the
audio at its end was sent (Deepgram: `start + duration` of an `is_final` Results;
OpenAI: `audio_end_ms` of the item's `speech_stopped`). Finals said after the
stream's own end message are not counted.

    python bench/compat_latency.py [--ids whisper_jfk ...] [--rounds 2]

Prints a section for bench/RESULTS.md (and writes it there with --write).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import write_results_md  # bench/ is not a package

BENCH_DIR = Path(__file__).resolve().parent
SPEECH = BENCH_DIR.parent.parent / "shared" / "speech"
CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.5
QUIET_S = 2.0  # after the silence: time for the last final before the stream is closed
DEFAULT_IDS = ("whisper_jfk", "libri_dev_2412-153948-0000", "long_mfa_spontaneous_3")
SECTION = "## Final latency through the compatible APIs (issue 17)"
# Every route asks for the same language: a session that names one decodes its finals
# with the earlier finals' audio in front (core/policy.py, context), one that does not
# (language detection) without, and that costs more than any wire format does.
LANGUAGE = "en"

Chunks = list[np.ndarray]  # int16 at 16 kHz
T = TypeVar("T")
Stream = Callable[[str, Chunks], Awaitable[list[float]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(name: str) -> Chunks:
    with wave.open(str(SPEECH / "wav" / f"{name}.wav")) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    samples = np.concatenate([samples, np.zeros(int(TRAILING_SILENCE_S * 16000), "<i2")])
    step = int(CHUNK_S * 16000)
    return [samples[i:i + step] for i in range(0, len(samples), step)]


class Clock:
    """When each chunk went out: the wall clock of any point of the audio."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    def mark(self) -> None:
        self.sent.append(time.monotonic())

    def latency(self, audio_end_s: float) -> float | None:
        index = max(0, math.ceil(audio_end_s / CHUNK_S - 1e-6) - 1)
        if index >= len(self.sent):
            return None
        return time.monotonic() - self.sent[index]


async def send_realtime(ws: ClientConnection, chunks: Chunks, clock: Clock,
                        encode: Callable[[np.ndarray], str | bytes]) -> None:
    began = time.monotonic()
    for i, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, began + i * CHUNK_S - time.monotonic()))
        clock.mark()
        await ws.send(encode(chunk))
    await asyncio.sleep(QUIET_S)


async def collect(ws: ClientConnection, on_message: Callable[[dict[str, object]], None]) -> None:
    async for message in ws:
        on_message(json.loads(message))


async def run_stream(url: str, headers: dict[str, str], chunks: Chunks,
                     encode: Callable[[np.ndarray], str | bytes], end_message: str | None,
                     on_message: Callable[[dict[str, object], Clock], None],
                     first: str | None = None) -> None:
    clock = Clock()
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        if first is not None:
            await ws.send(first)
        reader = asyncio.create_task(collect(ws, lambda m: on_message(m, clock)))
        await send_realtime(ws, chunks, clock, encode)
        reader.cancel()  # later finals (forced by the end) are not live latency
        if end_message is not None:
            await ws.send(end_message)


def to_24k(chunk: np.ndarray) -> bytes:
    """OpenAI's rate: the recording upsampled as a client would, then resampled back by us."""
    upsampled = np.interp(np.arange(0, len(chunk), 16000 / 24000), np.arange(len(chunk)), chunk)
    return bytes(upsampled.astype("<i2").tobytes())


def openai_append(chunk: np.ndarray) -> str:
    """One chunk as OpenAI Realtime's `input_audio_buffer.append`, at its 24 kHz."""
    return json.dumps({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(to_24k(chunk)).decode()})


# A transcription session with server VAD, asking for English like the other routes.
OPENAI_SESSION = json.dumps({"type": "session.update", "session": {
    "type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": LANGUAGE},
        "turn_detection": {"type": "server_vad"}}}}})


async def native(base: str, chunks: Chunks, at_24k: bool = False) -> list[float]:
    out: list[float] = []

    def on(message: dict[str, object], clock: Clock) -> None:
        if message.get("type") == "final" and message.get("text"):
            latency = clock.latency(float(message["end"]))  # type: ignore[arg-type]
            if latency is not None:
                out.append(latency)

    rate, encode = (24000, to_24k) if at_24k else (16000, lambda c: c.tobytes())
    await run_stream(f"{base}/v1/stream?language={LANGUAGE}&sample_rate={rate}", {}, chunks,
                     encode, '{"type":"eos"}', on)
    return out


async def native_24k(base: str, chunks: Chunks) -> list[float]:
    """Ours with OpenAI's audio: what the rate and resampling cost, apart from the protocol."""
    return await native(base, chunks, at_24k=True)


async def deepgram(base: str, chunks: Chunks) -> list[float]:
    out: list[float] = []

    def on(message: dict[str, object], clock: Clock) -> None:
        if message.get("type") == "Results" and message.get("is_final"):
            channel = message["channel"]
            assert isinstance(channel, dict)
            if channel["alternatives"][0]["transcript"]:
                end = float(message["start"]) + float(message["duration"])  # type: ignore[arg-type]
                latency = clock.latency(end)
                if latency is not None:
                    out.append(latency)

    url = (f"{base}/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"
           f"&punctuate=true&language={LANGUAGE}")
    await run_stream(url, {"Authorization": "Token bench"}, chunks, lambda c: c.tobytes(),
                     '{"type":"CloseStream"}', on)
    return out


async def openai(base: str, chunks: Chunks) -> list[float]:
    out: list[float] = []
    ends: dict[str, float] = {}

    def on(message: dict[str, object], clock: Clock) -> None:
        kind = message.get("type")
        if kind == "input_audio_buffer.speech_stopped":
            ends[str(message["item_id"])] = float(message["audio_end_ms"]) / 1000  # type: ignore[arg-type]
        elif kind == "conversation.item.input_audio_transcription.completed":
            end = ends.get(str(message["item_id"]))
            if end is not None and message.get("transcript"):
                latency = clock.latency(end)
                if latency is not None:
                    out.append(latency)

    await run_stream(f"{base}/v1/realtime?intent=transcription", {}, chunks, openai_append,
                     None, on, first=OPENAI_SESSION)
    return out


OURS = "/v1/stream (ours)"
PROTOCOLS: dict[str, Stream] = {OURS: native, "/v1/listen (Deepgram)": deepgram,
                                "/v1/realtime (OpenAI)": openai,
                                "/v1/stream at 24 kHz (ours)": native_24k}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def start_server(port: int, model: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", str(port), "--model", model,
         "--max-load", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not become healthy")


def served(model: str, body: Callable[[str], Awaitable[T]]) -> T:
    """`body(base URL)` run against a `captioncast serve` of its own, stopped after."""
    port = free_port()
    server = start_server(port, model)
    try:
        return asyncio.run(body(f"ws://127.0.0.1:{port}"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)


Runs = dict[str, dict[tuple[str, int], list[float]]]  # route: (recording, round): finals


async def measure(base: str, ids: list[str], rounds: int) -> Runs:
    runs: Runs = {name: {} for name in PROTOCOLS}
    names = list(PROTOCOLS)
    turn = 0
    for round_ in range(rounds):
        for rec in ids:
            chunks = load(rec)
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                got = await PROTOCOLS[name](base, chunks)
                runs[name][(rec, round_)] = got
                print(f"{rec} {name}: {len(got)} finals, median "
                      f"{statistics.median(got) if got else math.nan:.3f} s", file=sys.stderr)
            turn += 1
    return runs


def paired(runs: Runs, name: str, rec: str | None = None) -> list[float]:
    """Route minus ours, final by final, where both said the same number of finals of a
    recording in a round (the same utterances, in order)."""
    ours = runs[OURS]
    diffs: list[float] = []
    for key, theirs in runs[name].items():
        if (rec is None or key[0] == rec) and len(theirs) == len(ours.get(key, [])):
            diffs += [t - o for t, o in zip(theirs, ours[key], strict=True)]
    return diffs


def render(runs: Runs, ids: list[str], rounds: int, model: str, load_before: str,
           command: str, section: str = SECTION) -> str:
    routes = list(PROTOCOLS)
    lines = [section, "",
             f"- Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs (load "
             f"average {load_before} before the run); model {model}",
             f"- Recordings: {', '.join(ids)}; {rounds} round(s), one stream at a time, in "
             "real time, the routes in rotating order",
             f"- Command: `{command}`", "",
             "| route | finals | final latency p50 s | p95 s | paired difference from ours, "
             "median s | pairs | within 50 ms |",
             "|---|---|---|---|---|---|---|"]
    for name in routes:
        values = [x for got in runs[name].values() for x in got]
        diffs = paired(runs, name)
        median = statistics.median(diffs) if diffs else math.nan
        within = "" if name == OURS else ("yes" if abs(median) <= 0.05 else "NO")
        lines.append(f"| `{name}` | {len(values)} | {percentile(values, 0.5):.3f} | "
                     f"{percentile(values, 0.95):.3f} | "
                     f"{'' if name == OURS else f'{median:+.3f}'} | "
                     f"{'' if name == OURS else len(diffs)} | {within} |")
    lines += ["", "Per recording, median final latency (paired median difference from ours):",
              "", "| recording | " + " | ".join(f"`{n}`" for n in routes) + " |",
              "|---|" + "---|" * len(routes)]
    for rec in ids:
        cells = []
        for name in routes:
            values = [x for (r, _), got in runs[name].items() if r == rec for x in got]
            cell = f"{percentile(values, 0.5):.3f} s ({len(values)})"
            if name != OURS:
                diffs = paired(runs, name, rec)
                cell += f", {statistics.median(diffs) * 1000:+.0f} ms" if diffs else ", unpaired"
            cells.append(cell)
        lines.append(f"| {rec} | " + " | ".join(cells) + " |")
    lines += ["", "Latency is PROTOCOL.md's: receipt of a final minus the wall clock at which "
              "the audio at its end was sent (Deepgram: `start + duration` of an `is_final` "
              "Results; OpenAI: `audio_end_ms` of the item's `speech_stopped`). *Paired*: for "
              "each recording and round where a route said as many finals as ours, the "
              "difference final by final, so that how long each utterance takes to decode "
              "cancels out. The routes run the same LiveSession; what differs is the "
              "wire format (JSON per event, base64 audio for OpenAI) and, for OpenAI, 24 kHz "
              "audio resampled to 16 kHz. `/v1/stream at 24 kHz` is ours with that same "
              "24 kHz audio: what OpenAI's route costs beyond it is the protocol's.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ids", nargs="+", default=list(DEFAULT_IDS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--section", default=SECTION, help="the RESULTS.md heading to replace")
    args = parser.parse_args(argv)
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        known = {row["id"] for row in csv.DictReader(f, delimiter="\t")}
    missing = [i for i in args.ids if i not in known]
    if missing:
        raise SystemExit(f"not in shared/speech/manifest.tsv: {', '.join(missing)}")
    load_before = f"{os.getloadavg()[0]:.1f}"
    runs = served(args.model, lambda base: measure(base, args.ids, args.rounds))
    command = " ".join(["python bench/compat_latency.py",
                        *(sys.argv[1:] if argv is None else argv)])
    section = render(runs, args.ids, args.rounds, args.model, load_before, command,
                     args.section)
    print(section)
    if args.write:
        write_results_md(BENCH_DIR / "RESULTS.md", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
