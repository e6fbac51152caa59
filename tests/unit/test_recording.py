"""The pre-event buffer and a recording fed from an in-memory channel: GOP trimming, clips without gap or repeat, names
that never collide, and an injected ENOSPC that ends one recording and leaves its earlier segments whole."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import pytest

from tests.aio import run
from tests.media import encode_h264
from vergence.config import RecordingSettings
from vergence.hub import Channel
from vergence.media import h264
from vergence.media.frame import EncodedPacket
from vergence.recording.prebuffer import PreEventBuffer
from vergence.recording.recorder import Recording
from vergence.recording.segment import SegmentError, SegmentWriter, segment_path
from vergence.sources.base import SourceInfo

FPS = 30
FRAME_NS = 1_000_000_000 // FPS
T0_NS = 1_700_000_000_000_000_000
UNITS = encode_h264(90, 160, 120, gop=15)  # keyframes every half second


def packet(seq: int) -> EncodedPacket:
    data = UNITS[seq % len(UNITS)]
    keyframe = h264.is_keyframe(data)
    return EncodedPacket(
        data=data, keyframe=keyframe, config=keyframe, seq=seq, pts=seq * 3000, capture_ns=T0_NS + seq * FRAME_NS
    )


@dataclass
class FakeProcessing:
    recording: bool = False


@dataclass
class FakeStream:
    h264: Channel
    id: str = "cam0"
    info: SourceInfo = field(default_factory=lambda: SourceInfo(160, 120, FPS))
    processing: FakeProcessing = field(default_factory=FakeProcessing)


def frames_in(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def test_the_pre_event_buffer_keeps_whole_gops_reaching_back_its_window() -> None:
    channel = Channel("cam0", "h264")
    buffer = PreEventBuffer(channel, seconds=1.0)
    buffer.start()
    seen: list[int] = []
    for seq in range(3):  # before the first keyframe of a stream nothing is kept
        channel.publish(EncodedPacket(data=UNITS[1], keyframe=False, seq=seq, pts=0, capture_ns=T0_NS))
    assert buffer.snapshot() == []
    for seq in range(3, 200):
        channel.publish(packet(seq))
        if seq == 150:
            buffer.follow(lambda p: seen.append(p.seq))
        kept = buffer.snapshot()
        if kept:
            assert kept[0].keyframe and kept[0].config
            newest = kept[-1].capture_ns
            if newest - (T0_NS + 15 * FRAME_NS) >= 1e9:  # once it has run a window past the first keyframe
                assert newest - kept[0].capture_ns >= 1e9, seq  # reaches back the whole window …
                assert newest - kept[0].capture_ns < 1e9 + 0.5e9, seq  # … by less than one GOP more
    assert [p.seq for p in buffer.snapshot()] == list(range(buffer.snapshot()[0].seq, 200))
    assert seen == list(range(151, 200))
    assert buffer.bytes == sum(len(p.data) for p in buffer.snapshot())
    buffer.stop()
    assert channel.listeners == []


def test_segment_names_carry_the_camera_and_time_and_never_collide(tmp_path: Path) -> None:
    when = datetime(2026, 11, 21, 10, 15, 0, 123456)
    first = segment_path(tmp_path, "cam0", when)
    second = segment_path(tmp_path, "cam0", when)
    clip = segment_path(tmp_path, "cam0", when, "-clip")
    assert first.name == "cam0-20261121-101500-123.mp4"
    assert second.name == "cam0-20261121-101500-123-2.mp4"
    assert clip.name == "cam0-20261121-101500-123-clip.mp4"
    assert all(path.exists() for path in (first, second, clip))


def test_a_clip_gets_the_buffer_then_every_live_packet_exactly_once(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        channel = Channel("cam0", "h264")
        buffer = PreEventBuffer(channel, seconds=1.0)
        buffer.start()
        for seq in range(60):
            channel.publish(packet(seq))
        ended = asyncio.Event()
        settings = RecordingSettings(min_free_mb=0)
        events: list[dict[str, Any]] = []

        def on_event(recording: Recording, event: dict[str, Any]) -> None:
            events.append(event)
            if event["state"] in ("stopped", "error"):
                ended.set()

        loop = asyncio.get_running_loop()
        clip = Recording(FakeStream(channel), tmp_path, "cam0", settings, loop, on_event, "clip")
        clip.stop_at_ns = T0_NS + 90 * FRAME_NS
        clip.start_from(buffer)
        for seq in range(60, 120):
            channel.publish(packet(seq))
            await asyncio.sleep(0)  # let the clip's thread run between packets, as between real frames
        await asyncio.wait_for(ended.wait(), 10)
        return {"describe": clip.describe(), "events": events, "followers": len(buffer._followers)}

    result = run(scenario())
    described = result["describe"]
    [segment] = described["segments"]
    assert described["state"] == "stopped" and result["followers"] == 0
    # Buffer: from the keyframe at 15 (a second before packet 59 reaches back to 29: the GOP holding it starts at 15).
    assert segment["frames"] == frames_in(segment["path"]) == 91 - 15
    assert [event["state"] for event in result["events"]] == ["recording", "segment", "stopped"]


def test_an_injected_enospc_ends_that_recording_only_and_keeps_its_closed_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = SegmentWriter.write
    fail_after = {"writes": 75}

    def failing_write(self: SegmentWriter, item: EncodedPacket) -> None:
        if self.path.parent.name == "full":
            fail_after["writes"] -= 1
            if fail_after["writes"] < 0:
                raise SegmentError(f"disk full writing {self.path}", "disk_full")
        real_write(self, item)

    monkeypatch.setattr(SegmentWriter, "write", failing_write)

    async def scenario() -> list[dict[str, Any]]:
        channel = Channel("cam0", "h264", cache_gop=True)
        settings = RecordingSettings(min_free_mb=0, segment_mb=0.01)  # 10 kB: a segment per GOP
        loop = asyncio.get_running_loop()
        done = {name: asyncio.Event() for name in ("full", "fine")}
        recordings = []
        for name in done:

            def on_event(recording: Recording, event: dict[str, Any], name: str = name) -> None:
                if event["state"] in ("stopped", "error"):
                    done[name].set()

            recording = Recording(FakeStream(channel), tmp_path / name, "cam0", settings, loop, on_event)
            recording.start()
            recordings.append(recording)
        for seq in range(150):
            channel.publish(packet(seq))
            await asyncio.sleep(0.001)
        await asyncio.wait_for(done["full"].wait(), 10)
        # A stop ends the subscription with whatever its thread has not taken yet: let it write all 150 first.
        deadline = loop.time() + 10
        while recordings[1].frames < 150:  # the thread writes behind the loop: poll, with a deadline
            assert loop.time() < deadline, recordings[1].describe()
            await asyncio.sleep(0.01)
        await recordings[1].stop()
        return [recording.describe() for recording in recordings]

    full, fine = run(scenario())
    assert full["state"] == "error" and full["code"] == "disk_full" and not full["recording"]
    assert fine["state"] == "stopped" and fine["error"] is None and fine["frames"] == 150
    for segment in full["segments"][:-1]:  # the last is the one the disk ran out on
        assert frames_in(segment["path"]) == segment["frames"]
    assert sum(segment["frames"] for segment in full["segments"]) == 75


def test_enospc_from_the_file_system_is_reported_as_disk_full(tmp_path: Path) -> None:
    from vergence.recording.segment import segment_error

    assert segment_error(tmp_path, OSError(errno.ENOSPC, "No space left on device")).code == "disk_full"
    assert segment_error(tmp_path, OSError(errno.EIO, "Input/output error")).code == "io_error"


def test_timestamps_that_go_back_after_a_source_restart_continue_one_frame_on(tmp_path: Path) -> None:
    path = segment_path(tmp_path, "cam0", datetime(2026, 1, 1))
    writer = SegmentWriter(path, 160, 120, packet(0), 3000)
    for seq in range(45):
        writer.write(packet(seq))
    for seq in range(45, 90):  # the restarted source counts from 0 again
        restarted = packet(seq)
        restarted.pts = (seq - 45) * 3000
        writer.write(restarted)
    writer.close()
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert len(pts) == 90 and all(later > earlier for earlier, later in zip(pts, pts[1:], strict=False))
    assert writer.duration_s == pytest.approx(89 / FPS)


def test_a_new_picture_size_starts_a_new_segment(tmp_path: Path) -> None:
    big = encode_h264(30, 320, 240, gop=15)

    async def scenario() -> dict[str, Any]:
        channel = Channel("cam0", "h264")
        loop = asyncio.get_running_loop()
        recording = Recording(
            FakeStream(channel), tmp_path, "cam0", RecordingSettings(min_free_mb=0), loop, lambda *_: None
        )
        recording.start()
        for seq in range(30):
            channel.publish(packet(seq))
        for seq, data in enumerate(big, start=30):
            keyframe = h264.is_keyframe(data)
            channel.publish(EncodedPacket(data, keyframe, seq, seq * 3000, T0_NS + seq * FRAME_NS, config=keyframe))
        deadline = loop.time() + 10
        while recording.frames < 60:  # the thread writes behind the loop: poll, with a deadline
            assert loop.time() < deadline, recording.describe()
            await asyncio.sleep(0.01)
        await recording.stop()
        return recording.describe()

    described = run(scenario(), timeout_s=20)
    sizes = []
    for segment in described["segments"]:
        with av.open(segment["path"]) as container:
            sizes.append((container.streams.video[0].width, container.streams.video[0].height, segment["frames"]))
    assert sizes == [(160, 120, 30), (320, 240, 30)]
