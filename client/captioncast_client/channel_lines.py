"""What `captioncast watch` says of channels: the list, and why a channel shows nothing yet.

Pure functions of `GET /v1/channels` (viewing.ChannelSummary) and the clock, so that each
sentence is tested as a user reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from captioncast_client.viewing import ChannelSummary

START_ONE = "captioncast mic --channel {name}, or captioncast stream --demo --channel {name}"


def ago(seconds: float) -> str:
    """`just now`, `40 s ago`, `5 min ago`, `3 h ago`, `2 days ago`."""
    if seconds < 5:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{int(seconds)} s ago"


def listing(channels: Sequence[ChannelSummary], now: float) -> list[str]:
    """One line a channel, live first: its name, live or ended, and when it last spoke."""
    width = max((len(c.name) for c in channels), default=0)
    lines = []
    for c in channels:
        state = "live" if c.live else "ended" if c.last_active is not None else "new"
        when = (f"last caption {ago(now - c.last_active)}" if c.last_active is not None
                else "nobody has spoken on it yet")
        lines.append(f"{c.name:<{width}}  {state:<5}  {when}")
    return lines


def no_channels(server: str) -> str:
    return (f"no channels on {server} yet: a channel starts when a speaker publishes to it "
            f"({START_ONE.format(name='NAME')})")


def no_speaker(name: str, channels: Sequence[ChannelSummary], since: int | None,
               follow: bool, now: float) -> str:
    """Why `watch NAME` shows nothing yet, and what it does next."""
    here = next((c for c in channels if c.name == name), None)
    live = [c.name for c in channels if c.live]
    others = f"live now: {', '.join(live)}" if live else "no channel is live"
    if here is None:
        return (f"no channel {name!r} yet: it starts when a speaker publishes to it "
                f"({START_ONE.format(name=name)}); waiting for one ({others}; Ctrl-C to stop)")
    if here.last_active is None:
        status = f"channel {name!r} has no speaker yet"
    else:
        when = ago(now - here.last_active)
        status = f"channel {name!r} has no speaker now (the last one spoke {when})"
    if since is not None and not follow:
        return f"{status}; replaying what the server holds of it"
    replay = "replaying what the server holds of it, then " if since is not None else ""
    return f"{status}; {replay}waiting for its next speaker ({others}; Ctrl-C to stop)"
