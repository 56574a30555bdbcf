"""Reconnect delays (transport/backoff.py)."""

from captioncast.transport.backoff import JITTER, Backoff


def test_delays_double_up_to_the_limit_and_reset() -> None:
    backoff = Backoff(first_s=0.5, max_s=4.0)
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0]
    for expected in nominal:
        delay = backoff.next_delay()
        assert expected * (1 - JITTER) <= delay <= expected * (1 + JITTER)
    backoff.reset()
    assert backoff.next_delay() <= 0.5 * (1 + JITTER)
