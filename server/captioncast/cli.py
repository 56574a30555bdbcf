"""The `captioncast` command: argument parsing only; `serve`, `stream`, `mic`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from captioncast import environment as env

if TYPE_CHECKING:
    from captioncast.transport.server import Ready

DEFAULT_SERVER = "ws://127.0.0.1:8765"

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_UNREACHABLE = 2
EXIT_REFUSED = 3


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EXIT_USAGE (bad input), not 2, which means unreachable here;
    the message and where to read more, not the whole usage (serve's is 25 lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="captioncast", description="Real-time captions for live audio.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the captioning server")
    serve.add_argument("--host", **env.option("HOST", "127.0.0.1"),
                       help="address to listen on (0.0.0.0 for every interface)")
    serve.add_argument("--port", **env.option("PORT", "8765"))
    serve.add_argument("--model", **env.option("MODEL", "tiny.en"),
                       help="tiny.en (bundled, default), base (multilingual, bundled), "
                            "a faster-whisper model id, or a CTranslate2 model directory")
    serve.add_argument("--language", **env.option("LANGUAGE"),
                       help="default language for streams that name none (ISO 639-1 or auto)")
    serve.add_argument("--device", choices=env.DEVICES, **env.option("DEVICE", "auto"))
    serve.add_argument("--compute-type", **env.option("COMPUTE_TYPE", "auto"),
                       help="CTranslate2 compute type; auto: int8 on CPU, float16 on GPU")
    load = serve.add_argument_group("decoding and load")
    load.add_argument("--decode-workers", **env.option("DECODE_WORKERS", "0"),
                      help="decodes that run at once (default: 2 on a GPU, min(2, cores) on CPU)")
    load.add_argument("--cpu-threads", **env.option("CPU_THREADS", "0"),
                      help="threads per decode worker (default: the cores shared out)")
    load.add_argument("--max-sessions", **env.option("MAX_SESSIONS", "64"))
    load.add_argument("--max-load", **env.option("MAX_LOAD", "0.7"),
                      help="admit a new stream only while the measured cost of the finals of "
                           "all live streams stays under this share of decode capacity "
                           "(0: admit up to --max-sessions)")
    serve.add_argument("--max-upload-mb", **env.option("MAX_UPLOAD_MB", "1024"),
                       help="largest file POST /v1/transcribe accepts (413 past it)")
    serve.add_argument("--model-cache", **env.option("MODEL_CACHE"),
                       help="where assembled models are kept (default ~/.cache/captioncast)")
    serve.add_argument("--log-level", **env.option("LOG_LEVEL", "INFO"))
    sessions = serve.add_argument_group("sessions")
    sessions.add_argument("--resume-window-s", **env.option("RESUME_WINDOW_S", "600"),
                          help="how long a stream whose connection dropped waits for its "
                               "client to resume it (0: it ends at once)")
    sessions.add_argument("--max-session-s", **env.option("MAX_SESSION_S", "0"),
                          help="longest a stream may last; at the limit it is finalized and "
                               "closed (default: unlimited)")
    channels = serve.add_argument_group("channels and viewers")
    channels.add_argument("--channel-history", **env.option("CHANNEL_HISTORY", "1000"),
                          help="finals per channel that a viewer's since= can replay")
    channels.add_argument("--viewer-backlog", **env.option("VIEWER_BACKLOG", "256"),
                          help="finals a slow viewer may fall behind before it is cut off")
    _security_options(serve)
    mqtt = serve.add_argument_group("MQTT")
    mqtt.add_argument("--mqtt", **env.option("MQTT"), metavar="URL",
                      help="publish channels to a broker: mqtt://host:1883 or mqtts://host:8883")
    mqtt.add_argument("--mqtt-prefix", **env.option("MQTT_PREFIX", "captions"),
                      help="topic prefix: PREFIX/CHANNEL/final|partial|status")
    mqtt.add_argument("--mqtt-username", **env.option("MQTT_USERNAME"))
    mqtt.add_argument("--mqtt-password", **env.option("MQTT_PASSWORD"),
                      help="prefer the CAPTIONCAST_MQTT_PASSWORD environment variable")
    mqtt.add_argument("--mqtt-ca-file", **env.option("MQTT_CA_FILE"),
                      help="CA bundle for an mqtts:// broker with a private CA")
    mqtt.add_argument("--mqtt-partials", action=env.Flag, **env.option("MQTT_PARTIALS", False),
                      help="also publish partials (QoS 0)")

    def client_options(sub: argparse.ArgumentParser) -> None:
        _server_option(sub)
        _access_options(sub)
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
    _server_option(watch)
    _access_options(watch)
    watch.add_argument("--since", type=env.non_negative_int, default=None,
                       help="replay the finals after this seq (0: all the server holds)")
    watch.add_argument("--follow", action="store_true",
                       help="keep watching after the speaker ends, until Ctrl-C")
    watch.add_argument("--json", action="store_true", help="print every event as a JSON line")

    transcribe = commands.add_parser(
        "transcribe", help="transcribe an audio file over HTTP (POST /v1/transcribe)")
    transcribe.add_argument("file", type=Path, help="audio file in any format FFmpeg reads")
    _server_option(transcribe)
    _access_options(transcribe)
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
    return parser


def _security_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security and limits (see README: Running in production)")
    group.add_argument("--token", action="append", default=[], metavar="TOKEN",
                       help="require this token on every endpoint but /healthz (repeatable; "
                            "CAPTIONCAST_TOKEN may hold several, comma-separated)")
    group.add_argument("--token-file", action="append", type=Path, default=[],
                       help="file with one accepted token per line (CAPTIONCAST_TOKEN_FILE)")
    group.add_argument("--certfile", **env.option("CERTFILE"),
                       help="TLS certificate chain (PEM): serve wss:// and https://")
    group.add_argument("--keyfile", **env.option("KEYFILE"),
                       help="TLS private key (PEM), if not in --certfile")
    group.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                       help="browser origin allowed to connect, e.g. https://studio.example "
                            "(repeatable; CAPTIONCAST_ALLOWED_ORIGINS comma-separated; "
                            "default: any)")
    group.add_argument("--max-connections-per-ip", **env.option("MAX_CONNECTIONS_PER_IP", "32"),
                       help="open connections one address may hold (0: no limit)")
    group.add_argument("--send-timeout-s", **env.option("SEND_TIMEOUT_S", "30"),
                       help="a client that reads nothing for this long is dropped")
    group.add_argument("--idle-timeout-s", **env.option("IDLE_TIMEOUT_S", "60"),
                       help="a stream with no audio and no keepalive for this long is closed")
    group.add_argument("--ping-interval-s", **env.option("PING_INTERVAL_S", "20"),
                       help="WebSocket ping period; a peer that misses one by as long is cut "
                            "(0: no pings)")
    group.add_argument("--shutdown-timeout-s", **env.option("SHUTDOWN_TIMEOUT_S", "10"),
                       help="on SIGTERM, time to finish live streams' captions before exiting")


def _server_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--server", **env.option("SERVER", DEFAULT_SERVER),
                     help=f"server address (default {DEFAULT_SERVER})")


def _access_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--token", **env.option("TOKEN"),
                     help="the server's token (default: CAPTIONCAST_TOKEN)")
    sub.add_argument("--cafile", **env.option("CAFILE"),
                     help="CA bundle to verify a wss:// or https:// server's certificate")


def _access(args: argparse.Namespace) -> Any:
    from captioncast_client.access import Access

    token = args.token.split(",")[0].strip() if args.token else None
    return Access(token=token or None, cafile=args.cafile)


def _security(args: argparse.Namespace) -> Any:
    from captioncast.transport.security import SecurityOptions, tokens_from

    token_files = list(args.token_file)
    if token_file := env.raw("TOKEN_FILE"):
        token_files.append(Path(token_file))
    origins = [*args.allowed_origin,
               *(o.strip() for o in (env.raw("ALLOWED_ORIGINS") or "").split(",") if o.strip())]
    return SecurityOptions(
        tokens=tokens_from(args.token, token_files, env.raw("TOKEN")),
        allowed_origins=tuple(origins),
        max_connections_per_ip=max(0, args.max_connections_per_ip),
        certfile=Path(args.certfile) if args.certfile else None,
        keyfile=Path(args.keyfile) if args.keyfile else None,
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


def _serve(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    try:
        from captioncast.transport.server import ServerOptions, run_server
        from captioncast.transport.transcribe import TranscribeOptions
    except ImportError as exc:
        print(f"captioncast: the server needs its extra: pip install 'captioncast[server]' "
              f"({exc})", file=sys.stderr)
        return EXIT_USAGE
    from captioncast.core.channel import ChannelOptions
    from captioncast.engine.capacity import CapacityOptions
    from captioncast.errors import CaptioncastError
    from captioncast.transport.mqtt import MqttOptions
    from captioncast.transport.shutdown import ShutdownOptions

    try:
        mqtt = None if not args.mqtt else MqttOptions.from_url(
            args.mqtt, prefix=args.mqtt_prefix, username=args.mqtt_username,
            password=args.mqtt_password, ca_file=args.mqtt_ca_file, partials=args.mqtt_partials,
        )
        options = ServerOptions(
            host=args.host, port=args.port, model=args.model, device=args.device,
            compute_type=args.compute_type, cpu_threads=args.cpu_threads,
            decode_workers=args.decode_workers,
            capacity=CapacityOptions(max_load=max(0.0, args.max_load)),
            language=args.language, max_sessions=args.max_sessions,
            resume_window_s=max(0.0, args.resume_window_s),
            max_session_s=args.max_session_s if args.max_session_s else None,
            model_cache=args.model_cache, mqtt=mqtt,
            transcribe=TranscribeOptions(max_upload_bytes=args.max_upload_mb * 1024 * 1024),
            channels=ChannelOptions(history=max(1, args.channel_history),
                                    viewer_backlog=max(1, args.viewer_backlog)),
            security=_security(args),
            send_timeout_s=args.send_timeout_s, idle_timeout_s=args.idle_timeout_s,
            ping_interval_s=args.ping_interval_s or None,  # 0: no pings
            ping_timeout_s=args.ping_interval_s or None,
            shutdown=ShutdownOptions(timeout_s=max(0.0, args.shutdown_timeout_s)),
        )
        asyncio.run(run_server(options, on_ready=_announce))
    except CaptioncastError as exc:
        print(f"captioncast: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"captioncast: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _announce(ready: Ready) -> None:
    """The one line a person reads: the server takes sessions, and where to open it."""
    where = " (listening on every interface)" if ready.every_interface else ""
    base = ready.http_url
    print(f"captioncast: ready on {base}{where}, model {ready.model}: "
          f"overlay {base}/overlay?channel=NAME, stream {ready.ws_url}/v1/stream, "
          f"files POST {base}/v1/transcribe; Ctrl-C to stop", file=sys.stderr, flush=True)


def _stream_params(args: argparse.Namespace, sample_rate: int = 16000) -> dict[str, Any]:
    return {
        "sample_rate": sample_rate if sample_rate != 16000 else None,
        "language": args.language, "task": args.task, "prompt": args.prompt,
        "channel": args.channel, "interim": False if args.no_partials else None,
    }


def _write_files(args: argparse.Namespace, finals: list[dict[str, Any]]) -> None:
    from captioncast_client.captions import write_captions

    for path in (args.srt, args.vtt):
        if path is not None:
            write_captions(path, finals)
            print(f"captioncast: wrote {path}", file=sys.stderr)


def _printer(args: argparse.Namespace) -> Any:
    import json

    from captioncast.protocol.events import Event
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
        result = asyncio.run(stream(url, source, realtime=realtime, on_event=_printer(args),
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
        asyncio.run(watch(args.server, args.channel, _printer(args), since=args.since,
                          follow=args.follow, access=_access(args), on_no_speaker=no_speaker))
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": _serve, "stream": _stream, "mic": _mic, "watch": _watch,
                "transcribe": _transcribe}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
