"""Turn-taking offline: does the turn model tell a mid-sentence pause from a sentence's end?

On `turn_set.py`'s paused sentences, the turn model (`captioncast.engine.turn_model`)
reads each turn from its start to `--delay` seconds into a pause (a live system asks it
once its VAD has heard that much silence; pipecat's default VAD stops after 0.2 s) and
says complete or not at thresholds 0.3, 0.5 and 0.7. Against it, VAD-only endpointing,
which ends a turn at every pause as long as its silence timeout (0.5 s, 1.0 s), and the
two together (the model asked first, the VAD's timeout as the fallback, as pipecat does
with its `stop_secs`). Also: the model's CPU time per call (one thread), and how far our
features are from pipecat's own numpy copy of Whisper's (its `_whisper_features.py`,
loaded from the installed wheel by path, without importing pipecat).

Appends (or replaces) "## Turn-taking: the turn model on paused sentences (offline)" in
bench/RESULTS.md.

    python bench/turn_bench.py [--seed 0] [--no-write]
"""

from __future__ import annotations

# ruff: noqa: E402 (the thread limits below must be set before numpy loads)
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import importlib.util
import statistics
import time
from dataclasses import dataclass

import numpy as np
import turn_set
from turn_set import RATE, PausedSentence

from captioncast.engine.turn_model import TurnModel, load_turn_model, turn_features

SECTION = "## Turn-taking: the turn model on paused sentences (offline)"
THRESHOLDS = (0.3, 0.5, 0.7)
VAD_TIMEOUTS_S = (0.5, 1.0)
DELAYS_S = (0.2, 0.5)


@dataclass(frozen=True)
class Scored:
    sentence: PausedSentence
    mid: dict[float, float]  # delay -> P(complete) in the mid-sentence pause
    end: dict[float, float]  # delay -> P(complete) after the sentence


def score(model: TurnModel, sentences: list[PausedSentence]) -> list[Scored]:
    scored = []
    for s in sentences:
        mid = {d: model.complete_probability(s.audio[:s.mid_start + int(d * RATE)])
               for d in DELAYS_S}
        end = {d: model.complete_probability(s.audio[:s.end_start + int(d * RATE)])
               for d in DELAYS_S}
        scored.append(Scored(s, mid, end))
    return scored


def share(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.0%} ({sum(flags)}/{len(flags)})"


def table(scored: list[Scored], delay: float) -> list[str]:
    """Rows: each endpointer, the mid-sentence pauses it ends, the ends it ends, when."""
    lines = ["| endpointing | mid-sentence pauses ended (wrong) | sentence ends ended "
             "(right) | answer after a sentence's end |", "|---|---|---|---|"]
    mids = [s.sentence.mid_pause_s for s in scored]
    ends = [s.sentence.end_pause_s for s in scored]
    for t in THRESHOLDS:
        lines.append(f"| model > {t}, asked {delay} s into the pause | "
                     f"{share([s.mid[delay] > t for s in scored])} | "
                     f"{share([s.end[delay] > t for s in scored])} | {delay} s |")
    for timeout in VAD_TIMEOUTS_S:
        lines.append(f"| VAD only, {timeout} s silence | {share([m >= timeout for m in mids])} "
                     f"| {share([e >= timeout for e in ends])} | {timeout} s |")
    fallback = max(VAD_TIMEOUTS_S)
    for t in THRESHOLDS:
        wrong = [s.mid[delay] > t or s.sentence.mid_pause_s >= fallback for s in scored]
        waits = [delay if s.end[delay] > t else fallback for s in scored]
        lines.append(f"| model > {t}, else VAD {fallback} s | {share(wrong)} | "
                     f"{share([True] * len(scored))} | {statistics.mean(waits):.2f} s mean |")
    return lines


def cpu_ms(model: TurnModel, audio: np.ndarray, runs: int = 30) -> tuple[float, float, float]:
    """Median CPU ms of one call: features, model run, whole call (after a warm-up)."""
    model.complete_probability(audio)
    features, whole = [], []
    for _ in range(runs):
        t0 = time.process_time()
        turn_features(audio)
        t1 = time.process_time()
        model.complete_probability(audio)
        t2 = time.process_time()
        features.append(t1 - t0)
        whole.append(t2 - t1)
    f, w = statistics.median(features) * 1000, statistics.median(whole) * 1000
    return f, w - f, w


