"""A setting's text to a value of its field's type, and back: what config.py checks with.

The same rules for `--set KEY=VALUE`, `CAPTIONCAST_SECTION__FIELD` and a TOML file's
values (read as text first): numbers are finite, flags are the environment's yes/no
words, `X | None` takes `none`, a tuple takes a comma-separated list.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from captioncast import environment as env


def _number(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _flag(text: str) -> bool:
    if text.lower() in env.TRUE:
        return True
    if text.lower() in env.FALSE:
        return False
    raise ValueError(text)


_SCALARS: Mapping[Any, tuple[Callable[[str], Any], str]] = {
    int: (int, "an integer"),
    float: (_number, "a number"),
    bool: (_flag, "a yes/no value (1, true, yes, on or 0, false, no, off)"),
    str: (str, "text"),
    Path: (Path, "a path"),
}


def _optional(hint: Any) -> Any | None:
    """X of `X | None`, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return None


def parser(hint: Any) -> Callable[[str], Any] | None:
    """What turns a setting's text into a value of the field's type; None: not settable."""
    if hint in _SCALARS:
        return _SCALARS[hint][0]
    if (inner := _optional(hint)) is not None and (parse := parser(inner)) is not None:
        return lambda text: None if text.lower() in ("", "none") else parse(text)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
            item = _SCALARS[args[0]][0]
            return lambda text: tuple(item(t.strip()) for t in text.split(",") if t.strip())
    return None


def expected(hint: Any) -> str:
    if hint in _SCALARS:
        return _SCALARS[hint][1]
    if (inner := _optional(hint)) is not None:
        return f"{expected(inner)} or none"
    item = _SCALARS[typing.get_args(hint)[0]][1].removeprefix("an ").removeprefix("a ")
    return f"a comma-separated list of {item}s"


def show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)
