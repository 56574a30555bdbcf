"""Plain HTTP responses for the routes the WebSocket server answers itself."""

from __future__ import annotations

import http
import json

from websockets.datastructures import Headers
from websockets.http11 import Response


def body_response(status: http.HTTPStatus, body: bytes, content_type: str,
                  extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), *(extra or [])])
    return Response(status.value, status.phrase, headers, body)


def json_response(status: http.HTTPStatus, body: object) -> Response:
    return body_response(status, (json.dumps(body) + "\n").encode(), "application/json")


def error_response(status: http.HTTPStatus, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})
