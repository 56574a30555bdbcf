"""What `GET /v1/channels` says of each channel: live, ended or new, and in what order.

A channel is listed once a speaker has published to it (`Channel.started`, here or on
another node) or has outputs; viewers waiting on a name never make it a channel.
"""

from __future__ import annotations

from typing import Any


def channel_state(live: bool, last_active: float | None) -> str:
    """`live` (a speaker now, here or on another node), `ended` (one spoke, none speaks
    now), or `new` (outputs set up for it, nobody has spoken yet)."""
    return "live" if live else "ended" if last_active is not None else "new"


def live_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live channels first, each part by name (pages are ranges of names: `after`)."""
    return sorted(entries, key=lambda e: (e["state"] != "live", e["channel"]))
