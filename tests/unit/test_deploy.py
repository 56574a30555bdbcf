"""The deployment files agree with each other and with the server's configuration."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from captioncast.cli import build_parser
from captioncast.environment import VARIABLES

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
    names = set(re.findall(r"CAPTIONCAST_([A-Z_]+)", dockerfile + compose))
    assert names and names <= set(VARIABLES), names - set(VARIABLES)
    build_parser().parse_args(["serve"])  # the defaults parse


def test_every_declared_variable_is_read_by_the_cli() -> None:
    """The table is the list of what the CLI reads: no entry is dead, none read elsewhere."""
    cli_source = (ROOT / "server" / "captioncast" / "cli.py").read_text()
    read = set(re.findall(r'env\.(?:option|raw)\("([A-Z_]+)"', cli_source))
    assert read == set(VARIABLES), set(VARIABLES) ^ read
