"""What the clients show: the partial as one live line, each final with its timestamps, and
with diarization who speaks where the speaker changes (after the newest speakers table)."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from captioncast.protocol.captions import SpeakerChanges
from captioncast.protocol.events import End, Error, Event, Final, Partial, Speakers


def clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:06.3f}"


class CaptionPrinter:
    """Prints finals as lines; on a terminal, redraws the partial in place under them."""

    def __init__(self, out: TextIO | None = None, show_partials: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if show_partials is None else show_partials
        self._partial_shown = False
        self._speakers = SpeakerChanges(None)

    def _clear(self) -> None:
        if self._partial_shown:
            self.out.write("\r\x1b[2K")
            self._partial_shown = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Partial) and self.live:
            width = shutil.get_terminal_size((100, 20)).columns - 4
            text = event.text
            if len(text) > width:
                text = "…" + text[-(width - 1):]
            self._clear()
            stable = event.stable
            rest = text[len(stable):] if text.startswith(stable) else text
            shown = stable if text.startswith(stable) else ""
            self.out.write(f"\x1b[2m{shown}\x1b[0m\x1b[3m{rest}\x1b[0m")
            self._partial_shown = True
            self.out.flush()
        elif isinstance(event, Final):
            self._clear()
            if event.text:
                name = self._speakers.name(event.speaker, event.speaker_name)
                lead = f"{name}: " if name is not None else ""
                self.out.write(f"[{clock(event.start)} --> {clock(event.end)}] "
                               f"{lead}{event.text}\n")
            self.out.flush()
        elif isinstance(event, Speakers):
            # Lines printed cannot change: a name or a merge shows from the next final on,
            # and is said once here.
            self._speakers.speakers = event
            said = [f"{e.id} is {e.name}" if e.name else f"{e.id} is {e.same_as}"
                    for e in event.speakers if e.name or e.same_as]
            if said:
                self._clear()
                print(f"captioncast: speakers: {', '.join(said)}", file=sys.stderr)
        elif isinstance(event, Error):
            self._clear()
            print(f"captioncast: server error {event.code}: {event.message}", file=sys.stderr)
        elif isinstance(event, End):
            self._clear()
            self.out.flush()
