"""The `captioncast` command: parses arguments, runs `serve`, dispatches the client commands."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import errno
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from captioncast import allocator, config
from captioncast import environment as env
from captioncast_client.commands import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HANDLERS,
    add_commands,
)

if TYPE_CHECKING:
    from captioncast.transport.server import Listening

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EXIT_USAGE (bad input), not 2, which means unreachable here;
    the message and where to read more, not the whole usage (serve's is 25 lines).

    An option no command knows is the subcommand's error, with the closest option it has
    (argparse leaves them to the top level, which knows no subcommand's options)."""

    def error(self, message: str) -> NoReturn:
        wrong = re.match(r"argument command: invalid choice: '([^']*)'", message)
        if wrong is not None:
            close = difflib.get_close_matches(wrong.group(1), self._subcommands(), n=1)
            if close:
                message = f"no command {wrong.group(1)!r} (did you mean {close[0]}?)"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        command = getattr(parsed, "command", None)
        if extras and command is not None and self._subcommands():
            sub = self._subcommands()[command]
            sub.error(unrecognized(extras, sub))
        return parsed, extras

    def _subcommands(self) -> dict[str, argparse.ArgumentParser]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}


def unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """argparse's `unrecognized arguments`, each option with the closest one `parser` has."""
    known = [o for action in parser._actions for o in action.option_strings]
    said = []
    for extra in extras:
        close = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1, cutoff=0.6) \
            if extra.startswith("-") else []
        said.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    return f"unrecognized arguments: {' '.join(said)}"


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Every command's arguments; `environ` (default: the process's) is read here, once."""
    environment = env.Environment(environ)
    parser = _Parser(prog="captioncast", description="Real-time captions for live audio.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the captioning server")
    serve.add_argument("--host", **environment.option("HOST", "127.0.0.1"),
                       help="address to listen on (0.0.0.0 for every interface)")
    serve.add_argument("--port", **environment.option("PORT", "8765"))
    serve.add_argument("--model", **environment.option("MODEL", "tiny.en"),
                       help="tiny.en (bundled, default), base (multilingual, bundled), "
                            "a faster-whisper model id, or a CTranslate2 model directory")
    serve.add_argument("--language", **environment.option("LANGUAGE"),
                       help="default language for streams that name none (ISO 639-1 or auto)")
    serve.add_argument("--device", choices=env.DEVICES, **environment.option("DEVICE", "auto"))
    serve.add_argument("--compute-type", **environment.option("COMPUTE_TYPE", "auto"),
                       help="CTranslate2 compute type; auto: int8 on CPU, float16 on GPU")
    load = serve.add_argument_group("decoding and load")
    load.add_argument("--decode-workers", **environment.option("DECODE_WORKERS", "0"),
                      help="decodes that run at once (default: 2 on a GPU, min(2, cores) on CPU)")
    load.add_argument("--decode-batch", **environment.option("DECODE_BATCH", "0"),
                      help="live decodes batched into one model call (default: 8 on a GPU, "
                           "1 on CPU)")
    load.add_argument("--cpu-threads", **environment.option("CPU_THREADS", "0"),
                      help="threads per decode worker (default: the cores shared out)")
    load.add_argument("--max-sessions", **environment.option("MAX_SESSIONS", "64"))
    load.add_argument("--max-load", **environment.option("MAX_LOAD", "0.7"),
                      help="admit a new stream only while the measured cost of the finals of "
                           "all live streams stays under this share of decode capacity "
                           "(0: admit up to --max-sessions)")
    load.add_argument("--allocator", choices=allocator.ALLOCATORS,
                      **environment.option("ALLOCATOR", "auto"),
                      help="auto: run on jemalloc where it is installed (libjemalloc2), "
                           "which keeps memory flat for hours; system: the C library's")
    serve.add_argument("--diarize", action=env.Flag, **environment.option("DIARIZE", False),
                       help="label every final with who spoke (S1, S2, ...) unless a stream "
                            "says diarize=false; see PROTOCOL.md, Speakers")
    serve.add_argument("--profanity-filter", action=env.Flag,
                       **environment.option("PROFANITY_FILTER", False),
                       help="mask profanity (****) in every stream's and file's captions "
                            "unless it says profanity_filter=false; per channel: --set "
                            "profanity.channels=NAME,...; see README: Profanity filter")
    serve.add_argument("--max-upload-mb", **environment.option("MAX_UPLOAD_MB", "1024"),
                       help="largest file POST /v1/transcribe accepts (413 past it)")
    serve.add_argument("--model-cache", **environment.option("MODEL_CACHE"),
                       help="where assembled models are kept (default ~/.cache/captioncast)")
    serve.add_argument("--log-level", **environment.option("LOG_LEVEL", "INFO"))
    sessions = serve.add_argument_group("sessions")
    sessions.add_argument("--resume-window-s",
                          **environment.option("RESUME_WINDOW_S", "600"),
                          help="how long a stream whose connection dropped waits for its "
                               "client to resume it (0: it ends at once)")
    sessions.add_argument("--max-session-s", **environment.option("MAX_SESSION_S", "0"),
                          help="longest a stream may last; at the limit it is finalized and "
                               "closed (default: unlimited)")
    channels = serve.add_argument_group("channels and viewers")
    channels.add_argument("--channel-history",
                          **environment.option("CHANNEL_HISTORY", "1000"),
                          help="finals per channel that a viewer's since= can replay")
    channels.add_argument("--viewer-backlog", **environment.option("VIEWER_BACKLOG", "256"),
                          help="finals a slow viewer may fall behind before it is cut off")
    _security_options(serve, environment)
    store = serve.add_argument_group("transcript store (see README: Transcripts)")
    data_dir = str(env.default_data_dir(environ))
    store.add_argument("--data-dir", **environment.option("DATA_DIR", data_dir),
                       metavar="DIR", help="where the channels' transcripts are kept "
                       "(default: $XDG_DATA_HOME/captioncast or ~/.local/share/captioncast)")
    store.add_argument("--store", **environment.option("STORE"), metavar="URL|PATH",
                       help="the transcript store instead of the data dir: a SQLite file, "
                            ":memory:, or postgresql://... shared by every node")
    store.add_argument("--no-store", action=env.Flag, **environment.option("NO_STORE", False),
                       help="keep transcripts in memory only (lost at restart)")
    store.add_argument("--retention-days", **environment.option("RETENTION_DAYS", "0"),
                       metavar="N", help="delete channels not live for N days (0: keep all)")
    mqtt = serve.add_argument_group("MQTT")
    mqtt.add_argument("--mqtt", **environment.option("MQTT"), metavar="URL",
                      help="publish channels to a broker: mqtt://host:1883 or mqtts://host:8883")
    mqtt.add_argument("--mqtt-prefix", **environment.option("MQTT_PREFIX", "captions"),
                      help="topic prefix: PREFIX/CHANNEL/final|partial|status")
    mqtt.add_argument("--mqtt-username", **environment.option("MQTT_USERNAME"))
    mqtt.add_argument("--mqtt-password", **environment.option("MQTT_PASSWORD"),
                      help="prefer the CAPTIONCAST_MQTT_PASSWORD environment variable")
    mqtt.add_argument("--mqtt-ca-file", **environment.option("MQTT_CA_FILE"),
                      help="CA bundle for an mqtts:// broker with a private CA")
    mqtt.add_argument("--mqtt-partials", action=env.Flag,
                      **environment.option("MQTT_PARTIALS", False),
                      help="also publish partials (QoS 0)")
    outputs = serve.add_argument_group("caption outputs (see docs/outputs.md)")
    outputs.add_argument(
        "--output", action="append", dest="outputs", default=[], metavar="CHANNEL=SPEC",
        help="send CHANNEL's finals to an output (repeatable; or [[outputs]] tables with "
             "channel = NAME in --config). SPEC is a JSON object, or kind:key=value,...: "
             "show=obs:url=ws://127.0.0.1:4455,password=PW, "
             "show=youtube:url=INGESTION_URL, show=zoom:url=API_TOKEN_URL, "
             "show=teams:url=CART_URL, show=webhook:url=https://HOST/PATH,secret=SECRET "
             "(a value that reads as a number is one: write JSON for a password of digits)")
    config.add_arguments(serve, environment)

    add_commands(commands, environment)
    return parser


def _security_options(serve: argparse.ArgumentParser, environment: env.Environment) -> None:
    group = serve.add_argument_group("security and limits (see README: Running in production)")
    group.add_argument("--token", action="append", default=[], metavar="TOKEN",
                       help="require this token on every endpoint but /healthz (repeatable; "
                            "CAPTIONCAST_TOKEN may hold several, comma-separated)")
    group.add_argument("--token-file", action="append", type=Path, default=[],
                       help="file with one accepted token per line (CAPTIONCAST_TOKEN_FILE)")
    group.add_argument("--certfile", **environment.option("CERTFILE"),
                       help="TLS certificate chain (PEM): serve wss:// and https://")
    group.add_argument("--keyfile", **environment.option("KEYFILE"),
                       help="TLS private key (PEM), if not in --certfile")
    group.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                       help="browser origin allowed to connect, e.g. https://studio.example "
                            "(repeatable; CAPTIONCAST_ALLOWED_ORIGINS comma-separated; "
                            "default: any)")
    group.add_argument("--max-connections-per-ip",
                       **environment.option("MAX_CONNECTIONS_PER_IP", "32"),
                       help="open connections one address may hold (0: no limit)")
    group.add_argument("--send-timeout-s", **environment.option("SEND_TIMEOUT_S", "30"),
                       help="a client that reads nothing for this long is dropped")
    group.add_argument("--idle-timeout-s", **environment.option("IDLE_TIMEOUT_S", "60"),
                       help="a stream with no audio and no keepalive for this long is closed")
    group.add_argument("--ping-interval-s", **environment.option("PING_INTERVAL_S", "20"),
                       help="WebSocket ping period; a peer that misses one by as long is cut "
                            "(0: no pings)")
    group.add_argument("--shutdown-timeout-s",
                       **environment.option("SHUTDOWN_TIMEOUT_S", "10"),
                       help="on SIGTERM, time to finish live streams' captions before exiting")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        from captioncast.transport.server import run_server
    except ImportError as exc:
        print(f"captioncast: the server needs its extra: pip install 'captioncast[server]' "
              f"({exc})", file=sys.stderr)
        return EXIT_USAGE
    from captioncast.errors import CaptioncastError

    if args.settings:
        print(config.describe())
        return EXIT_OK
    try:
        options = config.from_arguments(args)
    except config.ConfigError as exc:
        print(f"captioncast serve: error: {exc}; see captioncast serve --help", file=sys.stderr)
        return EXIT_USAGE
    except CaptioncastError as exc:
        print(f"captioncast: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.log_level)
    logging.getLogger("captioncast.memory").info("event=allocator name=%s",
                                                 allocator.describe())
    if settings := config.changed(options):
        logging.getLogger("captioncast.config").info(
            "event=settings %s", " ".join(f"{k}={v}" for k, v in settings.items()))
    try:
        asyncio.run(run_server(options, on_ready=_announce))
    except CaptioncastError as exc:
        print(f"captioncast: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (f"; another program (another captioncast?) has port {args.port}: stop it, "
                    f"or choose a free port with --port {args.port + 1}")
        print(f"captioncast: cannot listen on {args.host}:{args.port}: {exc}{hint}",
              file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _announce(ready: Listening) -> None:
    """The one line a person reads: the server takes sessions, and where to open it."""
    where = " (listening on every interface)" if ready.every_interface else ""
    base = ready.http_url
    print(f"captioncast: ready on {base}{where}, model {ready.model}: "
          f"captions page {base}/, overlay {base}/overlay?channel=NAME, "
          f"stream {ready.ws_url}/v1/stream, "
          f"files POST {base}/v1/transcribe; Ctrl-C to stop", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        if argv is None and not args.settings:  # the process's own command line
            allocator.restart_on_jemalloc(args.allocator)
        return _serve(args)
    return HANDLERS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
