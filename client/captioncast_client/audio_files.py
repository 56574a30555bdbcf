"""Any audio file (or stdin) to 16 kHz mono 16-bit PCM chunks, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2
NOT_AUDIO = "not an audio file, or a format FFmpeg cannot read"


class AudioFileError(Exception):
    """The input could not be opened or decoded as audio."""


def ffmpeg_reason(exc: BaseException, opening: bool = True) -> str:
    """FFmpeg's complaint in plain words, without its errno."""
    if isinstance(exc, av.error.InvalidDataError):  # what FFmpeg says of text, zip, junk
        return NOT_AUDIO if opening else "the file is damaged or cut short"
    # FFmpeg's and the OS's errors carry an errno and a file name; strerror is the words.
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def _open_source(source: str) -> str | BinaryIO:
    if source == "-":
        return sys.stdin.buffer
    if not Path(source).is_file():
        raise AudioFileError(f"{source}: no such file")
    return source


def decode_pcm(source: str) -> Iterator[bytes]:
    """Yield 16 kHz mono s16le bytes as the file decodes: memory stays flat for long files."""
    try:
        container = av.open(_open_source(source), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise AudioFileError(f"{source}: cannot open as audio: {ffmpeg_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise AudioFileError(f"{source}: has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype("<i2").tobytes()
            for out in resampler.resample(None):
                yield out.to_ndarray().astype("<i2").tobytes()
        except av.error.FFmpegError as exc:
            raise AudioFileError(
                f"{source}: decoding failed: {ffmpeg_reason(exc, opening=False)}") from exc


def raw_pcm(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """Raw PCM from a pipe, passed through in whole-sample chunks."""
    carry = b""
    while True:
        data = stream.read(chunk_bytes)
        if not data:
            break
        data = carry + data
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        yield data[:cut]


def rechunk(pieces: Iterator[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Even chunks (the last may be shorter), so pacing by chunk is pacing by time."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= chunk_bytes:
            yield bytes(buffer[:chunk_bytes])
            del buffer[:chunk_bytes]
    if buffer:
        yield bytes(buffer)


def silence(seconds: float) -> bytes:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype="<i2").tobytes()
