"""Replays recordings through the caption policy with the real model, decoding instantly.

No server and no clock: this isolates what the policy itself does to accuracy
(segmentation, agreement, prompts, context) from scheduling and CPU speed.
Latencies are on the audio clock: how much audio had been fed when an event came
out, minus the audio time it is about, so they show what the policy waits for,
never what decoding costs. Used to choose the policy's defaults;
`stream_bench.py` measures the server.

    python bench/policy_sim.py [--subset clean|en|continuous] [--limit N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import statistics
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from stream_bench import CLEAN_PREFIXES, CONTINUOUS, norm_word, p95  # the same sets and rules

from captioncast.core.decoding import DecodeRequest
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import Action, CaptionSession
from captioncast.core.text import revised_words
from captioncast.engine.models import plan_device, resolve_model
from captioncast.engine.whisper import DecodeOptions, WhisperDecoder
from captioncast.protocol.events import Final, Partial

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"
VERBOSE = "--verbose" in sys.argv
CACHE = Path.home() / ".cache" / "captioncast" / "bench_offline.json"
def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def run(decoder: WhisperDecoder, audio: np.ndarray, options: PolicyOptions) -> dict[str, Any]:
    session = CaptionSession(SessionConfig("sim", decoder.name, "en"), options)
    events: list[tuple[int, Any]] = []  # (audio position when it came out, event)
    pending: list[DecodeRequest] = []
    cancelled: set[int] = set()
    decode_s = 0.0
    by_kind: dict[str, float] = {"partial": 0.0, "final": 0.0, "fallbacks": 0.0}

    def handle(actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, DecodeRequest):
                pending.append(a)
            elif hasattr(a, "request_id") and not hasattr(a, "kind"):
                cancelled.add(a.request_id)
            else:
                events.append((session.position, a))

    def drain() -> None:
        nonlocal decode_s
        while pending:
            request = pending.pop(0)
            if request.request_id not in cancelled:
                t0 = time.perf_counter()
                result = decoder.decode(request)
                decode_s += time.perf_counter() - t0
                by_kind[request.kind] += time.perf_counter() - t0
                by_kind["fallbacks"] += result.temperature > 0
                handle(session.on_result(request.request_id, result))

    handle(session.start())
    audio = np.concatenate([audio, np.zeros(16000, np.float32)])
    for i in range(0, len(audio), 1600):
        handle(session.feed(audio[i : i + 1600]))
        drain()
    handle(session.eos())
    drain()
    finals = [(pos, e) for pos, e in events if isinstance(e, Final)]
    partials = [(pos, e) for pos, e in events if isinstance(e, Partial)]
    final_lat, word_lat = [], []
    stable_shown = stable_revised = 0
    for pos, final in finals:
        final_lat.append(pos / 16000 - final.end)
        mine = [(p, e) for p, e in partials if e.utterance == final.utterance]
        split = [[norm_word(w) for w in e.text.split()] for _, e in mine]
        for i, word in enumerate(final.words):
            target = norm_word(word.word)
            first = pos
            for (p, _), words in zip(mine, split):
                if i < len(words) and words[i] == target:
                    first = p
                    break
            word_lat.append(first / 16000 - word.end)
        if mine:
            stable = mine[-1][1].stable.split()
            stable_shown += len(stable)
            revised = revised_words(stable, final.text.split())
            stable_revised += revised
            if revised and VERBOSE:
                print(f"  revised {revised}: stable={' '.join(stable)!r}\n"
                      f"             final={final.text!r}", file=sys.stderr)
    return {
        "text": " ".join(f.text for _, f in finals if f.text),
        "finals": len(finals), "partials": len(partials), "decode_s": decode_s,
        "final_decode_s": by_kind["final"], "fallbacks": int(by_kind["fallbacks"]),
        "final_lat": final_lat, "word_lat": word_lat,
        "stable_shown": stable_shown, "stable_revised": stable_revised,
    }


def rows_for(subset: str) -> list[dict[str, str]]:
    with (SPEECH / "manifest.tsv").open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["language"] == "en"]
    if subset == "clean":
        return [r for r in rows if r["id"].startswith(CLEAN_PREFIXES)]
    if subset == "continuous":
        with (SPEECH / "approx.tsv").open() as f:
            approx = [dict(r, transcript="") for r in
                      csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        return [r for r in rows + approx if r["id"] in CONTINUOUS]
    return rows


def offline_texts(rows: list[dict[str, str]]) -> dict[str, str]:
    """faster-whisper's own transcribe (beam 5, whole file), cached across runs."""
    cache: dict[str, str] = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    missing = [r for r in rows if r["id"] not in cache]
    if missing:
        from faster_whisper import WhisperModel

        model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8")
        for r in missing:
            segments, _ = model.transcribe(str(SPEECH / r["wav"]), beam_size=5, language="en")
            cache[r["id"]] = " ".join(s.text.strip() for s in segments).strip()
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps(cache, indent=0))
    return {r["id"]: cache[r["id"]] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subset", choices=("clean", "en", "continuous"), default="en")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--set", action="append", default=[],
                        help="PolicyOptions / SegmenterOptions / DecodeOptions field=value")
    parser.add_argument("--verbose", action="store_true", help="each recording's text")
    parser.add_argument("--ids", default="", help="comma-separated recording ids of the subset")
    args = parser.parse_args()
    import jiwer
    from scoring import WordNormalizer

    policy: dict[str, Any] = {}
    segmenter: dict[str, Any] = {}
    decode: dict[str, Any] = {}
    seg_fields = {f.name for f in dataclasses.fields(PolicyOptions().segmenter)}
    dec_fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    for item in args.set:
        key, value = item.split("=", 1)
        target = segmenter if key in seg_fields else decode if key in dec_fields else policy
        target[key] = ast.literal_eval(value)
    options = PolicyOptions(**policy, segmenter=dataclasses.replace(PolicyOptions().segmenter,
                                                                    **segmenter))
    decoder = WhisperDecoder(resolve_model("tiny.en"), plan_device("cpu", workers=1),
                             options=DecodeOptions(**decode))
    normalize = WordNormalizer()
    rows = rows_for(args.subset)
    if args.ids:
        rows = [r for r in rows if r["id"] in args.ids.split(",")]
    if args.limit:
        rows = rows[: args.limit]
    offline = offline_texts(rows)
    refs, hyps, offs = [], [], []
    started = time.monotonic()
    totals: dict[str, Any] = {"finals": 0, "partials": 0, "decode_s": 0.0, "final_decode_s": 0.0,
                              "fallbacks": 0, "stable_shown": 0,
                              "stable_revised": 0, "final_lat": [], "word_lat": []}
    for row in rows:
        out = run(decoder, load(SPEECH / row["wav"]), options)
        ref = normalize(row["transcript"])
        if ref.strip():
            refs.append(ref)
            hyps.append(normalize(out["text"]))
            offs.append(normalize(offline[row["id"]]))
        for key in totals:
            totals[key] += out[key]
        if args.verbose:
            print(f"{row['id']}\t{out['finals']}\t{out['text']}", file=sys.stderr)
    clean = [i for i, row in enumerate(r for r in rows if normalize(r["transcript"]).strip())
             if row["id"].startswith(CLEAN_PREFIXES)]
    if args.subset == "en" and clean:
        print(f"clean: WER={jiwer.wer([refs[i] for i in clean], [hyps[i] for i in clean]):.4f} "
              f"offline={jiwer.wer([refs[i] for i in clean], [offs[i] for i in clean]):.4f}")
    wer = jiwer.wer(refs, hyps) if refs else float("nan")
    wer_off = jiwer.wer(refs, offs) if refs else float("nan")
    fl, wl = totals["final_lat"], totals["word_lat"]
    print(f"subset={args.subset} settings={args.set} recordings={len(rows)} "
          f"WER={wer:.4f} offline={wer_off:.4f} ratio={wer / wer_off if wer_off else 0:.3f} "
          f"revised={totals['stable_revised']}/{totals['stable_shown']} "
          f"final_lat p50={statistics.median(fl):.2f} p95={p95(fl):.2f} "
          f"word_lat p50={statistics.median(wl):.2f} p95={p95(wl):.2f} "
          f"partials/final={totals['partials'] / max(1, totals['finals']):.1f} "
          f"decode_s={totals['decode_s']:.0f} final_decode_s={totals['final_decode_s']:.0f} "
          f"fallbacks={totals['fallbacks']} seconds={time.monotonic() - started:.0f}",
          flush=True)


if __name__ == "__main__":
    main()
