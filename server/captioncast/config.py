"""Server configuration in one pass: command line, environment and config file to ServerOptions.

Options with a flag of their own (`--port`, `--max-load`) are read by argparse, their
environment variables with them (captioncast.environment). Every other field of the
option dataclasses is a setting, named by its path: `policy.stable_agreement`,
`policy.segmenter.end_hangover_s`, `server.write_limit` for ServerOptions' own. A
setting comes from `--set KEY=VALUE`, else `CAPTIONCAST_POLICY__STABLE_AGREEMENT`,
else a TOML file (`--config`, tables for sections), else the dataclass default; its
text is checked against the field's type. A bad one is a `ConfigError`: one line that
the CLI prints as a usage error. Channels' outputs (`--output CHANNEL=SPEC`, `[[outputs]]`
tables in the file) are checked here too, the way `POST /v1/channels/NAME/outputs` checks
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captioncast import environment as env
from captioncast.config_values import expected, parser, show

if TYPE_CHECKING:
    from captioncast.options import OutputOptions, ServerOptions

# Fields that a flag of their own sets, and that flag. The decode thresholds are the
# policy's (ServerOptions.decoder_options), so they are set as policy.*_threshold.
FLAGGED: Mapping[str, str] = {
    "server.host": "--host", "server.port": "--port", "server.model": "--model",
    "server.device": "--device", "server.compute_type": "--compute-type",
    "server.cpu_threads": "--cpu-threads", "server.decode_workers": "--decode-workers",
    "server.decode_batch": "--decode-batch",
    "server.language": "--language", "server.max_sessions": "--max-sessions",
    "server.diarize": "--diarize", "profanity.on": "--profanity-filter",
    "server.idle_timeout_s": "--idle-timeout-s", "server.send_timeout_s": "--send-timeout-s",
    "server.resume_window_s": "--resume-window-s", "server.max_session_s": "--max-session-s",
    "server.model_cache": "--model-cache", "server.ping_interval_s": "--ping-interval-s",
    "server.ping_timeout_s": "--ping-interval-s",
    "capacity.max_load": "--max-load", "transcribe.max_upload_bytes": "--max-upload-mb",
    "channels.history": "--channel-history", "channels.viewer_backlog": "--viewer-backlog",
    "shutdown.timeout_s": "--shutdown-timeout-s",
    "security.tokens": "--token", "security.allowed_origins": "--allowed-origin",
    "security.max_connections_per_ip": "--max-connections-per-ip",
    "security.certfile": "--certfile", "security.keyfile": "--keyfile",
    "store.where": "--store, --data-dir or --no-store", "store.retention_days": "--retention-days",
    "decode.no_speech_threshold": "--set policy.no_speech_threshold",
    "decode.log_prob_threshold": "--set policy.log_prob_threshold",
    "decode.compression_ratio_threshold": "--set policy.compression_ratio_threshold",
}
TOP = "server"  # the section of ServerOptions' own fields
OUTPUTS = "outputs"  # the config file's array of tables of channels' outputs


class ConfigError(ValueError):
    """A setting that cannot be applied; the message is the one line a person reads."""


@dataclass(frozen=True)
class Setting:
    key: str  # section path and field: policy.segmenter.end_hangover_s
    path: tuple[str, ...]  # attributes from ServerOptions down
    hint: Any  # the field's type
    default: object

    @property
    def variable(self) -> str:
        return env.PREFIX + self.key.upper().replace(".", env.SETTING_SEPARATOR)

    @property
    def kind(self) -> str:
        return expected(self.hint).removeprefix("an ").removeprefix("a ").split(" (")[0]


def settings() -> dict[str, Setting]:
    """Every setting, by key; importing the options needs the server extra."""
    from captioncast.options import ServerOptions

    found: dict[str, Setting] = {}

    def walk(cls: type[Any], instance: object, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint, value = hints[f.name], getattr(instance, f.name)
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint, value, (*path, f.name))
                continue
            key = ".".join(path or (TOP,)) + "." + f.name
            if key not in FLAGGED and parser(hint) is not None:
                found[key] = Setting(key, (*path, f.name), hint, value)

    walk(ServerOptions, ServerOptions(), ())
    return found


def variables() -> set[str]:
    """Every CAPTIONCAST_* name the server reads: the declared table and the settings'."""
    return {env.PREFIX + name for name in env.VARIABLES} | {s.variable for s in settings().values()}


def changed(options: ServerOptions) -> dict[str, str]:
    """The settings whose value is not their default, as text: what the server logs."""
    found: dict[str, str] = {}
    for setting in settings().values():
        value: Any = options
        for name in setting.path:
            value = getattr(value, name)
        if value != setting.default:
            found[setting.key] = show(value)
    return found


