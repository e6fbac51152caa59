"""What the picture of a Raspberry Pi camera is, through the real picamera2: exposure after a still, a still's exposure on
the imx708, colour range in JPEGs, capture times, crops that land and are confirmed, and camera sync across restarts
and stills."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import simplejpeg

from tests.fakes import use_fake_libcamera
from vergence.config import CameraSettings
from vergence.encoders.jpeg import jpeg_packet
from vergence.media.frame import full_range_planes, i420_planes
from vergence.ptz import Rect
from vergence.sources.picamera2 import Picamera2Source
from vergence.stills import encode_still

DEADLINE_S = 5.0


def camera(camera_id: str = "cam0", size: str = "1280x720", fps: float = 30, **options: str) -> CameraSettings:
    return CameraSettings(id=camera_id, source="picamera2", size=size, fps=fps, options=options)


def full_range_luma(image: np.ndarray, width: int, height: int, limited: bool) -> np.ndarray:
    y, u, v = i420_planes(image, width, height)
    return full_range_planes(y, u, v)[0] if limited else y


def mean_luma(frame_or_still) -> float:
    return float(
        full_range_luma(
            frame_or_still.image, frame_or_still.width, frame_or_still.height, frame_or_still.limited_range
        ).mean()
    )


def take_still(source: Picamera2Source):
    """Ask for a still from another thread while this one reads, as the server's capture thread does."""
    box: list = []
    asker = threading.Thread(target=lambda: box.append(source.capture_still(DEADLINE_S)))
    asker.start()
    deadline = time.monotonic() + DEADLINE_S
    while asker.is_alive():
        assert time.monotonic() < deadline
        source.read()
    assert box, "no still"
    return box[0]


def read_frames(source: Picamera2Source, count: int) -> list:
    return [source.read() for _ in range(count)]


@pytest.fixture
def metadata_seen(monkeypatch):
    """Every frame's metadata as picamera2 hands it to the source, in order."""
    import picamera2.request

    seen: list[dict] = []
    real = picamera2.request.CompletedRequest.get_metadata

    def recording(self):
        metadata = real(self)
        seen.append(metadata)
        return metadata

    monkeypatch.setattr(picamera2.request.CompletedRequest, "get_metadata", recording)
    return seen


