"""A signed webhook: each final's JSON POSTed in order, at least once, with an HMAC signature.

The receiver checks `X-Captioncast-Signature: sha256=<hex HMAC-SHA256 of the raw body with the
shared secret>` and may drop repeats by `X-Captioncast-Delivery` (a retry after a lost answer
sends the same body and id again: at least once, not exactly once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from captioncast.outputs.errors import OutputSpecError
from captioncast.outputs.http import HttpOutput
from captioncast.outputs.output import Delivery
from captioncast.outputs.spec import SpecReader

SIGNATURE_HEADER = "X-Captioncast-Signature"
DELIVERY_HEADER = "X-Captioncast-Delivery"
MIN_SECRET_CHARS = 16  # shorter is guessable from a few signed bodies offline


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """The receiver's check, constant-time; exported for receivers written in Python."""
    return hmac.compare_digest(sign(body, secret), header)


@dataclass(frozen=True)
class WebhookPost:
    body: bytes
    delivery_id: str


class WebhookOutput(HttpOutput[WebhookPost]):
    kind = "webhook"

    def __init__(self, url: str, *, secret: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._secret = secret
        self._count = 0

    @classmethod
    def from_spec(cls, spec: SpecReader) -> WebhookOutput:
        url = spec.url()
        secret = spec.string("secret", required=True)
        assert secret is not None
        if len(secret) < MIN_SECRET_CHARS:
            raise OutputSpecError(f"webhook output: 'secret' needs {MIN_SECRET_CHARS}+ characters")
        return cls(url, secret=secret, **spec.common())

    def prepare(self, delivery: Delivery) -> WebhookPost:
        # Empty finals go too: a note tool counts utterances, and the protocol sends them.
        self._count += 1
        body = json.dumps(dict(delivery.event), ensure_ascii=False,
                          separators=(",", ":")).encode()
        seq = delivery.event.get("seq", self._count)
        return WebhookPost(body, f"{self.id}-{seq}")

    def describe(self) -> dict[str, Any]:
        # Hook URLs often carry their token in the path (/services/T0/B0/XXXX): origin only.
        parts = urllib.parse.urlsplit(self.url)
        return {"url": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"}

    async def send(self, payload: WebhookPost) -> None:
        await self.request("POST", self.url, content=payload.body, headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(payload.body, self._secret),
            DELIVERY_HEADER: payload.delivery_id,
        })
