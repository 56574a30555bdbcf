"""The real server on this test's event loop with the scripted decoder: the protocol, fast.

`run_server(decoder=ScriptedDecoder())` is the whole server (routes, tokens, sessions,
channels, the scheduler) but for the model, so the wire contract of PROTOCOL.md can be
checked in well under a second a test, on any machine. What needs real speech recognised
is in tests/integration/.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from captioncast.engine.capacity import CapacityOptions
from captioncast.options import ServerOptions
from captioncast.transport.server import Listening, run_server
from tests.conftest import speech_path
from tests.support.fake_decoder import ScriptedDecoder

DEADLINE_S = 30.0  # a server that does not start or stop: a failure, never a wait


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedServer:
    """A started server: where it is, and the decoder behind it."""

    ready: Listening
    decoder: ScriptedDecoder

    @property
    def ws_url(self) -> str:
        return self.ready.ws_url

    @property
    def http_url(self) -> str:
        return self.ready.http_url

    async def get(self, path: str, **headers: str) -> HttpAnswer:
        """GET `path`; an error status is an answer, not an exception."""
        request = urllib.request.Request(self.http_url + path, headers=headers)

        def fetch() -> HttpAnswer:
            try:
                with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
                    return HttpAnswer(response.status, dict(response.headers), response.read())
            except urllib.error.HTTPError as error:
                return HttpAnswer(error.code, dict(error.headers), error.read())

        return await asyncio.to_thread(fetch)


@asynccontextmanager
async def scripted_server(decoder: ScriptedDecoder | None = None,
                          **options: Any) -> AsyncIterator[ScriptedServer]:
    """`captioncast serve` with these ServerOptions on a free port, the scripted decoder
    in place of the model; admission control is off (the scripted decoder costs nothing)."""
    options.setdefault("port", 0)
    options.setdefault("capacity", CapacityOptions(max_load=0))
    decoder = decoder or ScriptedDecoder()
    ready: list[Listening] = []
    started, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_server(ServerOptions(**options), decoder, started=started,
                                          stop=stop, on_ready=ready.append))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # the error that stopped it from starting
    assert ready, "the in-process server did not start"
    try:
        yield ScriptedServer(ready[0], decoder)
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


FRAME_BYTES = 3200  # 100 ms of 16 kHz s16le


def speech_frames(recording: str = "whisper_jfk") -> list[bytes]:
    """A recording of the shared speech (the VAD needs real speech) in 100 ms frames."""
    with wave.open(str(speech_path(recording))) as w:
        pcm = w.readframes(w.getnframes())
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


async def events_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Events up to and including the first of `kind`."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE_S):
        while not events or events[-1]["type"] != kind:
            events.append(json.loads(await ws.recv()))
    return events
