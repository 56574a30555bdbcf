"""Caption outputs: a channel's finals to OBS, YouTube Live, Zoom, Teams and signed webhooks.

Nothing here imports the rest of captioncast, so the clients can use it (`obs.ObsCaptions`,
`obs.ObsOutput`) without the server; the HTTP kinds need `httpx` (the `server` extra).
"""

from captioncast.outputs.base import Delivery, Output, OutputState, RetryPolicy
from captioncast.outputs.errors import DeliveryError, OutputError, OutputSpecError
from captioncast.outputs.registry import (
    KINDS,
    ChannelOutputs,
    OutputRegistry,
    Sample,
    build_output,
)

__all__ = [
    "KINDS", "ChannelOutputs", "Delivery", "DeliveryError", "Output", "OutputError",
    "OutputRegistry", "OutputSpecError", "OutputState", "RetryPolicy", "Sample", "build_output",
]
