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
from captioncast.protocol.events import Error, Event, Speakers

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
    stream.add_argument("file", nargs="?", default=None,
                        help="audio file in any format FFmpeg reads, or - for stdin")
    stream.add_argument("--demo", action="store_true",
                        help="stream the bundled 11 s clip (JFK, 1961, public domain) to try it")
    stream.add_argument("--fast", action="store_true",
                        help="send as fast as the server takes it, not at real-time pace")
    stream.add_argument("--raw", action="store_true",
                        help="stdin is raw 16-bit little-endian mono PCM (see --sample-rate)")
    stream.add_argument("--sample-rate", type=env.positive, default=16000,
                        help="sample rate of --raw input")
    client_options(stream)

    watch = commands.add_parser("watch", help="print a channel's captions live; with no "
                                              "name, list the channels")
    watch.add_argument("channel", nargs="?", default=None,
                       help="channel name, as given to stream/mic --channel (none: list them)")
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
    transcribe.add_argument("--format", choices=("text", "txt", "json", "srt", "vtt"),
                            default="text", help="text (or txt), json, srt or vtt")
    transcribe.add_argument("-o", "--output", type=Path, default=None,
                            help="write here instead of standard output")
    transcribe.add_argument("--language", default=None, help="ISO 639-1 code or auto")
    transcribe.add_argument("--task", choices=("transcribe", "translate"), default=None)
    transcribe.add_argument("--prompt", default=None, help="names and domain words to expect")
    transcribe.add_argument("--no-progress", action="store_true", help="no progress bars")

    mic = commands.add_parser("mic", help="caption the microphone live")
    mic.add_argument("--list-devices", action="store_true",
                     help="list input devices (none, if PortAudio finds none) and exit")
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


def _write_files(args: argparse.Namespace, finals: list[dict[str, Any]],
                 speakers: Speakers | None = None) -> None:
    from captioncast_client.caption_files import write_captions

    for path in (args.srt, args.vtt):
        if path is not None:
            write_captions(path, finals, speakers)
            print(f"captioncast: wrote {path}", file=sys.stderr)


def _printer(args: argparse.Namespace) -> Any:
    import json

    from captioncast_client.terminal import CaptionPrinter

    if args.json:
        def print_json(event: Event) -> None:
            print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
        return print_json
    return CaptionPrinter()


class _RefusalOnce:
    """Hands events on, but holds an `error` that comes before any other event: if it is
    the refusal that ends the stream, the command says it once, with its hint."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.held: Event | None = None
        self.started = False
        self.speakers: Speakers | None = None  # the newest table, for the caption files

    def __call__(self, event: Event) -> None:
        if isinstance(event, Speakers):
            self.speakers = event
        if not self.started and isinstance(event, Error):
            self.held = event
            return
        self.started = True
        if self.held is not None:
            held, self.held = self.held, None
            self.on_event(held)
        self.on_event(event)


def _run_client(args: argparse.Namespace, source: Any, realtime: bool,
                sample_rate: int = 16000) -> int:
    from captioncast_client.streaming import ClientError, stream, stream_url

    url = stream_url(args.server, **_stream_params(args, sample_rate))
    said: list[_RefusalOnce] = []

    def reconnecting(message: str) -> None:
        print(f"captioncast: {message}", file=sys.stderr, flush=True)

    def run(on_event: Callable[[Event], None]) -> Any:
        said.append(_RefusalOnce(on_event))
        return stream(url, source, realtime=realtime, on_event=said[0],
                      bytes_per_second=2 * sample_rate, access=_access(args),
                      on_reconnect=reconnecting, keep_partials=False)

    try:
        result = _with_obs(args, run)
    except ClientError as exc:
        if said and said[0].held is not None and said[0].held is not exc.event:
            said[0].on_event(said[0].held)  # an error of its own, then something else failed
        print(f"captioncast: {exc}", file=sys.stderr)
        if exc.result is not None and exc.result.finals:
            _write_files(args, exc.result.finals,  # what was captioned before giving up
                         said[0].speakers if said else None)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    _write_files(args, result.finals, said[0].speakers if said else None)
    return EXIT_OK


def _stream(args: argparse.Namespace) -> int:
    if args.demo == (args.file is not None):
        print("captioncast stream: error: give an audio FILE (- for stdin), or --demo for the "
              "bundled clip; see captioncast stream --help", file=sys.stderr)
        return EXIT_USAGE
    if args.demo:
        from importlib import resources

        with resources.as_file(resources.files("captioncast_client") / DEMO_CLIP) as clip:
            args.file = str(clip)
            return _stream_file(args)
    return _stream_file(args)


# John F. Kennedy, 1961, public domain; where it comes from: captioncast_client/clips/README.md
DEMO_CLIP = "clips/jfk.ogg"


def _stream_file(args: argparse.Namespace) -> int:
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
        NoInputDevice,
        check_input,
        list_devices,
        microphone_chunks,
    )

    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        if args.list_devices:
            try:
                print(list_devices())
            except NoInputDevice as exc:  # a list of none: nothing on stdout, why on stderr
                print(f"captioncast: {exc}", file=sys.stderr)
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


def _list_channels(args: argparse.Namespace) -> int:
    """`watch` with no name: the channels, live first, one a line on stdout."""
    import json
    import time

    from captioncast_client import channel_lines
    from captioncast_client.streaming import ClientError
    from captioncast_client.viewing import list_channels

    if args.since is not None or args.follow or args.obs is not None:
        print("captioncast watch: error: --since, --follow and --obs need a channel NAME; "
              "see captioncast watch --help", file=sys.stderr)
        return EXIT_USAGE
    try:
        channels = list_channels(args.server, _access(args))
    except ClientError as exc:
        print(f"captioncast: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        for c in channels:
            print(json.dumps({"channel": c.name, "live": c.live, "last_active": c.last_active,
                              "seq": c.seq}))
        return EXIT_OK
    if not channels:
        print(f"captioncast: {channel_lines.no_channels(args.server)}", file=sys.stderr)
        return EXIT_OK
    for line in channel_lines.listing(channels, time.time()):
        print(line)
    print("captioncast: watch one with `captioncast watch NAME` (--since 0 replays it from the "
          "start)", file=sys.stderr)
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    import time

    from captioncast_client import channel_lines
    from captioncast_client.streaming import ClientError
    from captioncast_client.viewing import ChannelSummary, watch

    if args.channel is None:
        return _list_channels(args)

    def no_speaker(channels: list[ChannelSummary]) -> None:
        line = channel_lines.no_speaker(args.channel, channels, args.since, args.follow,
                                        time.time())
        print(f"captioncast: {line}", file=sys.stderr, flush=True)

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
    text = render(transcript, "text" if args.format == "txt" else args.format)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
        print(f"captioncast: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


HANDLERS: Mapping[str, Callable[[argparse.Namespace], int]] = {
    "stream": _stream, "mic": _mic, "watch": _watch, "transcribe": _transcribe,
}
