"""Final latency with the transcript store on and off, in one run, side by side.

Starts two `captioncast serve` subprocesses with the same model: one with a store
(SQLite in a temporary data dir, or `--store URL`), one with `--no-store`. Each round
streams the same recordings, in real time and on a channel (only channels' finals are
stored), to one server and then the other, alternating which goes first, so that the
machine's noise falls on both alike. A final's latency is when it reached the speaker
minus when the audio at its end was sent (PROTOCOL.md "Latency"); with a store the
speaker, like every viewer, gets a final once it is committed.

    python bench/store_latency.py [--rounds 3] [--streams 1] [--postgres | --store URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from stream_bench import (  # noqa: E402
    CHUNK_BYTES,
    DEFAULT_SPEECH_DIR,
    free_port,
    p95,
    sent_time,
    start_server,
    stop_server,
)

from captioncast_client.audio_files import decode_pcm, rechunk  # noqa: E402
from captioncast_client.streaming import stream, stream_url  # noqa: E402

RECORDINGS = ("whisper_jfk", "libri_dev_2412-153948-0000", "ljspeech_LJ002-0020")


async def latencies(url: str, chunks: list[bytes], streams: int) -> list[float]:
    async def one() -> list[float]:
        result = await stream(stream_url(url, channel=f"bench-{secrets.token_hex(4)}"),
                              chunks, realtime=True, reconnect=False)
        return [f["received_at"] - sent_time(result.sent_at, f["end"])
                for f in result.finals if f["text"]]

    runs = await asyncio.gather(*(one() for _ in range(streams)))
    return [x for run in runs for x in run]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1, help="streams at once per server")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--store", help="a store URL or path instead of a temporary SQLite")
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway local PostgreSQL (fsync on) as the store")
    args = parser.parse_args()
    if args.postgres:
        sys.path.insert(0, str(BENCH_DIR.parent))
        from tests.integration.postgres import Postgres

        cluster = Postgres(fsync=True)  # commit latency is what is measured
        cluster.start()
        try:
            return run(args, cluster.url())
        finally:
            cluster.remove()
    return run(args, args.store)


def run(args: argparse.Namespace, store_url: str | None) -> int:
    audio = []
    for name in RECORDINGS:
        chunks = list(rechunk(decode_pcm(str(DEFAULT_SPEECH_DIR / "wav" / f"{name}.wav")),
                              CHUNK_BYTES))
        audio.append(chunks + [bytes(CHUNK_BYTES)] * 10)
    got: dict[str, list[float]] = {"on": [], "off": []}
    paired: list[float] = []  # per recording and round: median on minus median off
    with (tempfile.TemporaryDirectory(prefix="store-latency-") as tmp,
          open(Path(tmp) / "on.log", "wb") as on_log,
          open(Path(tmp) / "off.log", "wb") as off_log):
        where = store_url or str(Path(tmp) / "data")
        ports = {"on": free_port(), "off": free_port()}
        servers = {
            "on": start_server(ports["on"], args.model, on_log, ["--store", where]),
            "off": start_server(ports["off"], args.model, off_log, ["--no-store"]),
        }
        try:
            for n in range(args.rounds):
                for i, chunks in enumerate(audio):
                    # ABBA: each server goes first as often as the other
                    order = ("on", "off") if (n + i) % 2 == 0 else ("off", "on")
                    medians = {}
                    for kind in order:
                        url = f"ws://127.0.0.1:{ports[kind]}"
                        values = asyncio.run(latencies(url, chunks, args.streams))
                        got[kind] += values
                        medians[kind] = statistics.median(values) if values else math.nan
                    paired.append(medians["on"] - medians["off"])
                print(f"round {n + 1}/{args.rounds}: median on "
                      f"{statistics.median(got['on']):.3f} s, off "
                      f"{statistics.median(got['off']):.3f} s", file=sys.stderr)
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['on']}/healthz") as r:
                store = json.loads(r.read())["store"]
        finally:
            for proc in servers.values():
                stop_server(proc)
    on, off = got["on"], got["off"]
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; model {args.model}; "
          f"{args.rounds} rounds x {len(RECORDINGS)} recordings x {args.streams} stream(s); "
          f"store {store_url.split('@')[-1] if store_url else 'SQLite, temporary data dir'}")
    print("| store | finals | final latency p50 | p95 | mean |")
    print("|---|---|---|---|---|")
    for name, values in (("on", on), ("off", off)):
        print(f"| {name} | {len(values)} | {statistics.median(values):.3f} s | "
              f"{p95(values):.3f} s | {statistics.mean(values):.3f} s |")
    print(f"ratio on/off: p50 {statistics.median(on) / statistics.median(off):.3f}, "
          f"p95 {p95(on) / p95(off):.3f}; paired (same recording, same round) median of "
          f"on - off: {statistics.median(paired) * 1000:+.0f} ms over {len(paired)} pairs")
    wait_p50, wait_p95 = store["commit_wait_p50_s"] * 1000, store["commit_wait_p95_s"] * 1000
    print(f"store's own wait, final to commit (server side): p50 {wait_p50:.1f} ms, p95 "
          f"{wait_p95:.1f} ms; late (sent before commit) {store['late']}, "
          f"dropped {store['dropped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
