"""What one captioned stream costs the MQTT broker: messages and bytes per second by topic.

Starts mosquitto and a server with `--mqtt --mqtt-partials`, streams English recordings in
real time to one channel, counts what a `captions/#` subscriber receives, and writes the
"## MQTT traffic per stream" section of bench/RESULTS.md (used by docs/scaling.md).

    python bench/broker_bench.py [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import (
    BENCH_DIR,
    DEFAULT_SPEECH_DIR,
    REPO_ROOT,
    free_port,
    read_manifest,
    stop_server,
    write_results_md,
)

from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url

SECTION = "## MQTT traffic per stream (issue 7)"


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            cwd=REPO_ROOT)


async def measure(seconds: float) -> tuple[Counter[str], Counter[str], float]:
    work = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    broker_port, port = free_port(), free_port()
    (work / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\n"
                                         "allow_anonymous true\n")
    broker = start([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                    str(work / "mosquitto.conf")], work / "mosquitto.log")
    server = start([sys.executable, "-m", "captioncast.cli", "serve", "--port", str(port),
                    "--mqtt", f"mqtt://127.0.0.1:{broker_port}", "--mqtt-partials"],
                   work / "server.log")
    messages: Counter[str] = Counter()
    volume: Counter[str] = Counter()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        chunks: list[bytes] = []
        for rec in read_manifest(DEFAULT_SPEECH_DIR, None, None):
            chunks += [*rechunk(decode_pcm(str(rec.wav)), 3200), silence(1.0)]
            if len(chunks) * 0.1 >= seconds:
                break
        audio_s = len(chunks) * 0.1
        async with aiomqtt.Client("127.0.0.1", broker_port) as client:
            await client.subscribe("captions/#", qos=1)

            async def count() -> None:
                async for message in client.messages:
                    kind = str(message.topic).rsplit("/", 1)[-1]
                    payload = message.payload
                    size = len(payload) if isinstance(payload, (bytes, str)) else 0
                    messages[kind] += 1
                    volume[kind] += size + len(str(message.topic))

            counter = asyncio.create_task(count())
            await stream(stream_url(f"ws://127.0.0.1:{port}", channel="bench"), chunks)
            await asyncio.sleep(2)
            counter.cancel()
        return messages, volume, audio_s
    finally:
        stop_server(server)
        broker.terminate()
        broker.wait(5)


def render(messages: Counter[str], volume: Counter[str], audio_s: float) -> str:
    rows = ["| topic | messages/s | bytes/s | bytes per message |", "|---|---|---|---|"]
    for kind in ("final", "partial", "status", "end"):
        if messages[kind]:
            rows.append(f"| `captions/CHANNEL/{kind}` | {messages[kind] / audio_s:.2f} | "
                        f"{volume[kind] / audio_s:.0f} | {volume[kind] / messages[kind]:.0f} |")
    total_m, total_b = sum(messages.values()), sum(volume.values())
    rows.append(f"| all | {total_m / audio_s:.2f} | {total_b / audio_s:.0f} | "
                f"{total_b / max(1, total_m):.0f} |")
    return "\n".join([
        SECTION, "",
        f"- Date: {dt.date.today().isoformat()}; machine: {platform.machine()}, "
        f"2 CPUs; model tiny.en; {audio_s:.0f} s of English speech streamed in real time "
        "to one channel with `--mqtt-partials`",
        "- Command: `python bench/broker_bench.py`", "",
        *rows, "",
        "Bytes are payload plus topic, as a subscriber receives them (MQTT framing adds a few "
        "bytes a message). Finals carry word timings; without partials a stream costs the "
        "final row only.", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    messages, volume, audio_s = asyncio.run(measure(args.seconds))
    section = render(messages, volume, audio_s)
    write_results_md(BENCH_DIR / "RESULTS.md", section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
