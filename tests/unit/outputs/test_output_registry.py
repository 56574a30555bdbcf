"""outputs/output_registry.py: building outputs from specs, adding, listing, removing them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from captioncast.outputs import ChannelOutputs, OutputRegistry, OutputSpecError, build_output
from tests.support.scripted_output import Scripted, final


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "fax"}, "kind"),
    ({"url": "http://x"}, "kind"),
    ({"kind": "webhook", "secret": "s" * 20}, "'url' is required"),
    ({"kind": "webhook", "url": "ftp://x", "secret": "s" * 20}, "http or https"),
    ({"kind": "webhook", "url": "http://x"}, "'secret' is required"),
    ({"kind": "webhook", "url": "http://x", "secret": "short"}, "16+"),
    ({"kind": "webhook", "url": "http://x", "secret": "s" * 20, "sekret": 1}, "sekret"),
    ({"kind": "zoom", "url": "http://x", "queue_size": 0}, "queue_size"),
    ({"kind": "zoom", "url": "http://x", "queue_size": True}, "queue_size"),
    ({"kind": "obs", "url": "http://localhost:4455"}, "ws or wss"),
    ({"kind": "teams", "url": "https://x", "line_chars": 200}, "line_chars"),
    ({"kind": "youtube", "url": "https://x", "id": "no spaces"}, "'id'"),
])
def test_bad_specs_say_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(OutputSpecError, match=re.escape(message)):
        build_output(spec)


async def test_registry_adds_lists_and_removes_outputs_by_id() -> None:
    registry = OutputRegistry()
    a = registry.add("show", {"kind": "webhook", "url": "http://127.0.0.1:9/h",
                              "secret": "s" * 20, "id": "notes"})
    b = registry.add("show", {"kind": "obs", "password": "pw"})
    assert a.id == "notes" and b.id != a.id
    with pytest.raises(OutputSpecError, match="already"):
        registry.add("show", {"kind": "webhook", "url": "http://x", "secret": "s" * 20,
                              "id": "notes"})
    statuses = registry.statuses("show")
    assert [s["id"] for s in statuses] == ["notes", b.id]
    assert statuses[0]["url"] == "http://127.0.0.1:9" and "secret" not in statuses[0]
    assert statuses[1]["url"] == "ws://127.0.0.1:4455" and "password" not in statuses[1]
    assert registry.statuses("other") == []
    registry.offer("nobody", final(1))  # a channel without outputs costs a dict lookup
    assert {s.name for s in registry.samples()} >= {"sent", "failed", "dropped", "queued"}
    assert await registry.remove("show", "notes")
    assert not await registry.remove("show", "notes")
    await registry.close(timeout=0.1)
    assert registry.statuses("show") == []


async def test_a_channel_has_a_bounded_number_of_outputs() -> None:
    outputs = ChannelOutputs("show", limit=2)
    outputs.add(Scripted())
    outputs.add(Scripted())
    with pytest.raises(OutputSpecError, match="most"):
        outputs.add(Scripted())
    await outputs.close(timeout=0.1)