def describe() -> str:
    """What `captioncast serve --settings` prints: each setting, its type and default."""
    rows = [("SETTING", "TYPE", "DEFAULT", "VARIABLE")]
    rows += [(s.key, s.kind, show(s.default), s.variable) for s in settings().values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{k:<{widths[0]}}  {t:<{widths[1]}}  {d:<{widths[2]}}  {v}"
                     for k, t, d, v in rows)


def from_arguments(args: argparse.Namespace) -> ServerOptions:
    """The serve command's options: its flags (and their variables), then every setting."""
    from captioncast.core.channel import ChannelOptions
    from captioncast.engine.capacity import CapacityOptions
    from captioncast.fanout.mqtt import MqttOptions
    from captioncast.options import (
        ServerOptions,
        ShutdownOptions,
        StoreOptions,
        TranscribeOptions,
    )
    from captioncast.text.profanity import ProfanityOptions
    from captioncast.transport.security import SecurityOptions, tokens_from

    mqtt = None if not args.mqtt else MqttOptions.from_url(
        args.mqtt, prefix=args.mqtt_prefix, username=args.mqtt_username,
        password=args.mqtt_password, ca_file=args.mqtt_ca_file, partials=args.mqtt_partials,
    )
    token_files = list(args.token_file)
    if args.token_file_variable:
        token_files.append(Path(args.token_file_variable))
    origins = [*args.allowed_origin, *(o.strip() for o in args.origins_variable.split(",")
                                       if o.strip())]
    security = SecurityOptions(
        tokens=tokens_from(args.token, token_files, args.token_variable),
        allowed_origins=tuple(origins),
        max_connections_per_ip=max(0, args.max_connections_per_ip),
        certfile=Path(args.certfile) if args.certfile else None,
        keyfile=Path(args.keyfile) if args.keyfile else None,
    )
    base = ServerOptions(
        host=args.host, port=args.port, model=args.model, device=args.device,
        compute_type=args.compute_type, cpu_threads=args.cpu_threads,
        decode_workers=args.decode_workers, decode_batch=args.decode_batch,
        capacity=CapacityOptions(max_load=max(0.0, args.max_load)),
        language=args.language, max_sessions=args.max_sessions, diarize=args.diarize,
        profanity=ProfanityOptions(on=args.profanity_filter),
        resume_window_s=max(0.0, args.resume_window_s),
        max_session_s=args.max_session_s if args.max_session_s else None,
        model_cache=args.model_cache, mqtt=mqtt,
        transcribe=TranscribeOptions(max_upload_bytes=args.max_upload_mb * 1024 * 1024),
        channels=ChannelOptions(history=max(1, args.channel_history),
                                viewer_backlog=max(1, args.viewer_backlog)),
        security=security,
        send_timeout_s=args.send_timeout_s, idle_timeout_s=args.idle_timeout_s,
        ping_interval_s=args.ping_interval_s or None,  # 0: no pings
        ping_timeout_s=args.ping_interval_s or None,
        shutdown=ShutdownOptions(timeout_s=max(0.0, args.shutdown_timeout_s)),
        outputs=tuple(output_option(text) for text in args.outputs),
        store=StoreOptions(where=store_location(args), retention_days=args.retention_days),
    )
    return load(base, args.set, args.setting_variables, args.config)


def output_option(text: str) -> OutputOptions:
    """`--output CHANNEL=SPEC`, SPEC a JSON object or `kind:key=value,...`."""
    from captioncast.outputs import OutputSpecError
    from captioncast.outputs.spec import spec_from_text

    where = f"argument --output {text!r}"
    channel, equals, spec_text = text.partition("=")
    if not equals:
        raise ConfigError(f"{where} is not CHANNEL=SPEC, e.g. show=obs:password=PASSWORD")
    try:
        spec = spec_from_text(spec_text)
    except OutputSpecError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return checked_output(channel.strip(), spec, where)


def checked_output(channel: str, spec: Mapping[str, Any], where: str) -> OutputOptions:
    """An output of `channel`, once its spec builds (it is built again at start)."""
    from captioncast.core.params import parse_channel_name
    from captioncast.errors import BadRequest
    from captioncast.options import OutputOptions
    from captioncast.outputs import OutputSpecError, build_output

    try:
        parse_channel_name(channel)
        build_output(spec)
    except BadRequest as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    except OutputSpecError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return OutputOptions(channel, dict(spec))


def _file_outputs(path: Path, tables: object) -> list[OutputOptions]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: {OUTPUTS} is an array of tables ([[{OUTPUTS}]])")
    found = []
    for number, table in enumerate(tables, 1):
        spec = dict(table)
        channel = spec.pop("channel", None)
        where = f"{path}: output {number}"
        if not isinstance(channel, str):
            raise ConfigError(f"{where} needs channel = \"NAME\"")
        found.append(checked_output(channel, spec, where))
    return found