def test_auto_exposure_follows_the_light_again_after_a_still(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx708"])
    source = Picamera2Source(camera())
    source.open()
    try:
        before = mean_luma(read_frames(source, 3)[-1])
        assert take_still(source).reconfigured  # exposure and gain fixed for the still mode
        rig.set_light(0.5)  # the room gets darker: auto-exposure doubles the exposure
        after = mean_luma(read_frames(source, 6)[-1])
        assert abs(after - before) < 0.03 * before, (before, after)  # a fixed exposure would give half the brightness
        assert rig.camera(0).start_controls[-1]["ExposureTimeMode"] == 0
    finally:
        source.close()


def test_an_imx708_still_is_exposed_as_the_live_view(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx708"])
    source = Picamera2Source(camera())
    source.open()
    try:
        live = read_frames(source, 3)[-1]
        still = take_still(source)
        assert still.reconfigured and (still.width, still.height) == (4608, 2592)
        # The full-resolution mode is half as sensitive as the binned video mode: the gain is doubled for it.
        assert abs(mean_luma(still) - mean_luma(live)) < 0.02 * mean_luma(live), (mean_luma(still), mean_luma(live))
    finally:
        source.close()


def test_jpegs_of_video_frames_are_full_range(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219"])
    # An unbinned mode at the output's size: a still is then the next live frame, in video range too.
    source = Picamera2Source(camera(size="1920x1080", sensor_mode="1920x1080"))
    source.open()
    try:
        frame = read_frames(source, 2)[-1]
        luma = frame.image[: frame.height]
        assert frame.limited_range and 16 <= luma.min() and luma.max() <= 235  # video range, as the ISP wrote it
        decoded = simplejpeg.decode_jpeg(jpeg_packet(frame, 95).data, colorspace="GRAY")
        # The scene's white and black squares are white and black in the JPEG (JFIF is full range), not grey.
        assert decoded.max() >= 250 and decoded.min() <= 5, (decoded.min(), decoded.max())
        still = take_still(source)
        assert not still.reconfigured and still.limited_range
        decoded_still = simplejpeg.decode_jpeg(encode_still(still, 95), colorspace="GRAY")
        assert decoded_still.max() >= 250 and decoded_still.min() <= 5
    finally:
        source.close()


def test_a_frame_is_stamped_with_the_start_of_its_exposure(monkeypatch, metadata_seen):
    use_fake_libcamera(monkeypatch, ["imx219"])
    source = Picamera2Source(camera())
    source.open()
    try:
        frames = read_frames(source, 5)
        for frame, metadata in zip(frames, metadata_seen[-5:], strict=True):
            # FrameWallClock (and SensorTimestamp) mark the start of readout; the exposure began ExposureTime earlier.
            assert frame.capture_ns == metadata["FrameWallClock"] - metadata["ExposureTime"] * 1000
    finally:
        source.close()


def test_a_crop_lands_within_four_frames_and_every_frame_after_reports_it(monkeypatch, metadata_seen):
    use_fake_libcamera(monkeypatch, ["imx708"])
    source = Picamera2Source(camera())
    source.open()
    try:
        read_frames(source, 5)
        for requested in (Rect(1001, 601, 2001, 1127), Rect(2999, 1499, 1500, 845), Rect(0, 0, 4608, 2592)):
            asked_ns = time.monotonic_ns()
            source.set_crop(requested)
            seen = len(metadata_seen)
            frames = read_frames(source, 10)
            # Counted from the first frame whose readout began after the crop was set: those before were exposed
            # already, whatever the control.
            after = [m for m in metadata_seen[seen:] if m["SensorTimestamp"] > asked_ns]
            reported = [tuple(m["ScalerCrop"]) for m in after]
            wanted = source._crop.as_tuple()
            assert abs(wanted[0] - requested.x) <= 2 and abs(wanted[2] - requested.width) <= 2  # on the ISP's grid
            landed = reported.index(wanted)
            assert landed < 4, reported
            assert all(crop == wanted for crop in reported[landed:]), reported
            assert source.crop_landed and len(frames) == 10
            # Each frame says which crop it has (the tracker maps what it sees through it), as its metadata reports.
            assert [frame.crop for frame in frames] == [tuple(m["ScalerCrop"]) for m in metadata_seen[-10:]]
    finally:
        source.close()


def test_a_crop_change_picamera2_loses_is_sent_again(monkeypatch, metadata_seen):
    rig = use_fake_libcamera(monkeypatch, ["imx708"])
    import picamera2

    real = picamera2.Picamera2.set_controls
    dropped: list[dict] = []

    def losing_the_first_crop(self, controls):
        # picamera2 can lose a control: one set while a request is being recycled is cleared with the request's.
        if "ScalerCrop" in controls and not dropped:
            dropped.append(dict(controls))
            return
        real(self, controls)

    monkeypatch.setattr(picamera2.Picamera2, "set_controls", losing_the_first_crop)
    source = Picamera2Source(camera())
    source.open()
    try:
        read_frames(source, 3)
        source.set_crop(Rect(1152, 648, 2304, 1296))
        deadline = time.monotonic() + DEADLINE_S
        while not source.crop_landed:
            assert time.monotonic() < deadline, "the lost crop was never sent again"
            source.read()
        assert dropped and tuple(metadata_seen[-1]["ScalerCrop"]) == (1152, 648, 2304, 1296)
        sent = [c["ScalerCrop"].as_tuple() for c in rig.camera(0).requested_controls if "ScalerCrop" in c]
        assert sent == [(1152, 648, 2304, 1296)]
    finally:
        source.close()


def read_until(source, predicate):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        frame = source.read()
        if predicate(frame):
            return frame
    pytest.fail("no matching frame before the deadline")


def test_sync_state_starts_afresh_when_a_synced_camera_restarts(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219", "imx219"])
    server = Picamera2Source(camera("cam0", size="640x360", sync="server", sync_frames="5"))
    client = Picamera2Source(camera("cam1", size="640x360", sync="client", sync_frames="5"))
    client.open()
    server.open()
    try:
        read_until(server, lambda frame: server.sync_ready)
        server.set_flip(True, False)  # a restart: libcamera's sync starts again from nothing
        assert not server.sync_ready
        first = server.read()
        assert not server.sync_ready  # not until SyncFrames frames have passed again
        again = read_until(server, lambda frame: server.sync_ready)
        assert again.seq - first.seq >= 3
        read_until(client, lambda frame: client.sync_ready)
    finally:
        server.close()
        client.close()


def test_a_still_turns_camera_sync_off_for_the_still_mode(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx708"])
    source = Picamera2Source(camera(sync="server", sync_frames="5"))
    source.open()
    try:
        read_until(source, lambda frame: source.sync_ready)
        still = take_still(source)
        assert still.reconfigured
        read_frames(source, 5)
        *_, still_start, video_start = rig.camera(0).start_controls
        assert still_start["SyncMode"] == 0 and video_start["SyncMode"] == 1
        # In a still mode's variable frame rate the sync algorithm logs an error every frame while SyncMode is on.
        assert rig.camera(0).sync_errors == 0
    finally:
        source.close()
