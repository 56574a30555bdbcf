"""captioncast clients: stream audio to a captioncast server, follow its channels, as a library.

`CaptionStream` sends audio and yields events; `follow` yields a channel's captions; both
reconnect and resume by themselves. Events are the typed ones of `captioncast.protocol`.
"""

from captioncast.protocol.events import End, Error, Event, Final, Partial, Ready, Word
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable
from captioncast_client.session import CaptionStream
from captioncast_client.streaming import stream_url
from captioncast_client.viewing import captions_url, follow

__version__ = "0.1.0"
__all__ = [
    "CaptionStream",
    "ClientError",
    "End",
    "Error",
    "Event",
    "Final",
    "Partial",
    "Ready",
    "ServerRefused",
    "ServerUnreachable",
    "Word",
    "captions_url",
    "follow",
    "stream_url",
]
