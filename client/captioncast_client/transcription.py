"""Upload a file to `POST /v1/transcribe` and read its finals as they are decided.

The server answers `format=ndjson` with each `final` as a JSON line, then `end`, then
the whole transcript, so a caller can show progress on a long file.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import av

from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import EVENT_TYPES, End, Error, Event, Final, event_from_dict
from captioncast_client.access import (
    NO_ACCESS,
    TLS_HINT,
    UNREACHABLE_HINT,
    Access,
    explain_refusal,
)
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable

UPLOAD_BLOCK = 256 * 1024
Transcript = dict[str, Any]  # the answer's JSON: text, language, duration, segments


def http_base(server: str) -> tuple[str, str, int]:
    """(scheme, host, port) from ws://, http:// or a bare host:port."""
    url = server if "://" in server else f"http://{server}"
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ClientError(f"bad server address: {server}")
    return ("https" if secure else "http", parts.hostname,
            parts.port or (443 if secure else 80))


def probe_duration(path: Path) -> float | None:
    """Seconds of audio in the file, from its header; None when the container does not say."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration is not None:
                return float(container.duration / av.time_base)
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.duration is not None and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError):
        return None
    return None


def _blocks(path: Path, on_sent: Callable[[int], None] | None) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(UPLOAD_BLOCK):
            yield block
            if on_sent:
                on_sent(len(block))


def transcribe_file(
    server: str,
    path: Path,
    *,
    on_sent: Callable[[int], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    timeout: float = 600.0,
    access: Access = NO_ACCESS,
    **params: Any,
) -> Transcript:
    """Upload `path`, return the transcript (`text`, `language`, `duration`, `segments`).

    `params` are the query parameters of /v1/transcribe (language, task, prompt, ...);
    `on_sent` sees upload progress in bytes, `on_event` each `final` and the `end`.
    """
    if not path.is_file():
        raise ClientError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ClientError(f"{path}: empty file, no audio")
    scheme, host, port = http_base(server)
    query = {k: (str(v).lower() if isinstance(v, bool) else v)
             for k, v in params.items() if v not in (None, "")}
    query["format"] = "ndjson"
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=access.ssl_for("https://"))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", f"/v1/transcribe?{urlencode(query)}",
                     body=_blocks(path, on_sent),
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Length": str(os.path.getsize(path)),
                              **access.headers()})
        response = conn.getresponse()
    except ssl.SSLCertVerificationError as exc:
        conn.close()
        raise ServerUnreachable(f"cannot verify the certificate of {host}:{port}: "
                                f"{exc.verify_message}; {TLS_HINT}") from exc
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise ServerUnreachable(f"cannot reach captioncast at {scheme}://{host}:{port}: "
                                f"{exc}; {UNREACHABLE_HINT}") from exc
    try:
        if response.status != 200:
            code, message = _error(response.read())
            if code == ErrorCode.BAD_AUDIO:  # the server could not decode the file: exit 1
                raise ClientError(f"{path}: {message}")
            raise ServerRefused(f"server refused the file: {explain_refusal(response.status)}: "
                                f"{message}")
        while line := response.readline():
            answer: Transcript = json.loads(line)
            if answer.get("type") == "transcript":  # the answer itself, not an event
                return answer
            event = event_from_dict(answer) if answer.get("type") in EVENT_TYPES else None
            if isinstance(event, Error):
                if event.code == ErrorCode.BAD_AUDIO:  # the file, not the server: bad input
                    raise ClientError(f"{path}: {event.message}")
                raise ServerRefused(f"transcription failed: {event.code}: {event.message}")
            if on_event and event is not None:
                on_event(event)
        raise ClientError("the server ended the answer before the transcript")
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"the connection to the server broke: {exc}") from exc
    finally:
        conn.close()


def _error(body: bytes) -> tuple[str | None, str]:
    """(code, message) of an error answer: ours, OpenAI's shape, or whatever a proxy sent."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None, body.decode("utf-8", "replace")[:200]
    if not isinstance(answer, dict):
        return None, str(answer)
    error = answer.get("error")
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message"))
    return (error if isinstance(error, str) else None), str(answer.get("message", answer))


def transcribe_with_progress(server: str, path: Path, show: bool | None = None,
                             **params: Any) -> Transcript:
    """`transcribe_file` with progress bars on stderr: the upload, then the audio decoded.

    `show=None` shows them only on a terminal.
    """
    from tqdm import tqdm

    size = path.stat().st_size if path.is_file() else 0
    duration = probe_duration(path) if path.is_file() else None
    disable = None if show is None else not show
    with (
        tqdm(total=size, unit="B", unit_scale=True, desc="upload", leave=False,
             disable=disable) as upload,
        tqdm(total=round(duration, 1) if duration else None, unit="s audio",
             desc="transcribe", disable=disable,
             bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]")
        as audio,
    ):
        def on_event(event: Event) -> None:
            if isinstance(event, Final):
                audio.update(max(0.0, round(event.end - audio.n, 3)))
            elif isinstance(event, End):
                audio.update(max(0.0, round(event.duration - audio.n, 3)))

        return transcribe_file(server, path, on_sent=upload.update, on_event=on_event,
                               **params)


def render(transcript: Transcript, fmt: str) -> str:
    """The transcript as text, json, srt or vtt."""
    from captioncast.protocol.captions import to_srt, to_vtt

    if fmt == "json":
        shown = {k: v for k, v in transcript.items() if k != "type"}
        return json.dumps(shown, ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return to_srt(transcript["segments"])
    if fmt == "vtt":
        return to_vtt(transcript["segments"])
    return str(transcript["text"]) + "\n"
