"""Channels' outputs in the one configuration pass: `--output CHANNEL=SPEC` and `[[outputs]]`."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioncast import config
from captioncast.cli import build_parser
from captioncast.options import OutputOptions, ServerOptions
from captioncast.outputs import OutputSpecError
from captioncast.outputs.spec import spec_from_text

SECRET = "a-secret-of-20-chars"


def _options(argv: list[str]) -> ServerOptions:
    return config.from_arguments(build_parser({}).parse_args(["serve", *argv]))


def test_a_spec_as_json_or_as_kind_and_settings() -> None:
    assert spec_from_text('{"kind": "obs", "password": "1234"}') == {"kind": "obs",
                                                                     "password": "1234"}
    assert spec_from_text("obs") == {"kind": "obs"}
    # A comma starts a setting only before key=: a URL's own commas stay in it.
    assert spec_from_text("zoom:url=https://z.example/cc?id=1&sp=id,ns,lang=de-DE") == {
        "kind": "zoom", "url": "https://z.example/cc?id=1&sp=id,ns", "lang": "de-DE"}
    assert spec_from_text("webhook:url=http://h/x, secret=s, queue_size=10") == {
        "kind": "webhook", "url": "http://h/x", "secret": "s", "queue_size": 10}
    for bad in ("{nope", "[1]", "not a kind:x=1", "obs:password"):
        with pytest.raises(OutputSpecError):
            spec_from_text(bad)


def test_outputs_from_the_command_line_and_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "captioncast.toml"
    toml.write_text('[policy]\nstable_agreement = 3\n'
                    '[[outputs]]\nchannel = "show"\nkind = "youtube"\n'
                    'url = "http://upload.youtube.com/closedcaption?cid=abc"\n'
                    '[[outputs]]\nchannel = "class"\nkind = "teams"\n'
                    'url = "https://api.captions.office.microsoft.com/cartcaption?token=t"\n')
    options = _options(["--config", str(toml), "--output",
                        f"show=webhook:url=http://127.0.0.1:9/hook,secret={SECRET},id=notes",
                        "--output", 'show={"kind": "obs", "password": "pw"}'])
    assert options.policy.stable_agreement == 3
    assert [(o.channel, o.spec["kind"]) for o in options.outputs] == [
        ("show", "youtube"), ("class", "teams"), ("show", "webhook"), ("show", "obs")]
    assert options.outputs[2] == OutputOptions("show", {
        "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": SECRET, "id": "notes"})
    assert _options([]).outputs == ()


@pytest.mark.parametrize(("argv", "message"), [
    (["--output", "obs"], "is not CHANNEL=SPEC"),
    (["--output", "bad name=obs"], "channel must match"),
    (["--output", "show=fax:url=http://x"], "'kind' must be one of"),
    (["--output", "show=webhook:url=http://x,secret=short"], "16\\+ characters"),
    (["--output", "show=obs:pasword=x"], "unknown setting\\(s\\) pasword"),
    (["--output", "show=obs:id=a", "--output", "show=obs:id=a,url=ws://h:1"],
     "two outputs with id a"),
])
def test_a_bad_output_is_a_usage_error(argv: list[str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        _options(argv)


def test_a_bad_output_in_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('[[outputs]]\nkind = "obs"\n')
    with pytest.raises(config.ConfigError, match=r"bad.toml: output 1 needs channel"):
        _options(["--config", str(toml)])
    toml.write_text('[[outputs]]\nchannel = "show"\nkind = "zoom"\n')
    with pytest.raises(config.ConfigError, match=r"bad.toml: output 1: zoom output: 'url'"):
        _options(["--config", str(toml)])
    toml.write_text('outputs = 3\n')
    with pytest.raises(config.ConfigError, match=r"array of tables"):
        _options(["--config", str(toml)])
