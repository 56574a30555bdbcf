"""What the compatible live APIs share: a LiveSession opened for them, endpointing, G.711.

`/v1/listen` (transport/deepgram.py) and `/v1/realtime` (transport/openai_realtime.py)
are translations: their handlers are `StreamHandler`s that render our events in
another wire format, on the same LiveSession, scheduler, limits, tokens and channels as
`/v1/stream`. Neither API can resume a stream, so a dropped connection finalizes its
session at once instead of holding it for `resume_window_s`.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

import numpy as np
from websockets.asyncio.server import ServerConnection

from captioncast.core.options import PolicyOptions
from captioncast.core.params import StreamParams
from captioncast.session.live_session import LiveSession
from captioncast.transport.security import peer_host, token_key
from captioncast.transport.server_context import ServerContext
from captioncast.transport.stream import StreamHandler
from captioncast.transport.websocket import peer_of

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


def open_session(connection: ServerConnection, ctx: ServerContext, params: StreamParams,
                 policy: PolicyOptions | None = None) -> LiveSession:
    """Admit and open a new live session as /v1/stream does, by its address and token
    (Overloaded when there is no room)."""
    address = peer_host(connection.remote_address)
    request = connection.request
    token = None if request is None else token_key(request.path, request.headers)
    ctx.admit(address, token)
    live = LiveSession(secrets.token_urlsafe(12), params, ctx, address, token, policy=policy)
    live.open()
    return live


async def serve(handler: StreamHandler) -> None:
    """Run `handler` on its session to the end; then end the session, since nobody can
    resume it: what it already heard is still finalized (channel viewers get it)."""
    live = handler.live
    try:
        await handler.run(live.attach(handler, None, peer_of(handler.connection)))
    finally:
        live.expire_now()


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype("<i2")


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype("<i2")


ULAW = _ulaw_table()
ALAW = _alaw_table()


def g711_decoder(table: np.ndarray) -> Callable[[bytes], bytes]:
    """Bytes of G.711 (one byte a sample) to pcm_s16le, for the PCM converter."""
    def decode(data: bytes) -> bytes:
        return table[np.frombuffer(data, dtype=np.uint8)].tobytes()
    return decode
