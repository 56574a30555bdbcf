"""Turn-taking for voice agents: when a speaker's turn is over, not just paused.

Pure, like `core`: `tracker.py` follows a session's utterances and pauses and says
`speech_started` and `turn` events; the turn model that judges a pause is in
`engine/turn_model.py`, run on the scheduler by `session/turn_stage.py`.
"""
