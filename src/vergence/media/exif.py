"""EXIF for stills: capture time, camera make and model, GPS position; built as bytes and put into a JPEG (pure code).

The segment is an APP1 `Exif\\0\\0` header and a little-endian TIFF structure: IFD0 (Make, Model, Orientation, Software,
DateTime and pointers to the Exif and GPS IFDs), the Exif IFD (original time with sub-seconds and UTC offset, picture
size) and, when a position is known, the GPS IFD (latitude, longitude and altitude with their references, UTC time and
date). Tags and types as in CIPA DC-008 (Exif 2.32).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOI = b"\xff\xd8"
APP0, APP1, COM = 0xE0, 0xE1, 0xFE
EXIF_HEADER = b"Exif\x00\x00"

# TIFF field types: (code, bytes per value).
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7
_TYPE_SIZE = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1}

# Tags, by IFD.
MAKE, MODEL, ORIENTATION, SOFTWARE, DATE_TIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
EXIF_VERSION, DATE_TIME_ORIGINAL, OFFSET_TIME, OFFSET_TIME_ORIGINAL = 0x9000, 0x9003, 0x9010, 0x9011
SUB_SEC_TIME_ORIGINAL, COLOR_SPACE, PIXEL_X, PIXEL_Y = 0x9291, 0xA001, 0xA002, 0xA003
FOCAL_LENGTH = 0x920A
GPS_VERSION, GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 0x0000, 0x0001, 0x0002, 0x0003, 0x0004
GPS_ALT_REF, GPS_ALT, GPS_TIME, GPS_DATE = 0x0005, 0x0006, 0x0007, 0x001D

# Seconds of arc are stored as n / 10000: 1e-4" is 3 mm on the ground, far finer than any GPS fix.
ARCSEC_DENOMINATOR = 10_000
ALT_DENOMINATOR = 1000  # altitude to the millimetre
FOCAL_DENOMINATOR = 100  # focal length to a hundredth of a millimetre
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
# Pitch and roll as photogrammetry software reads them (Pix4D's camera namespace, which PiStreamer writes too).
CAMERA_NS = "http://pix4d.com/camera/1.0/"


@dataclass(frozen=True, slots=True)
class Position:
    """Where the camera was, as a `gps` command gave it."""

    lat: float
    lon: float
    alt_m: float | None = None
    time_ns: int = 0  # when it was given (wall clock)


@dataclass(frozen=True, slots=True)
class Attitude:
    """How the camera was held and what it is, as an `attitude` command gave it (None: not known)."""

    pitch_deg: float | None = None
    roll_deg: float | None = None
    model: str | None = None
    focal_length_mm: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "model": self.model,
            "focal_length_mm": self.focal_length_mm,
        }


@dataclass(frozen=True, slots=True)
class StillTags:
    """What the EXIF of one still says."""

    make: str
    model: str
    taken: datetime  # timezone-aware: written as local time with its UTC offset, and as UTC in the GPS IFD
    width: int
    height: int
    position: Position | None = None
    attitude: Attitude | None = None
    software: str = "vergence"

    def summary(self) -> dict[str, Any]:
        """The tags as a photo reply reports them."""
        gps = None
        if self.position is not None:
            gps = {"lat": self.position.lat, "lon": self.position.lon, "alt_m": self.position.alt_m}
        return {
            "make": self.make,
            "model": self.shown_model,
            "time": self.taken.isoformat(timespec="milliseconds"),
            "gps": gps,
            "attitude": None if self.attitude is None else self.attitude.summary(),
        }

    @property
    def shown_model(self) -> str:
        """The model the EXIF names: the one an `attitude` command gave, else the camera's own."""
        return (self.attitude.model if self.attitude is not None else None) or self.model


Entry = tuple[int, int, int, bytes]  # tag, type, count, packed values (little-endian)


def _ascii(tag: int, text: str) -> Entry:
    data = text.encode("ascii", "replace") + b"\x00"
    return (tag, ASCII, len(data), data)


