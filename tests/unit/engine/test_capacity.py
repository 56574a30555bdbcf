"""Admission from measured decode cost."""

import pytest

from captioncast.engine.capacity import CapacityMeter, CapacityOptions, Decision
from captioncast.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_capacity_follows_the_measured_cost_of_finals() -> None:
    meter = CapacityMeter(2, CapacityOptions(max_load=0.7), clock=Clock())
    meter.record("final", audio_s=4.0, decode_s=0.4)  # 0.1 s per audio second
    assert meter.capacity() == 14  # 0.7 * 2 workers / 0.1
    meter.record("partial", audio_s=4.0, decode_s=4.0)  # partials are elastic: ignored
    assert meter.capacity() == 14
    for _ in range(40):  # the machine got slower (another tenant): capacity follows
        meter.record("final", audio_s=4.0, decode_s=0.8)
    assert meter.capacity() == 7


def test_speakers_past_capacity_are_shed_then_refused_and_connecting_only_when_late() -> None:
    meter = CapacityMeter(1, CapacityOptions(max_load=0.5, hard_load=0.8, max_lag_s=2.0),
                          clock=Clock())
    meter.record("final", audio_s=5.0, decode_s=0.5)  # capacity 5, hard capacity 8
    assert meter.speech_started(5, lag_s=0.0) is Decision.SPEAK
    assert meter.speech_started(6, lag_s=0.0) is Decision.SHED
    assert meter.speech_started(9, lag_s=0.0) is Decision.REFUSE
    assert meter.speech_started(1, lag_s=3.0) is Decision.REFUSE  # already late
    assert "retry after" in meter.refusal(9, lag_s=0.0).message
    meter.admit(lag_s=0.0)  # connecting costs nothing while the decoders keep up
    with pytest.raises(Overloaded, match="behind"):
        meter.admit(lag_s=3.0)


def test_zero_max_load_turns_the_estimate_off() -> None:
    meter = CapacityMeter(1, CapacityOptions(max_load=0.0), clock=Clock())
    meter.record("final", audio_s=1.0, decode_s=10.0)
    assert meter.capacity() is None
    meter.admit(lag_s=100.0)
    assert meter.speech_started(1000, lag_s=100.0) is Decision.SPEAK


def test_load_is_the_share_of_decode_time_over_the_window() -> None:
    clock = Clock()
    meter = CapacityMeter(2, clock=clock)
    meter.record("partial", audio_s=1.0, decode_s=30.0)
    meter.record("final", audio_s=1.0, decode_s=30.0)
    assert meter.report(lag_s=0.0).load == 0.5  # 60 s of 120 worker-seconds
    clock.now = 61.0
    assert meter.report(lag_s=0.0).load == 0.0


def test_a_speaker_is_refused_while_the_live_finals_already_wait() -> None:
    """The estimate counts decode time only; the finals' queue waits say what it misses."""
    clock = Clock()
    meter = CapacityMeter(2, CapacityOptions(max_final_wait_s=0.75), clock=clock)
    for _ in range(10):
        meter.record("final", audio_s=5.0, decode_s=0.5, waited_s=0.2)  # capacity 14
    assert meter.speech_started(5, lag_s=0.0) is Decision.SPEAK
    for _ in range(5):  # the machine is busier than the decode time says
        meter.record("final", audio_s=5.0, decode_s=0.5, waited_s=2.5)
    meter.record("partial", audio_s=5.0, decode_s=0.5, waited_s=9.0)  # partials may wait
    assert meter.recent_final_wait() == 2.5
    assert meter.speech_started(5, lag_s=0.0) is Decision.REFUSE
    assert "already wait 2.5 s" in meter.refusal(5, lag_s=0.0).message
    assert meter.speech_started(1, lag_s=0.0) is Decision.SPEAK  # nobody else to delay
    clock.now += 21.0  # the waits are over
    assert meter.speech_started(5, lag_s=0.0) is Decision.SPEAK
