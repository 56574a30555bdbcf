"""Freed native memory goes back to the system at most every few seconds, after a decode."""

import sys

import pytest

from captioncast.engine.native_memory import MallocTrimmer, _glibc_malloc_trim
from tests.support.scheduler_sim import FakeClock


def test_trims_after_a_decode_at_most_every_interval() -> None:
    clock, calls = FakeClock(), []
    trimmer = MallocTrimmer(10.0, clock=clock, trim=lambda pad: calls.append(pad) or 1)
    trimmer.after_decode()
    assert calls == []  # too soon after the start
    clock.advance(10.0)
    trimmer.after_decode()
    trimmer.after_decode()
    assert calls == [0] and trimmer.trims == 1
    clock.advance(9.9)
    trimmer.after_decode()
    clock.advance(0.1)
    trimmer.after_decode()
    assert calls == [0, 0]


def test_zero_turns_it_off() -> None:
    trimmer = MallocTrimmer(0.0)
    assert not trimmer.active
    trimmer.after_decode()
    assert trimmer.trims == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_trim_is_found_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    trim = _glibc_malloc_trim()
    assert trim is not None and trim(0) in (0, 1)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert _glibc_malloc_trim() is None  # jemalloc keeps its own memory
