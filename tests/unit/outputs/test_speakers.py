"""outputs/speakers.py and the outputs that use it: a lead where the speaker changes, after
the newest speaker table (`>> ` and `>> ALICE: ` on OBS, `Alice: ` on the text platforms)."""

from __future__ import annotations

from typing import Any

from captioncast.outputs import OutputRegistry
from captioncast.outputs.obs import ObsOutput
from captioncast.outputs.output import Delivery, Output
from captioncast.outputs.speakers import SpeakerTurns, Turn, broadcast_lead, name_lead
from captioncast.outputs.teams import TeamsOutput
from captioncast.outputs.youtube import YouTubeOutput
from captioncast.outputs.zoom import ZoomOutput
from captioncast.protocol.events import Final, SpeakerEntry, Speakers, Word

NAMED = Speakers(9, speakers=(SpeakerEntry("S1", "Alice"), SpeakerEntry("S2"),
                              SpeakerEntry("S3", same_as="S1")))


def said(text: str, speaker: str | None, start: float = 0.0) -> dict[str, Any]:
    words = tuple(Word(w, start + i * 0.3, start + i * 0.3 + 0.25, 0.9)
                  for i, w in enumerate(text.split()))
    final = Final(1, utterance=0, start=start, end=start + 0.3 * len(words), text=text,
                  language="en", words=words)
    return (final.labelled(speaker) if speaker else final).to_dict()


def shown(output: Output[Any], finals: list[dict[str, Any]]) -> list[Any]:
    """What `output` prepares for each final, its leads decided in order as `offer` does."""
    return [output.prepare(Delivery(f, 1_780_000_000.0, output.turns.turn(f))) for f in finals]


def test_a_turn_only_where_the_voice_changes_merges_followed() -> None:
    turns = SpeakerTurns()
    turns.update(NAMED)
    leads = [turns.turn(said(t, s)) for t, s in [
        ("Hello.", "S1"), ("Still me.", "S1"), ("Me now.", "S2"), ("", "S1"),
        ("Back to Alice.", "S3"), ("Alice again.", "S1"), ("No labels.", None),
        ("Labelled again.", "S1")]]
    assert leads == [Turn("S1", "Alice"), None, Turn("S2"), None, Turn("S1", "Alice"), None,
                     None, Turn("S1", "Alice")]


def test_the_leads_of_each_convention() -> None:
    assert broadcast_lead(Turn("S1", "Alice")) == ">> ALICE: "
    assert broadcast_lead(Turn("S2")) == ">> "
    assert name_lead(Turn("S1", "Alice")) == "Alice: "
    assert name_lead(Turn("S2")) == ">> "
    assert broadcast_lead(None) == name_lead(None) == ""


async def test_obs_begins_a_new_speaker_with_arrows_and_the_name_in_capitals() -> None:
    obs = ObsOutput("ws://127.0.0.1:1")
    obs.speakers(NAMED)
    plans = shown(obs, [said("Good evening and welcome.", "S1"), said("Thank you.", "S1"),
                        said("Glad to be here tonight with you all.", "S2"),
                        said("Let us begin with the news of the day from our city.", "S3")])
    texts = [[c.text for c in plan.chunks] for plan in plans]
    assert texts == [[">> ALICE: Good evening and\nwelcome."], ["Thank you."],
                     [">> Glad to be here tonight with\nyou all."],
                     [">> ALICE: Let us begin with the\nnews of the day from our city."]]
    assert all(len(line) <= 32 for t in texts for cue in t for line in cue.split("\n"))


async def test_without_speakers_obs_and_zoom_show_what_they_always_did() -> None:
    obs, zoom = ObsOutput("ws://127.0.0.1:1"), ZoomOutput("https://zoom.invalid/cc?id=1")
    [plan] = shown(obs, [said("Plain words.", None)])
    [post] = shown(zoom, [said("Plain words.", None)])
    assert [c.text for c in plan.chunks] == ["Plain words."] and post.text == "Plain words.\n"
    await zoom.aclose()


async def test_the_text_platforms_name_the_speaker_at_a_change() -> None:
    zoom = ZoomOutput("https://zoom.invalid/cc?id=1")
    teams = TeamsOutput("https://teams.invalid/cart?meetingid=1&token=t")
    youtube = YouTubeOutput("https://youtube.invalid/cc?cid=1")
    finals = [said("Hello there.", "S1"), said("Hi.", "S2"), said("How are you?", "S1")]
    for output in (zoom, teams, youtube):
        output.speakers(NAMED)
    assert [p.text for p in shown(zoom, finals)] == [
        "Alice: Hello there.\n", ">> Hi.\n", "Alice: How are you?\n"]
    assert [p.body for p in shown(teams, finals)] == [
        "Alice: Hello there.\n", ">> Hi.\n", "Alice: How are you?\n"]
    bodies = [p.body.split("\n")[1] for p in shown(youtube, finals)]
    assert bodies == ["Alice: Hello there.", ">> Hi.", "Alice: How are you?"]
    for output in (zoom, teams, youtube):
        await output.aclose()


async def test_a_table_reaches_outputs_added_after_it() -> None:
    registry = OutputRegistry()
    registry.speakers("talk", NAMED)
    assert registry.names() == []  # a table alone does not make a channel with outputs
    obs = registry.add("talk", ObsOutput("ws://127.0.0.1:1"))
    assert obs.turns.table == NAMED
    renamed = Speakers(10, speakers=(SpeakerEntry("S1", "Alicia"),))
    registry.speakers("talk", renamed)
    assert obs.turns.table == renamed
    await registry.close(0.1)
