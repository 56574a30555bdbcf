"""captioncast/config.py: flags, environment, file and --set to ServerOptions, in one pass."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from captioncast import config
from captioncast.cli import build_parser
from captioncast.fanout.hub import ChannelHub
from captioncast.options import ServerOptions, StoreOptions


def _options(argv: list[str], environ: dict[str, str] | None = None) -> ServerOptions:
    return config.from_arguments(build_parser(environ or {}).parse_args(["serve", *argv]))


def test_the_defaults_are_the_dataclasses_defaults() -> None:
    # The one exception: the command keeps transcripts in the per-user data dir, while
    # an embedded server (ServerOptions()) keeps none unless told.
    options = _options([], {"XDG_DATA_HOME": "/data"})
    assert options.store.where == str(Path("/data/captioncast"))
    assert dataclasses.replace(options, store=StoreOptions()) == ServerOptions()


def test_a_setting_from_the_file_the_environment_and_the_command_line(tmp_path: Path) -> None:
    toml = tmp_path / "captioncast.toml"
    toml.write_text("[policy]\nstable_agreement = 5\ncontext_prefix = false\n"
                    "[policy.segmenter]\nend_hangover_s = 0.7\n"
                    "[decode]\nfinal_temperatures = [0.0, 0.5]\n"
                    "[server]\nwrite_limit = 65536\n")
    options = _options(["--config", str(toml)])
    assert (options.policy.stable_agreement, options.policy.context_prefix) == (5, False)
    assert options.policy.segmenter.end_hangover_s == 0.7
    assert options.decode.final_temperatures == (0.0, 0.5)
    assert options.write_limit == 65536
    # The environment wins over the file, the command line over both.
    environ = {"CAPTIONCAST_CONFIG": str(toml), "CAPTIONCAST_POLICY__STABLE_AGREEMENT": "4",
               "CAPTIONCAST_SCHEDULER__FINAL_S": "0.4"}
    assert _options([], environ).policy.stable_agreement == 4
    options = _options(["--set", "policy.stable_agreement=2", "--set",
                        "channels.max_channels=10"], environ)
    assert (options.policy.stable_agreement, options.scheduler.final_s) == (2, 0.4)
    assert ChannelHub(options.channels).max_channels == 10
    assert options.policy.segmenter.end_hangover_s == 0.7  # the rest of the file still holds
    assert config.changed(options) == {
        "server.write_limit": "65536", "policy.stable_agreement": "2",
        "policy.context_prefix": "false", "policy.segmenter.end_hangover_s": "0.7",
        "decode.final_temperatures": "0.0,0.5", "scheduler.final_s": "0.4",
        "channels.max_channels": "10"}


def test_the_decode_thresholds_are_one_setting() -> None:
    options = _options(["--set", "policy.no_speech_threshold=0.5"])
    assert options.decoder_options.no_speech_threshold == 0.5
    assert options.decoder_options.final_beam_size == ServerOptions().decode.final_beam_size
    with pytest.raises(config.ConfigError, match="set by its own option"):
        _options(["--set", "decode.no_speech_threshold=0.5"])


@pytest.mark.parametrize(("argv", "environ", "message"), [
    (["--set", "policy.stable_agreement=three"], {},
     "argument --set: policy.stable_agreement='three' is not an integer"),
    (["--set", "policy.context_s=nan"], {}, "policy.context_s='nan' is not a number"),
    (["--set", "policy.context_prefix=maybe"], {}, "'maybe' is not a yes/no value"),
    (["--set", "policy.no_such_thing=1"], {}, "policy.no_such_thing is not a setting"),
    (["--set", "capacity.max_load=1"], {}, "capacity.max_load is set by its own option, "
                                           "--max-load"),
    ([], {"CAPTIONCAST_DECODE__BEST_OF": "many"},
     "CAPTIONCAST_DECODE__BEST_OF='many' is not an integer"),
    ([], {"CAPTIONCAST_POLICY__TYPO": "1"}, "CAPTIONCAST_POLICY__TYPO is not a setting"),
])
def test_a_bad_setting_is_one_line(argv: list[str], environ: dict[str, str],
                                   message: str) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        _options(argv, environ)


def test_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy\n")
    with pytest.raises(config.ConfigError, match="is not TOML"):
        _options(["--config", str(bad)])
    bad.write_text("[policy]\nstable_agreement = 'x'\n")
    with pytest.raises(config.ConfigError, match=r"bad.toml: policy.stable_agreement='x' is not"):
        _options(["--config", str(bad)])
    with pytest.raises(config.ConfigError, match="cannot read config file"):
        _options(["--config", str(tmp_path / "absent.toml")])


def test_every_setting_is_listed_with_its_variable() -> None:
    listing = config.describe()
    for setting in config.settings().values():
        assert setting.key in listing and setting.variable in listing
    assert "capacity.max_load" not in listing  # --max-load sets it


def test_the_lists_read_beside_flags_come_from_the_same_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("from-file\n")
    environ = {"CAPTIONCAST_TOKEN": "a, b", "CAPTIONCAST_TOKEN_FILE": str(token_file),
               "CAPTIONCAST_ALLOWED_ORIGINS": "https://studio.example"}
    security = _options(["--token", "flag", "--allowed-origin", "https://x.example"],
                        environ).security
    assert security.tokens == ("flag", "from-file", "a", "b")
    assert security.allowed_origins == ("https://x.example", "https://studio.example")


def test_the_profanity_filter_by_flag_variable_and_channel_settings(tmp_path: Path) -> None:
    assert not _options([]).profanity.on
    assert _options(["--profanity-filter"]).profanity.on
    assert _options([], {"CAPTIONCAST_PROFANITY_FILTER": "yes"}).profanity.on
    options = _options(["--set", "profanity.channels=kids, family",
                        "--set", "profanity.words=heck"])
    assert options.profanity.channels == ("kids", "family")
    assert options.profanity.words == ("heck",)
    toml = tmp_path / "captioncast.toml"
    toml.write_text('[profanity]\nchannels = ["kids"]\n')
    assert _options(["--config", str(toml)]).profanity.channels == ("kids",)
    with pytest.raises(config.ConfigError, match="--profanity-filter"):
        _options(["--set", "profanity.on=true"])
