"""Channels' caption outputs in the server: every final to them, and their `/metrics`.

`OutputSink` follows the channels as the MQTT bridge does (a `ChannelSink` of the hub) and
hands each final to `OutputRegistry.offer`, which returns at once: a slow or broken output
never slows captioning, viewers or the other outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from captioncast.outputs import OutputRegistry
from captioncast.protocol.events import Event, Final, Speakers

log = logging.getLogger("captioncast.outputs")

CLOSE_TIMEOUT_S = 3.0  # at shutdown: time for outputs to deliver what they hold
GAUGES = frozenset({"queued"})
HELP = {
    "sent": "Finals an output delivered",
    "failed": "Failed delivery attempts of an output (each retried)",
    "dropped": "Finals an output lost: queue full, or still queued when it closed",
    "skipped": "Finals an output had nothing to send for (empty text)",
    "queued": "Finals waiting in an output's queue",
}


@dataclass(frozen=True)
class OutputOptions:
    """One output of a channel started with the server (`--output`, `[[outputs]]` in the
    config file); `spec` is what `POST /v1/channels/NAME/outputs` takes (docs/outputs.md)."""

    channel: str
    spec: Mapping[str, Any]




class OutputSink:
    """The hub's sink that offers every final of a channel spoken on this node to its outputs.

    Relayed finals (a speaker on another node) are not sinks' events: in a cluster, give
    every node the same outputs and the speaker's node delivers them, once.
    """

    def __init__(self, outputs: OutputRegistry) -> None:
        self.outputs = outputs

    def channel_live(self, name: str) -> None:
        pass

    def channel_event(self, name: str, event: Event) -> None:
        if isinstance(event, Final):
            self.outputs.offer(name, event.to_dict(), received_at=time.time())
        elif isinstance(event, Speakers):
            self.outputs.speakers(name, event)

    def channel_ended(self, name: str) -> None:
        pass


class OutputCollector(Collector):
    """`captioncast_output_*{channel,output,kind}`, read from the outputs at scrape time
    (an output removed is gone from the next scrape)."""

    def __init__(self, outputs: OutputRegistry) -> None:
        self.outputs = outputs

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the label sets change as outputs come and go

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for sample in self.outputs.samples():
            family = families.get(sample.name)
            if family is None:
                kind = GaugeMetricFamily if sample.name in GAUGES else CounterMetricFamily
                family = families[sample.name] = kind(
                    f"captioncast_output_{sample.name}", HELP.get(sample.name, sample.name),
                    labels=("channel", "output", "kind"))
            family.add_metric([sample.labels["channel"], sample.labels["output"],
                               sample.labels["kind"]], sample.value)
        yield from families.values()


def start_outputs(outputs: OutputRegistry, configured: tuple[OutputOptions, ...]) -> None:
    """The outputs of the command line and config file (checked then: these build)."""
    for output in configured:
        started = outputs.add(output.channel, output.spec)
        log.info("event=output_added channel=%s output=%s kind=%s", output.channel,
                 started.id, started.kind)
