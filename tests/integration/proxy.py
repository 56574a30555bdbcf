"""A TCP proxy between a client and the server whose connections a test can cut."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class CuttableProxy:
    """Forwards 127.0.0.1:port to the server; `cut()` kills every connection like a dead link.

    `refuse_for(seconds)` makes new connections fail for a while, as a network that is
    still down would; `refuse()` until `accept()`. `until_upstream(n)` waits until the
    client has sent n bytes through it (say, so many seconds of audio), so a test can cut
    at a point in the stream rather than after a guess at how long it takes to get there.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self.connections = 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._refuse_until = 0.0
        self.upstream_bytes = 0  # client to server, over every connection
        self._upstream_waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Abort both ends of every connection: no close frame, no FIN, just gone."""
        for client, server in self._pairs:
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()
        self.cuts += 1

    def refuse_for(self, seconds: float) -> None:
        self._refuse_until = asyncio.get_running_loop().time() + seconds

    def refuse(self) -> None:
        self._refuse_until = float("inf")

    def accept(self) -> None:
        self._refuse_until = 0.0

    async def until_upstream(self, count: int) -> None:
        """Until the client has sent `count` bytes through the proxy."""
        if self.upstream_bytes >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._upstream_waiters.append((count, waiter))
        await waiter

    def _sent_upstream(self, count: int) -> None:
        self.upstream_bytes += count
        for entry in list(self._upstream_waiters):
            if self.upstream_bytes >= entry[0]:
                self._upstream_waiters.remove(entry)
                if not entry[1].done():
                    entry[1].set_result(None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._pairs.append((writer, up_writer))
        for source, sink, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(source, sink, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    upstream: bool) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
                if upstream:
                    self._sent_upstream(len(data))
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()
