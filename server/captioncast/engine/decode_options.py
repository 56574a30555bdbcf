"""How the engine decodes: beam sizes, fallback temperatures, encoder windows (no model here)."""

from __future__ import annotations

from dataclasses import dataclass

from captioncast.core.decoding import DecodeThresholds


@dataclass(frozen=True)
class DecodeOptions(DecodeThresholds):
    """The thresholds are the policy's: the server passes `PolicyOptions`' on (one setting)."""

    final_beam_size: int = 5
    # When the scheduler is a round of finals behind (request.effort "busy", off unless
    # scheduler.busy_finals_per_worker is set): greedy, the one beam that saves time here.
    busy_final_beam_size: int = 1
    partial_beam_size: int = 1  # greedy: partials are replaced within half a second anyway
    # Fallback temperatures for finals that look like loops or gibberish; partials never retry.
    final_temperatures: tuple[float, ...] = (0.0, 0.4, 0.8)
    best_of: int = 3
    max_new_tokens: int = 200  # an utterance of at most ~20 s never needs more
    # Encoder windows, smallest first; an utterance takes the first one it fits in. Attention
    # makes the encoder superlinear: on 2 CPU cores tiny.en encodes 15 s in 0.12 s and 30 s in
    # 0.58 s. Windows under 15 s cost accuracy, 15 s does not (bench/encoder_window.py).
    encoder_windows_s: tuple[float, ...] = (15.0, 30.0)
    # glibc's malloc_trim at most this often, after a decode (engine/native_memory.py); 0: off
    malloc_trim_s: float = 10.0
