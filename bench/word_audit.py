"""Word audit: every word live finals lose, invent or swap that an offline decode keeps.

For each recording the caption policy (`CaptionSession`, the server's own core) runs with
the real model in this process, every decode done as soon as it is asked for, so the
finals are the ones a live stream gets, without the scheduler's timing. Each final is then
checked against

- (a) an offline decode (faster-whisper `transcribe()`, beam 5, no prompt, no context) of
  exactly the audio the final was decoded from, and
- (b) the offline decode of the whole file (beam 5, word timings), aligned to the
  reference, which gives every reference word a time.

It lists every run of 2+ reference words the finals lost that (b) kept, every run of
words the finals inserted that (b) did not, and every substitution by a word of an
earlier final, and names the cause it can see: the VAD (a word outside every utterance,
or cut at its onset or offset), a split inside a word (a forced cut), the no-speech
guard, the VAD word filter, the loop guard, the prompt, the utterance's audio alone
(the per-utterance decode (a) loses the words too), the decode itself ((a) keeps them).

Recordings: every English recording of `../shared/speech/manifest.tsv` (clips), the
English recordings of `approx.tsv` (insertions and losses against (b) only, their
transcripts being approximate) and continuous speech built by concatenating consecutive
manifest recordings of one source.

    python bench/word_audit.py [--sets clips,continuous,approx] [--ids a,b] [--limit N]
        [--set FIELD=VALUE ...] [--no-partials] [--out bench/results/audit_NAME.tsv]

Prints per-source WER (live finals, offline whole file) and the findings by cause;
`--out` writes the findings one per line.
"""

from __future__ import annotations

import argparse
import ast
import collections
import csv
import dataclasses
import json
import re
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from scoring import WordNormalizer
from stream_bench import aligned, nearest_rank

import captioncast.core.finals as finals_module
from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import Action, Cancel, CaptionSession
from captioncast.engine.decode_options import DecodeOptions
from captioncast.engine.models import plan_device, resolve_model
from captioncast.engine.whisper import WhisperDecoder
from captioncast.protocol.events import Final, Partial

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"
CACHE = Path.home() / ".cache" / "captioncast" / "audit_offline.json"
RATE = 16000
CHUNK = 1600  # 100 ms, as stream_bench sends
PAD_S = 1.0  # trailing silence: end of speech, not eos, ends the last utterance
EDGE_S = 0.35  # a lost word this close to an utterance's edge was cut by the VAD there
CONCAT_MAX_S = 90.0


@dataclass
class Recording:
    id: str
    source: str
    kind: str  # clip | continuous | approx
    audio: np.ndarray = field(repr=False)
    transcript: str  # "" for approx: (b) is the reference


@dataclass
class Utterance:
    """One final and what made it."""

    index: int
    audio_start: float  # the final's decode audio, seconds on the stream's clock
    audio_end: float
    final: Final | None = None
    audio: np.ndarray | None = field(default=None, repr=False)
    prompt: str = ""
    raw: str = ""  # the decoder's text, before the judge's filters
    no_speech: float = 0.0
    logprob: float = 0.0
    voiced_s: float = 0.0
    forced_cut: bool = False  # ended by a cut without a pause: the next starts here
    at_eos: bool = False
    vad_dropped: list[str] = field(default_factory=list)
    loop_cut: list[str] = field(default_factory=list)
    alone: str = ""  # (a): this audio decoded offline, no prompt
    gaps: list[str] = field(default_factory=list)  # what decodes of skipped voice heard


@dataclass
class Token:
    word: str  # normalized
    start: float
    end: float
    utterance: int = -1


@dataclass
class Finding:
    recording: str
    source: str
    kind: str  # lost | inserted | carried
    cause: str
    words: str
    start: float
    end: float
    detail: str


# -- recordings ----------------------------------------------------------------------------


