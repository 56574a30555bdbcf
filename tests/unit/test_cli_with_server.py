"""What the `captioncast` command says against a server: the in-process one with the
scripted decoder (tests/support/inprocess.py), the command in a subprocess as a user runs it.

The cases that need no server are in test_cli_messages.py; those that need the real model's
words in tests/integration/test_cli_messages.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from captioncast.cli import EXIT_OK, EXIT_REFUSED
from tests.support.inprocess import ScriptedServer, scripted_server


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with scripted_server() as running:
        yield running


async def _cli(server: ScriptedServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIONCAST_")}
    env["CAPTIONCAST_SERVER"] = server.ws_url
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "captioncast.cli", *args], env=env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


async def test_watch_lists_the_channels_and_replays_an_ended_one(server: ScriptedServer) -> None:
    done = await _cli(server, "watch")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == ""
    assert f"no channels on {server.ws_url} yet: a channel starts when a speaker" in done.stderr

    # the bundled clip: something to caption on a fresh machine
    spoken = await _cli(server, "stream", "--demo", "--fast", "--channel", "demo")
    assert spoken.returncode == EXIT_OK, spoken.stderr
    finals = spoken.stdout.splitlines()
    assert len(finals) >= 2 and all(line.startswith("[00:00:") for line in finals), finals
    second = await _cli(server, "stream", "--demo", "--fast", "--channel", "demo")
    assert second.returncode == EXIT_OK, second.stderr

    done = await _cli(server, "watch")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines() == ["demo  ended  last caption just now"]
    assert "captioncast watch NAME" in done.stderr

    done = await _cli(server, "watch", "demo", "--since", "0")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stderr.splitlines() == [
        "captioncast: channel 'demo' has no speaker now (the last one spoke just now); "
        "replaying what the server holds of it"]
    # both speakers' finals, the second on the channel's clock after the first's
    replayed = done.stdout.splitlines()
    assert replayed[:len(finals)] == finals
    assert [line.split("] ", 1)[1] for line in replayed[len(finals):]] == \
        [line.split("] ", 1)[1] for line in second.stdout.splitlines()]


async def test_a_refusal_is_said_once(server: ScriptedServer) -> None:
    done = await _cli(server, "stream", "--demo", "--fast", "--language", "fr")
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert done.stderr.count("English-only") == 1, done.stderr
    assert done.stderr.startswith("captioncast: server refused the stream: bad_request: model "
                                  "scripted is English-only: language=fr"), done.stderr
