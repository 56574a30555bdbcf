"""The server runs on jemalloc where the system has it.

CTranslate2's buffers for inputs of every length leave glibc's heap fragmented: a
3-hour soak grew +28.9 % with glibc and +1.1 % with jemalloc, which hands freed pages
back from a background thread (bench/RESULTS.md, soak and allocator sections). An
allocator is chosen before the process starts, so `captioncast serve` starts itself
again with jemalloc preloaded; without the library
(`apt install libjemalloc2`) it runs on glibc and the decoder trims glibc's heap
instead (engine/native_memory.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from captioncast.environment import ALLOCATORS

__all__ = ["ALLOCATORS", "describe", "find_jemalloc", "jemalloc_environment",
           "restart_on_jemalloc"]

JEMALLOC = "libjemalloc.so.2"
# Where Debian/Ubuntu, Fedora/RHEL, Arch and source builds put it.
SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
    "/usr/local/lib",
)
BACKGROUND_PURGE = "background_thread:true"  # frees pages while the decoders are busy
_RESTARTED = "CAPTIONCAST_ALLOCATOR_RESTARTED"  # never start again: a preload that failed
KNOWN_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def preloaded(environ: Mapping[str, str]) -> str | None:
    """The allocator LD_PRELOAD already puts in front of glibc, if any."""
    preload = environ.get("LD_PRELOAD", "")
    return next((name for name in KNOWN_ALLOCATORS if name in preload), None)


def find_jemalloc(dirs: Sequence[str] = SEARCH_DIRS) -> Path | None:
    return next((p for p in (Path(d) / JEMALLOC for d in dirs) if p.is_file()), None)


def jemalloc_environment(environ: Mapping[str, str], choice: str,
                         library: Path | None) -> dict[str, str] | None:
    """The environment to start again in, or None to go on as we are."""
    if choice != "auto" or library is None or preloaded(environ) or environ.get(_RESTARTED):
        return None
    changed = dict(environ)
    changed["LD_PRELOAD"] = " ".join(p for p in (str(library), environ.get("LD_PRELOAD")) if p)
    changed.setdefault("MALLOC_CONF", BACKGROUND_PURGE)
    changed[_RESTARTED] = "1"
    return changed


def restart_on_jemalloc(choice: str) -> None:
    """Replace this process with itself on jemalloc, when it is found and wanted."""
    if sys.platform != "linux":
        return
    changed = jemalloc_environment(os.environ, choice, find_jemalloc())
    if changed is None:
        return
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], changed)
    except OSError as exc:  # the process goes on, on glibc, and says why
        print(f"captioncast: could not restart on jemalloc ({exc}); using glibc",
              file=sys.stderr)


def describe(environ: Mapping[str, str] | None = None) -> str:
    """What the running process allocates with, for the startup log."""
    return preloaded(os.environ if environ is None else environ) or "glibc"