def _unique_ids(outputs: tuple[OutputOptions, ...]) -> None:
    seen: set[tuple[str, object]] = set()
    for output in outputs:
        key = (output.channel, output.spec.get("id"))
        if key[1] is not None and key in seen:
            raise ConfigError(f"channel {output.channel} has two outputs with id {key[1]}")
        seen.add(key)


def store_location(args: argparse.Namespace) -> str | None:
    """`--no-store`: None; else `--store`, else the data dir (per user unless given)."""
    if args.no_store:
        return None
    return str(args.store or args.data_dir)


def load(base: ServerOptions, given: list[str], environ: Mapping[str, str],
         config_file: Path | None) -> ServerOptions:
    """`base` (the flags' options) with the settings of the file, the environment and
    `given` (`--set KEY=VALUE`), later ones winning."""
    table = settings()
    values: dict[str, object] = {}
    outputs = base.outputs
    if config_file is not None:
        data = _toml_file(config_file)
        outputs = (*_file_outputs(config_file, data.pop(OUTPUTS, [])), *outputs)
        for key, text in _read_toml(data).items():
            values[_setting(table, key, f"{config_file}: {key}").key] = _convert(
                table[key], text, f"{config_file}: {key}={text!r}")
    by_variable = {s.variable: s for s in table.values()}
    for name, text in environ.items():
        if name not in by_variable:
            raise ConfigError(f"{name} is not a setting (captioncast serve --settings "
                              "lists them)")
        values[by_variable[name].key] = _convert(by_variable[name], text, f"{name}={text!r}")
    for item in given:
        key, _, text = item.partition("=")
        setting = _setting(table, key.strip(), f"argument --set: {key.strip()}")
        values[setting.key] = _convert(setting, text.strip(),
                                       f"argument --set: {setting.key}={text.strip()!r}")
    _unique_ids(outputs)
    options: ServerOptions = _apply(base, {table[key].path: value for key, value in values.items()})
    return dataclasses.replace(options, outputs=outputs)


def _setting(table: Mapping[str, Setting], key: str, where: str) -> Setting:
    if key in table:
        return table[key]
    if key in FLAGGED:
        raise ConfigError(f"{where} is set by its own option, {FLAGGED[key]}")
    raise ConfigError(f"{where} is not a setting (captioncast serve --settings lists them)")


def _convert(setting: Setting, text: str, given: str) -> object:
    parse = parser(setting.hint)
    assert parse is not None  # settings() keeps only the fields it can parse
    try:
        return parse(text)
    except ValueError:
        raise ConfigError(f"{given} is not {expected(setting.hint)}") from None


def _apply(options: Any, changes: Mapping[tuple[str, ...], object]) -> Any:
    """`options` with the values at these attribute paths replaced, nested ones too."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], object]] = {}
    for path, value in changes.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():
        direct[name] = _apply(getattr(options, name), inner)
    return dataclasses.replace(options, **direct) if direct else options


def _toml_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not TOML: {exc}") from None


def _read_toml(data: Mapping[str, Any]) -> dict[str, str]:
    """The file's settings as text, by key, so they are checked as the environment's are."""
    found: dict[str, str] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for name, value in table.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            elif isinstance(value, list):
                found[prefix + name] = ",".join(str(v) for v in value)
            else:
                found[prefix + name] = show(value)

    walk(data, "")
    return found


def add_arguments(serve: argparse.ArgumentParser, environment: env.Environment) -> None:
    """`--set`, `--config` and `--settings` on the serve command."""
    group = serve.add_argument_group(
        "every other setting (see README: Configuration)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any field of the server's options without a flag of its own, "
                            "e.g. policy.stable_agreement=3 or scheduler.final_s=0.4 "
                            "(repeatable; or CAPTIONCAST_POLICY__STABLE_AGREEMENT=3); "
                            "--settings lists them")
    group.add_argument("--config", **environment.option("CONFIG"), metavar="FILE",
                       help="TOML file of settings, a table per section "
                            "([policy] stable_agreement = 3); the environment and --set win")
    group.add_argument("--settings", action="store_true",
                       help="list every setting, its type and default, and exit")
    # The variables read beside flags, read now with the rest: the one pass over the environment.
    serve.set_defaults(setting_variables=environment.settings(),
                       token_variable=environment.raw("TOKEN"),
                       token_file_variable=environment.raw("TOKEN_FILE"),
                       origins_variable=environment.raw("ALLOWED_ORIGINS") or "")
