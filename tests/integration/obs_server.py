"""An obs-websocket v5 server for the tests, written from the published protocol, not our client.

Hello (with an authentication challenge when it has a password), Identify checked against
base64(sha256(base64(sha256(password + salt)) + challenge)), Identified, then Requests:
SendStreamCaption answers OutputNotRunning (501) unless `streaming`, GetStreamStatus,
anything else UnknownRequestType (204). A wrong password closes with 4009.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol


@dataclass
class Caption:
    text: str
    at: float  # monotonic time received


@dataclass
class FakeObs:
    password: str | None = "secret-password"
    streaming: bool = True
    port: int = 0
    captions: list[Caption] = field(default_factory=list)
    identified: int = 0  # successful Identify count: one per (re)connection
    auth_failures: int = 0
    _server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", self.port,
                                   subprotocols=[Subprotocol("obswebsocket.json")])
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """OBS quits: every connection drops."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeObs:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_captions(self, n: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.captions) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.captions)} captions, wanted {n}")
            await asyncio.sleep(0.01)
        return [c.text for c in self.captions]

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.subprotocol == "obswebsocket.json"
        hello: dict[str, Any] = {"obsWebSocketVersion": "5.1.0", "rpcVersion": 1,
                                 "obsStudioVersion": "29.0.2"}
        salt, challenge = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        if self.password is not None:
            hello["authentication"] = {"challenge": challenge, "salt": salt}
        await ws.send(json.dumps({"op": 0, "d": hello}))
        try:
            identify = json.loads(await ws.recv())
            assert identify["op"] == 1 and identify["d"]["rpcVersion"] == 1
            if self.password is not None:
                secret = base64.b64encode(
                    hashlib.sha256((self.password + salt).encode()).digest()).decode()
                expected = base64.b64encode(
                    hashlib.sha256((secret + challenge).encode()).digest()).decode()
                if identify["d"].get("authentication") != expected:
                    self.auth_failures += 1
                    await ws.close(4009, "Authentication failed.")
                    return
            self.identified += 1
            await ws.send(json.dumps({"op": 2, "d": {"negotiatedRpcVersion": 1}}))
            async for message in ws:
                request = json.loads(message)
                assert request["op"] == 6
                await ws.send(json.dumps({"op": 7, "d": self._answer(request["d"])}))
        except ConnectionClosed:
            pass

    def _answer(self, d: dict[str, Any]) -> dict[str, Any]:
        kind = d["requestType"]
        response: dict[str, Any] = {"requestType": kind, "requestId": d["requestId"]}
        if kind == "SendStreamCaption":
            if not self.streaming:
                response["requestStatus"] = {"result": False, "code": 501,
                                             "comment": "Streaming is not active."}
                return response
            self.captions.append(Caption(d["requestData"]["captionText"], time.monotonic()))
        elif kind == "GetStreamStatus":
            response["responseData"] = {"outputActive": self.streaming}
        else:
            response["requestStatus"] = {"result": False, "code": 204}
            return response
        response["requestStatus"] = {"result": True, "code": 100}
        return response
