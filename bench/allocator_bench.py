"""Which allocator setting keeps the decoder's native memory flat? Same decodes, four ways.

The soak (bench/soak_bench.py) showed the server's RSS rising in steps with no Python
object growing: native memory, as CTranslate2 allocates buffers sized by each decode's
audio on two worker threads. A 3-hour soak per setting costs 45 minutes each, so this
compares the settings on the decoder alone, faster: a child process per setting loads
tiny.en as the server does (2 single-threaded workers) and runs `--decodes` finals and
partials of random lengths (0.5-15 s windows of English recordings of shared/speech, the
same sequence in every child) on 2 threads, sampling its RSS. Settings: glibc defaults,
`MALLOC_ARENA_MAX=2`, jemalloc (LD_PRELOAD, Debian's libjemalloc2), all three without
the decoder's own trimming, and glibc with the decoder's `malloc_trim(0)` every 10 s
(engine/native_memory.py, the server's default).

Writes the section "## Allocator: decoder memory by setting (issue 19)" of bench/RESULTS.md.

    python bench/allocator_bench.py --decodes 600
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_bench as sb

SECTION = "## Allocator: decoder memory by setting (issue 19)"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TRIM = "CAPTIONCAST_BENCH_TRIM_S"  # the child's DecodeOptions.malloc_trim_s
SETTINGS: dict[str, dict[str, str]] = {
    "glibc defaults, no trim": {TRIM: "0"},
    "MALLOC_ARENA_MAX=2, no trim": {"MALLOC_ARENA_MAX": "2", TRIM: "0"},
    "jemalloc": {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "background_thread:true", TRIM: "0"},
    "glibc + malloc_trim every 10 s (server default)": {TRIM: "10"},
}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(decodes: int, seed: int, speech_dir: Path) -> None:
    """Run in the child: decode, sample RSS, print one JSON line."""
    from captioncast.core.decoding import DecodeRequest
    from captioncast.engine.decode_options import DecodeOptions
    from captioncast.engine.models import plan_device, resolve_model
    from captioncast.engine.whisper import WhisperDecoder
    from captioncast_client.audio_files import decode_pcm

    options = DecodeOptions(malloc_trim_s=float(os.environ.get(TRIM, "0")))
    decoder = WhisperDecoder(resolve_model("tiny.en"), plan_device("cpu", "int8", 2),
                             options=options)
    recordings = sb.read_manifest(speech_dir, None, None)
    audio = np.concatenate([np.frombuffer(b"".join(decode_pcm(str(r.wav))), "<i2")
                            for r in recordings])
    audio = audio.astype(np.float32) / 32768
    rng = random.Random(seed)
    jobs = []
    for i in range(decodes):
        seconds = rng.uniform(0.5, 15.0)
        start = rng.randrange(0, len(audio) - int(seconds * 16000))
        kind = "final" if rng.random() < 0.4 else "partial"
        jobs.append(DecodeRequest(i, kind, i, audio[start:start + int(seconds * 16000)],  # type: ignore[arg-type]
                                  prompt="", language="en", word_timestamps=kind == "final"))
    samples: list[tuple[int, float]] = [(0, rss_mib())]
    done = 0
    lock = threading.Lock()

    def work(share: list[DecodeRequest]) -> None:
        nonlocal done
        for request in share:
            decoder.decode(request)
            with lock:
                done += 1
                if done % 20 == 0:
                    samples.append((done, rss_mib()))

    threads = [threading.Thread(target=work, args=(jobs[k::2],)) for k in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"samples": samples, "seconds": time.monotonic() - started,
                      "trims": decoder.memory.trims}))


def run(name: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", "--decodes", str(args.decodes),
               "--seed", str(args.seed), "--speech-dir", str(args.speech_dir)]
    out = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True,
                         check=True, cwd=sb.REPO_ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    samples = result["samples"]
    warm = next(m for n, m in samples if n >= args.decodes * 0.2)  # after a fifth of them
    last, peak = samples[-1][1], max(m for _, m in samples)
    sb.log(f"  {name}: warm {warm:.0f} -> last {last:.0f} MiB (peak {peak:.0f}), "
           f"{result['seconds']:.0f} s")
    return {"name": name, "warm": warm, "last": last, "peak": peak,
            "growth": (last - warm) / warm, "seconds": result["seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--decodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speech-dir", type=Path, default=sb.DEFAULT_SPEECH_DIR)
    parser.add_argument("--out", type=Path, default=sb.BENCH_DIR / "RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.decodes, args.seed, args.speech_dir)
        return 0
    settings = {k: v for k, v in SETTINGS.items()
                if "LD_PRELOAD" not in v or Path(v["LD_PRELOAD"]).exists()}
    rows = [run(name, env, args) for name, env in settings.items()]
    f = sb.fmt
    lines = [
        SECTION, "",
        f"- Date: {dt.date.today().isoformat()}; machine: {len(os.sched_getaffinity(0))} CPUs, "
        f"{sb.cpu_model()}; tiny.en int8, 2 single-threaded workers as the server runs them",
        f"- {args.decodes} decodes (40 % finals with word timings, 60 % greedy partials) of "
        "0.5-15 s of English speech, the same sequence for every setting, on 2 threads",
        f"- Command: `python bench/allocator_bench.py --decodes {args.decodes}`",
        "",
        "| setting | RSS after a fifth of the decodes MiB | at the end MiB | peak MiB | growth "
        "| wall s |",
        "|---|---|---|---|---|---|",
        *(f"| {r['name']} | {f(r['warm'], 0)} | {f(r['last'], 0)} | {f(r['peak'], 0)} | "
          f"{float(r['growth']) * 100:+.1f} % | {f(r['seconds'], 0)} |" for r in rows),
        "",
    ]
    section = "\n".join(lines)
    sb.write_results_md(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
