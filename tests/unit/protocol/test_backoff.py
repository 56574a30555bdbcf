"""Retry delays (protocol/backoff.py), as the MQTT bridge uses them."""

import random

from captioncast.protocol.backoff import Backoff

LOW, HIGH = 0.8, 1.2  # the default jitter: +-20 %


def test_delays_double_up_to_the_limit_and_reset() -> None:
    backoff = Backoff(first_s=0.5, max_s=4.0)
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0]
    for expected in nominal:
        delay = backoff.next_delay()
        assert expected * LOW <= delay <= expected * HIGH
    backoff.reset()
    assert backoff.next_delay() <= 0.5 * HIGH


def test_delay_by_attempt_is_stateless_and_seedable() -> None:
    backoff = Backoff(first_s=1.0, max_s=8.0)
    assert backoff.delay(3, random.Random(7)) == backoff.delay(3, random.Random(7))
    assert backoff.attempts == 0


# As the outputs use it: by attempt, with their own generator.
def test_backoff_grows_to_its_cap_with_jitter() -> None:
    policy = Backoff(first_s=1.0, max_s=8.0, jitter=(0.8, 1.2))
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(6.4 <= d <= 9.6 for d in delays[4:])
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jittered, not lockstep
