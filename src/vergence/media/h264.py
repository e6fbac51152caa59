"""Annex-B H.264 parsing: NAL units, access-unit properties and the RFC 6381 codec string. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterator

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


def iter_nal_units(data: bytes) -> Iterator[bytes]:
    """Yield the NAL units of an Annex-B byte string, start codes removed."""
    n = len(data)
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        code_at = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((code_at, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    for k, (_, payload_at) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        if payload_at < end:
            yield data[payload_at:end]


def nal_type(nal: bytes) -> int:
    """Return the nal_unit_type of a NAL unit."""
    return nal[0] & 0x1F


def nal_types(data: bytes) -> list[int]:
    """Return the NAL unit types of an Annex-B access unit, in order."""
    return [nal_type(nal) for nal in iter_nal_units(data)]


def is_keyframe(data: bytes) -> bool:
    """Tell whether an access unit holds an IDR slice."""
    return NAL_IDR in nal_types(data)


def parameter_sets(data: bytes) -> bytes:
    """Return the SPS and PPS NAL units of an access unit as Annex-B bytes (empty if none)."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in iter_nal_units(data) if nal_type(nal) in (NAL_SPS, NAL_PPS))


def codec_string(data: bytes) -> str | None:
    """Return the RFC 6381 codec string (`avc1.42C01F`) from the first SPS in `data`, or None."""
    for nal in iter_nal_units(data):
        if nal_type(nal) == NAL_SPS and len(nal) >= 4:
            return f"avc1.{nal[1]:02X}{nal[2]:02X}{nal[3]:02X}"
    return None