def pipecat_features() -> object | None:
    """pipecat's `compute_whisper_log_mel_features`, from its file, pipecat not imported."""
    from captioncast.engine.turn_model import turn_model_path

    onnx = turn_model_path()
    if onnx is None:
        return None
    source = onnx.parent.parent / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", source)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


def pipecat_window(audio: np.ndarray) -> np.ndarray:
    """pipecat's `truncate_audio_to_last_n_seconds`: the last 8 s, zeros on the left."""
    audio = audio[-8 * RATE:]
    return np.pad(audio, (8 * RATE - len(audio), 0))


def feature_check(model: TurnModel, sentences: list[PausedSentence]) -> str:
    """Ours against pipecat's on every mid-sentence turn: features and probabilities."""
    theirs = pipecat_features()
    if theirs is None:
        return "pipecat's `_whisper_features.py` not found: features not compared"
    worst_feature = worst_p = 0.0
    for s in sentences:
        turn = s.audio[:s.mid_start + int(DELAYS_S[0] * RATE)]
        reference = theirs(pipecat_window(turn))  # type: ignore[operator]
        worst_feature = max(worst_feature, float(np.abs(turn_features(turn) - reference).max()))
        p = model.score_features(reference)
        worst_p = max(worst_p, abs(float(p) - model.complete_probability(turn)))
    return (f"our features against pipecat's `compute_whisper_log_mel_features` on the "
            f"{len(sentences)} mid-sentence turns: largest difference {worst_feature:.1e} "
            f"(features span about -1.5 to 1.5), largest probability difference "
            f"{worst_p:.1e}")


def misses(scored: list[Scored], delay: float, threshold: float) -> list[str]:
    lines = []
    for s in scored:
        if s.mid[delay] > threshold:
            lines.append(f"  - mid-sentence, ended: {s.sentence.id} \"{s.sentence.head} …\" "
                         f"P={s.mid[delay]:.2f}")
        if s.end[delay] <= threshold:
            lines.append(f"  - sentence end, kept open: {s.sentence.id} P={s.end[delay]:.2f}")
    return lines


def report(chosen: list[Scored], every: list[Scored], cost: tuple[float, float, float],
           check: str) -> str:
    lines = [SECTION, "", f"### One pause per sentence ({len(chosen)} sentences), asked "
             f"{DELAYS_S[0]} s into the pause", ""]
    lines += table(chosen, DELAYS_S[0])
    lines += ["", f"### Every function word in turn ({len(every)} paused sentences), asked "
              f"{DELAYS_S[0]} s into the pause", ""]
    lines += table(every, DELAYS_S[0])
    later = DELAYS_S[1]
    lines += ["", f"### Asked later, {later} s into the pause", "",
              "| model | mid-sentence ended, one per sentence | sentence ends ended | "
              "mid-sentence ended, every function word | sentence ends ended |",
              "|---|---|---|---|---|"]
    for t in THRESHOLDS:
        lines.append(f"| > {t} | " + " | ".join(
            share([(s.mid if part == "mid" else s.end)[later] > t for s in scored])
            for scored in (chosen, every) for part in ("mid", "end")) + " |")
    mid = [s.mid[DELAYS_S[0]] for s in every]
    end = [s.end[DELAYS_S[0]] for s in every]
    lines += ["", f"- P(complete) at {DELAYS_S[0]} s, every function word: mid-sentence median "
              f"{statistics.median(mid):.2f}, sentence ends median {statistics.median(end):.2f}",
              f"- CPU per call (one thread, median of 30): {cost[0]:.0f} ms features + "
              f"{cost[1]:.0f} ms model = {cost[2]:.0f} ms; the same for any turn length "
              f"(always 8 s of input)",
              f"- {check}",
              f"- Errors at 0.5, one pause per sentence, {DELAYS_S[0]} s:"]
    lines += misses(chosen, DELAYS_S[0], 0.5) or ["  - none"]
    return "\n".join(lines) + "\n"


def write(section: str) -> None:
    path = turn_set.BENCH / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="for the pause lengths")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    recordings = turn_set.transcribe_all(turn_set.whisper_model())
    model = load_turn_model()
    chosen = turn_set.build_set(recordings, args.seed)
    every = turn_set.build_set(recordings, args.seed, every_cut=True)
    scored_chosen, scored_every = score(model, chosen), score(model, every)
    longest = max(chosen, key=lambda s: len(s.audio))
    section = report(scored_chosen, scored_every, cpu_ms(model, longest.audio),
                     feature_check(model, every))
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