def _shorts(tag: int, *values: int) -> Entry:
    return (tag, SHORT, len(values), struct.pack(f"<{len(values)}H", *values))


def _longs(tag: int, *values: int) -> Entry:
    return (tag, LONG, len(values), struct.pack(f"<{len(values)}I", *values))


def _bytes(tag: int, *values: int) -> Entry:
    return (tag, BYTE, len(values), bytes(values))


def _rationals(tag: int, *values: tuple[int, int]) -> Entry:
    return (tag, RATIONAL, len(values), b"".join(struct.pack("<II", num, den) for num, den in values))


def _ifd_size(entries: list[Entry]) -> int:
    """Bytes of an IFD with its out-of-line values (each padded to an even length)."""
    return 2 + 12 * len(entries) + 4 + sum(len(data) + len(data) % 2 for *_, data in entries if len(data) > 4)


def _ifd(entries: list[Entry], offset: int) -> bytes:
    """Serialize an IFD placed at `offset` of the TIFF data; values over 4 bytes follow it. No next IFD."""
    entries = sorted(entries)  # TIFF requires ascending tags
    table, values = bytearray(struct.pack("<H", len(entries))), bytearray()
    values_at = offset + 2 + 12 * len(entries) + 4
    for tag, kind, count, data in entries:
        assert len(data) == count * _TYPE_SIZE[kind]
        if len(data) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", tag, kind, count, values_at + len(values))
            values += data + b"\x00" * (len(data) % 2)  # word-aligned, as TIFF asks
    return bytes(table + struct.pack("<I", 0) + values)


def _dms(degrees: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees, minutes and seconds (n / 10000) of an angle's magnitude, carried so that seconds never reach 60."""
    total = round(abs(degrees) * 3600 * ARCSEC_DENOMINATOR)
    whole, rest = divmod(total, 3600 * ARCSEC_DENOMINATOR)
    minutes, seconds = divmod(rest, 60 * ARCSEC_DENOMINATOR)
    return (whole, 1), (minutes, 1), (seconds, ARCSEC_DENOMINATOR)


def _utc_offset(when: datetime) -> str:
    offset = when.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _gps_entries(position: Position, taken: datetime) -> list[Entry]:
    utc = taken.astimezone(UTC)
    seconds_ms = utc.second * 1000 + utc.microsecond // 1000
    entries = [
        _bytes(GPS_VERSION, 2, 3, 0, 0),
        _ascii(GPS_LAT_REF, "N" if position.lat >= 0 else "S"),
        _rationals(GPS_LAT, *_dms(position.lat)),
        _ascii(GPS_LON_REF, "E" if position.lon >= 0 else "W"),
        _rationals(GPS_LON, *_dms(position.lon)),
        _rationals(GPS_TIME, (utc.hour, 1), (utc.minute, 1), (seconds_ms, 1000)),
        _ascii(GPS_DATE, utc.strftime("%Y:%m:%d")),
    ]
    if position.alt_m is not None:
        entries.append(_bytes(GPS_ALT_REF, 1 if position.alt_m < 0 else 0))  # 1: below sea level
        entries.append(_rationals(GPS_ALT, (round(abs(position.alt_m) * ALT_DENOMINATOR), ALT_DENOMINATOR)))
    return entries


def tiff(tags: StillTags) -> bytes:
    """Return the TIFF structure (header and IFDs) of the EXIF of a still."""
    if tags.taken.tzinfo is None:
        raise ValueError("StillTags.taken must be timezone-aware")
    stamp, offset = tags.taken.strftime("%Y:%m:%d %H:%M:%S"), _utc_offset(tags.taken)
    ifd0 = [_shorts(ORIENTATION, 1), _ascii(SOFTWARE, tags.software), _ascii(DATE_TIME, stamp)]
    ifd0 += [_ascii(MAKE, tags.make)] if tags.make else []
    ifd0 += [_ascii(MODEL, tags.shown_model)] if tags.shown_model else []
    exif = [
        (EXIF_VERSION, UNDEFINED, 4, b"0232"),
        _ascii(DATE_TIME_ORIGINAL, stamp),
        _ascii(OFFSET_TIME, offset),
        _ascii(OFFSET_TIME_ORIGINAL, offset),
        _ascii(SUB_SEC_TIME_ORIGINAL, f"{tags.taken.microsecond // 1000:03d}"),
        _shorts(COLOR_SPACE, 1),  # sRGB
        _longs(PIXEL_X, tags.width),
        _longs(PIXEL_Y, tags.height),
    ]
    focal = tags.attitude.focal_length_mm if tags.attitude is not None else None
    if focal is not None:
        exif.append(_rationals(FOCAL_LENGTH, (round(focal * FOCAL_DENOMINATOR), FOCAL_DENOMINATOR)))
    gps = _gps_entries(tags.position, tags.taken) if tags.position is not None else None
    # The pointers are fixed-size LONGs, so every IFD's size is known before any offset is: lay them out in order.
    pointers = [_longs(EXIF_IFD, 0)] * (1 if gps is None else 2)
    exif_at = 8 + _ifd_size(ifd0 + pointers)
    gps_at = exif_at + _ifd_size(exif)
    ifd0.append(_longs(EXIF_IFD, exif_at))
    if gps is not None:
        ifd0.append(_longs(GPS_IFD, gps_at))
    parts = [b"II*\x00" + struct.pack("<I", 8), _ifd(ifd0, 8), _ifd(exif, exif_at)]
    if gps is not None:
        parts.append(_ifd(gps, gps_at))
    return b"".join(parts)


def exif_segment(tags: StillTags) -> bytes:
    """Return the APP1 segment (marker, length, `Exif\\0\\0`, TIFF) carrying the EXIF of a still."""
    payload = EXIF_HEADER + tiff(tags)
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"EXIF of {len(payload)} bytes does not fit one APP1 segment")
    return struct.pack(">BBH", 0xFF, APP1, len(payload) + 2) + payload


