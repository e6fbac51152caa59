"""The UDP output's muxing into datagrams: RTP packets and RTCP apart, continuity across muxer restarts, MPEG-TS cut into
1316-byte datagrams, pacing. FFmpeg (PyAV) muxes in memory; the test reads the datagrams back on its own."""

import io

import av
import pytest

from tests.media import H264Decoder, encode_h264
from vergence.media.frame import EncodedPacket
from vergence.media.rtp import is_rtcp, pacing_offsets, rtp_fields, shift_timestamp, ts_datagrams
from vergence.outputs.udp import Muxer, RtpSession

FRAME_NS = 33_333_333
GOP = 5


def packets(count=12, first_seq=0, start_ns=1_000_000_000_000):
    units = encode_h264(frames=count, width=320, height=240, gop=GOP)
    result = []
    for i, data in enumerate(units):
        n = first_seq + i
        keyframe = i % GOP == 0
        result.append(
            EncodedPacket(
                data=data, keyframe=keyframe, config=keyframe, seq=n, pts=n * 3000, capture_ns=start_ns + n * FRAME_NS
            )
        )
    return result


def depacketize(payloads):
    """RFC 6184 packetization mode 1 back to Annex-B: single NAL units, STAP-A, FU-A."""
    out = b""
    for payload in payloads:
        kind = payload[0] & 0x1F
        if kind <= 23:
            out += b"\x00\x00\x00\x01" + payload
        elif kind == 24:  # STAP-A: 16-bit sizes, then the NAL units
            at = 1
            while at + 2 <= len(payload):
                size = int.from_bytes(payload[at : at + 2], "big")
                out += b"\x00\x00\x00\x01" + payload[at + 2 : at + 2 + size]
                at += 2 + size
        elif kind == 28:  # FU-A: rebuild the NAL header from the indicator and the FU header
            if payload[1] & 0x80:
                out += b"\x00\x00\x00\x01" + bytes([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            out += payload[2:]
        else:
            raise AssertionError(f"unexpected RTP H.264 payload type {kind}")
    return out


def mux_all(muxer, items):
    return [muxer.mux(item) for item in items]


def test_rtp_datagrams_are_one_rtp_packet_each_with_our_ssrc_payload_type_and_size_limit():
    session = RtpSession(ssrc=0x12345678, next_seq=65530, timestamp=4_000_000_000)
    muxer = Muxer("rtp", (320, 240), 600, 97, session)
    frames = mux_all(muxer, packets())
    muxer.close()
    rtp = [data for frame in frames for data, rtcp in frame if not rtcp]
    rtcp = [data for frame in frames for data, is_rtcp_packet in frame if is_rtcp_packet]
    assert rtcp and all(data[1] == 200 for data in rtcp[:1])  # a sender report first, for port + 1
    assert all(len(data) <= 600 and data[0] >> 6 == 2 and data[1] & 0x7F == 97 for data in rtp)
    assert {rtp_fields(data)[2] for data in rtp} == {0x12345678}
    seqs = [rtp_fields(data)[0] for data in rtp]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(len(rtp))]  # consecutive, through the wrap
    # One timestamp per frame, 3000 ticks (1/30 s of 90 kHz) apart, starting at ours; the marker on each frame's last.
    for i, frame in enumerate(frames):
        frame_rtp = [data for data, is_rtcp_packet in frame if not is_rtcp_packet]
        assert {rtp_fields(data)[1] for data in frame_rtp} == {(4_000_000_000 + i * 3000) & 0xFFFFFFFF}
        assert [data[1] >> 7 for data in frame_rtp] == [0] * (len(frame_rtp) - 1) + [1]
    assert session.next_seq == (seqs[-1] + 1) & 0xFFFF


def test_rtp_payloads_decode_to_every_frame():
    items = packets()
    muxer = Muxer("rtp", (320, 240), 1200, 96, RtpSession(1, 0, 0))
    decoder = H264Decoder()
    decoded = 0
    for frame in mux_all(muxer, items):
        access_unit = depacketize([data[12:] for data, rtcp in frame if not rtcp])
        decoded += len(decoder.decode(access_unit))
    assert decoded == len(items)


def test_a_restarted_muxer_continues_sequence_numbers_and_the_media_clock():
    session = RtpSession(ssrc=99, next_seq=100, timestamp=1000)
    first = Muxer("rtp", (320, 240), 1200, 96, session)
    before = mux_all(first, packets(5))
    first.close()
    last_seq, last_ts, _ = rtp_fields([data for data, rtcp in before[-1] if not rtcp][-1])
    # The next container starts 10 frames later (an MPEG-TS interlude), at a keyframe with unrelated pts.
    later = packets(5, first_seq=15)
    second = Muxer("rtp", (320, 240), 1200, 96, session)
    after = mux_all(second, later)
    seq, ts, ssrc = rtp_fields([data for data, rtcp in after[0] if not rtcp][0])
    assert (seq, ssrc) == ((last_seq + 1) & 0xFFFF, 99)
    assert ts == last_ts + 11 * 3000  # 11 frame intervals of capture time later, on the same 90 kHz clock
    reports = [data for data, rtcp in after[0] if rtcp]
    assert reports and reports[0][1] == 200
    report_ts = int.from_bytes(reports[0][16:20], "big")
    assert abs(report_ts - ts) < 90_000  # the sender report maps wall time to our clock, not FFmpeg's random one


def test_mpegts_datagrams_are_whole_ts_packets_and_demux_to_every_frame():
    items = packets()
    muxer = Muxer("mpegts", (320, 240), 1200, 96, RtpSession(1, 0, 0))
    frames = mux_all(muxer, items)
    muxer.close()
    datagrams = [data for frame in frames for data, rtcp in frame]
    assert not any(rtcp for frame in frames for _, rtcp in frame)
    assert all(frame for frame in frames)  # every frame leaves with its own mux call, none held for the next
    assert all(len(data) % 188 == 0 and 0 < len(data) <= 1316 for data in datagrams)
    assert all(data[at] == 0x47 for data in datagrams for at in range(0, len(data), 188))
    for frame in frames:  # only a frame's last datagram may be short
        assert all(len(data) == 1316 for data, _ in frame[:-1])
    with av.open(io.BytesIO(b"".join(datagrams)), format="mpegts") as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == len(items)


def test_ts_datagrams_cut_whole_packets_and_keep_a_partial_one():
    ts = bytes(range(188)) * 10
    datagrams, rest = ts_datagrams(ts + b"\x47\x00")
    assert [len(data) for data in datagrams] == [1316, 564]
    assert b"".join(datagrams) == ts and rest == b"\x47\x00"
    assert ts_datagrams(b"") == ([], b"")


def test_rtcp_is_told_from_rtp_by_its_packet_type():
    assert is_rtcp(bytes([0x80, 200]) + bytes(26))
    assert is_rtcp(bytes([0x81, 203]) + bytes(6))
    assert not is_rtcp(bytes([0x80, 96]) + bytes(10))
    assert not is_rtcp(bytes([0x80, 96 | 0x80]) + bytes(10))  # marker set: 224


def test_shift_timestamp_moves_rtp_and_sender_report_times_modulo_2_32():
    rtp = bytes([0x80, 0x60, 0, 1]) + (0xFFFFFFF0).to_bytes(4, "big") + bytes(4) + b"payload"
    shifted = shift_timestamp(rtp, 0x20)
    assert rtp_fields(shifted)[1] == 0x10 and shifted[12:] == b"payload"
    report = bytes([0x80, 200, 0, 6]) + bytes(4) + bytes(8) + (5).to_bytes(4, "big") + bytes(8)
    assert int.from_bytes(shift_timestamp(report, 7)[16:20], "big") == 12
    bye = bytes([0x81, 203, 0, 1]) + bytes(4)
    assert shift_timestamp(bye, 7) == bye


@pytest.mark.parametrize(
    ("sizes", "rate_bps", "budget_s", "expected"),
    [
        ([1000, 1000, 1000], 0, 0.016, [0.0, 0.0, 0.0]),  # no pacing
        ([1000, 1000, 1000], 8_000_000, 0.016, [0.0, 0.001, 0.002]),  # 8000 bits at 8 Mbit/s: 1 ms apart
        ([1000] * 5, 1_000_000, 0.002, [0.0, 0.0005, 0.001, 0.0015, 0.002]),  # the budget wins: last one at 2 ms
        ([], 8_000_000, 0.016, []),
    ],
)
def test_pacing_spreads_a_frame_but_never_past_the_budget(sizes, rate_bps, budget_s, expected):
    assert pacing_offsets(sizes, rate_bps, budget_s) == pytest.approx(expected)
