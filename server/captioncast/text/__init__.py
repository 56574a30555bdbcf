"""Pure text transforms applied to what a session says (the profanity filter)."""