def xmp_segment(attitude: Attitude | None) -> bytes:
    """Return the APP1 segment carrying the camera's pitch and roll as XMP (empty when neither is known)."""
    if attitude is None or (attitude.pitch_deg is None and attitude.roll_deg is None):
        return b""
    values = "".join(
        f' Camera:{name}="{value:.6f}"'
        for name, value in (("Pitch", attitude.pitch_deg), ("Roll", attitude.roll_deg))
        if value is not None
    )
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:Camera="{CAMERA_NS}"{values}/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    payload = XMP_HEADER + packet.encode()
    return struct.pack(">BBH", 0xFF, APP1, len(payload) + 2) + payload


def with_exif(jpeg: bytes, segment: bytes) -> bytes:
    """Return `jpeg` carrying `segment` (from `exif_segment`) and no other EXIF.

    The segment goes right after SOI, or after a JFIF APP0 that opens the file: JFIF wants its APP0 first and EXIF
    readers look through all the leading APPn segments, so both stay valid. Other leading segments are kept in order.
    """
    if not jpeg.startswith(SOI):
        raise ValueError("not a JPEG: no SOI marker")
    kept: list[bytes] = []
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and (APP0 <= jpeg[at + 1] <= 0xEF or jpeg[at + 1] == COM):
        (length,) = struct.unpack(">H", jpeg[at + 2 : at + 4])
        end = at + 2 + length
        if length < 2 or end > len(jpeg):
            raise ValueError(f"corrupt JPEG segment at byte {at}")
        is_exif = jpeg[at + 1] == APP1 and jpeg[at + 4 : at + 10] == EXIF_HEADER
        if not is_exif:
            kept.append(jpeg[at:end])
        at = end
    jfif_first = bool(kept) and kept[0][1] == APP0 and kept[0][4:9] == b"JFIF\x00"
    head = kept[:1] if jfif_first else []
    return b"".join([SOI, *head, segment, *kept[len(head) :], jpeg[at:]])
