"""captioncast: a real-time streaming captioning server."""

from captioncast.protocol.events import PROTOCOL_VERSION as PROTOCOL_VERSION

__version__ = "0.1.0"
