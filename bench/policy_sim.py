"""Replays recordings through the caption policy with the real model, decoding instantly.

No server and no clock: this isolates what the policy itself does to accuracy
(segmentation, agreement, prefixes, prompts) from scheduling and CPU speed.
Used to choose the policy's defaults; `stream_bench.py` measures the server.

    python bench/policy_sim.py [--limit N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from captioncast.core.decoding import DecodeRequest
from captioncast.core.events import Final, Partial
from captioncast.core.policy import Action, CaptionSession, PolicyOptions, SessionConfig
from captioncast.engine.models import plan_device, resolve_model
from captioncast.engine.whisper import DecodeOptions, WhisperDecoder

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"


def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def run(decoder: WhisperDecoder, audio: np.ndarray, options: PolicyOptions) -> dict[str, Any]:
    session = CaptionSession(SessionConfig("sim", decoder.name, "en"), options)
    events: list[Any] = []
    pending: list[DecodeRequest] = []
    cancelled: set[int] = set()

    def handle(actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, DecodeRequest):
                pending.append(a)
            elif hasattr(a, "request_id") and not hasattr(a, "kind"):
                cancelled.add(a.request_id)
            else:
                events.append(a)

    def drain() -> None:
        while pending:
            request = pending.pop(0)
            if request.request_id not in cancelled:
                handle(session.on_result(request.request_id, decoder.decode(request)))

    handle(session.start())
    audio = np.concatenate([audio, np.zeros(16000, np.float32)])
    for i in range(0, len(audio), 1600):
        handle(session.feed(audio[i : i + 1600]))
        drain()
    handle(session.eos())
    drain()
    finals = [e for e in events if isinstance(e, Final)]
    return {
        "text": " ".join(f.text for f in finals if f.text),
        "finals": len(finals),
        "partials": sum(isinstance(e, Partial) for e in events),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--set", action="append", default=[],
                        help="PolicyOptions / SegmenterOptions / DecodeOptions field=value")
    args = parser.parse_args()
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

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
    normalize = EnglishTextNormalizer()
    with (SPEECH / "manifest.tsv").open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["language"] == "en"]
    if args.limit:
        rows = rows[: args.limit]
    refs, hyps = [], []
    started = time.monotonic()
    finals = 0
    for row in rows:
        out = run(decoder, load(SPEECH / row["wav"]), options)
        ref = normalize(row["transcript"])
        if ref.strip():
            refs.append(ref)
            hyps.append(normalize(out["text"]))
        finals += out["finals"]
        print(f"{row['id']}\t{out['finals']}\t{out['text']}", file=sys.stderr)
    print(f"settings={args.set} recordings={len(rows)} finals={finals} "
          f"WER={jiwer.wer(refs, hyps):.4f} seconds={time.monotonic() - started:.0f}")


if __name__ == "__main__":
    main()
