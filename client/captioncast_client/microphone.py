"""Microphone capture with sounddevice, as an async iterator of PCM chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

CHUNK_SECONDS = 0.1  # 100 ms: within the protocol's 20-200 ms, few frames per second
STALL_S = 3.0  # no audio for this long from a device that is still open: it is gone


class MicrophoneError(Exception):
    pass


class NoInputDevice(MicrophoneError):
    """PortAudio works and finds no input device: `--list-devices` lists none."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise MicrophoneError("microphone capture needs the 'sounddevice' package: "
                              "pip install 'captioncast[mic]'") from exc
    except OSError as exc:  # sounddevice is there; the C library it loads is not
        raise MicrophoneError(
            "microphone capture needs the PortAudio library, which is not installed: "
            "apt install libportaudio2 (Fedora: dnf install portaudio; macOS: brew install "
            f"portaudio) ({exc})") from exc
    return sounddevice


def _describe(devices: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {d['index']:>3} {d['name']}: {d['max_input_channels']} in, "
        f"{d['max_output_channels']} out, {d['default_samplerate']:.0f} Hz" for d in devices)


def _inputs(sd: Any) -> list[dict[str, Any]]:
    """The input devices; MicrophoneError, saying what PortAudio does see, when none."""
    devices = [dict(d) for d in sd.query_devices()]
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    if not devices:
        raise NoInputDevice(
            "no audio input device: PortAudio finds no audio device at all (is a "
            "microphone plugged in and enabled? in a container, pass the sound device in)")
    if not inputs:
        raise NoInputDevice("no audio input device: PortAudio finds only output devices:\n"
                              + _describe(devices))
    return inputs


def list_devices() -> str:
    """The input devices, one a line; NoInputDevice (saying what PortAudio sees) when
    there is none, MicrophoneError without PortAudio."""
    return _describe(_inputs(_sounddevice()))


def check_input(device: int | str | None, sample_rate: int | None = None) -> int:
    """The capture rate for `device` (None: the default input), once PortAudio has said it
    can capture mono 16-bit audio there; MicrophoneError, listing the inputs, if not."""
    sd = _sounddevice()
    inputs = _inputs(sd)
    try:
        info = sd.query_devices(device, "input")
    except (sd.PortAudioError, ValueError):
        info = None
    if info is None or info["max_input_channels"] < 1:
        wanted = ("there is no default input device" if device is None
                  else f"{device!r} is not an input device")
        raise MicrophoneError(f"{wanted}; choose one with --device N or NAME:\n"
                              + _describe(inputs))
    rate = sample_rate or int(info["default_samplerate"])
    try:
        sd.check_input_settings(device=device, channels=1, dtype="int16", samplerate=rate)
    except (sd.PortAudioError, ValueError) as exc:
        raise MicrophoneError(f"input device {info['index']} ({info['name']}) cannot capture "
                              f"mono 16-bit audio at {rate} Hz: {exc}") from None
    return rate


async def microphone_chunks(
    sample_rate: int,
    device: int | str | None = None,
    stop: asyncio.Event | None = None,
    stream_factory: Callable[..., Any] | None = None,
    max_queued: int = 50,
    stall_s: float = STALL_S,
) -> AsyncIterator[bytes]:
    """Yield mono s16le chunks from an input device until `stop` is set or the stream ends.

    A device that stops delivering audio without ending its stream (unplugged, taken by
    another program, a sleeping USB hub) raises MicrophoneError after `stall_s`, instead
    of a client that waits forever. `stream_factory` defaults to
    `sounddevice.RawInputStream`; tests pass a fake one.
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
                done, _ = await asyncio.wait({getter, stopper}, timeout=stall_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if stopper in done:
                        return
                    raise MicrophoneError(
                        f"the microphone sent no audio for {stall_s:g} s (unplugged, or "
                        "taken by another program?)")
                chunk = getter.result()
                if chunk is None:
                    return
                yield chunk
        finally:
            stopper.cancel()
