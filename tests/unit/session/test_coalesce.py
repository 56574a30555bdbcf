"""session/coalesce.py: tiny frames are batched, ordinary ones pass straight through."""

from __future__ import annotations

from captioncast.session.coalesce import FrameCoalescer


def test_ordinary_frames_pass_through_and_tiny_ones_are_batched_in_order() -> None:
    coalescer = FrameCoalescer(32000)  # 16 kHz s16le mono: 640 bytes in 20 ms
    assert coalescer.min_bytes == 640
    frame = bytes(3200)
    assert coalescer.add(frame) is frame
    tiny = [bytes([i % 256, 0]) for i in range(320)]
    batches = [b for b in (coalescer.add(t) for t in tiny) if b is not None]
    assert batches == [b"".join(tiny)]  # 320 samples = 20 ms: one batch
    assert coalescer.take() == b""


def test_what_is_held_comes_out_first_and_on_demand() -> None:
    coalescer = FrameCoalescer(32000)
    assert coalescer.add(b"\x01\x00") is None
    assert coalescer.add(bytes(640)) == b"\x01\x00" + bytes(640)  # order kept
    assert coalescer.add(b"\x02\x00") is None
    assert coalescer.take() == b"\x02\x00"  # a flush or eos takes the rest
