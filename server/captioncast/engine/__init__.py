"""The model side: faster-whisper behind the Decoder interface, and the scheduler sharing it."""
