"""The outputs of every channel: build from a spec, add, list, remove, fan a final out, close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from captioncast.outputs.errors import OutputSpecError
from captioncast.outputs.output import Output
from captioncast.outputs.spec import SpecReader
from captioncast.protocol.events import Speakers

MAX_OUTPUTS_PER_CHANNEL = 16  # each holds a connection and a queue; a route must not add 10 000

Builder = Callable[[SpecReader], Output[Any]]


def _builders() -> dict[str, Builder]:
    # Imported here so that a client using only ObsCaptions never imports httpx.
    from captioncast.outputs.obs import ObsOutput
    from captioncast.outputs.teams import TeamsOutput
    from captioncast.outputs.webhook import WebhookOutput
    from captioncast.outputs.youtube import YouTubeOutput
    from captioncast.outputs.zoom import ZoomOutput

    return {"obs": ObsOutput.from_spec, "youtube": YouTubeOutput.from_spec,
            "zoom": ZoomOutput.from_spec, "teams": TeamsOutput.from_spec,
            "webhook": WebhookOutput.from_spec}


KINDS = ("obs", "youtube", "zoom", "teams", "webhook")


def build_output(spec: Mapping[str, Any]) -> Output[Any]:
    """An output (not started) from `{"kind": ..., settings...}`; OutputSpecError if invalid."""
    reader = SpecReader(spec)
    builder = _builders().get(reader.kind)
    if builder is None:
        raise OutputSpecError(f"output 'kind' must be one of {', '.join(KINDS)}")
    output = builder(reader)
    reader.done()
    return output


@dataclass(frozen=True)
class Sample:
    """One value for `/metrics`: `captioncast_output_<name>{channel,output,kind}`."""

    name: str
    labels: dict[str, str]
    value: float


class ChannelOutputs:
    """The outputs of one channel, in the order they were added."""

    def __init__(self, channel: str, *, limit: int = MAX_OUTPUTS_PER_CHANNEL) -> None:
        self.channel = channel
        self.limit = limit
        self._outputs: dict[str, Output[Any]] = {}
        self.table: Speakers | None = None  # the newest: an output added later needs it too

    def __len__(self) -> int:
        return len(self._outputs)

    def __iter__(self) -> Iterator[Output[Any]]:
        return iter(list(self._outputs.values()))

    def add(self, spec_or_output: Mapping[str, Any] | Output[Any]) -> Output[Any]:
        """Build (from a spec) and start an output; needs a running loop."""
        output = spec_or_output if isinstance(spec_or_output, Output) \
            else build_output(spec_or_output)
        if output.id in self._outputs:
            raise OutputSpecError(f"channel {self.channel} already has an output '{output.id}'")
        if len(self._outputs) >= self.limit:
            raise OutputSpecError(f"channel {self.channel} has {self.limit} outputs, the most")
        self._outputs[output.id] = output
        if self.table is not None:
            output.speakers(self.table)
        output.start()
        return output

    def get(self, output_id: str) -> Output[Any] | None:
        return self._outputs.get(output_id)

    def statuses(self) -> list[dict[str, Any]]:
        return [o.status() for o in self._outputs.values()]

    def offer(self, final: Mapping[str, Any], received_at: float | None = None) -> None:
        """Hand a final to every output; returns at once whatever the outputs' state."""
        for output in self._outputs.values():
            output.offer(final, received_at)

    def speakers(self, table: Speakers) -> None:
        self.table = table
        for output in self._outputs.values():
            output.speakers(table)

    async def remove(self, output_id: str, timeout: float = 2.0) -> bool:
        output = self._outputs.pop(output_id, None)
        if output is None:
            return False
        await output.close(timeout)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Drain every output (in parallel, `timeout` s in all) and stop them."""
        outputs, self._outputs = list(self._outputs.values()), {}
        await asyncio.gather(*(o.close(timeout) for o in outputs))

    def samples(self) -> Iterator[Sample]:
        for output in self._outputs.values():
            labels = {"channel": self.channel, "output": output.id, "kind": output.kind}
            for name, value in output.counters().items():
                yield Sample(name, labels, float(value))


class OutputRegistry:
    """Every channel's outputs; the server holds one and calls `offer` for each final."""

    def __init__(self) -> None:
        self._channels: dict[str, ChannelOutputs] = {}
        # Kept for channels without outputs too: one added later must know the names.
        self._tables: dict[str, Speakers] = {}

    def channel(self, name: str) -> ChannelOutputs:
        outputs = self._channels.get(name)
        if outputs is None:
            outputs = self._channels[name] = ChannelOutputs(name)
            if name in self._tables:
                outputs.speakers(self._tables[name])
        return outputs

    def add(self, channel: str, spec: Mapping[str, Any] | Output[Any]) -> Output[Any]:
        return self.channel(channel).add(spec)

    def names(self) -> list[str]:
        """The channels that have outputs."""
        return list(self._channels)

    def statuses(self, channel: str) -> list[dict[str, Any]]:
        outputs = self._channels.get(channel)
        return outputs.statuses() if outputs else []

    def offer(self, channel: str, final: Mapping[str, Any],
              received_at: float | None = None) -> None:
        outputs = self._channels.get(channel)
        if outputs:
            outputs.offer(final, received_at)

    def speakers(self, channel: str, table: Speakers) -> None:
        """A channel's speaker table changed: its outputs name speakers after it from now."""
        self._tables[channel] = table
        outputs = self._channels.get(channel)
        if outputs:
            outputs.speakers(table)

    async def remove(self, channel: str, output_id: str, timeout: float = 2.0) -> bool:
        outputs = self._channels.get(channel)
        if outputs is None or not await outputs.remove(output_id, timeout):
            return False
        if not len(outputs):
            del self._channels[channel]
        return True

    def samples(self) -> Iterator[Sample]:
        for outputs in list(self._channels.values()):
            yield from outputs.samples()

    async def close(self, timeout: float = 5.0) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(timeout) for c in channels))
