"""Caption outputs: a channel's finals to OBS, YouTube Live, Zoom, Teams and signed webhooks.

Nothing here imports the server (only `captioncast.protocol`, the shared caption split),
so a client can use `obs.ObsCaptions` and `obs.ObsOutput` on its own; the HTTP kinds need
`httpx` (the `server` extra).
"""

from captioncast.outputs.errors import DeliveryError, OutputError, OutputSpecError
from captioncast.outputs.output import Delivery, Output, OutputState
from captioncast.outputs.output_registry import (
    KINDS,
    ChannelOutputs,
    OutputRegistry,
    Sample,
    build_output,
)

__all__ = [
    "KINDS", "ChannelOutputs", "Delivery", "DeliveryError", "Output", "OutputError",
    "OutputRegistry", "OutputSpecError", "OutputState", "Sample", "build_output",
]
