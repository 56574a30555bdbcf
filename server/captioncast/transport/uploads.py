"""Uploaded audio: the body spooled (memory, then disk), then decoded in chunks with PyAV.

A container may keep its index at the end (MP4's moov atom), so the whole file is
received before decoding starts; memory stays bounded because the spool moves to a
temporary file past `SPOOL_MEMORY_BYTES` and decoding yields one chunk at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

import av
import numpy as np
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from captioncast.core.audio import MODEL_SAMPLE_RATE, PcmConverter
from captioncast.core.params import StreamParams
from captioncast.errors import BadAudio, BadRequest
from captioncast.transport.http_exchange import Body

SPOOL_MEMORY_BYTES = 4 * 1024 * 1024  # smaller uploads never touch the disk
CHUNK_SAMPLES = MODEL_SAMPLE_RATE  # 1 s per chunk: VAD work between awaits stays small
MAX_FIELD_BYTES = 64 * 1024  # form fields other than the file (the prompt is at most 500 chars)
FILE_FIELD = "file"
NOT_AUDIO = "not an audio file, or a format FFmpeg cannot read"


async def spool_body(body: Body, limit: int) -> IO[bytes]:
    """The whole body in a temporary file (in memory while small); BadRequest if empty."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (returned open)
    try:
        async for chunk in body.chunks(limit):
            spool.write(chunk)
        if spool.tell() == 0:
            raise BadRequest("empty body: send the audio file as the request body")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def read_form(body: Body, content_type: str,
                    limit: int) -> tuple[dict[str, list[str]], IO[bytes]]:
    """A multipart/form-data body: its text fields, and the `file` part spooled."""
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data" or b"boundary" not in options:
        raise BadRequest("the body must be multipart/form-data with a file field "
                         "(as the OpenAI SDKs and curl -F send it)")
    fields: dict[str, list[str]] = {}
    files: list[Any] = []

    def on_field(field: Any) -> None:
        name = (field.field_name or b"").decode("utf-8", "replace")
        value = field.value or b""
        fields.setdefault(name, []).append(value.decode("utf-8", "replace"))

    def on_file(file: Any) -> None:
        if file.field_name == FILE_FIELD.encode():
            files.append(file)
        else:
            file.close()

    parser = FormParser(
        "multipart/form-data", on_field, on_file, boundary=options[b"boundary"],
        config={"MAX_MEMORY_FILE_SIZE": SPOOL_MEMORY_BYTES, "MAX_FIELD_SIZE": MAX_FIELD_BYTES,
                "MAX_FIELDS": 64},
    )
    try:
        async for chunk in body.chunks(limit):
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise BadRequest(f"malformed multipart form: {exc}") from None
    if len(files) != 1:
        for file in files:
            file.close()
        raise BadRequest("the form needs exactly one file field with the audio")
    upload = files[0]
    handle: IO[bytes] = upload.file_object
    if upload.size == 0:
        handle.close()
        raise BadRequest("the file field is empty: send the audio file")
    handle.seek(0)
    return fields, handle


def decode_file(source: IO[bytes]) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks of any file FFmpeg reads; BadAudio when it is not audio.

    Blocking: the caller runs each step off the event loop.
    """
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise BadAudio(f"cannot read the upload as audio: {_reason(exc)}") from None
    with container:
        if not container.streams.audio:
            raise BadAudio("the upload has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=MODEL_SAMPLE_RATE)
        pending: list[np.ndarray] = []
        held = 0
        decoded = 0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    held += out.samples
                if held >= CHUNK_SAMPLES:
                    decoded += held
                    yield np.concatenate(pending)
                    pending, held = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
                held += out.samples
        except (av.error.FFmpegError, ValueError) as exc:
            raise BadAudio(f"decoding failed after {decoded / MODEL_SAMPLE_RATE:.1f} s of "
                           f"audio: {_reason(exc, opening=False)}") from None
        if held:
            decoded += held
            yield np.concatenate(pending)
        if decoded == 0:
            raise BadAudio("the upload holds no audio samples")


def decode_raw(source: IO[bytes], params: StreamParams) -> Iterator[np.ndarray]:
    """Raw PCM as `params` describes it, through the same converter as /v1/stream."""
    converter = PcmConverter(params)
    step = CHUNK_SAMPLES * params.bytes_per_frame * params.sample_rate // MODEL_SAMPLE_RATE
    while data := source.read(step):
        if len(data) % params.bytes_per_frame:
            raise BadAudio(f"the body is not a whole number of {params.bytes_per_frame}-byte "
                           f"samples ({params.encoding}, {params.channels} channel(s))")
        yield converter.convert(data)
    tail = converter.drain()
    if len(tail):
        yield tail


def _reason(exc: BaseException, opening: bool = True) -> str:
    """FFmpeg's complaint in plain words: no errno, and not the name of our spool file."""
    if isinstance(exc, av.error.InvalidDataError):  # what FFmpeg says of text, zip, junk
        return NOT_AUDIO if opening else "the file is damaged or cut short"
    # FFmpeg's and the OS's errors carry an errno and a file name; strerror is the words.
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__
