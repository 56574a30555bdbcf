"""Give freed native memory back: glibc keeps what the decoder's buffers freed.

CTranslate2 allocates buffers sized by each decode's audio, on the decode threads. glibc
keeps freed chunks in per-thread arenas and returns the top of a heap only, so a server
that has decoded a few long utterances holds their peak for good: the soak's RSS rose
in steps with no Python object growing (bench/RESULTS.md, soak and allocator).
`malloc_trim(0)` returns the free pages of every arena; it takes a few milliseconds, so
it runs at most every `every_s` seconds, after a decode, on the thread that decoded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable

from captioncast.allocator import preloaded


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, unless another allocator is preloaded (it would not help)."""
    if preloaded(os.environ):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim  # absent from musl and macOS
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class MallocTrimmer:
    """`after_decode()` trims when `every_s` has passed since the last trim; 0: never."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic,
                 trim: Callable[[int], int] | None = None) -> None:
        self.every_s = every_s
        self._clock = clock
        self._trim = trim if trim is not None else (_glibc_malloc_trim() if every_s > 0
                                                    else None)
        self._last = clock()
        self._lock = threading.Lock()
        self.trims = 0

    @property
    def active(self) -> bool:
        return self._trim is not None and self.every_s > 0

    def after_decode(self) -> None:
        if not self.active:
            return
        with self._lock:
            now = self._clock()
            if now - self._last < self.every_s:
                return
            self._last = now
            self.trims += 1
        assert self._trim is not None
        self._trim(0)
