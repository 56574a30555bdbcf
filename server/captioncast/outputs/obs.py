"""OBS stream captions: finals as CEA-608-sized `SendStreamCaption` requests over obs-websocket v5.

`ObsCaptions` is a small standalone client (a client-side `watch --obs URL` uses it as well
as the server); `ObsOutput` is the channel output on it: it splits a final into captions of
two 32-character rows and sends them paced by their words' timings, as 608 roll-up shows them.
OBS answers `OutputNotRunning` while it is not streaming: the output waits and retries, and
reconnects (new Hello, Identify) when OBS restarts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

import captioncast.outputs.obs_protocol as proto
from captioncast.outputs.caption_chunks import LINE_CHARS_608, ROWS_608, Chunk, caption_chunks
from captioncast.outputs.errors import DeliveryError
from captioncast.outputs.output import Delivery, Output
from captioncast.outputs.speakers import broadcast_lead, lead_chunks
from captioncast.outputs.spec import SpecReader, redact

DEFAULT_URL = f"ws://127.0.0.1:{proto.DEFAULT_PORT}"
TIMEOUT_S = 5.0  # connect, identify and each request: OBS on the same machine answers in ms
# 608 carries about 60 characters a second, and a viewer needs a two-row caption on screen for
# a moment to read it: captions closer than this are held back.
MIN_CAPTION_GAP_S = 1.0
WAITING_CODES = frozenset({proto.RequestStatus.OUTPUT_NOT_RUNNING, proto.RequestStatus.NOT_READY})


class ObsAuthError(DeliveryError):
    """OBS refused the password (close code 4009) or wants one that was not given."""


class ObsCaptions:
    """An obs-websocket v5 connection that sends stream captions; reconnects on the next send.

    `await captions.send("text")` raises DeliveryError (`waiting=True` while OBS is not
    streaming); use it as `async with ObsCaptions(url, password) as captions:`.
    """

    def __init__(self, url: str = DEFAULT_URL, password: str | None = None, *,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self._password = password
        self._timeout = timeout_s
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.obs_version: str | None = None

    async def __aenter__(self) -> ObsCaptions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def _connect(self) -> ClientConnection:
        try:
            ws = await connect(self.url, subprotocols=[Subprotocol(proto.SUBPROTOCOL)],
                               open_timeout=self._timeout, max_size=2**20)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise DeliveryError(f"cannot reach OBS at {redact(self.url)}: {e}") from e
        try:
            op, hello = proto.decode(await asyncio.wait_for(ws.recv(), self._timeout))
            if op != proto.OpCode.HELLO:
                raise proto.ObsProtocolError(f"expected Hello, got op {op}")
            self.obs_version = hello.get("obsStudioVersion")
            try:
                await ws.send(proto.identify(hello, self._password))
            except proto.ObsProtocolError as e:
                raise ObsAuthError(str(e)) from e
            op, _ = proto.decode(await asyncio.wait_for(ws.recv(), self._timeout))
            if op != proto.OpCode.IDENTIFIED:
                raise proto.ObsProtocolError(f"expected Identified, got op {op}")
        except asyncio.CancelledError:
            await ws.close()
            raise
        except Exception as e:
            await ws.close()
            raise _connection_error(e) from e
        return ws

    async def request(self, request_type: str, data: dict[str, Any] | None = None,
                      ) -> dict[str, Any]:
        """One request; returns its `responseData`. Failed statuses raise DeliveryError."""
        async with self._lock:
            if self._ws is None:
                self._ws = await self._connect()
            ws = self._ws
            request_id = str(next(self._ids))
            try:
                await ws.send(proto.request(request_type, request_id, data))
                response = await asyncio.wait_for(self._response(ws, request_id), self._timeout)
            except (Exception, asyncio.CancelledError) as e:
                # Whatever broke (a cancel mid-request too), the next request starts on a
                # fresh connection: a late answer must not be read as the next one's.
                self._ws = None
                await ws.close()
                if isinstance(e, asyncio.CancelledError):
                    raise
                raise _connection_error(e) from e
        status = response.get("requestStatus") or {}
        if status.get("result"):
            return dict(response.get("responseData") or {})
        code = int(status.get("code", 0))
        comment = status.get("comment") or ""
        name = proto.RequestStatus(code).name if code in proto.RequestStatus._value2member_map_ \
            else str(code)
        raise DeliveryError(f"OBS {request_type}: {name} ({code}) {comment}".strip(),
                            waiting=code in WAITING_CODES)

    async def _response(self, ws: ClientConnection, request_id: str) -> dict[str, Any]:
        while True:
            op, d = proto.decode(await ws.recv())
            if op == proto.OpCode.REQUEST_RESPONSE and d.get("requestId") == request_id:
                return d

    async def send(self, text: str) -> None:
        """Send one caption (at most 2 rows of 32 characters shows unchanged in 608)."""
        await self.request("SendStreamCaption", {"captionText": text})


def _connection_error(e: Exception) -> Exception:
    """The DeliveryError (retried) that a failure of the connection means."""
    if isinstance(e, DeliveryError):
        return e
    if isinstance(e, ConnectionClosed):
        code = e.rcvd.code if e.rcvd is not None else None
        if code == proto.CloseCode.AUTHENTICATION_FAILED:
            return ObsAuthError("OBS refused the password (4009 AuthenticationFailed)")
        reason = e.rcvd.reason if e.rcvd is not None else ""
        return DeliveryError(f"OBS closed the connection ({code} {reason})".strip())
    if isinstance(e, TimeoutError):
        return DeliveryError("OBS did not answer in time")
    if isinstance(e, proto.ObsProtocolError):
        return DeliveryError(f"OBS protocol: {e}")
    if isinstance(e, OSError):
        return DeliveryError(f"OBS connection: {e}")
    return e  # a bug: the output counts it as internal and moves on after a few tries


@dataclass
class ObsPlan:
    chunks: list[Chunk]
    sent: int = 0  # captions already shown: a retry resumes after them
    started_at: float | None = None  # monotonic time the first caption went out


class ObsOutput(Output[ObsPlan]):
    kind = "obs"

    def __init__(self, url: str = DEFAULT_URL, password: str | None = None, *,
                 min_gap_s: float = MIN_CAPTION_GAP_S, timeout_s: float = TIMEOUT_S,
                 monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.captions = ObsCaptions(url, password, timeout_s=timeout_s)
        self.min_gap_s = min_gap_s
        self._monotonic = monotonic
        self._last_sent_at = float("-inf")

    @classmethod
    def from_spec(cls, spec: SpecReader) -> ObsOutput:
        url = spec.url(schemes=("ws", "wss"), default=DEFAULT_URL)
        password = spec.string("password")
        min_gap = spec.number("min_gap_s", MIN_CAPTION_GAP_S, low=0.0, high=10.0)
        return cls(url, password, min_gap_s=min_gap, **spec.common())

    def describe(self) -> dict[str, Any]:
        return {"url": redact(self.captions.url), "connected": self.captions.connected}

    def prepare(self, delivery: Delivery) -> ObsPlan | None:
        chunks = lead_chunks(caption_chunks(delivery.event), broadcast_lead(delivery.turn),
                             LINE_CHARS_608, ROWS_608)
        return ObsPlan(chunks) if chunks else None

    async def send(self, payload: ObsPlan) -> None:
        first = payload.chunks[0].start
        while payload.sent < len(payload.chunks):
            chunk = payload.chunks[payload.sent]
            now = self._monotonic()
            due = self._last_sent_at + self.min_gap_s
            if payload.started_at is not None:
                # Later captions of a long final follow its words as they were spoken.
                due = max(due, payload.started_at + (chunk.start - first))
            if due > now:
                await self._sleep(due - now)
            await self.captions.send(chunk.text)
            self._last_sent_at = self._monotonic()
            if payload.started_at is None:
                payload.started_at = self._last_sent_at
            payload.sent += 1

    async def aclose(self) -> None:
        await self.captions.close()
