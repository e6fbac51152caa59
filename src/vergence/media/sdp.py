"""Session descriptions (RFC 4566) for H.264 over RTP (RFC 6184), built from the stream's SPS and PPS. Pure, no I/O."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable

from vergence.media import h264

CLOCK_RATE = 90_000  # the RTP clock of video (RFC 6184 §8.2.1)


def parameter_set_nals(access_unit: bytes) -> list[bytes]:
    """Return the SPS and PPS NAL units of an Annex-B access unit, in stream order (empty if it holds none)."""
    return [nal for nal in h264.iter_nal_units(access_unit) if h264.nal_type(nal) in (h264.NAL_SPS, h264.NAL_PPS)]


def profile_level_id(sps: bytes) -> str:
    """Return RFC 6184's profile-level-id (profile_idc, constraint flags, level_idc in hex) of an SPS NAL unit."""
    if len(sps) < 4 or h264.nal_type(sps) != h264.NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    return sps[1:4].hex().upper()


def sprop_parameter_sets(nals: Iterable[bytes]) -> str:
    """Return the sprop-parameter-sets value: each NAL unit (emulation prevention kept) in base64, comma-separated."""
    return ",".join(base64.b64encode(nal).decode("ascii") for nal in nals)


def connection_address(host: str, multicast_ttl: int = 1) -> str:
    """Return the `c=` value for a destination IP: `IN IP4 a.b.c.d`, with the TTL an IPv4 multicast group requires."""
    address = ipaddress.ip_address(host)
    if address.version == 6:
        return f"IN IP6 {address.compressed}"
    if address.is_multicast:
        return f"IN IP4 {address}/{multicast_ttl}"
    return f"IN IP4 {address}"


def h264_sdp(
    parameter_sets: list[bytes],
    host: str,
    port: int,
    payload_type: int,
    *,
    session_id: int = 0,
    session_version: int = 0,
    session_name: str = "vergence",
    ssrc: int | None = None,
    cname: str | None = None,
    framerate: float | None = None,
    multicast_ttl: int = 1,
) -> str:
    """Describe one H.264 RTP stream sent to `host`:`port` (an IP address), packetization-mode 1, SPS and PPS in band too.

    `parameter_sets` are NAL units (from `parameter_set_nals`), the first SPS giving the profile-level-id. RTCP goes to
    port + 1, the RFC 3550 default, so no `a=rtcp` line is needed.
    """
    sps = next((nal for nal in parameter_sets if h264.nal_type(nal) == h264.NAL_SPS), None)
    if sps is None:
        raise ValueError("an H.264 session description needs an SPS")
    if not 96 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} is not a dynamic one (96 … 127)")
    family = "IP6" if ipaddress.ip_address(host).version == 6 else "IP4"
    origin = "::1" if family == "IP6" else "127.0.0.1"  # as FFmpeg writes it: receivers ignore the origin address
    fmtp = (
        f"packetization-mode=1; profile-level-id={profile_level_id(sps)}; "
        f"sprop-parameter-sets={sprop_parameter_sets(parameter_sets)}"
    )
    lines = [
        "v=0",
        f"o=- {session_id} {session_version} IN {family} {origin}",
        f"s={session_name}",
        f"c={connection_address(host, multicast_ttl)}",
        "t=0 0",
        f"m=video {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} H264/{CLOCK_RATE}",
        f"a=fmtp:{payload_type} {fmtp}",
    ]
    if framerate:
        lines.append(f"a=framerate:{framerate:g}")
    if ssrc is not None:
        lines.append(f"a=ssrc:{ssrc}" + (f" cname:{cname}" if cname else ""))
    return "\r\n".join(lines) + "\r\n"
