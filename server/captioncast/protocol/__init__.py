"""The caption stream protocol (PROTOCOL.md): events, codes, and cues for caption files.

Server and clients both import it; it imports neither. `captioncast.protocol.captions`
(cue splitting, SRT and WebVTT) is imported on its own, as only caption writers need it.
"""

from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import (
    PROTOCOL_VERSION,
    CaptionEvent,
    End,
    Error,
    Event,
    Final,
    Partial,
    ProtocolError,
    Ready,
    Sequencer,
    SpeakerEntry,
    Speakers,
    SpeechStarted,
    Turn,
    Word,
    event_from_dict,
    parse_event,
)

__all__ = [
    "PROTOCOL_VERSION",
    "CaptionEvent",
    "End",
    "Error",
    "ErrorCode",
    "Event",
    "Final",
    "Partial",
    "ProtocolError",
    "Ready",
    "Sequencer",
    "SpeakerEntry",
    "Speakers",
    "SpeechStarted",
    "Turn",
    "Word",
    "event_from_dict",
    "parse_event",
]
