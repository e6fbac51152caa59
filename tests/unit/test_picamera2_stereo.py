"""Two Raspberry Pi cameras as stereo eyes through the real picamera2: in step after SyncReady (paired exposures within
1 ms), and a pan/tilt/zoom of both eyes lands within 4 frames on each, every frame after it reporting the crop asked for."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from tests.fakes import use_fake_libcamera
from vergence.config import CameraSettings
from vergence.errors import SourceEnded
from vergence.ptz import Rect
from vergence.sources.picamera2 import Picamera2Source

DEADLINE_S = 10.0
FPS = 30


def eye(camera_id: str, sync: str) -> Picamera2Source:
    options = {"sync": sync, "sync_frames": "10"}
    return Picamera2Source(CameraSettings(id=camera_id, source="picamera2", size="1280x720", fps=FPS, options=options))


class Eyes:
    """Both eyes read on their own threads, as the server's capture threads do; every frame's metadata kept per eye."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, left: Picamera2Source, right: Picamera2Source) -> None:
        import picamera2.request

        self.sources = {"left": left, "right": right}
        self.frames: dict[str, list] = defaultdict(list)  # (capture_ns, sync_ready) per frame
        self.metadata: dict[int, list[dict]] = defaultdict(list)  # by libcamera camera number
        self.cond = threading.Condition()
        self._stop = threading.Event()
        real = picamera2.request.CompletedRequest.get_metadata

        def recording(request):
            metadata = real(request)
            with self.cond:
                self.metadata[request.picam2.camera_idx].append(metadata)
            return metadata

        monkeypatch.setattr(picamera2.request.CompletedRequest, "get_metadata", recording)
        self.threads = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.sources]

    def _read(self, name: str) -> None:
        source = self.sources[name]
        try:
            while not self._stop.is_set():
                frame = source.read()
                with self.cond:
                    self.frames[name].append((frame.capture_ns, source.sync_ready))
                    self.cond.notify_all()
        except SourceEnded:
            pass

    def wait(self, predicate) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, DEADLINE_S), "condition not met before the deadline"

    def __enter__(self) -> Eyes:
        for source in self.sources.values():
            source.open()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for source in self.sources.values():
            source.close()
        for thread in self.threads:
            thread.join(DEADLINE_S)


def test_synced_eyes_expose_together_and_a_stereo_move_lands_on_both_within_four_frames(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx708", "imx708"])
    left, right = eye("cam0", "server"), eye("cam1", "client")
    with Eyes(monkeypatch, left, right) as eyes:
        eyes.wait(lambda: left.sync_ready and right.sync_ready)
        start = {name: len(eyes.frames[name]) for name in ("left", "right")}
        eyes.wait(lambda: all(len(eyes.frames[name]) >= start[name] + 30 for name in start))
        with eyes.cond:
            left_times = [t for t, _ in eyes.frames["left"][start["left"] :]]
            right_times = [t for t, _ in eyes.frames["right"][start["right"] :]]
        skews = [min(abs(t - r) for r in right_times) for t in left_times[2:-2]]
        print(f"\npaired exposure skew after SyncReady: max {max(skews) / 1e6:.3f} ms over {len(skews)} pairs")
        assert max(skews) < 1_000_000

        # Linked pan/zoom with the eyes turned in a little (vergence): each eye its own crop, set together.
        for zoom_crops in (
            (Rect(1500, 800, 2304, 1296), Rect(1400, 800, 2304, 1296)),
            (Rect(2001, 1201, 1153, 649), Rect(1901, 1201, 1153, 649)),
        ):
            asked_ns = time.monotonic_ns()
            numbers = (left._camera.camera_idx, right._camera.camera_idx)  # libcamera's numbering, not picamera2's
            seen = {idx: len(eyes.metadata[idx]) for idx in numbers}
            left.set_crop(zoom_crops[0])
            right.set_crop(zoom_crops[1])
            eyes.wait(lambda seen=seen: all(len(eyes.metadata[idx]) >= seen[idx] + 10 for idx in seen))
            for n, (idx, source) in enumerate(zip(numbers, (left, right), strict=True)):
                wanted = source._crop.as_tuple()
                with eyes.cond:
                    after = [m for m in eyes.metadata[idx][seen[idx] :] if m["SensorTimestamp"] > asked_ns]
                reported = [tuple(m["ScalerCrop"]) for m in after]
                landed = reported.index(wanted)
                assert landed < 4, (idx, reported)
                assert all(crop == wanted for crop in reported[landed:]), (idx, reported)
                asked = zoom_crops[n]
                assert all(abs(a - b) <= 2 for a, b in zip(wanted, asked.as_tuple(), strict=True))
