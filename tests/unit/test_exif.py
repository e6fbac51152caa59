"""The EXIF builder, read back with Pillow (an independent reader): times, camera, GPS, and JPEGs that had EXIF already."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from vergence.media.exif import Position, StillTags, exif_segment, with_exif

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ZURICH_SUMMER = timezone(timedelta(hours=2))


def jpeg(width: int = 64, height: int = 48) -> bytes:
    """A small real JPEG, as simplejpeg writes it (with a JFIF APP0)."""
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(image, quality=90, colorspace="BGR")


def read_back(data: bytes) -> tuple[Image.Image, dict, dict, dict]:
    image = Image.open(io.BytesIO(data))
    image.load()  # the JPEG itself still decodes
    exif = image.getexif()
    return image, dict(exif), dict(exif.get_ifd(EXIF_IFD)), dict(exif.get_ifd(GPS_IFD))


def degrees(dms, ref: str) -> float:
    value = float(dms[0]) + float(dms[1]) / 60 + float(dms[2]) / 3600
    return -value if ref in ("S", "W") else value


def tags(position: Position | None, taken: datetime | None = None) -> StillTags:
    taken = taken or datetime(2024, 6, 30, 23, 59, 58, 789_000, tzinfo=ZURICH_SUMMER)
    return StillTags("Raspberry Pi", "imx708", taken, 4608, 2592, position)


def test_times_camera_and_size_read_back():
    image, ifd0, exif, gps = read_back(with_exif(jpeg(), exif_segment(tags(None))))
    assert image.size == (64, 48)
    assert ifd0[0x010F] == "Raspberry Pi" and ifd0[0x0110] == "imx708"
    assert ifd0[0x0131] == "vergence" and ifd0[0x0112] == 1
    assert ifd0[0x0132] == "2024:06:30 23:59:58"
    assert exif[0x9003] == "2024:06:30 23:59:58"  # DateTimeOriginal, local time
    assert exif[0x9291] == "789"  # SubSecTimeOriginal
    assert exif[0x9011] == "+02:00"  # OffsetTimeOriginal
    assert (exif[0xA002], exif[0xA003]) == (4608, 2592)
    assert gps == {} and GPS_IFD not in ifd0  # no position, no GPS IFD


@pytest.mark.parametrize(
    ("lat", "lon", "alt_m", "refs"),
    [
        (47.3769, 8.5417, 408.0, ("N", "E", 0)),
        (-33.856784, 151.215297, 5.25, ("S", "E", 0)),
        (40.689247, -74.044502, None, ("N", "W", None)),
        (-54.8019, -68.3030, -12.5, ("S", "W", 1)),  # below sea level: AltRef 1, altitude positive
        (31.5590, 35.4732, -430.5, ("N", "E", 1)),  # the Dead Sea shore
    ],
)
def test_gps_position_read_back(lat, lon, alt_m, refs):
    _, ifd0, _, gps = read_back(with_exif(jpeg(), exif_segment(tags(Position(lat, lon, alt_m)))))
    assert GPS_IFD in ifd0
    assert gps[0] == b"\x02\x03\x00\x00"  # GPSVersionID 2.3
    assert (gps[1], gps[3]) == refs[:2]
    assert abs(degrees(gps[2], gps[1]) - lat) < 1e-6
    assert abs(degrees(gps[4], gps[3]) - lon) < 1e-6
    if alt_m is None:
        assert 5 not in gps and 6 not in gps
    else:
        assert gps[5] == bytes([refs[2]])  # a BYTE: Pillow gives it as bytes
        assert abs(float(gps[6]) * (-1 if refs[2] == 1 else 1) - alt_m) < 1e-3
    # 23:59:58.789 at UTC+2 is 21:59:58.789 UTC, the same day.
    assert [float(v) for v in gps[7]] == [21, 59, 58.789] and gps[29] == "2024:06:30"


def test_gps_date_is_the_utc_date():
    taken = datetime(2025, 1, 1, 0, 30, 0, tzinfo=ZURICH_SUMMER)  # 22:30 UTC the day before
    _, _, _, gps = read_back(with_exif(jpeg(), exif_segment(tags(Position(1.0, 2.0), taken))))
    assert gps[29] == "2024:12:31" and [float(v) for v in gps[7]] == [22, 30, 0]


def test_seconds_never_round_up_to_sixty():
    lat = 10 + 59 / 60 + 59.99999 / 3600  # rounds to 11°00'00"
    _, _, _, gps = read_back(with_exif(jpeg(), exif_segment(tags(Position(lat, 0.0)))))
    assert [float(v) for v in gps[2]] == [11, 0, 0]
    assert abs(degrees(gps[2], "N") - lat) < 1e-6


def test_a_jpeg_that_had_exif_gets_the_new_one_only():
    buffer = io.BytesIO()
    old = Image.new("RGB", (32, 16), "red")
    old_exif = Image.Exif()
    old_exif[0x0110] = "old camera"
    old_exif[0x0132] = "1999:01:01 00:00:00"
    old.save(buffer, "JPEG", exif=old_exif.tobytes())
    original = buffer.getvalue()
    assert Image.open(io.BytesIO(original)).getexif()[0x0110] == "old camera"

    taken = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    updated = with_exif(original, exif_segment(tags(Position(47.0, 8.0, 400.0), taken)))
    image, ifd0, exif, gps = read_back(updated)
    assert image.size == (32, 16)
    assert ifd0[0x0110] == "imx708" and exif[0x9003] == "2024:02:03 04:05:06" and exif[0x9011] == "+00:00"
    assert gps[1] == "N"
    assert updated.count(b"Exif\x00\x00") == 1 and b"old camera" not in updated
    # Putting the same EXIF in twice changes nothing.
    assert with_exif(updated, exif_segment(tags(Position(47.0, 8.0, 400.0), taken))) == updated


def test_jfif_stays_first_and_the_picture_is_untouched():
    original = jpeg()
    assert original[2:4] == b"\xff\xe0" and original[6:11] == b"JFIF\x00"
    segment = exif_segment(tags(None))
    updated = with_exif(original, segment)
    assert updated[2:4] == b"\xff\xe0"  # JFIF APP0 first, as JFIF asks
    jfif_end = 4 + int.from_bytes(original[4:6], "big")
    assert updated[jfif_end : jfif_end + len(segment)] == segment
    assert updated.replace(segment, b"") == original
    decoded_before = np.asarray(Image.open(io.BytesIO(original)))
    decoded_after = np.asarray(Image.open(io.BytesIO(updated)))
    assert np.array_equal(decoded_before, decoded_after)


def test_rejects_what_it_cannot_write():
    with pytest.raises(ValueError, match="not a JPEG"):
        with_exif(b"GIF89a", exif_segment(tags(None)))
    naive = StillTags("", "m", datetime(2024, 1, 1), 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        exif_segment(naive)
