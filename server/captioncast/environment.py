"""The CAPTIONCAST_* environment variables, declared once, and the argparse types that check them.

The environment is read once, when the parser is built (`Environment`). An option's
default is taken from it as a string (`FromEnvironment`), so argparse converts it with the
option's own type, as it converts a command-line value, and only for the subcommand in
use: `CAPTIONCAST_PORT=abc` breaks `serve`, with a usage error that names the variable,
and neither `--help` nor `stream`. Stdlib only: the client commands use it too.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "CAPTIONCAST_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEVICES = ("auto", "cpu", "cuda")
ALLOCATORS = ("auto", "system")  # captioncast.allocator
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

T = TypeVar("T")


class FromEnvironment(str):
    """A default read from the environment: the type that refuses it names the variable."""

    variable: str

    def __new__(cls, value: str, variable: str) -> FromEnvironment:
        text = super().__new__(cls, value)
        text.variable = variable
        return text


def checked(parse: Callable[[str], T], expected: str) -> Callable[[str], T]:
    """An argparse type: `parse`, and on a ValueError a message saying what was expected."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError:
            given = (f"{text.variable}={str(text)!r}" if isinstance(text, FromEnvironment)
                     else repr(text))
            raise argparse.ArgumentTypeError(f"{given} is not {expected}") from None

    return convert


def integer(low: int, high: int | None = None,
            expected: str | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text)
        if number < low or (high is not None and number > high):
            raise ValueError(text)
        return number

    return checked(parse, expected or f"an integer from {low} "
                   + (f"to {high}" if high is not None else "up"))


def _non_negative(text: str) -> float:
    number = float(text)
    if not math.isfinite(number) or number < 0:
        raise ValueError(text)
    return number


def _flag(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(text)


def one_of(choices: tuple[str, ...], fold: Callable[[str], str] = str) -> Callable[[str], str]:
    def pick(text: str) -> str:
        if fold(text) not in choices:
            raise ValueError(text)
        return fold(text)

    return checked(pick, "one of " + ", ".join(choices))


class Flag(argparse.Action):
    """`store_true` that takes a `type`, so that its default can come from the environment."""

    def __init__(self, option_strings: list[str], dest: str, default: object = False,
                 type: Callable[[str], Any] | None = None, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, type=type, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)


# 0 binds any free port (tests do); the ready line says which one.
port = integer(0, 65535, "a port number (1 to 65535, or 0 for any free one)")
positive = integer(1)
non_negative_int = integer(0)
seconds = checked(_non_negative, "a number of seconds, 0 or more")
share = checked(_non_negative, "a number, 0 or more")
flag = checked(_flag, "a yes/no value (1, true, yes, on or 0, false, no, off)")
days = checked(_non_negative, "a number of days, 0 or more")
log_level = one_of(LOG_LEVELS, str.upper)
device = one_of(DEVICES)
allocator = one_of(ALLOCATORS)


# Every variable the CLI reads, with the type that parses it. None: read as text by the
# command itself (tokens, token files and origins: comma-separated lists beside flags).
# Settings without a flag of their own have names of their own, CAPTIONCAST_SECTION__FIELD
# (`SETTING_SEPARATOR`), derived from the option dataclasses: see captioncast.config.
VARIABLES: Mapping[str, Callable[[str], Any] | None] = {
    "HOST": str, "PORT": port, "MODEL": str, "LANGUAGE": str, "DEVICE": device,
    "COMPUTE_TYPE": str, "DECODE_WORKERS": non_negative_int,
    "DECODE_BATCH": non_negative_int, "CPU_THREADS": non_negative_int,
    "MAX_SESSIONS": positive, "MAX_LOAD": share, "MAX_UPLOAD_MB": positive, "MODEL_CACHE": Path,
    "ALLOCATOR": allocator, "DIARIZE": flag, "PROFANITY_FILTER": flag,
    "LOG_LEVEL": log_level, "RESUME_WINDOW_S": seconds, "MAX_SESSION_S": seconds,
    "CHANNEL_HISTORY": positive, "VIEWER_BACKLOG": positive,
    "MQTT": str, "MQTT_PREFIX": str, "MQTT_USERNAME": str, "MQTT_PASSWORD": str,
    "MQTT_CA_FILE": str, "MQTT_PARTIALS": flag,
    "CERTFILE": str, "KEYFILE": str, "MAX_CONNECTIONS_PER_IP": non_negative_int,
    "SEND_TIMEOUT_S": seconds, "IDLE_TIMEOUT_S": seconds, "PING_INTERVAL_S": seconds,
    "SHUTDOWN_TIMEOUT_S": seconds, "CONFIG": Path,
    "DATA_DIR": Path, "STORE": str, "NO_STORE": flag, "RETENTION_DAYS": days,
    "TOKEN_FILE": None, "ALLOWED_ORIGINS": None,
    "SERVER": str, "TOKEN": str, "CAFILE": str,  # the clients' too
    "OBS_PASSWORD": str,  # the clients' --obs-password
}
SETTING_SEPARATOR = "__"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the transcript store lives unless told: the XDG data home, per user."""
    source = os.environ if environ is None else environ
    base = source.get("XDG_DATA_HOME") or str(Path(source.get("HOME") or Path.home())
                                              / ".local" / "share")
    return Path(base) / "captioncast"


class Environment:
    """The CAPTIONCAST_* variables of one environment, read once, when the parser is built."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        source = os.environ if environ is None else environ
        self._values = {k[len(PREFIX):]: v for k, v in source.items() if k.startswith(PREFIX)}

    def raw(self, name: str) -> str | None:
        """The variable's text; None when unset or empty (compose's `${X:-}` sets it empty)."""
        if name not in VARIABLES:
            raise KeyError(f"{PREFIX}{name} is not declared in VARIABLES")
        return self._values.get(name) or None

    def option(self, name: str, fallback: object = None) -> dict[str, Any]:
        """`type` and `default` of an option that CAPTIONCAST_`name` sets; argparse applies
        the type to the default (a string) only when the option is not on the command line."""
        parse = VARIABLES[name]
        if parse is None:
            raise KeyError(f"{PREFIX}{name} is read by its command, not by an option")
        value = self.raw(name)
        default = FromEnvironment(value, PREFIX + name) if value is not None else fallback
        return {"type": parse, "default": default}

    def settings(self) -> dict[str, str]:
        """The CAPTIONCAST_SECTION__FIELD variables, by full name, unchecked."""
        return {PREFIX + k: v for k, v in self._values.items() if SETTING_SEPARATOR in k and v}
