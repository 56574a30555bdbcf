"""The one line a session's end leaves in the log: what it cost and how its captions read."""

from __future__ import annotations

import logging
import time

from captioncast.core.params import StreamParams
from captioncast.core.policy import CaptionSession
from captioncast.session.multichannel import DualCore
from captioncast.telemetry.measures import StreamLatency

log = logging.getLogger("captioncast.stream")  # where the session_start line is too


def log_session_start(session_id: str, peer: str, params: StreamParams, language: str,
                      diarize: bool) -> None:
    log.info(
        "event=session_start session=%s peer=%s sample_rate=%d encoding=%s "
        "channels=%d language=%s task=%s channel=%s diarize=%s", session_id, peer,
        params.sample_rate, params.encoding, params.channels, language, params.task,
        params.channel or "-", "multichannel" if params.multichannel else diarize,
    )


def log_session_end(session_id: str, started: float, core: CaptionSession | DualCore,
                    latency: StreamLatency, connections: int, reason: str,
                    speaker_cuts: int | None) -> None:
    finals = latency.finals
    quality = core.quality()
    log.info(
        "event=session_end session=%s duration_s=%.1f audio_s=%.1f utterances=%d "
        "partials=%d final_latency_p50_s=%.3f final_latency_p95_s=%.3f connections=%d "
        "loops_caught=%d empty_finals=%d flicker_per_min=%.1f words_per_min=%.1f "
        "gaps_filled=%d speaker_cuts=%s reason=%s",
        session_id, time.monotonic() - started, core.duration,
        core.finals_sent, core.partials_sent, finals.p50() or 0.0,
        finals.p95() or 0.0, connections, core.loops_caught,
        quality.empty_finals, quality.flicker_per_min or 0.0, quality.words_per_min or 0.0,
        quality.gaps_filled, "-" if speaker_cuts is None else speaker_cuts, reason,
    )
