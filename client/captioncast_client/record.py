"""What one stream received, recorded in the wire's JSON shape with receipt times.

Tests and benchmarks read these records (`events`, `finals`, `sent_at` for latency);
programs that act on captions use the typed events of `CaptionStream` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]  # an event's to_dict(), plus "received_at" (time.monotonic())


@dataclass
class StreamResult:
    events: list[Record] = field(default_factory=list)
    sent_at: list[tuple[float, float]] = field(default_factory=list)  # (audio s, wall clock)
    resumes: list[dict[str, Any]] = field(default_factory=list)  # one per reconnect

    @property
    def finals(self) -> list[Record]:
        return [e for e in self.events if e["type"] == "final"]

    @property
    def errors(self) -> list[Record]:
        return [e for e in self.events if e["type"] == "error"]

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"])
