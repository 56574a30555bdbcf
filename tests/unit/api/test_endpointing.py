"""api/endpointing.py: the pause a compatible API's client asks for, within bounds."""

from captioncast.api.endpointing import endpointing_policy
from captioncast.core.options import PolicyOptions


def test_endpointing_sets_the_pause_within_bounds() -> None:
    policy = PolicyOptions()
    assert endpointing_policy(policy, None) is policy
    assert endpointing_policy(policy, 300).segmenter.end_hangover_s == 0.3
    assert endpointing_policy(policy, 10).segmenter.end_hangover_s == 0.2  # Deepgram's default
    longer = endpointing_policy(policy, 60000).segmenter
    assert longer.end_hangover_s == 3.0 and longer.long_hangover_s <= longer.end_hangover_s
