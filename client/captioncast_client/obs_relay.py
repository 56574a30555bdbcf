"""Finals to OBS from the streamer's machine: `watch --obs URL` and `mic --obs URL`.

OBS usually runs next to the person streaming, not next to the server, so the client sends
the finals it gets to OBS itself, with the same `ObsOutput` as the server's `obs` output
(obs-websocket v5 `SendStreamCaption`, CEA-608-sized and paced; see docs/outputs.md).
"""

from __future__ import annotations

import contextlib
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable

from captioncast.protocol.events import Event, Final, Speakers

OnEvent = Callable[[Event], None]
CLOSE_TIMEOUT_S = 5.0  # at exit: captions still paced out to OBS get this long


def obs_url(text: str) -> str:
    """An argparse type: a ws:// or wss:// URL (OBS: Tools, WebSocket Server Settings)."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{text!r} is not a ws:// URL, e.g. ws://127.0.0.1:4455")
    return text


@contextlib.asynccontextmanager
async def obs_relay(url: str | None, password: str | None,
                    on_event: OnEvent) -> AsyncIterator[OnEvent]:
    """`on_event`, and with `url` also every final to OBS; says on stderr when OBS fails
    (wrong password, not running, not streaming) and when it takes captions again."""
    if url is None:
        yield on_event
        return
    from captioncast.outputs.obs import ObsOutput

    output = ObsOutput(url, password)
    reported: list[str | None] = [None]

    def report() -> None:
        error = output.stats.last_error
        recovered = output.stats.last_success_at is not None and (
            output.stats.last_error_at is None
            or output.stats.last_success_at > output.stats.last_error_at)
        now = None if recovered else error
        if now != reported[0]:
            message = f"OBS: {now}; retrying" if now else "OBS takes captions again"
            if now or reported[0]:
                print(f"captioncast: {message}", file=sys.stderr, flush=True)
            reported[0] = now

    def relay(event: Event) -> None:
        on_event(event)
        if isinstance(event, Final):
            output.offer(event.to_dict())  # returns at once: captions never wait on OBS
        elif isinstance(event, Speakers):
            output.speakers(event)  # `>> ALICE:` from the next change of speaker on
        report()

    async with output:
        yield relay
        await output.close(CLOSE_TIMEOUT_S)
    report()
    stats = output.stats
    print(f"captioncast: OBS: {stats.sent} finals sent"
          + (f", {stats.dropped} dropped" if stats.dropped else ""), file=sys.stderr)
