"""The RTP session description: text from a known SPS/PPS, and the same parameters FFmpeg itself would announce."""

import re
import subprocess

import pytest

from tests.conftest import free_port
from tests.media import encode_h264
from vergence.media import sdp

# SPS and PPS of libx264, constrained baseline, level 3.0, 640x360 (what the test pattern's encoder sends).
SPS = bytes.fromhex("6742c01eda0280bfe584000003000400000300f23c58ba80")
PPS = bytes.fromhex("68ce3c80")
KEYFRAME = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01\x65\x88\x84\x00\x33"


def test_sdp_from_a_known_sps_and_pps():
    text = sdp.h264_sdp(
        sdp.parameter_set_nals(KEYFRAME),
        "192.168.1.20",
        5600,
        96,
        session_id=1700000000,
        session_version=3,
        session_name="vergence cam0",
        ssrc=305419896,
        cname="vergence",
        framerate=30.0,
    )
    assert text == (
        "v=0\r\n"
        "o=- 1700000000 3 IN IP4 127.0.0.1\r\n"
        "s=vergence cam0\r\n"
        "c=IN IP4 192.168.1.20\r\n"
        "t=0 0\r\n"
        "m=video 5600 RTP/AVP 96\r\n"
        "a=rtpmap:96 H264/90000\r\n"
        "a=fmtp:96 packetization-mode=1; profile-level-id=42C01E; "
        "sprop-parameter-sets=Z0LAHtoCgL/lhAAAAwAEAAADAPI8WLqA,aM48gA==\r\n"
        "a=framerate:30\r\n"
        "a=ssrc:305419896 cname:vergence\r\n"
    )


def test_parameter_sets_are_taken_in_order_and_slices_left_out():
    assert sdp.parameter_set_nals(KEYFRAME) == [SPS, PPS]
    assert sdp.parameter_set_nals(b"\x00\x00\x01\x41\x9a\x00") == []


def test_profile_level_id_is_the_three_bytes_after_the_sps_header():
    assert sdp.profile_level_id(SPS) == "42C01E"
    high_41 = bytes.fromhex("67640029acd9")
    assert sdp.profile_level_id(high_41) == "640029"
    with pytest.raises(ValueError):
        sdp.profile_level_id(PPS)


def test_connection_line_for_ipv6_and_ipv4_multicast():
    assert sdp.connection_address("::1") == "IN IP6 ::1"
    assert sdp.connection_address("239.1.2.3", multicast_ttl=16) == "IN IP4 239.1.2.3/16"  # RFC 4566 wants a TTL
    text = sdp.h264_sdp([SPS, PPS], "fe80::0001", 5004, 97)
    assert "o=- 0 0 IN IP6 ::1\r\n" in text and "c=IN IP6 fe80::1\r\n" in text
    assert "m=video 5004 RTP/AVP 97\r\n" in text and "a=rtpmap:97 H264/90000\r\n" in text
    assert "a=ssrc" not in text and "a=framerate" not in text


def test_an_sdp_needs_an_sps_a_dynamic_payload_type_and_an_ip_address():
    with pytest.raises(ValueError, match="SPS"):
        sdp.h264_sdp([PPS], "127.0.0.1", 5600, 96)
    with pytest.raises(ValueError, match="dynamic"):
        sdp.h264_sdp([SPS, PPS], "127.0.0.1", 5600, 33)
    with pytest.raises(ValueError):
        sdp.h264_sdp([SPS, PPS], "gcs.local", 5600, 96)


def test_fmtp_matches_what_ffmpeg_announces_for_the_same_stream(tmp_path):
    """FFmpeg's own RTP muxer, given the same H.264, writes the same profile-level-id and sprop-parameter-sets."""
    units = encode_h264(frames=3, width=320, height=240)
    source = tmp_path / "in.264"
    source.write_bytes(b"".join(units))
    sdp_file = tmp_path / "ffmpeg.sdp"
    port = free_port()  # nothing listens there: ffmpeg only needs somewhere on 127.0.0.1 to send three frames
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(source), "-c", "copy",
         "-f", "rtp", "-sdp_file", str(sdp_file), f"rtp://127.0.0.1:{port}"],
        check=True,
        timeout=60,
    )  # fmt: skip
    theirs = dict(re.findall(r"([a-z-]+)=([^;\s]+)", re.search(r"a=fmtp:\d+ (.*)", sdp_file.read_text())[1]))
    ours_text = sdp.h264_sdp(sdp.parameter_set_nals(units[0]), "127.0.0.1", port, 96)
    ours = dict(re.findall(r"([a-z-]+)=([^;\s]+)", re.search(r"a=fmtp:\d+ (.*)", ours_text)[1]))
    assert ours["sprop-parameter-sets"] == theirs["sprop-parameter-sets"]
    assert ours["profile-level-id"].upper() == theirs["profile-level-id"].upper()
    assert ours["packetization-mode"] == theirs["packetization-mode"] == "1"
