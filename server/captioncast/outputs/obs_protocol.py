"""obs-websocket v5 messages, sans I/O: Hello/Identify with its authentication, requests, codes.

From the published protocol (obs-websocket `docs/generated/protocol.md`, 5.x): every message
is `{"op": OpCode, "d": {...}}` on the `obswebsocket.json` subprotocol. The server says Hello
(with `authentication: {challenge, salt}` when a password is set); the client answers Identify
with `rpcVersion` 1 and `authentication = base64(sha256(base64(sha256(password + salt)) +
challenge))`; the server answers Identified, or closes with 4009 on a wrong password. Then
Request (`requestType`, `requestId`, `requestData`) gets a RequestResponse whose
`requestStatus` has `result`, `code` and an optional `comment`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from enum import IntEnum
from typing import Any

SUBPROTOCOL = "obswebsocket.json"
RPC_VERSION = 1
DEFAULT_PORT = 4455  # OBS 28+


class OpCode(IntEnum):
    HELLO = 0
    IDENTIFY = 1
    IDENTIFIED = 2
    REIDENTIFY = 3
    EVENT = 5
    REQUEST = 6
    REQUEST_RESPONSE = 7


class RequestStatus(IntEnum):
    SUCCESS = 100
    NOT_READY = 207  # OBS is starting up or shutting down
    OUTPUT_RUNNING = 500
    OUTPUT_NOT_RUNNING = 501  # SendStreamCaption while OBS is not streaming


class CloseCode(IntEnum):
    NOT_IDENTIFIED = 4007
    ALREADY_IDENTIFIED = 4008
    AUTHENTICATION_FAILED = 4009
    UNSUPPORTED_RPC_VERSION = 4010


class ObsProtocolError(Exception):
    """A message that does not follow obs-websocket v5."""


def authentication(password: str, salt: str, challenge: str) -> str:
    secret = base64.b64encode(hashlib.sha256((password + salt).encode()).digest()).decode()
    return base64.b64encode(hashlib.sha256((secret + challenge).encode()).digest()).decode()


def encode(op: OpCode, d: dict[str, Any]) -> str:
    return json.dumps({"op": int(op), "d": d})


def decode(text: str | bytes) -> tuple[int, dict[str, Any]]:
    try:
        message = json.loads(text)
        op, d = message["op"], message["d"]
    except (ValueError, KeyError, TypeError) as e:
        raise ObsProtocolError(f"not an obs-websocket message: {str(text)[:80]!r}") from e
    if not isinstance(op, int) or not isinstance(d, dict):
        raise ObsProtocolError("obs-websocket message with a bad op or d")
    return op, d


def identify(hello: dict[str, Any], password: str | None) -> str:
    """The Identify for a Hello; no events wanted (`eventSubscriptions` 0): we only request."""
    d: dict[str, Any] = {"rpcVersion": RPC_VERSION, "eventSubscriptions": 0}
    auth = hello.get("authentication")
    if auth:
        if password is None:
            raise ObsProtocolError("OBS asks for a password and none was given")
        d["authentication"] = authentication(password, str(auth["salt"]),
                                             str(auth["challenge"]))
    return encode(OpCode.IDENTIFY, d)


def request(request_type: str, request_id: str, data: dict[str, Any] | None = None) -> str:
    d: dict[str, Any] = {"requestType": request_type, "requestId": request_id}
    if data is not None:
        d["requestData"] = data
    return encode(OpCode.REQUEST, d)


def send_stream_caption(request_id: str, text: str) -> str:
    return request("SendStreamCaption", request_id, {"captionText": text})
