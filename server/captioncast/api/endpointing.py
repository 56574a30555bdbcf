"""The pause that ends an utterance, as a compatible API's client asks for it.

Deepgram's `endpointing` and OpenAI Realtime's `silence_duration_ms` set the segmenter's
hangover for that stream alone, within bounds.
"""

from __future__ import annotations

import dataclasses

from captioncast.core.options import PolicyOptions

# The pause (end_hangover) a client may ask for. Under 200 ms an utterance ends at
# every comma and breath; over 3 s a caption waits longer than a viewer reads it.
MIN_ENDPOINTING_MS = 200
MAX_ENDPOINTING_MS = 3000


def endpointing_policy(policy: PolicyOptions, silence_ms: int | None) -> PolicyOptions:
    """`policy` with the pause that ends an utterance set to `silence_ms` (clamped)."""
    if silence_ms is None:
        return policy
    hangover = min(max(silence_ms, MIN_ENDPOINTING_MS), MAX_ENDPOINTING_MS) / 1000
    segmenter = policy.segmenter
    return dataclasses.replace(policy, segmenter=dataclasses.replace(
        segmenter, end_hangover_s=hangover,
        # The shorter pause of long utterances and the early final decode stay shorter
        # than the pause itself, as in the defaults.
        long_hangover_s=min(segmenter.long_hangover_s, hangover / 2),
        speculate_after_s=min(segmenter.speculate_after_s, hangover * 0.4)))