def load_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def source_of(recording_id: str) -> str:
    if recording_id.startswith("long_"):
        return "mfa_spontaneous"
    if recording_id.startswith("mfa_multilingual"):
        return "mfa_accented"
    head = recording_id.split("_")[0]
    return {"cv": "commonvoice", "whisper": "jfk", "deepspeech": "librivox",
            "speechrecognition": "misc", "mfa": "mfa_spontaneous"}.get(head, head)


def read_rows(name: str) -> list[dict[str, str]]:
    with (SPEECH / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def recordings(sets: list[str]) -> list[Recording]:
    rows = [r for r in read_rows("manifest.tsv") if r["language"] == "en"]
    out: list[Recording] = []
    if "clips" in sets:
        out += [Recording(r["id"], source_of(r["id"]), "clip", load_wav(SPEECH / r["wav"]),
                          r["transcript"]) for r in rows]
    if "continuous" in sets:
        out += continuous(rows)
    if "approx" in sets:
        out += [Recording(r["id"], "approx", "approx", load_wav(SPEECH / r["wav"]), "")
                for r in read_rows("approx.tsv") if r["language"] == "en"]
    return out


def continuous(rows: list[dict[str, str]]) -> list[Recording]:
    """Consecutive manifest recordings of one source, end to end: speech with few pauses."""
    out: list[Recording] = []
    group: list[dict[str, str]] = []

    def close() -> None:
        if len(group) >= 2:
            audio = np.concatenate([load_wav(SPEECH / r["wav"]) for r in group])
            source = source_of(group[0]["id"])
            out.append(Recording(f"cat_{source}_{len(out)}", source, "continuous", audio,
                                 " ".join(r["transcript"] for r in group)))
        group.clear()

    for r in rows:
        if r["id"].startswith("long_"):
            out.append(Recording(r["id"], source_of(r["id"]), "continuous",
                                 load_wav(SPEECH / r["wav"]), r["transcript"]))
            continue
        duration = sum(float(g["duration_s"]) for g in group)
        if group and (source_of(r["id"]) != source_of(group[0]["id"])
                      or duration + float(r["duration_s"]) > CONCAT_MAX_S):
            close()
        group.append(r)
    close()
    return out


# -- the live policy, instrumented ---------------------------------------------------------


class Probe:
    """What the judge's filters removed, per utterance (the bench wraps them)."""

    def __init__(self) -> None:
        self.current = -1
        self.vad_dropped: dict[int, list[str]] = collections.defaultdict(list)
        self.loop_cut: dict[int, list[str]] = collections.defaultdict(list)

    def install(self) -> None:
        original_voiced = finals_module.voiced_words
        original_guard = finals_module.FinalJudge._guard_loops
        probe = self

        def voiced_words(surface: list[str], *args: Any, **kwargs: Any) -> Any:
            kept, words = original_voiced(surface, *args, **kwargs)
            probe.vad_dropped[probe.current] += _missing(surface, kept)
            return kept, words

        def guard(judge: Any, pending: Any, text: str, words: Any) -> Any:
            probe.current = pending.index
            out_text, out_words = original_guard(judge, pending, text, words)
            probe.loop_cut[pending.index] += _missing(text.split(), out_text.split())
            return out_text, out_words

        original_final = finals_module.FinalJudge.final

        def final(judge: Any, pending: Any, seq: int) -> Any:
            probe.current = pending.index
            return original_final(judge, pending, seq)

        finals_module.voiced_words = voiced_words  # type: ignore[assignment]
        finals_module.FinalJudge._guard_loops = guard  # type: ignore[method-assign]
        finals_module.FinalJudge.final = final  # type: ignore[method-assign]


def _missing(before: list[str], after: list[str]) -> list[str]:
    left = collections.Counter(before)
    left.subtract(after)
    return [w for w, n in left.items() for _ in range(max(0, n))]


def run_live(decoder: WhisperDecoder, audio: np.ndarray, options: PolicyOptions,
             interim: bool, probe: Probe, finalize_after: float = 0.0
             ) -> tuple[list[Utterance], list[tuple[float, Partial]]]:
    """The policy over `audio` in 100 ms chunks; with `finalize_after`, a client's flush
    (Deepgram's `Finalize`, as Pipecat's VAD sends it) that long into each pause."""
    session = CaptionSession(SessionConfig("audit", decoder.name, "en", interim=interim), options)
    probe.vad_dropped.clear()
    probe.loop_cut.clear()
    pending: list[DecodeRequest] = []
    cancelled: set[int] = set()
    requests: dict[int, DecodeRequest] = {}
    results: dict[int, DecodeResult] = {}
    utterances: dict[int, Utterance] = {}
    partials: list[tuple[float, Partial]] = []
    eos = False
    gap_ids: set[int] = set()

    def note_pending() -> None:
        for p in session._finals.values():
            if getattr(p, "gap_request", 0):  # (the code before coverage has none)
                gap_ids.add(p.gap_request)
            if p.index not in utterances:
                utterances[p.index] = Utterance(p.index, p.start / RATE, p.audio_end / RATE,
                                                forced_cut=p.audio_end == p.speech_end
                                                and not eos, at_eos=eos)

    def handle(actions: list[Action]) -> None:
        note_pending()
        for a in actions:
            if isinstance(a, DecodeRequest):
                pending.append(a)
                requests[a.request_id] = a
            elif isinstance(a, Cancel):
                cancelled.add(a.request_id)
            elif isinstance(a, Final):
                u = utterances.setdefault(a.utterance, Utterance(a.utterance, a.start, a.end))
                u.final = a
                used = [r for r in requests.values() if r.kind == "final"
                        and r.utterance == a.utterance and r.request_id not in cancelled
                        and r.request_id in results]
                if used:
                    # the utterance's decode, not a second one of a gap it skipped
                    request = max(used, key=lambda r: len(r.audio))
                    u.gaps = [results[r.request_id].text for r in used
                              if r.request_id in gap_ids]
                    result = results[request.request_id]
                    u.audio, u.prompt, u.raw = request.audio, request.prompt, result.text
                    u.no_speech, u.logprob = result.no_speech_prob, result.avg_logprob
                    u.audio_end = u.audio_start + len(request.audio) / RATE
                u.vad_dropped = list(probe.vad_dropped.get(a.utterance, []))
                u.loop_cut = list(probe.loop_cut.get(a.utterance, []))
            elif isinstance(a, Partial):
                partials.append((session.position / RATE, a))

    def drain() -> None:
        while pending:
            request = pending.pop(0)
            if request.request_id in cancelled:
                continue
            result = decoder.decode(request)
            results[request.request_id] = result
            handle(session.on_result(request.request_id, result))

    handle(session.start())
    padded = np.concatenate([audio, np.zeros(int(PAD_S * RATE), np.float32)])
    step = CHUNK // 5 if finalize_after else CHUNK  # a voice agent's 20 ms frames
    for i in range(0, len(padded), step):
        handle(session.feed(padded[i: i + step]))
        drain()
        seg = session.segmenter
        if finalize_after and seg.in_speech and \
                seg.position - seg._last_voiced_end >= finalize_after * RATE:
            handle(session.flush())
            drain()
    eos = True
    handle(session.eos())
    drain()
    return [utterances[k] for k in sorted(utterances) if utterances[k].final is not None], partials


# -- offline -------------------------------------------------------------------------------


class Offline:
    """faster-whisper's own transcribe, beam 5: whole files (cached) and single utterances."""

    def __init__(self) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(resolve_model("tiny.en").path, device="cpu",
                                  compute_type="int8")
        self.cache: dict[str, Any] = json.loads(CACHE.read_text()) if CACHE.exists() else {}

    def whole(self, rec: Recording) -> list[tuple[str, float, float]]:
        key = f"{rec.id}:{len(rec.audio)}"
        if key not in self.cache:
            segments, _ = self.model.transcribe(rec.audio, beam_size=5, language="en",
                                                word_timestamps=True)
            self.cache[key] = [(w.word, w.start, w.end) for s in segments for w in s.words or []]
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            CACHE.write_text(json.dumps(self.cache))
        return [tuple(w) for w in self.cache[key]]  # type: ignore[misc]

    def alone(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(audio, beam_size=5, language="en",
                                            condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments)


# -- alignment -----------------------------------------------------------------------------


def tokens_of(words: list[tuple[str, float, float]], normalize: WordNormalizer,
              utterance: int = -1) -> list[Token]:
    """Timed words to normalized tokens; a word the normalizer splits shares its time."""
    out = []
    for word, start, end in words:
        for piece in normalize(word).split():
            out.append(Token(piece, start, end, utterance))
    return out


def ref_status(ref: list[str], hyp: list[str]) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Per reference word: equal | substitute | delete; and the insertions as
    (reference index they come before, first hyp index, end hyp index)."""
    status = ["delete"] * len(ref)
    inserts: list[tuple[int, int, int]] = []
    if not ref or not hyp:
        return status, [(0, 0, len(hyp))] if hyp else []
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    for chunk in out.alignments[0]:
        if chunk.type == "insert":
            inserts.append((chunk.ref_start_idx, chunk.hyp_start_idx, chunk.hyp_end_idx))
            continue
        for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
            status[i] = chunk.type
    return status, inserts


def hyp_map(ref: list[str], hyp: list[str]) -> dict[int, int]:
    """Reference index -> the hyp index aligned to it (equal or substitute)."""
    mapping: dict[int, int] = {}
    if not ref or not hyp:
        return mapping
    for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
        if chunk.type in ("equal", "substitute"):
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                mapping[chunk.ref_start_idx + k] = chunk.hyp_start_idx + k
    return mapping


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


# -- causes --------------------------------------------------------------------------------


def _contains(tokens: list[str], words: list[str]) -> bool:
    have = collections.Counter(tokens)
    return all(have[w] >= n for w, n in collections.Counter(words).items())


def lost_cause(words: list[str], t0: float, t1: float, utts: list[Utterance],
               normalize: WordNormalizer) -> tuple[str, str]:
    covering = [u for u in utts if u.audio_start < t1 and u.audio_end > t0]
    if not covering:
        before = [u for u in utts if u.audio_end <= t0]
        after = [u for u in utts if u.audio_start >= t1]
        gap = (f"between utterance {before[-1].index if before else '-'} (ends "
               f"{before[-1].audio_end if before else 0:.2f}) and "
               f"{after[0].index if after else '-'} (starts "
               f"{after[0].audio_start if after else 0:.2f})")
        if after and after[0].audio_start - t1 < EDGE_S:
            return "vad-onset", gap
        if before and t0 - before[-1].audio_end < EDGE_S:
            return "vad-offset", gap
        return "vad-missed", gap
    if len(covering) > 1 and any(u.forced_cut for u in covering[:-1]):
        return "split-in-word", f"cut at {covering[0].audio_end:.2f}"
    u = covering[0]
    detail = (f"utt {u.index} [{u.audio_start:.2f}-{u.audio_end:.2f}] final={_final_text(u)!r} "
              f"raw={u.raw!r} gaps={u.gaps!r} alone={u.alone!r} prompt={u.prompt[-60:]!r}")
    if t0 < u.audio_start + 0.05 or t1 > u.audio_end - 0.05:
        edge = "vad-onset" if t0 < u.audio_start + 0.05 else "vad-offset"
        if u.forced_cut and t1 > u.audio_end - 0.05:
            edge = "split-in-word"
        return edge, detail
    raw = normalize(u.raw).split()
    final = normalize(_final_text(u)).split()
    if _contains(raw, words) and not _contains(final, words):
        if not final:
            return "no-speech-guard", detail
        if _contains(normalize(" ".join(u.vad_dropped)).split(), words[:1]):
            return "vad-word-filter", detail
        if _contains(normalize(" ".join(u.loop_cut)).split(), words[:1]):
            return "loop-guard", detail
        return "judge", detail
    if u.at_eos:
        return "eos-tail", detail
    alone = normalize(u.alone).split()
    if _contains(alone, words):
        return ("prompt" if u.prompt else "decode"), detail
    return "utterance-audio-alone", detail


def _final_text(u: Utterance) -> str:
    return u.final.text if u.final is not None else ""


def insertion_cause(u: Utterance | None, normalize: WordNormalizer) -> tuple[str, str]:
    if u is None:
        return "unplaced", ""
    detail = (f"utt {u.index} [{u.audio_start:.2f}-{u.audio_end:.2f}] final={_final_text(u)!r} "
              f"no_speech={u.no_speech:.2f} logprob={u.logprob:.2f} alone={u.alone!r}")
    if u.audio_end - u.audio_start < 1.2:
        return "short-utterance", detail
    if u.at_eos:
        return "eos-tail", detail
    return ("prompt" if u.prompt else "decode"), detail


# -- the audit -----------------------------------------------------------------------------


def audit(rec: Recording, utts: list[Utterance], offline_words: list[tuple[str, float, float]],
          normalize: WordNormalizer) -> list[Finding]:
    off = tokens_of(offline_words, normalize)
    live: list[Token] = []
    for u in utts:
        assert u.final is not None
        if u.final.words:
            live += tokens_of([(w.word, w.start, w.end) for w in u.final.words], normalize,
                              u.index)
        else:
            live += [Token(t, u.final.start, u.final.end, u.index)
                     for t in normalize(u.final.text).split()]
    ref = normalize(rec.transcript).split() if rec.transcript else [t.word for t in off]
    off_words = [t.word for t in off]
    live_words = [t.word for t in live]
    off_status, off_inserts = ref_status(ref, off_words)
    live_status, live_inserts = ref_status(ref, live_words)
    off_map = hyp_map(ref, off_words)
    times = _ref_times(ref, off, off_map)
    findings: list[Finding] = []
    lost = [live_status[i] == "delete" and off_status[i] == "equal" for i in range(len(ref))]
    for a, b in runs(lost):
        if b - a < 2:
            continue
        words = ref[a:b]
        t0, t1 = times[a][0], times[b - 1][1]
        cause, detail = lost_cause(words, t0, t1, utts, normalize)
        findings.append(Finding(rec.id, rec.source, "lost", cause, " ".join(words), t0, t1,
                                detail))
    off_inserted_at = {r for r, _, _ in off_inserts}
    by_index = {u.index: u for u in utts}
    for r, h0, h1 in live_inserts:
        if r in off_inserted_at:
            continue
        words = live_words[h0:h1]
        u = by_index.get(live[h0].utterance)
        cause, detail = insertion_cause(u, normalize)
        findings.append(Finding(rec.id, rec.source, "inserted", cause, " ".join(words),
                                live[h0].start, live[h1 - 1].end, detail))
    live_map = hyp_map(ref, live_words)
    for i, status in enumerate(live_status):
        if status != "substitute" or off_status[i] != "equal" or i not in live_map:
            continue
        token = live[live_map[i]]
        earlier = [w for u in utts if u.index < token.utterance and u.final is not None
                   for w in normalize(u.final.text).split()]
        nearby = ref[max(0, i - 8): i + 8]
        if token.word in earlier and token.word not in nearby and len(token.word) > 3:
            u = by_index[token.utterance]
            cause = "prompt" if token.word not in normalize(u.alone).split() else "decode"
            findings.append(Finding(rec.id, rec.source, "carried", cause,
                                    f"{ref[i]} -> {token.word}", token.start, token.end,
                                    f"final={_final_text(u)!r} alone={u.alone!r}"))
    return findings


def _ref_times(ref: list[str], off: list[Token], mapping: dict[int, int]
               ) -> list[tuple[float, float]]:
    known = {i: (off[h].start, off[h].end) for i, h in mapping.items()}
    times: list[tuple[float, float]] = []
    last = (0.0, 0.0)
    for i in range(len(ref)):
        if i in known:
            last = known[i]
        else:
            nxt = next((known[j] for j in range(i + 1, len(ref)) if j in known), last)
            last = (last[1], nxt[0]) if nxt[0] >= last[1] else last
        times.append(last)
    return times


# -- flicker -------------------------------------------------------------------------------


def flicker(utts: list[Utterance], partials: list[tuple[float, Partial]]
            ) -> dict[str, list[float] | int]:
    """Words shown and then changed or removed, and each final word's latency by identity
    (the first partial whose aligned word equals it) and by position."""
    from captioncast.core.text import norm_word

    changed = 0
    by_identity: list[float] = []
    by_position: list[float] = []
    finals = {u.index: u.final for u in utts if u.final is not None}
    by_utt: dict[int, list[tuple[float, Partial]]] = collections.defaultdict(list)
    for at, p in partials:
        by_utt[p.utterance].append((at, p))
    for index, final in finals.items():
        shown = by_utt.get(index, [])
        sequence = [[norm_word(w) for w in p.text.split()] for _, p in shown]
        final_words = [norm_word(w.word) for w in final.words]
        # a later text (partial or final) changing or dropping words already on screen
        for before, after in zip(sequence, [*sequence[1:], final_words]):
            changed += _changed(before, after)
        # the final comes out at the last partial's position or later: the bench has no
        # wall clock, so its latency is its audio position, as policy_sim's
        final_at = final.end + 0.0
        for k, word in enumerate(final_words):
            end = final.words[k].end
            first_id = next((at for (at, _), words in zip(shown, sequence)
                             if aligned(words, final_words).get(k) == word), None)
            first_pos = next((at for (at, _), words in zip(shown, sequence)
                              if k < len(words) and words[k] == word), None)
            by_identity.append((first_id if first_id is not None else final_at) - end)
            by_position.append((first_pos if first_pos is not None else final_at) - end)
    return {"changed": changed, "identity": by_identity, "position": by_position}


def _changed(before: list[str], after: list[str]) -> int:
    """Words of `before` that `after` does not keep in place (an extension keeps them all)."""
    import difflib

    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    # the last word of a partial may be cut mid-word: its growth is no change
    return max(0, len(before) - kept - (1 if before and after[len(before) - 1:len(before)]
                                         and after[len(before) - 1].startswith(before[-1])
                                         else 0))


# -- main ----------------------------------------------------------------------------------


def parse_settings(items: list[str]) -> PolicyOptions:
    policy: dict[str, Any] = {}
    segmenter: dict[str, Any] = {}
    seg_fields = {f.name for f in dataclasses.fields(PolicyOptions().segmenter)}
    for item in items:
        key, value = item.split("=", 1)
        (segmenter if key in seg_fields else policy)[key] = ast.literal_eval(value)
    return PolicyOptions(**policy, segmenter=dataclasses.replace(PolicyOptions().segmenter,
                                                                  **segmenter))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="clips,continuous,approx")
    parser.add_argument("--ids", default="")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="PolicyOptions field=value")
    parser.add_argument("--no-partials", action="store_true",
                        help="finals only (faster; no flicker figures)")
    parser.add_argument("--finalize-after", type=float, default=0.0,
                        help="flush this many seconds into each pause, as a voice agent does")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    options = parse_settings(args.set)
    recs = recordings(args.sets.split(","))
    if args.ids:
        recs = [r for r in recs if r.id in args.ids.split(",")]
    if args.limit:
        recs = recs[: args.limit]
    normalize = WordNormalizer()
    decoder = WhisperDecoder(resolve_model("tiny.en"), plan_device("cpu", workers=1),
                             options=DecodeOptions())
    offline = Offline()
    probe = Probe()
    probe.install()
    findings: list[Finding] = []
    scores: dict[tuple[str, str], list[list[str]]] = collections.defaultdict(
        lambda: [[], [], []])
    shown_changed = 0
    gaps_filled = 0
    speech_s = 0.0
    identity: list[float] = []
    position: list[float] = []
    started = time.monotonic()
    for n, rec in enumerate(recs, 1):
        utts, partials = run_live(decoder, rec.audio, options, not args.no_partials, probe,
                                  args.finalize_after)
        gaps_filled += sum(len(u.gaps) for u in utts)
        for u in utts:
            if u.audio is not None:
                u.alone = offline.alone(u.audio)
        words = offline.whole(rec)
        found = audit(rec, utts, words, normalize)
        findings += found
        live_text = " ".join(u.final.text for u in utts if u.final is not None)
        off_text = " ".join(w for w, _, _ in words)
        if rec.transcript:
            for key in ((rec.kind, rec.source), (rec.kind, "all")):
                scores[key][0].append(normalize(rec.transcript))
                scores[key][1].append(normalize(live_text))
                scores[key][2].append(normalize(off_text))
        if not args.no_partials:
            f = flicker(utts, partials)
            shown_changed += int(f["changed"])  # type: ignore[arg-type]
            identity += f["identity"]  # type: ignore[arg-type]
            position += f["position"]  # type: ignore[arg-type]
            speech_s += len(rec.audio) / RATE
        print(f"[{n}/{len(recs)}] {rec.id}: {len(utts)} finals, "
              f"{sum(1 for f in found if f.kind == 'lost')} lost runs, "
              f"{sum(1 for f in found if f.kind == 'inserted')} insertions "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        if args.verbose:
            print(f"  live: {live_text}\n  off:  {off_text}", file=sys.stderr)
    print(f"settings: {args.set or 'defaults'}; sets {args.sets}; {len(recs)} recordings; "
          f"{gaps_filled} finals had skipped voice decoded again")
    print("\n| set | source | recordings | ref words | WER live | WER offline | ratio |")
    print("|---|---|---|---|---|---|---|")
    for (kind, source), (refs, hyps, offs) in sorted(scores.items()):
        live_wer = jiwer.wer(refs, hyps)
        off_wer = jiwer.wer(refs, offs)
        ratio = live_wer / off_wer if off_wer else float("inf") if live_wer else 1.0
        print(f"| {kind} | {source} | {len(refs)} | {sum(len(r.split()) for r in refs)} | "
              f"{live_wer:.3f} | {off_wer:.3f} | {ratio:.2f} |")
    counts = collections.Counter((f.kind, f.cause) for f in findings)
    print("\n| finding | cause | count | words |")
    print("|---|---|---|---|")
    for (kind, cause), count in sorted(counts.items()):
        n_words = sum(len(f.words.split()) for f in findings if (f.kind, f.cause) == (kind, cause))
        print(f"| {kind} | {cause} | {count} | {n_words} |")
    if not args.no_partials and speech_s and identity:
        print(f"\nflicker: {shown_changed} shown words changed or removed, "
              f"{shown_changed / (speech_s / 60):.1f} per minute of audio; word latency "
              f"(audio clock) by identity p50 {nearest_rank(identity, 0.5):.2f} p95 "
              f"{nearest_rank(identity, 0.95):.2f}, by position p50 "
              f"{nearest_rank(position, 0.5):.2f} p95 "
              f"{nearest_rank(position, 0.95):.2f}")
    for f in findings:
        print(f"  {f.kind:8} {f.cause:22} {f.recording} {f.start:7.2f}-{f.end:7.2f} "
              f"{f.words!r}" + (f"\n           {f.detail}" if args.verbose else ""))
    if args.out:
        with args.out.open("w", newline="") as out:
            writer = csv.writer(out, delimiter="\t")
            writer.writerow([f.name for f in dataclasses.fields(Finding)])
            for f in findings:
                writer.writerow([re.sub(r"\s+", " ", str(v)) if isinstance(v, str)
                                 else f"{v:.2f}" if isinstance(v, float) else v
                                 for v in dataclasses.astuple(f)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
