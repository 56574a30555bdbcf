"""What an idle session costs the real server: CPU seconds and memory per session (issue 19).

Starts `captioncast serve` (the real model, limits lifted so that one address may hold
every session), measures its CPU time (/proc/PID/stat) and RSS (/proc/PID/status) with
no session for `--baseline-s`, then holds N sessions for `--seconds`: muted microphones
sending digital silence in real time (`--mode silence`, the costly kind: every frame goes
through the VAD), or sources that only send a keepalive every 5 s (`--mode keepalive`).
Prints one line of figures and, with `--tsv`, appends it to that file. The client runs
on the same machine: on a shared one, CPU figures include what others take from it.

    python bench/idle_cost.py --n 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_bench as sb

FRAME_S = 0.1  # a microphone's 100 ms chunks
KEEPALIVE_S = 5.0
LIFTED = ["--max-sessions", "100000", "--max-connections-per-ip", "0",
          "--set", "security.max_idle_per_ip=0", "--set", "security.max_idle_per_token=0",
          "--idle-timeout-s", "600"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def hold(url: str, mode: str, until: float, failures: list[str]) -> None:
    """One idle session until `until` (loop time), then eos and its end."""
    loop = asyncio.get_running_loop()
    frame = bytes(int(FRAME_S * 32000))
    try:
        async with connect(url, open_timeout=60) as ws:
            ready = json.loads(await ws.recv())
            if ready["type"] != "ready":
                failures.append(str(ready))
                return
            next_at = loop.time()
            while loop.time() < until:
                if mode == "silence":
                    await ws.send(frame)
                    next_at += FRAME_S
                else:
                    await ws.send(json.dumps({"type": "keepalive"}))
                    next_at += KEEPALIVE_S
                await asyncio.sleep(max(0.0, min(next_at, until) - loop.time()))
            await ws.send(json.dumps({"type": "eos"}))
            async for message in ws:
                if json.loads(message)["type"] in ("error", "final"):
                    failures.append(str(message))
    except Exception as exc:  # counted, not fatal: the figures say how many held
        failures.append(f"{type(exc).__name__}: {exc}")


async def run(url: str, n: int, mode: str, seconds: float, pid: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    ramp_until = loop.time() + 600
    tasks = [asyncio.create_task(hold(url, mode, ramp_until, failures)) for _ in range(n)]
    # Measure only while all are held: wait until the server has them all connected.
    while True:
        health = await asyncio.to_thread(sb_health, url)
        if health.get("connected_sessions") == n or failures:
            break
        await asyncio.sleep(0.2)
    rss_held0, cpu0, wall0 = rss_mb(pid), sb.cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall, rss_held = sb.cpu_seconds(pid) - cpu0, time.monotonic() - wall0, rss_mb(pid)
    health = await asyncio.to_thread(sb_health, url)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cpu_s": cpu, "wall_s": wall, "rss_held_mb": max(rss_held0, rss_held),
            "failures": float(len(failures)),
            "speaking": float(health.get("speaking_sessions", -1))}  # type: ignore[arg-type]


def sb_health(url: str) -> dict[str, object]:
    import urllib.request

    target = url.replace("ws://", "http://").replace("/v1/stream", "/healthz")
    with urllib.request.urlopen(target, timeout=10) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-s", type=float, default=20.0)
    parser.add_argument("--mode", choices=("silence", "keepalive"), default="silence")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--tsv", type=Path)
    args = parser.parse_args(argv)
    port = sb.free_port()
    with tempfile.TemporaryFile() as server_log:
        proc = sb.start_server(port, args.model, server_log, LIFTED)
        try:
            url = f"ws://127.0.0.1:{port}/v1/stream"
            rss0, cpu0 = rss_mb(proc.pid), sb.cpu_seconds(proc.pid)
            time.sleep(args.baseline_s)
            base_cpu = (sb.cpu_seconds(proc.pid) - cpu0) / args.baseline_s
            held = asyncio.run(run(url, args.n, args.mode, args.seconds, proc.pid))
        finally:
            sb.stop_server(proc)
    cpu_per_s = held["cpu_s"] / held["wall_s"] - base_cpu  # cores busy, over the empty server
    row = {
        "date": time.strftime("%Y-%m-%d"), "mode": args.mode, "n": args.n,
        "seconds": round(held["wall_s"], 1), "failures": int(held["failures"]),
        "speaking_seen": int(held["speaking"]),
        "server_cpu_s": round(held["cpu_s"], 2),
        "idle_server_cores": round(base_cpu, 4),
        "cores_busy": round(cpu_per_s, 4),
        "cpu_s_per_session_hour": round(cpu_per_s / args.n * 3600, 2),
        "rss_empty_mb": round(rss0, 1), "rss_held_mb": round(held["rss_held_mb"], 1),
        "rss_kb_per_session": round((held["rss_held_mb"] - rss0) * 1024 / args.n, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count() or 0,
    }
    print("\t".join(f"{k}={v}" for k, v in row.items()))
    if args.tsv is not None:
        new = not args.tsv.exists()
        with args.tsv.open("a", encoding="utf-8") as f:
            if new:
                f.write("\t".join(row) + "\n")
            f.write("\t".join(str(v) for v in row.values()) + "\n")
    return 0 if not held["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
