"""The real server with the real model, run in this process on a thread (and an event loop)
of its own, with a gate in front of its decoder that the test closes and opens.

A test that needs decoding to take longer than some timeout holds the gate for as long as
it needs, instead of hoping that the model is slow enough on the machine it runs on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from captioncast.core.decoding import Decoder, DecodeRequest, DecodeResult
from tests.integration.conftest import free_port

DEADLINE_S = 120.0  # a gate left shut, a server that does not start: failures, not waits


class HeldDecoder:
    """The real decoder behind a gate: while it is shut, every decode waits before it starts."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self.waiting = 0  # decodes waiting at the gate now
        self.held = 0  # decodes that ever waited at the gate
        self.decoded = 0

    @property
    def name(self) -> str:
        return self.decoder.name

    @property
    def multilingual(self) -> bool:
        return self.decoder.multilingual

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def decode(self, request: DecodeRequest) -> DecodeResult:
        if not self._open.is_set():
            with self._lock:
                self.waiting += 1
                self.held += 1
            try:
                if not self._open.wait(DEADLINE_S):
                    raise RuntimeError("the test never opened the decoder's gate")
            finally:
                with self._lock:
                    self.waiting -= 1
        result = self.decoder.decode(request)
        self.decoded += 1
        return result


@dataclass
class InProcessServer:
    port: int
    decoder: HeldDecoder

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextmanager
def held_server(**options: Any) -> Iterator[InProcessServer]:
    """`captioncast serve` with these ServerOptions, the bundled model behind a gate."""
    from captioncast.engine.capacity import CapacityOptions
    from captioncast.transport.server import ServerOptions, load_decoder, run_server

    options.setdefault("capacity", CapacityOptions(max_load=0))  # as conftest.admission_off
    server_options = ServerOptions(port=free_port(), **options)
    model, plan = load_decoder(server_options)
    decoder = HeldDecoder(model)
    started = threading.Event()
    failure: list[BaseException] = []
    control: dict[str, Any] = {}

    async def serve() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        control.update(loop=asyncio.get_running_loop(), stop=stop)
        task = asyncio.create_task(run_server(server_options, decoder, plan.workers,
                                              started=ready, stop=stop))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not task.done():
            started.set()
        await task  # until stopped; an error before it started is raised here

    def run() -> None:
        try:
            asyncio.run(serve())  # signal handlers: only the main thread's, so none here
        except BaseException as exc:  # handed to the test below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="captioncast-server", daemon=True)
    thread.start()
    try:
        if not started.wait(DEADLINE_S) or failure:
            raise RuntimeError(f"the in-process server did not start: {failure}")
        yield InProcessServer(server_options.port, decoder)
    finally:
        decoder.release()
        if "loop" in control:
            control["loop"].call_soon_threadsafe(control["stop"].set)
        thread.join(DEADLINE_S)
        if failure:
            raise failure[0]
