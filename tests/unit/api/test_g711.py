"""api/g711.py: mu-law and A-law to pcm_s16le."""

from captioncast.api.g711 import ALAW, ULAW, g711_decoder


def test_g711_tables() -> None:
    assert (ULAW[0xFF], ULAW[0x7F], ULAW[0x00], ULAW[0x80]) == (0, 0, -32124, 32124)
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)
    assert g711_decoder(ULAW)(b"\xff\x00") == b"\x00\x00" + (-32124).to_bytes(2, "little",
                                                                           signed=True)
