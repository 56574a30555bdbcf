"""Our own protocol, `/v1/stream` (PROTOCOL.md): binary PCM and JSON control in, events out."""

from __future__ import annotations

from captioncast.api.translator import Port
from captioncast.core.params import Configure, NameSpeaker, parse_message
from captioncast.errors import CaptioncastError
from captioncast.protocol.events import Event


class NativeTranslator:
    """Binary frames are audio as they are; text frames are control messages."""

    eager = False  # rendered as sent: a final waits for its commit to the store first

    def start(self, port: Port) -> None:
        pass

    def binary(self, frame: bytes, port: Port) -> None:
        port.audio(frame)

    def text(self, message: str, port: Port) -> None:
        try:
            parsed = parse_message(message)
            if isinstance(parsed, NameSpeaker):
                port.name_speaker(parsed.id, parsed.name)
            elif isinstance(parsed, Configure):
                port.configure(parsed)
            else:
                port.control(parsed)
        except CaptioncastError as error:
            port.report(error)

    def render(self, event: Event) -> list[str]:
        return [event.to_json()]

    def close(self, code: int, reason: str) -> tuple[int, str]:
        return code, reason
