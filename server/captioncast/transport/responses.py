"""HTTP responses, one type for both sides of the port: websockets' GET routes and h11's.

A route answers an `HttpResponse`; `to_websockets` hands one to websockets'
`process_request`, and `transport/http_front.py` sends it through h11.
"""

from __future__ import annotations

import http
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.datastructures import Headers
from websockets.http11 import Response

from captioncast.errors import CaptioncastError, http_status
from captioncast.transport.security import http_refusal


def status_of(error: CaptioncastError) -> int:
    return http_status(error)


@dataclass
class HttpResponse:
    """`body` is the whole body, or an async iterator of chunks sent as they come."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def body_response(status: int, body: bytes, content_type: str,
                  extra: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, body, content_type, list(extra or []))


def json_response(status: int, body: object) -> HttpResponse:
    return HttpResponse(status, (json.dumps(body, ensure_ascii=False) + "\n").encode())


def error_response(status: int, code: str, message: str) -> HttpResponse:
    return json_response(status, {"error": code, "message": message})


def refusal_response(error: CaptioncastError) -> HttpResponse:
    """An error as its status (401 with WWW-Authenticate, 429 with Retry-After...)."""
    status, headers = http_refusal(error) or (status_of(error), [])
    response = error_response(status, error.code, error.message)
    response.headers.extend(headers)
    return response


def to_websockets(response: HttpResponse) -> Response:
    """For websockets' `process_request`: a whole body, never a stream."""
    assert isinstance(response.body, bytes), "websockets sends whole bodies only"
    headers = Headers([("Content-Type", response.content_type),
                       ("Content-Length", str(len(response.body))),
                       ("Cache-Control", "no-store"), *response.headers])
    return Response(response.status, phrase(response.status), headers, response.body)


def phrase(status: int) -> str:
    """The reason phrase of `status`, or "" for a code http.HTTPStatus does not know."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
