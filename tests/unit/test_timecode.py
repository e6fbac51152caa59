import cv2
import numpy as np
import pytest

from vergence.media import timecode


@pytest.mark.parametrize("width", [160, 640, 1280, 1920])
def test_code_round_trips_through_a_luma_plane(width):
    luma = np.full((width * 9 // 16, width), 90, np.uint8)
    capture_ns = 1_795_000_000_123_456_789
    timecode.paint(luma, capture_ns)
    assert timecode.read(luma) == capture_ns // 1000 * 1000


def test_code_survives_jpeg_and_rgb_conversion():
    luma = np.random.default_rng(3).integers(0, 255, (720, 1280), dtype=np.uint8)
    timecode.paint(luma, 1_700_000_000_000_001_000)
    ok, jpeg = cv2.imencode(".jpg", luma, [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    bgr = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR)
    assert timecode.read(bgr) == 1_700_000_000_000_001_000


def test_a_picture_without_a_code_reads_as_none():
    noise = np.random.default_rng(4).integers(0, 255, (720, 1280), dtype=np.uint8)
    assert timecode.read(noise) is None
    assert timecode.read(np.zeros((4, 4), np.uint8)) is None


def test_a_black_or_white_picture_is_no_code():
    """All zeros pass the CRC (zero bytes, zero CRC): a black screen must not read as the epoch."""
    assert timecode.read(np.zeros((480, 640), np.uint8)) is None
    assert timecode.read(np.full((480, 640), 255, np.uint8)) is None


def test_one_flipped_bit_is_detected():
    bits = timecode.encode_bits(1_795_000_000_000_000_000)
    bits[0, 5] ^= 1
    assert timecode.decode_bits(bits) is None
