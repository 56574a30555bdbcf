"""Does batching finals across sessions pay? One-by-one against batched, same model, same audio.

When several sessions finish an utterance at once, the scheduler could encode and
decode their finals as one CTranslate2 batch instead of one after the other. This
measures both on the same K utterances (English recordings of shared/speech that
fit the 15 s encoder window, padded to it as the server does), beam 5, the way the
server decodes finals (WhisperDecoder's encode + generate, word alignment left out
because it runs per utterance either way):

- one by one, `--workers` threads each taking the next utterance (the server today);
- batched: one encode of a K×80×1500 feature batch and one generate of K prompts.

Reports wall time per utterance and the speedup, for each batch size, and writes
the section "## Batched finals (issue 4)" of bench/RESULTS.md.

    python bench/batch_finals.py --sizes 2 4 8 --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_bench as sb

from captioncast.engine.models import plan_device, resolve_model
from captioncast_client.audio_files import decode_pcm

SECTION = "## Batched finals (issue 4)"
WINDOW_FRAMES = 1500  # the server's 15 s encoder window


def load_model(device: str, workers: int, threads: int) -> Any:
    from faster_whisper import WhisperModel

    plan = plan_device(device, "auto", workers)
    return WhisperModel(resolve_model("tiny.en").path, device=plan.device,
                        compute_type=plan.compute_type, cpu_threads=threads,
                        num_workers=workers)


def read_audio(path: Path) -> np.ndarray:
    return np.frombuffer(b"".join(decode_pcm(str(path))), "<i2").astype(np.float32) / 32768.0


def features_of(model: Any, audio: np.ndarray) -> np.ndarray:
    from faster_whisper.audio import pad_or_trim

    feats: np.ndarray = pad_or_trim(model.feature_extractor(audio), WINDOW_FRAMES)
    return feats


def prompt_of(model: Any) -> list[int]:
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    prompt: list[int] = model.get_prompt(tokenizer, [], without_timestamps=True)
    return prompt


def one(model: Any, feats: np.ndarray, prompt: list[int]) -> list[int]:
    import ctranslate2

    encoded = model.model.encode(ctranslate2.StorageView.from_array(feats[None]),
                                 to_cpu=False)
    result = model.model.generate(encoded, [prompt], beam_size=5, max_length=224)
    return list(result[0].sequences_ids[0])


def batched(model: Any, feats: list[np.ndarray], prompt: list[int]) -> list[list[int]]:
    import ctranslate2

    batch = ctranslate2.StorageView.from_array(np.stack(feats))
    encoded = model.model.encode(batch, to_cpu=False)
    results = model.model.generate(encoded, [prompt] * len(feats), beam_size=5, max_length=224)
    return [list(r.sequences_ids[0]) for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="one-by-one decode threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=sb.BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    recordings = [r for r in sb.read_manifest(sb.DEFAULT_SPEECH_DIR, None, None)
                  if 2.0 <= r.duration_s <= 15.0]
    # The server's layout: `workers` models' threads share the cores; batched, one call
    # gets every core.
    serial_model = load_model(args.device, args.workers, max(1, cores // args.workers))
    batch_model = load_model(args.device, 1, cores)
    prompt = prompt_of(serial_model)
    rows = []
    for size in args.sizes:
        clips = recordings[:size]
        feats = [features_of(serial_model, read_audio(r.wav)) for r in clips]
        one(serial_model, feats[0], prompt)  # warm both up
        batched(batch_model, feats[:1], prompt)
        serial_times, batch_times = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                serial_out = list(pool.map(lambda f: one(serial_model, f, prompt), feats))
            serial_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            batch_out = batched(batch_model, feats, prompt)
            batch_times.append(time.perf_counter() - started)
        same = sum(a == b for a, b in zip(serial_out, batch_out))
        s, b = statistics.median(serial_times), statistics.median(batch_times)
        rows.append((size, s / size, b / size, s / b, same))
        sb.log(f"batch {size}: one by one {s / size:.3f} s/utt, batched {b / size:.3f} s/utt, "
               f"speedup {s / b:.2f}, same tokens {same}/{size}")
    lines = [
        SECTION, "",
        f"- Date: {dt.date.today().isoformat()}; machine: {cores} CPUs, {sb.cpu_model()}; "
        f"device {args.device}; model tiny.en int8; beam 5; 15 s encoder window",
        f"- Command: `python bench/batch_finals.py {' '.join(sys.argv[1:])}`",
        "",
        "| finals at once | one by one, s per final | batched, s per final | speedup "
        "| same tokens |",
        "|---|---|---|---|---|",
        *(f"| {n} | {a:.3f} | {b:.3f} | {c:.2f} | {d}/{n} |" for n, a, b, c, d in rows),
        "",
        f"Medians of {args.repeats} runs. One by one: {args.workers} decode workers, as the "
        "server runs them. Batched: one encode and one generate for the whole batch on every "
        "core. No GPU was available to these sessions: on a GPU batching is where the "
        "throughput comes from, and this script measures it there with `--device cuda`.",
        "",
        f"Best speedup here: {max(r[3] for r in rows):.2f}. "
        + ("Batching pays on this device." if max(r[3] for r in rows) >= 1.1 else
           "Batching does not pay on this device (CTranslate2 already keeps the cores busy "
           "with one decode per worker), so the scheduler decodes finals one at a time per "
           "worker and keeps no batching code."),
        "",
    ]
    section = "\n".join(lines)
    sb.write_results_md(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
