"""The HTTP POST that the YouTube, Zoom, Teams and webhook outputs share: timeouts and errors."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from captioncast.outputs.errors import DeliveryError
from captioncast.outputs.output import Output
from captioncast.outputs.spec import redact

P = TypeVar("P")

TIMEOUT_S = 10.0  # Zoom: "All HTTP POST requests should be performed with a timeout"
TEXT_PLAIN = "text/plain; charset=utf-8"
ERROR_BODY_CHARS = 200  # enough of an error page to say why, not a whole HTML page in status


def retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (delta or HTTP date), if the far end sent one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: our own backoff applies
    return max(0.0, when.timestamp() - time.time())


class HttpOutput(Output[P]):
    """An output that POSTs each final; any transport error or non-2xx answer is retried."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S,
                 client: httpx.AsyncClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def describe(self) -> dict[str, Any]:
        return {"url": redact(self.url)}

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def is_waiting(self, response: httpx.Response) -> bool:
        """Whether this error answer means 'not ready yet' rather than 'broken'."""
        return False

    async def request(self, method: str, url: str, *, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request; a 2xx answer is returned, anything else raises DeliveryError."""
        try:
            response = await self._client.request(method, url, content=content,
                                                  headers=dict(headers or {}))
        except httpx.TimeoutException as e:
            raise DeliveryError(f"timeout: {type(e).__name__}") from e
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from e
        if 200 <= response.status_code < 300:
            return response
        body = response.text.strip().replace("\n", " ")[:ERROR_BODY_CHARS]
        raise DeliveryError(f"HTTP {response.status_code}" + (f": {body}" if body else ""),
                            retry_after=retry_after(response),
                            waiting=self.is_waiting(response))
