"""transport/compat_routes.py: the compatible APIs' handshake refusals, in each API's shape."""

from __future__ import annotations

import json

from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast.transport import compat_routes
from captioncast.transport.security import SecurityOptions, presented_token
from captioncast.transport.server import ServerOptions
from captioncast.transport.server_context import ServerContext

RAW = "/v1/listen?encoding=linear16&sample_rate=16000"


def _request(path: str, **headers: str) -> Request:
    return Request(path, Headers(headers))


def _body(response: object) -> dict[str, object]:
    body = getattr(response, "body", b"")
    assert isinstance(body, bytes)
    return dict(json.loads(body))


def test_handshake_refusals_are_in_each_apis_shape() -> None:
    ctx = ServerContext(ServerOptions(security=SecurityOptions(tokens=("k",))))
    refused = compat_routes.vet_listen(ctx, _request(RAW, Authorization="Token nope"))
    assert refused is not None and refused.status == 401
    assert _body(refused)["err_code"] == "INVALID_AUTH"
    refused = compat_routes.vet_listen(ctx, _request("/v1/listen", Authorization="Token k"))
    assert refused is not None and refused.status == 400
    assert ("dg-error", _body(refused)["err_msg"]) in refused.headers
    loading = compat_routes.vet_listen(ctx, _request(RAW, Authorization="Token k"))
    assert loading is not None and loading.status == 503  # no model loaded here
    flux = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000"
    refused = compat_routes.vet_flux(ctx, _request(flux, Authorization="Token nope"))
    assert refused is not None and refused.status == 401
    refused = compat_routes.vet_flux(
        ctx, _request(flux + "&eot_threshold=2", Authorization="Token k"))
    assert refused is not None and refused.status == 400
    assert ("dg-error", "eot_threshold must be between 0.5 and 1, got 2") in refused.headers
    loading = compat_routes.vet_flux(ctx, _request(flux, Authorization="Token k"))
    assert loading is not None and loading.status == 503
    refused = compat_routes.vet_realtime(
        ctx, _request("/v1/realtime?intent=transcription", Authorization="Bearer nope"))
    assert refused is not None and refused.status == 401
    assert _body(refused)["error"] == {"message": "the token is not valid for this server",
                                       "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}
    refused = compat_routes.vet_realtime(
        ctx, _request("/v1/realtime?model=gpt-realtime", Authorization="Bearer k"))
    assert refused is not None and refused.status == 400


def test_deepgrams_token_scheme_is_a_token() -> None:
    assert presented_token("/v1/listen", {"Authorization": "Token abc"}) == "abc"
    assert presented_token("/v1/listen", {"Authorization": "Bearer abc"}) == "abc"
