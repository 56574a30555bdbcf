"""Reading an output's spec dict (`{"kind": "webhook", "url": ...}`) with clear 400-fit errors."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from captioncast.outputs.errors import OutputSpecError

COMMON_KEYS = frozenset({"kind", "id", "queue_size"})
MAX_QUEUE_SIZE = 10_000  # a spec from the network must not reserve unbounded memory


class SpecReader:
    """Typed access to one spec; `done()` refuses keys nobody read (a typo is an error)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise OutputSpecError("an output spec is a JSON object")
        self.spec = spec
        self.kind = str(spec.get("kind", ""))
        self._read: set[str] = set(COMMON_KEYS)

    def _get(self, key: str) -> Any:
        self._read.add(key)
        return self.spec.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(key)
        if value is None:
            if required:
                raise OutputSpecError(f"{self.kind} output: '{key}' is required")
            return default
        if not isinstance(value, str) or not value:
            raise OutputSpecError(f"{self.kind} output: '{key}' must be a non-empty string")
        return value

    def url(self, key: str = "url", schemes: tuple[str, ...] = ("http", "https"),
            default: str | None = None) -> str:
        value = self.string(key, default, required=default is None)
        assert value is not None
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise OutputSpecError(
                f"{self.kind} output: '{key}' must be a {' or '.join(schemes)} URL")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not low <= value <= high:
            raise OutputSpecError(f"{self.kind} output: '{key}' must be a number in {low}..{high}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise OutputSpecError(
                f"{self.kind} output: '{key}' must be an integer in {low}..{high}")
        return value

    def common(self) -> dict[str, Any]:
        """The keys every kind takes, as keyword arguments of `Output.__init__`."""
        out: dict[str, Any] = {"queue_size": self.integer("queue_size", 256, low=1,
                                                          high=MAX_QUEUE_SIZE)}
        output_id = self.string("id")
        if output_id is not None:
            if not output_id.replace("-", "").replace("_", "").isalnum() or len(output_id) > 64:
                raise OutputSpecError("output 'id' must be 1-64 letters, digits, '-' or '_'")
            out["output_id"] = output_id
        return out

    def done(self) -> None:
        unknown = sorted(set(self.spec) - self._read)
        if unknown:
            raise OutputSpecError(f"{self.kind} output: unknown setting(s) {', '.join(unknown)}")


def redact(url: str) -> str:
    """A URL without its query and credentials: caption URLs carry their token in the query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def with_query(url: str, **params: str | int) -> str:
    """`url` with `params` appended to its query; the query's own text is kept byte for byte,
    because the platforms sign it (Zoom's `signature`, Teams' `token`) and re-encoding it
    could break the check."""
    parts = urllib.parse.urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] not in params]
    added = [urllib.parse.urlencode({k: str(v)}) for k, v in params.items()]
    return urllib.parse.urlunsplit(parts._replace(query="&".join([*kept, *added])))


# `kind:key=value,key=value`: a comma starts a new setting only before `key=`, so that a
# value (a URL's query) may hold commas of its own.
_SETTING_START = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*=)")


def spec_from_text(text: str) -> dict[str, Any]:
    """A spec from the command line: a JSON object, or `kind:key=value,...` where a value that
    reads as a JSON number is a number (write JSON for a password of digits)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise OutputSpecError(f"output spec is not valid JSON: {e}") from None
        if not isinstance(spec, dict):
            raise OutputSpecError("an output spec is a JSON object")
        return spec
    kind, _, rest = text.partition(":")
    if not kind.strip().isidentifier():
        raise OutputSpecError(f"output spec {text!r} is neither JSON nor kind:key=value,...")
    spec = {"kind": kind.strip()}
    for item in _SETTING_START.split(rest) if rest.strip() else []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise OutputSpecError(f"output setting {item!r} is not key=value")
        spec[key.strip()] = _number_or_text(value.strip())
    return spec


def _number_or_text(value: str) -> Any:
    try:
        number = json.loads(value)
    except json.JSONDecodeError:
        return value
    return number if isinstance(number, int | float) and not isinstance(number, bool) else value
