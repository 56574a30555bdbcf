"""Who said it: speaker labels for finals (PROTOCOL.md "Speakers").

Pure, like `core`: `track.py` decides what audio to embed and where a voice changed,
`roster.py` clusters embeddings into labels with names and merges. The model that
turns audio into an embedding is in `engine/speaker_encoder.py`; the session glue that
runs it on the scheduler is `session/speaker_stage.py`.
"""
