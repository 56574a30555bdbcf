"""The deployment files agree with each other and with the server's configuration."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from captioncast import config
from captioncast.cli import build_parser
from captioncast.environment import PREFIX, VARIABLES, FromEnvironment

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_two_nodes_behind_nginx_with_mosquitto() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"node1", "node2", "nginx", "mosquitto"} <= set(services)
    for name in ("node1", "node2"):
        node = services[name]
        assert node["build"] == "."
        assert node["environment"]["CAPTIONCAST_MQTT"] == "mqtt://mosquitto:1883"
    nginx_conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = re.findall(r"server (node\d):8765", nginx_conf)
    assert sorted(upstreams) == ["node1", "node2"]
    assert "least_conn" in nginx_conf and "proxy_set_header Upgrade" in nginx_conf
    mounted = [v.split(":")[0] for v in services["nginx"]["volumes"]]
    assert "./deploy/nginx.conf" in mounted


def test_every_environment_variable_the_image_sets_is_one_the_server_reads() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "compose.yaml").read_text()
    names = set(re.findall(r"CAPTIONCAST_[A-Z_]+", dockerfile + compose))
    declared = config.variables()
    assert names and names <= declared, names - declared
    build_parser({}).parse_args(["serve"])  # the defaults parse


def _bound(parser: argparse.ArgumentParser) -> set[str]:
    """The variables whose values the parser took as option defaults, every command's."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action.default, FromEnvironment):
            found.add(action.default.variable)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _bound(sub)
    return found


def test_every_declared_variable_is_read_by_the_cli() -> None:
    """The table is the list of what the CLI reads: each entry reaches an option, or (the
    comma-separated lists) the values serve reads beside its flags; no entry is dead."""
    for name, parse in VARIABLES.items():
        value = {"PORT": "9000", "DEVICE": "cpu", "LOG_LEVEL": "INFO", "MQTT_PARTIALS": "yes",
                 "MAX_LOAD": "0.5"}.get(name, "7")
        parser = build_parser({PREFIX + name: value})
        if parse is not None:
            assert PREFIX + name in _bound(parser), name
        else:
            assert value in vars(parser.parse_args(["serve"])).values(), name


def test_every_setting_has_a_variable_the_cli_reads() -> None:
    """CAPTIONCAST_SECTION__FIELD names come from the settings table, not from a list."""
    args = build_parser({"CAPTIONCAST_POLICY__STABLE_AGREEMENT": "4"}).parse_args(["serve"])
    assert config.from_arguments(args).policy.stable_agreement == 4
    assert "CAPTIONCAST_POLICY__SEGMENTER__END_HANGOVER_S" in config.variables()


def test_the_readme_table_names_the_apt_packages_ci_installs() -> None:
    """.ci/run holds the apt list; the README's Development table says what each is for."""
    script = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"apt-get install ((?:\\\n|[^\n])*)", script)
    assert command is not None
    installed = {word for word in command.group(1).replace("\\\n", " ").split()
                 if not word.startswith("-") and word not in (">/dev/null",)}
    readme = (ROOT / "README.md").read_text().split("## Development", 1)[1]
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    tabled = {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}
    assert tabled == installed
    top = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "apt install libportaudio2" in top and "postgresql" not in top  # not inline
