"""Full-resolution stills from the picamera2 source (the real picamera2 over the fake libcamera), and what the live
stream loses to them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.fakes import use_fake_libcamera
from vergence.config import CameraSettings
from vergence.errors import SourceEnded, SourceError
from vergence.media.frame import Frame
from vergence.ptz import Rect
from vergence.sources.picamera2 import Picamera2Source

DEADLINE_S = 5.0
# Above what the fake's timing model adds up to: copying 18 MB frames (the fake draws, picamera2 and the source copy
# out), picamera2's event loop and thread scheduling on a busy test machine. The model (its sum is the lower bound) is in
# tests/fakes/libcamera/rig.py and camera.py.
STALL_SLACK_MS = 400.0


def camera(size: str = "1280x720", fps: float = 30, **options: str) -> CameraSettings:
    return CameraSettings(id="cam0", source="picamera2", size=size, fps=fps, options=options)


@dataclass
class Reader:
    """The capture thread's part: read frames until stopped, noting when each arrived."""

    source: Picamera2Source
    frames: list[tuple[float, Frame]] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Reader:
        self._thread = threading.Thread(target=self._run, name="test-reader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                self.frames.append((time.perf_counter(), frame))
        except SourceEnded:
            pass
        except BaseException as err:  # reported by the test
            self.error = err

    def wait_frames(self, count: int) -> None:
        deadline = time.monotonic() + DEADLINE_S
        target = len(self.frames) + count
        while len(self.frames) < target:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"fewer than {count} frames before the deadline"
            time.sleep(0.01)  # poll interval of a deadline loop

    def stop(self) -> None:
        self._stop.set()
        self.source.close()
        if self._thread is not None:
            self._thread.join(timeout=DEADLINE_S)
        assert self.error is None, self.error

    def max_gap_ms(self, after: float) -> float:
        times = [at for at, _ in self.frames]
        return max((b - a) * 1000 for a, b in zip(times, times[1:], strict=False) if b > after)


@pytest.fixture
def imx708(monkeypatch):
    return use_fake_libcamera(monkeypatch, ["imx708"])


def model_stall_ms(rig, still_config, video_config, fps: float) -> float:
    """The stall the fake's timing model implies: both configures, the still's first frame and the first live frame."""
    still_frame_ns = still_config.mode.min_frame_ns  # a still runs its mode at full speed
    return 1000 * (
        rig.configure_s(still_config)
        + rig.first_frame_s(still_config.mode, still_frame_ns)
        + rig.configure_s(video_config)
        + rig.first_frame_s(video_config.mode, round(1e9 / fps))
    )


def picture(model: str, crop: tuple[int, int, int, int], size: tuple[int, int], hflip: bool = False, limited=False):
    from libcamera.scene import render_i420

    return render_i420(model, crop, size, hflip, False, 1.0, limited)


def test_still_at_full_sensor_resolution_then_live_frames_resume(imx708):
    source = Picamera2Source(camera())
    source.open()
    reader = Reader(source).start()
    try:
        reader.wait_frames(5)
        asked, asked_ns = time.perf_counter(), time.time_ns()
        still = source.capture_still(DEADLINE_S)
        returned_ns = time.time_ns()
        assert still is not None
        assert (still.width, still.height) == (4608, 2592)
        assert still.full_resolution and still.reconfigured
        assert still.image.shape == (2592 * 3 // 2, 4608)
        # Exposed as the live view was, though the full-resolution mode is half as sensitive as the binned video mode.
        assert np.array_equal(still.image, picture("imx708", (0, 0, 4608, 2592), (4608, 2592)))
        assert not still.limited_range
        # On the wall clock: exposed after the ask (its exposure began at most a frame of the still mode earlier).
        assert asked_ns - 1_000_000_000 // 14 <= still.capture_ns <= returned_ns

        reader.wait_frames(10)  # live frames resume at the video size
        later = [frame for at, frame in reader.frames if at > asked]
        assert all((frame.width, frame.height, frame.image.shape) == (1280, 720, (1080, 1280)) for frame in later)
        seqs = [frame.seq for _, frame in reader.frames]
        assert seqs == list(range(len(seqs)))

        record = imx708.camera(0)
        *_, still_config, video_config = record.configs
        assert (still_config.main_size, still_config.colour_range) == ((4608, 2592), "full")
        assert (still_config.mode.width, still_config.mode.max_fps) == (4608, 14.35)
        assert (video_config.main_size, video_config.colour_range) == ((1280, 720), "limited")
        assert video_config.mode.size == (2304, 1296)
        # The last frame's exposure and gain go to the still mode (gain doubled: the mode is half as sensitive), so its
        # first frame needs no AE convergence; the video mode after it gives both back to AE/AGC.
        *_, still_start, video_start = record.start_controls
        assert (still_start["ExposureTimeMode"], still_start["AnalogueGainMode"]) == (1, 1)
        assert (still_start["ExposureTime"], still_start["AnalogueGain"]) == (5000, 2.0)
        assert (video_start["ExposureTimeMode"], video_start["AnalogueGainMode"]) == (0, 0)

        model_ms = model_stall_ms(imx708, still_config, video_config, 30)
        gap_ms = reader.max_gap_ms(after=asked)
        print(
            f"\nimx708 4608x2592 still from 1280x720@30: stall {still.stall_ms:.0f} ms (gap seen by the reader "
            f"{gap_ms:.0f} ms; timing model {model_ms:.0f} ms), still in hand after {still.capture_ms:.0f} ms, "
            + ", ".join(f"{step} {ms:.0f} ms" for step, ms in still.timings_ms.items())
        )
        # The reported stall is the gap the live stream saw, and the mode switch cannot be faster than the model.
        assert abs(still.stall_ms - gap_ms) < 5
        assert model_ms - 1 <= still.stall_ms <= model_ms + STALL_SLACK_MS
    finally:
        reader.stop()


def test_zoomed_still_is_the_crop_in_sensor_pixels(imx708):
    source = Picamera2Source(camera(hflip="true"))
    source.open()
    reader = Reader(source).start()
    try:
        crop = Rect(1152, 648, 2304, 1296)  # 2x zoom, centred
        source.set_crop(crop)
        reader.wait_frames(3)
        still = source.capture_still(DEADLINE_S)
        assert still is not None and (still.width, still.height) == (2304, 1296) and still.reconfigured
        expected = picture("imx708", crop.as_tuple(), (2304, 1296), hflip=True)
        assert np.array_equal(still.image, expected)
        record = imx708.camera(0)
        *_, still_config, video_config = record.configs
        # Read in the full-resolution mode: the binned 2304x1296 mode would only enlarge a quarter of its pixels.
        assert (still_config.mode.width, still_config.mode.height) == (4608, 2592)
        assert record.start_controls[-2]["ScalerCrop"].as_tuple() == crop.as_tuple()
        assert [c.flips for c in (still_config, video_config)] == [(True, False), (True, False)]
        reader.wait_frames(5)
        last = reader.frames[-1][1]
        assert np.array_equal(last.image, picture("imx708", crop.as_tuple(), (1280, 720), hflip=True, limited=True))
        print(f"\nimx708 2x zoom still 2304x1296: stall {still.stall_ms:.0f} ms")
    finally:
        reader.stop()


@pytest.mark.parametrize(
    ("model", "size", "fps", "crop"),
    [
        ("imx219", "3280x2464", 15, None),  # video at the sensor's full size
        ("imx477", "4056x3040", 10, Rect(1014, 760, 2028, 1520)),  # 2x zoom read in the full-resolution mode
    ],
)
def test_still_without_reconfiguring_when_the_video_has_every_pixel(monkeypatch, model, size, fps, crop):
    fake = use_fake_libcamera(monkeypatch, [model])
    source = Picamera2Source(camera(size=size, fps=fps))
    source.open()
    reader = Reader(source).start()
    try:
        if crop is not None:
            source.set_crop(crop)
        reader.wait_frames(3)
        record = fake.camera(0)
        configures, starts = record.configures, record.starts
        still = source.capture_still(DEADLINE_S)
        assert still is not None
        assert (still.width, still.height) == source.camera.size
        assert still.full_resolution and not still.reconfigured
        assert (record.configures, record.starts) == (configures, starts)  # the camera never left its video mode
        # The still is a live frame: the stream loses nothing, the gap is an ordinary frame time.
        assert still.stall_ms < 2 * 1000 / fps
        delivered = [frame for _, frame in reader.frames if frame.capture_ns == still.capture_ns]
        assert len(delivered) == 1 and np.array_equal(delivered[0].image, still.image)
        print(f"\n{model} {size} still from the video mode: stall {still.stall_ms:.0f} ms (a frame time)")
    finally:
        reader.stop()


def test_close_unblocks_a_waiting_still(imx708):
    source = Picamera2Source(camera())
    source.open()  # nobody reads: the request waits for a capture thread
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            source.capture_still(DEADLINE_S)
        except BaseException as err:
            outcome.append(err)

    asker = threading.Thread(target=ask)
    asker.start()
    deadline = time.monotonic() + DEADLINE_S
    while source._still_request is None:  # the request is posted
        assert time.monotonic() < deadline
        time.sleep(0.005)  # poll interval of a deadline loop
    started = time.monotonic()
    source.close()
    asker.join(DEADLINE_S)
    assert len(outcome) == 1 and isinstance(outcome[0], SourceEnded)
    assert time.monotonic() - started < 1.0
    with pytest.raises(SourceEnded):
        source.capture_still(DEADLINE_S)


def test_a_failed_still_leaves_the_live_stream_running(imx708, monkeypatch):
    import picamera2

    def no_still_frame(self, wait=None, flush=None):
        if self.camera_config["use_case"] == "still":
            raise TimeoutError("capture_request timed out")
        return real_capture(self, wait, flush)

    real_capture = picamera2.Picamera2.capture_request
    monkeypatch.setattr(picamera2.Picamera2, "capture_request", no_still_frame)
    source = Picamera2Source(camera())
    source.open()
    reader = Reader(source).start()
    try:
        reader.wait_frames(3)
        with pytest.raises(SourceError, match="could not take a still"):
            source.capture_still(DEADLINE_S)
        reader.wait_frames(10)
        assert reader.frames[-1][1].width == 1280
        assert imx708.camera(0).configs[-1].main_size == (1280, 720)
    finally:
        reader.stop()


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ("rtsp://admin:secret@10.0.0.7:8554/live", "rtsp://10.0.0.7:8554"),  # never the credentials
        ("/dev/video0", "/dev/video0"),
        ("/home/pi/clip.mp4", "video file"),
    ],
)
def test_exif_model_of_other_sources(source, model):
    from vergence.sources.base import create_source

    assert create_source(CameraSettings(id="cam0", source=source)).camera_model == model
    testpattern = create_source(CameraSettings(id="cam0", source="testpattern"))
    assert (testpattern.camera_make, testpattern.camera_model) == ("vergence", "vergence testpattern")
