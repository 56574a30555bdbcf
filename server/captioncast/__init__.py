"""captioncast: a real-time streaming captioning server."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 2
