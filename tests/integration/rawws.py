"""A WebSocket client on a bare socket, for peers no library would be: ones that never read,
never answer a ping, or send frames that break the rules."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct


def handshake(path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    """One frame as a client sends it (masked), or broken in the ways the flags allow."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def binary(payload: bytes) -> bytes:
    return frame(0x2, payload)


def text(payload: str) -> bytes:
    return frame(0x1, payload.encode())


def open_raw(port: int, path: str, context: ssl.SSLContext | None = None,
             headers: dict[str, str] | None = None, timeout: float = 10.0
             ) -> tuple[socket.socket, bytes]:
    """Connect and upgrade; return the socket and the response head."""
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(handshake(path, port, headers))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: what follows the head stays in the socket
        if not chunk:
            break
        head += chunk
    return sock, head


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed mid-frame")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame from the server (unmasked, no extensions): (opcode, payload)."""
    first, second = _exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _exactly(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _exactly(sock, 8))
    return first & 0x0F, _exactly(sock, length)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
