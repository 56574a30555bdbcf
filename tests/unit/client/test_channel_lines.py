"""What `captioncast watch` says of channels (captioncast_client/channel_lines.py)."""

from __future__ import annotations

import pytest

from captioncast_client.channel_lines import ago, listing, no_channels, no_speaker
from captioncast_client.viewing import ChannelSummary

NOW = 1_800_000_000.0
SHOW = ChannelSummary("show", live=True, last_active=NOW - 2, seq=40)
LECTURE = ChannelSummary("lecture", live=False, last_active=NOW - 3 * 3600, seq=12)
PLANNED = ChannelSummary("planned", live=False, last_active=None)


@pytest.mark.parametrize(("seconds", "said"), [
    (0.4, "just now"), (40, "40 s ago"), (300, "5 min ago"), (3 * 3600 + 5, "3 h ago"),
    (86400, "1 day ago"), (3 * 86400, "3 days ago")])
def test_ago(seconds: float, said: str) -> None:
    assert ago(seconds) == said


def test_the_list_says_live_or_ended_and_when() -> None:
    assert listing([SHOW, LECTURE, PLANNED], NOW) == [
        "show     live   last caption just now",
        "lecture  ended  last caption 3 h ago",
        "planned  new    nobody has spoken on it yet",
    ]


def test_no_channels_says_how_one_starts() -> None:
    said = no_channels("ws://127.0.0.1:8765")
    assert said.startswith("no channels on ws://127.0.0.1:8765 yet")
    assert "captioncast mic --channel NAME" in said


def test_a_name_nobody_spoke_on_is_no_channel_yet() -> None:
    said = no_speaker("nosuch", [SHOW, LECTURE], since=None, follow=False, now=NOW)
    assert said.startswith("no channel 'nosuch' yet: it starts when a speaker publishes to it")
    assert said.endswith("waiting for one (live now: show; Ctrl-C to stop)")


def test_an_ended_channel_replayed_is_not_waited_on() -> None:
    said = no_speaker("lecture", [LECTURE], since=0, follow=False, now=NOW)
    assert said == ("channel 'lecture' has no speaker now (the last one spoke 3 h ago); "
                    "replaying what the server holds of it")


def test_an_ended_channel_followed_waits_for_its_next_speaker() -> None:
    said = no_speaker("lecture", [LECTURE], since=0, follow=True, now=NOW)
    assert "replaying what the server holds of it, then waiting for its next speaker" in said
    said = no_speaker("lecture", [LECTURE], since=None, follow=False, now=NOW)
    assert said.endswith("; waiting for its next speaker (no channel is live; Ctrl-C to stop)")


def test_a_channel_with_outputs_and_no_speaker_yet() -> None:
    said = no_speaker("planned", [PLANNED], since=None, follow=False, now=NOW)
    assert said.startswith("channel 'planned' has no speaker yet; waiting for its next speaker")
