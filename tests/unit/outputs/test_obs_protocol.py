"""outputs/obs_protocol.py: obs-websocket messages and authentication."""

from __future__ import annotations

from captioncast.outputs.obs_protocol import authentication, decode, identify


def test_obs_identify_answers_the_challenge() -> None:
    # The protocol's rule, step by step, against the module's one-liner.
    import base64
    import hashlib

    secret = base64.b64encode(hashlib.sha256(b"pw" + b"salt").digest())
    want = base64.b64encode(hashlib.sha256(secret + b"chal").digest()).decode()
    assert authentication("pw", "salt", "chal") == want
    op, d = decode(identify({"authentication": {"salt": "salt", "challenge": "chal"}}, "pw"))
    assert op == 1 and d == {"rpcVersion": 1, "eventSubscriptions": 0, "authentication": want}
    op, d = decode(identify({"rpcVersion": 1}, None))
    assert "authentication" not in d
