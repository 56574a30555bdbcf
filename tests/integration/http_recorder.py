"""A small local HTTP/1.1 server for the output tests: records each request, answers by script."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # path and raw query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def raw_query(self) -> str:
        return urllib.parse.urlsplit(self.target).query

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.raw_query, keep_blank_values=True))


Answer = tuple[int, bytes]
Responder = Callable[[Recorded], Answer | Awaitable[Answer]]


def ok(_: Recorded) -> Answer:
    return 200, b""


class HttpRecorder:
    """`async with HttpRecorder(respond) as server:`; `stop()` and `start()` take it down and
    bring it back on the same port (an endpoint down, then up)."""

    def __init__(self, respond: Responder = ok) -> None:
        self.respond = respond
        self.requests: list[Recorded] = []
        self.accepted: list[Recorded] = []  # those answered 2xx
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HttpRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, path: str = "/", query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            self._server = None

    async def wait_accepted(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.accepted) >= n),
                                   timeout)
        return self.accepted

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = Recorded(method, target, headers, body)
                answer = self.respond(request)
                status, content = await answer if inspect.isawaitable(answer) else answer
                async with self._changed:
                    self.requests.append(request)
                    if 200 <= status < 300:
                        self.accepted.append(request)
                    self._changed.notify_all()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\n"
                             "Content-Type: text/plain\r\n\r\n".encode() + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
