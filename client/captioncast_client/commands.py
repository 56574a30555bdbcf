"""The client commands: `stream`, `mic`, `watch`, `transcribe`, on the client library.

`captioncast.cli` parses the command line and dispatches here; this module adds the
commands' arguments and runs them. Exit codes: 0 done, 1 bad input (EXIT_USAGE), 2 no
server (EXIT_UNREACHABLE), 3 refused (EXIT_REFUSED), as `ClientError.exit_code` says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Stdlib only: the CAPTIONCAST_* table and the argparse types that check its values.
from captioncast import environment as env
from captioncast.protocol.events import Event

DEFAULT_SERVER = "ws://127.0.0.1:8765"

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_UNREACHABLE = 2
EXIT_REFUSED = 3


def add_commands(commands: Any, environment: env.Environment) -> None:
    """The client commands' parsers, on `commands` (argparse's subparsers action)."""

    def client_options(sub: argparse.ArgumentParser) -> None:
        _server_option(sub, environment)
        _access_options(sub, environment)
        sub.add_argument("--language", default=None, help="ISO 639-1 code or auto")
        sub.add_argument("--task", choices=("transcribe", "translate"), default=None)
        sub.add_argument("--prompt", default=None, help="names and domain words to expect")
        sub.add_argument("--channel", default=None, help="publish to this channel")
        sub.add_argument("--srt", type=Path, default=None, help="also write an SRT file")
        sub.add_argument("--vtt", type=Path, default=None, help="also write a WebVTT file")
        sub.add_argument("--no-partials", action="store_true",
                         help="ask for finals only (saves server CPU)")
        sub.add_argument("--json", action="store_true",
                         help="print every event as a JSON line instead of captions")
        _obs_options(sub, environment)

    stream = commands.add_parser("stream", help="caption an audio file, or stdin with -")
    stream.add_argument("file", help="audio file in any format FFmpeg reads, or - for stdin")
    stream.add_argument("--fast", action="store_true",
                        help="send as fast as the server takes it, not at real-time pace")
    stream.add_argument("--raw", action="store_true",
                        help="stdin is raw 16-bit little-endian mono PCM (see --sample-rate)")
    stream.add_argument("--sample-rate", type=env.positive, default=16000,
                        help="sample rate of --raw input")
    client_options(stream)

    watch = commands.add_parser("watch", help="print a channel's captions live")
    watch.add_argument("channel", help="channel name, as given to stream/mic --channel")
    _server_option(watch, environment)
    _access_options(watch, environment)
    watch.add_argument("--since", type=env.non_negative_int, default=None,
                       help="replay the finals after this seq (0: all the server holds)")
    watch.add_argument("--follow", action="store_true",
                       help="keep watching after the speaker ends, until Ctrl-C")
    watch.add_argument("--json", action="store_true", help="print every event as a JSON line")
    _obs_options(watch, environment)

    transcribe = commands.add_parser(
        "transcribe", help="transcribe an audio file over HTTP (POST /v1/transcribe)")
    transcribe.add_argument("file", type=Path, help="audio file in any format FFmpeg reads")
    _server_option(transcribe, environment)
    _access_options(transcribe, environment)
    transcribe.add_argument("--format", choices=("text", "json", "srt", "vtt"), default="text")
    transcribe.add_argument("-o", "--output", type=Path, default=None,
                            help="write here instead of standard output")
    transcribe.add_argument("--language", default=None, help="ISO 639-1 code or auto")
    transcribe.add_argument("--task", choices=("transcribe", "translate"), default=None)
    transcribe.add_argument("--prompt", default=None, help="names and domain words to expect")
    transcribe.add_argument("--no-progress", action="store_true", help="no progress bars")

    mic = commands.add_parser("mic", help="caption the microphone live")
    mic.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    mic.add_argument("--device", default=None, help="input device number or name")
    mic.add_argument("--sample-rate", type=env.positive, default=None,
                     help="capture rate (default: the device's own; the server resamples)")
    client_options(mic)


def _server_option(sub: argparse.ArgumentParser, environment: env.Environment) -> None:
    sub.add_argument("--server", **environment.option("SERVER", DEFAULT_SERVER),
                     help=f"server address (default {DEFAULT_SERVER})")


def _access_options(sub: argparse.ArgumentParser, environment: env.Environment) -> None:
    sub.add_argument("--token", **environment.option("TOKEN"),
                     help="the server's token (default: CAPTIONCAST_TOKEN)")
    sub.add_argument("--cafile", **environment.option("CAFILE"),
                     help="CA bundle to verify a wss:// or https:// server's certificate")


def _obs_options(sub: argparse.ArgumentParser, environment: env.Environment) -> None:
    from captioncast_client.obs_relay import obs_url

    sub.add_argument("--obs", type=env.checked(obs_url, "a ws:// URL"), default=None,
                     metavar="URL",
                     help="also send the finals to OBS as stream captions (CEA-608), over "
                          "obs-websocket: ws://127.0.0.1:4455 (OBS: Tools, WebSocket Server "
                          "Settings)")
    sub.add_argument("--obs-password", **environment.option("OBS_PASSWORD"),
                     help="OBS WebSocket password (default: CAPTIONCAST_OBS_PASSWORD)")


def _with_obs(args: argparse.Namespace, run: Callable[[Callable[[Event], None]], Any]) -> Any:
    """`run(on_event)` in a new event loop, on_event also sending finals to `--obs`."""
    from captioncast_client.obs_relay import obs_relay

    async def relayed() -> Any:
        async with obs_relay(args.obs, args.obs_password, _printer(args)) as on_event:
            return await run(on_event)

    return asyncio.run(relayed())


def _access(args: argparse.Namespace) -> Any:
    from captioncast_client.access import Access

    token = args.token.split(",")[0].strip() if args.token else None
    return Access(token=token or None, cafile=args.cafile)


def _stream_params(args: argparse.Namespace, sample_rate: int = 16000) -> dict[str, Any]:
    return {
        "sample_rate": sample_rate if sample_rate != 16000 else None,
        "language": args.language, "task": args.task, "prompt": args.prompt,
        "channel": args.channel, "interim": False if args.no_partials else None,
    }


def _write_files(args: argparse.Namespace, finals: list[dict[str, Any]]) -> None:
    from captioncast_client.caption_files import write_captions

    for path in (args.srt, args.vtt):
        if path is not None:
            write_captions(path, finals)
            print(f"captioncast: wrote {path}", file=sys.stderr)


def _printer(args: argparse.Namespace) -> Any:
    import json

    from captioncast_client.terminal import CaptionPrinter

    if args.json:
        def print_json(event: Event) -> None:
            print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
        return print_json
    return CaptionPrinter()


def _run_client(args: argparse.Namespace, source: Any, realtime: bool,
                sample_rate: int = 16000) -> int:
    from captioncast_client.streaming import ClientError, stream, stream_url

    url = stream_url(args.server, **_stream_params(args, sample_rate))

    def reconnecting(message: str) -> None:
        print(f"captioncast: {message}", file=sys.stderr, flush=True)

    try:
        result = _with_obs(args, lambda on_event: stream(
            url, source, realtime=realtime, on_event=on_event,
            bytes_per_second=2 * sample_rate, access=_access(args),
            on_reconnect=reconnecting, keep_partials=False))
    except ClientError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        if exc.result is not None and exc.result.finals:
            _write_files(args, exc.result.finals)  # what was captioned before giving up
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    _write_files(args, result.finals)
    return EXIT_OK


def _stream(args: argparse.Namespace) -> int:
    from captioncast_client.audio_files import AudioFileError, decode_pcm, raw_pcm, rechunk

    chunk = 3200  # 100 ms of 16 kHz 16-bit audio
    pieces: Iterator[bytes]
    if args.raw:
        pieces = raw_pcm(sys.stdin.buffer, chunk)
        sample_rate = args.sample_rate
    else:
        pieces = decode_pcm(args.file)
        sample_rate = 16000
    try:
        first = next(pieces, None)
    except AudioFileError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if first is None:
        print(f"captioncast: {args.file}: no audio", file=sys.stderr)
        return EXIT_USAGE

    def everything() -> Iterator[bytes]:
        yield first
        yield from pieces

    try:
        return _run_client(args, rechunk(everything(), chunk), realtime=not args.fast,
                           sample_rate=sample_rate)
    except AudioFileError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _mic(args: argparse.Namespace) -> int:
    from captioncast_client.microphone import (
        MicrophoneError,
        check_input,
        list_devices,
        microphone_chunks,
    )

    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        if args.list_devices:
            print(list_devices())
            return EXIT_OK
        rate = check_input(device, args.sample_rate)
    except MicrophoneError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("captioncast: listening; Ctrl-C to stop", file=sys.stderr)

    async def capture() -> AsyncIterator[bytes]:
        # Ctrl-C ends the capture, not the program: the last utterance still gets its final.
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        async for chunk in microphone_chunks(rate, device, stop=stop):
            yield chunk

    return _run_client(args, capture(), realtime=False, sample_rate=rate)


def _watch(args: argparse.Namespace) -> int:
    from captioncast_client.streaming import ClientError
    from captioncast_client.viewing import watch

    def no_speaker(live: list[str]) -> None:
        others = f"live now: {', '.join(sorted(live))}" if live else "no channel is live"
        print(f"captioncast: channel {args.channel!r} has no speaker yet; waiting for one "
              f"({others}; Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        _with_obs(args, lambda on_event: watch(
            args.server, args.channel, on_event, since=args.since, follow=args.follow,
            access=_access(args), on_no_speaker=no_speaker))
    except ClientError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _transcribe(args: argparse.Namespace) -> int:
    from captioncast_client.streaming import ClientError
    from captioncast_client.transcription import render, transcribe_with_progress

    try:
        transcript = transcribe_with_progress(
            args.server, args.file, show=False if args.no_progress else None,
            language=args.language, task=args.task, prompt=args.prompt,
            words=True if args.format == "json" else None, access=_access(args))
    except ClientError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    text = render(transcript, args.format)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
        print(f"captioncast: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


HANDLERS: Mapping[str, Callable[[argparse.Namespace], int]] = {
    "stream": _stream, "mic": _mic, "watch": _watch, "transcribe": _transcribe,
}
