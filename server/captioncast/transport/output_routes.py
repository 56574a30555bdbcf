"""The routes of channels' caption outputs: add, list and remove them at run time.

`POST /v1/channels/NAME/outputs` (a JSON spec, docs/outputs.md) answers 201 with the
output's status, `GET` lists the channel's outputs, `DELETE .../outputs/ID` removes one;
all of them behind the server's tokens, like every route but /healthz.
"""

from __future__ import annotations

import json
import logging
import re

from websockets.http11 import Request

from captioncast.core.params import parse_channel_name
from captioncast.errors import BadRequest
from captioncast.outputs import OutputSpecError
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.responses import HttpResponse, error_response, json_response
from captioncast.transport.server_context import ServerContext

log = logging.getLogger("captioncast.outputs")

OUTPUTS_PATH = re.compile(r"/v1/channels/([^/]+)/outputs")
OUTPUT_PATH = re.compile(r"/v1/channels/([^/]+)/outputs/([^/]+)")
MAX_SPEC_BYTES = 16 * 1024  # a spec is a few URLs and keys
REMOVE_TIMEOUT_S = 2.0  # DELETE: a removed output's queue gets this long to drain


def list_outputs(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels/NAME/outputs: the channel's outputs with their status."""
    match = OUTPUTS_PATH.fullmatch(request.path.partition("?")[0])
    assert match is not None, "routed by OUTPUTS_PATH"
    try:
        name = parse_channel_name(match.group(1))
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    return json_response(200, {"channel": name, "outputs": ctx.outputs.statuses(name)})


class OutputRoutes:
    """POST and DELETE of one server's outputs (GET is `list_outputs`, a GET route)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def add(self, request: HttpRequest) -> HttpResponse:
        """POST /v1/channels/NAME/outputs with a JSON spec: 201 with the output's status."""
        match = OUTPUTS_PATH.fullmatch(request.path)
        assert match is not None, "routed by OUTPUTS_PATH"
        name = parse_channel_name(match.group(1))
        body = b"".join([chunk async for chunk in request.body.chunks(MAX_SPEC_BYTES)])
        try:
            spec = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"the body must be an output spec in JSON: {exc}") from None
        try:
            output = self.ctx.outputs.add(name, spec)
        except OutputSpecError as exc:
            raise BadRequest(str(exc)) from None
        log.info("event=output_added channel=%s output=%s kind=%s", name, output.id,
                 output.kind)
        response = json_response(201, output.status())
        response.headers.append(("Location", f"/v1/channels/{name}/outputs/{output.id}"))
        return response

    async def remove(self, request: HttpRequest) -> HttpResponse:
        """DELETE /v1/channels/NAME/outputs/ID: 204, or 404 for an unknown output."""
        match = OUTPUT_PATH.fullmatch(request.path)
        assert match is not None, "routed by OUTPUT_PATH"
        name, output_id = parse_channel_name(match.group(1)), match.group(2)
        if not await self.ctx.outputs.remove(name, output_id, REMOVE_TIMEOUT_S):
            return error_response(404, "not_found",
                                  f"channel {name!r} has no output {output_id!r}")
        log.info("event=output_removed channel=%s output=%s", name, output_id)
        return HttpResponse(204, b"")

