"""The fMP4 muxer: each fragment leaves with its own frame (FFmpeg's mp4 muxer held it until the next one), the
fragments play back frame for frame after the init segment, and their times count frames at the nominal rate."""

from __future__ import annotations

import io

import av

from tests.media import encode_h264
from vergence.encoders.fmp4 import Fmp4Muxer, iter_boxes
from vergence.media import h264
from vergence.media.frame import EncodedPacket


class FakeChannel:
    """The H.264 channel as the muxer uses it."""

    stream_id = "cam0"

    def __init__(self) -> None:
        self.listeners: list = []
        self.keyframe_requests = 0

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener) -> None:
        self.listeners.remove(listener)

    def request_keyframe(self, force: bool = False) -> None:
        self.keyframe_requests += 1

    def send(self, packet: EncodedPacket) -> None:
        for listener in self.listeners:
            listener(packet)


def packets(units: list[bytes], skip: set[int] = frozenset()) -> list[EncodedPacket]:
    return [
        EncodedPacket(
            data=unit,
            keyframe=h264.is_keyframe(unit),
            config=h264.NAL_SPS in h264.nal_types(unit),
            seq=index,
            pts=index * 3000,
            capture_ns=1_700_000_000_000_000_000 + index,
        )
        for index, unit in enumerate(units)
        if index not in skip
    ]


def test_each_fragment_leaves_with_its_own_frame_and_plays_back():
    channel, published = FakeChannel(), []
    muxer = Fmp4Muxer(channel, published.append, lambda: (320, 240), lambda: 30.0)  # type: ignore[arg-type]
    muxer.start()
    sent = packets(encode_h264(frames=20, gop=10), skip={7, 8, 9})  # three frames lost on the way
    for count, packet in enumerate(sent, start=1):
        channel.send(packet)
        fragments = [p for p in published if not p.init]
        assert len(fragments) == count and fragments[-1].seq == packet.seq  # at once, not with the next frame
        assert fragments[-1].capture_ns == packet.capture_ns and fragments[-1].keyframe == packet.keyframe
    init = [p for p in published if p.init]
    assert len(init) == 1 and [kind for kind, _, _ in iter_boxes(init[0].data)] == ["ftyp", "moov"]
    fragments = [p for p in published if not p.init]
    assert all([kind for kind, _, _ in iter_boxes(f.data)] == ["moof", "mdat"] for f in fragments)
    with av.open(io.BytesIO(init[0].data + b"".join(f.data for f in fragments)), format="mp4") as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        times = [frame.time for frame in frames]
    assert len(frames) == len(sent) and (frames[0].width, frames[0].height) == (320, 240)
    steps = {round(b - a, 6) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {round(1 / 30, 6)}, steps  # no gap where frames were lost: a gap would make MSE wait for a keyframe
    muxer.stop()
    assert channel.listeners == []


def test_a_new_sps_starts_a_new_init_segment_and_nothing_plays_before_a_keyframe():
    channel, published = FakeChannel(), []
    muxer = Fmp4Muxer(channel, published.append, lambda: (320, 240), lambda: 30.0)  # type: ignore[arg-type]
    muxer.start()
    first = packets(encode_h264(frames=6, gop=5))
    for packet in first[1:5]:  # joined mid-GOP: nothing until the keyframe
        channel.send(packet)
    assert published == []
    channel.send(first[5])
    assert [p.init for p in published] == [True, False]
    bigger = packets(encode_h264(frames=2, width=640, height=480, gop=5))
    channel.send(bigger[0])
    assert [p.init for p in published] == [True, False, True, False]
    assert published[-1].pts == 0  # the new track's time starts over


def test_the_fragment_header_is_the_size_the_data_offset_assumes():
    from vergence.encoders.fmp4 import MOOF_BYTES, _moof, fragment, iter_boxes

    for keyframe in (True, False):
        assert len(_moof(7, 2**40, 3000, 12345, keyframe, 1)) == MOOF_BYTES
        data = fragment(7, 2**40, 3000, b"\0\0\0\1x", keyframe)
        assert [(kind, start) for kind, start, _ in iter_boxes(data)] == [("moof", 0), ("mdat", MOOF_BYTES)]
