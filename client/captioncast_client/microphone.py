"""Microphone capture with sounddevice, as an async iterator of PCM chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

CHUNK_SECONDS = 0.1  # 100 ms: within the protocol's 20-200 ms, few frames per second


class MicrophoneError(Exception):
    pass


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
        raise MicrophoneError(
            "microphone capture needs the 'sounddevice' package and PortAudio "
            "(pip install 'captioncast[mic]'; apt-get install libportaudio2)"
        ) from exc
    return sounddevice


def list_devices() -> str:
    return str(_sounddevice().query_devices())


def default_sample_rate(device: int | str | None) -> int:
    info = _sounddevice().query_devices(device, "input")
    return int(info["default_samplerate"])


async def microphone_chunks(
    sample_rate: int,
    device: int | str | None = None,
    stop: asyncio.Event | None = None,
    stream_factory: Callable[..., Any] | None = None,
    max_queued: int = 50,
) -> AsyncIterator[bytes]:
    """Yield mono s16le chunks from an input device until `stop` is set or the stream ends.

    `stream_factory` defaults to `sounddevice.RawInputStream`; tests pass a fake one.
    """
    factory = stream_factory or _sounddevice().RawInputStream
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=max_queued)
    stop = stop or asyncio.Event()

    def put(data: bytes | None) -> None:
        if queue.full() and data is not None:
            queue.get_nowait()  # a stalled network must not grow memory: drop the oldest
        queue.put_nowait(data)

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        loop.call_soon_threadsafe(put, bytes(indata))

    def finished() -> None:
        loop.call_soon_threadsafe(put, None)

    stream = factory(
        samplerate=sample_rate, channels=1, dtype="int16", device=device,
        blocksize=int(sample_rate * CHUNK_SECONDS), callback=callback, finished_callback=finished,
    )
    with stream:
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, stopper},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                chunk = getter.result()
                if chunk is None:
                    return
                yield chunk
        finally:
            stopper.cancel()
