import pytest

from vergence.media.frame import HEADER, EncodedPacket, parse_header


def test_header_is_big_endian_and_versioned():
    packet = EncodedPacket(
        data=b"\x00\x00\x00\x01\x65",
        keyframe=True,
        config=True,
        seq=7,
        pts=0,
        capture_ns=0x0102030405060708,
        send_ns=0x1112131415161718,
    )
    message = packet.framed()
    assert HEADER.size == 24
    assert message[:4] == bytes([1, 0x03, 0, 24])
    assert message[4:8] == (7).to_bytes(4, "big")
    assert message[8:16] == bytes.fromhex("0102030405060708")
    header, payload = parse_header(message)
    assert (header.seq, header.keyframe, header.capture_ns, header.send_ns) == (
        7,
        True,
        0x0102030405060708,
        0x1112131415161718,
    )
    assert payload == packet.data
    assert packet.framed() is message  # built once, shared by every subscriber


def test_short_or_unknown_messages_are_rejected():
    with pytest.raises(ValueError):
        parse_header(b"\x01\x00")
    with pytest.raises(ValueError, match="version"):
        parse_header(bytes([9]) + bytes(23))
