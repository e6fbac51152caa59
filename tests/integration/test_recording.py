"""Recordings on a real server: segments that roll without losing or repeating a frame, files that survive SIGKILL,
pre-event clips, and a full disk that ends one recording while viewers go on."""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import av.error
import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests import polling
from tests.integration.wsclient import VideoClient
from tests.media import read_timecode

DEADLINE_S = 30.0
FPS = 30


def poll(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    return polling.poll(check, what, deadline_s)  # recordings take longer: a longer default deadline


def command(server, body: Any) -> dict[str, Any]:
    if isinstance(body, str):
        response = httpx.post(f"{server.url}/api/commands", content=body, headers={"Content-Type": "text/plain"})
    else:
        response = httpx.post(f"{server.url}/api/commands", json=body)
    return response.json()


def recording_of(server, stream: str = "cam0") -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/stats").json()["recordings"].get(stream, {})


def decoded_timecodes(path: str) -> tuple[list[int], list[bool], str | None]:
    """Capture times (µs, from the painted time code) and keyframe flags of every frame that decodes; the error that
    ended decoding early, if any."""
    times, keys, error = [], [], None
    try:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                code_ns = read_timecode(frame)
                times.append(None if code_ns is None else code_ns // 1000)
                keys.append(frame.key_frame)
    except av.error.FFmpegError as err:
        error = str(err)
    return times, keys, error


def ffprobe_frames(path: str) -> int:
    """Frames ffprobe counts; fails the test on any error ffprobe reports."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and not probe.stderr.strip(), f"ffprobe {path}: {probe.stderr}"
    [stream] = json.loads(probe.stdout)["streams"]
    assert stream["codec_name"] == "h264"
    return int(stream["nb_read_frames"])


def next_event(control: ClientConnection, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first message on a control WebSocket that `wanted` accepts, within the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        message = json.loads(control.recv(timeout=max(0.1, deadline - time.monotonic())))
        if wanted(message):
            return message


def complete_fragment_samples(path: str) -> tuple[int, bool]:
    """Samples in the complete moof+mdat pairs of a fragmented MP4, and whether a partial box trails them."""
    data = Path(path).read_bytes()
    offset, samples, pending, partial = 0, 0, 0, False
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size < 8 or offset + size > len(data):
            partial = True
            break
        if kind == b"moof":
            pending = _trun_samples(data[offset + 8 : offset + size])
        elif kind == b"mdat":
            samples, pending = samples + pending, 0
        offset += size
    return samples, partial or offset < len(data)


def _trun_samples(moof: bytes) -> int:
    count, offset = 0, 0
    while offset + 8 <= len(moof):
        size, kind = struct.unpack(">I4s", moof[offset : offset + 8])
        if kind == b"traf":
            count += _trun_samples(moof[offset + 8 : offset + size])
        elif kind == b"trun":
            count += struct.unpack(">I", moof[offset + 12 : offset + 16])[0]
        offset += max(size, 8)
    return count


class Viewer:
    """A /ws/video client on a thread, keeping the capture time (µs) of every access unit it receives."""

    def __init__(self, server, stream: str = "cam0") -> None:
        self.client = VideoClient.open(server.ws_url, f"/ws/video/{stream}")
        self.times: list[int] = []
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.client.next(timeout=1)
            except TimeoutError:
                continue
            except Exception:
                return
            assert message.header is not None
            self.times.append(message.header.capture_ns // 1000)
            self.arrivals.append(time.monotonic())

    def fps_between(self, start: float, end: float) -> float:
        return sum(1 for at in self.arrivals if start <= at < end) / (end - start)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()


@pytest.fixture
def viewer_of() -> Iterator[Callable[..., Viewer]]:
    viewers: list[Viewer] = []

    def open_viewer(server, stream: str = "cam0") -> Viewer:
        viewer = Viewer(server, stream)
        viewers.append(viewer)
        return viewer

    yield open_viewer
    for viewer in viewers:
        viewer.close()


def assert_whole_run(segments: list[dict[str, Any]], viewer: Viewer, media: Path) -> list[int]:
    """Check every segment (ffprobe, keyframe first, time codes) and that together they hold exactly the run of access
    units a live viewer saw: none lost, none twice, across every boundary. Return the capture times (µs)."""
    recorded: list[int] = []
    for index, segment in enumerate(segments):
        path = segment["path"]
        assert Path(path).parent == media and Path(path).name.startswith("cam0-")
        times, keys, error = decoded_timecodes(path)
        assert error is None, f"{path}: {error}"
        assert ffprobe_frames(path) == len(times) == segment["frames"]
        assert keys[0], f"segment {index} does not start at a keyframe"
        assert None not in times, f"segment {index}: a frame without a readable time code"
        recorded += times  # type: ignore[arg-type]
    names = [Path(segment["path"]).name for segment in segments]
    assert len(set(names)) == len(names) and names == sorted(names)  # named by first-frame time: they sort in order
    assert recorded == sorted(set(recorded)), "a frame repeated or out of order"
    first = viewer.times.index(recorded[0])
    assert viewer.times[first : first + len(recorded)] == recorded
    return recorded


def test_segments_roll_by_size_without_losing_or_repeating_a_frame(vergence_server, viewer_of, tmp_path):
    media = tmp_path / "media"
    server = vergence_server(
        "--size", "640x360", "--fps", str(FPS),
        env={"VERGENCE_MEDIA__DIR": str(media), "VERGENCE_RECORDING__SEGMENT_MB": "1", "VERGENCE_H264__BITRATE_BPS": "3000000"},
    )  # fmt: skip
    viewer = viewer_of(server)
    poll(lambda: len(viewer.times) > 10, "the viewer's first frames")
    started = command(server, "record")
    assert started["ok"] and started["result"]["recording"], started
    poll(lambda: len(recording_of(server).get("segments", [])) >= 4, "three closed segments and a fourth open")
    stopped = command(server, "record stop")
    assert stopped["ok"] and stopped["result"]["state"] == "stopped", stopped
    segments = stopped["result"]["segments"]
    assert len(segments) >= 4 and not any(segment.get("open") for segment in segments)

    recorded = assert_whole_run(segments, viewer, media)
    for segment in segments[:-1]:  # rolled by size: past 1 MB, by less than one GOP (2 s at 3 Mbit/s ≈ 0.75 MB)
        assert 1_000_000 <= segment["bytes"] < 1_000_000 + 900_000, segment
    print(f"\n{len(segments)} segments, {len(recorded)} frames, sizes {[s['bytes'] for s in segments]}")


def test_sigkill_leaves_closed_segments_whole_and_the_open_one_playable_to_its_last_fragment(vergence_server, tmp_path):
    media = tmp_path / "media"
    server = vergence_server(
        "--size", "640x360", "--fps", str(FPS),
        env={"VERGENCE_MEDIA__DIR": str(media), "VERGENCE_RECORDING__SEGMENT_MB": "0.5", "VERGENCE_H264__BITRATE_BPS": "3000000"},
    )  # fmt: skip
    assert command(server, "record")["ok"]
    poll(lambda: len(recording_of(server).get("segments", [])) >= 3, "two closed segments and a third open")
    poll(lambda: recording_of(server)["frames"] - sum(s.get("frames", 0) for s in recording_of(server)["segments"]) > 45, "1.5 s into the open segment")  # fmt: skip
    state = recording_of(server)
    killed_us = time.time_ns() // 1000
    server.process.kill()
    server.process.wait(timeout=10)

    closed = [segment for segment in state["segments"] if not segment.get("open")]
    for segment in closed:
        times, keys, error = decoded_timecodes(segment["path"])
        assert error is None and keys[0] and ffprobe_frames(segment["path"]) == len(times) == segment["frames"], segment
    files = sorted(media.glob("*.mp4"))
    assert [str(path) for path in files[: len(closed)]] == [segment["path"] for segment in closed]
    opened = files[len(closed) :]
    assert opened, "the open segment is missing"
    for path in opened:
        samples, partial = complete_fragment_samples(str(path))
        times, keys, _error = decoded_timecodes(str(path))
        assert samples > 0 and keys[0], path
        assert len(times) == samples, f"{path}: {len(times)} frames decode, {samples} are in complete fragments"
        lost_s = (killed_us - times[-1]) / 1e6  # type: ignore[operator]
        print(f"\nkilled: open segment decodes {len(times)} frames, the last captured {lost_s:.2f} s before the kill")
        assert lost_s < 1.5, "more than the last fragment was lost"


def test_a_clip_starts_at_a_keyframe_from_before_its_pre_event_window(vergence_server, viewer_of, tmp_path):
    media, pre_s = tmp_path / "media", 4
    server = vergence_server(
        "--size", "320x240", "--fps", str(FPS),
        env={"VERGENCE_MEDIA__DIR": str(media), "VERGENCE_RECORDING__PRE_EVENT_S": str(pre_s), "VERGENCE_RECORDING__POST_EVENT_S": "1"},
    )  # fmt: skip
    poll(lambda: recording_of(server).get("pre_event", {}).get("span_s", 0) >= pre_s, "a full pre-event buffer")
    viewer = viewer_of(server)  # the stream's frames: which one came after the clip's last
    triggered_us = time.time_ns() // 1000
    clip = command(server, "clip")
    assert clip["ok"], clip
    assert command(server, "clip 1")["result"]["extended"]  # a second trigger extends the running clip
    done = poll(lambda: recording_of(server)["clip"]["state"] == "stopped" and recording_of(server)["clip"], "the clip")
    [segment] = done["segments"]
    assert Path(segment["path"]).name.endswith("-clip.mp4")
    times, keys, error = decoded_timecodes(segment["path"])
    assert error is None and ffprobe_frames(segment["path"]) == len(times)
    assert keys[0], "the clip does not start at a keyframe"
    assert times[0] < triggered_us - (pre_s - 1) * 1_000_000, (triggered_us - times[0]) / 1e6  # type: ignore[operator]
    # The clip ends before the stream's first frame captured after its post-event second, whatever the gap before that
    # frame (a capture stall, frames the encoder skipped): the frame that follows its last came after trigger + 1 s.
    following = poll(lambda: [t for t in viewer.times if t > times[-1]], "the stream's frame after the clip's last")
    assert following[0] >= triggered_us + 1_000_000, (following[0] - triggered_us) / 1e6  # type: ignore[operator]
    assert times == sorted(set(times))  # type: ignore[type-var]
    print(f"\nclip: {(triggered_us - times[0]) / 1e6:.2f} s before the trigger, {len(times)} frames")  # type: ignore[operator]


def test_a_plugin_result_triggers_a_clip(vergence_server, tmp_path):
    plugin = tmp_path / "alarm.py"
    plugin.write_text("def process(frame, ctx):\n    if frame.seq % 90 == 45:\n        ctx.publish({'alarm': True})\n")
    config = tmp_path / "vergence.toml"
    config.write_text(
        f"""
[[cameras]]
id = "cam0"
size = "320x240"
plugins = [{{ path = "{plugin}" }}]

[media]
dir = "{tmp_path / "media"}"

[recording]
pre_event_s = 2
post_event_s = 0.5
clip_triggers = ["alarm:alarm"]
"""
    )
    server = vergence_server("--config", str(config))
    clip = poll(lambda: recording_of(server).get("clip", {}).get("segments"), "a clip started by the plugin")
    assert Path(clip[0]["path"]).name.startswith("cam0-") and clip[0]["path"].endswith("-clip.mp4")


def test_a_recording_goes_on_through_network_output_changes(vergence_server, viewer_of, tmp_path):
    media = tmp_path / "media"
    outputs = json.dumps([{"id": "udp0", "port": 5600, "pace_mbps": 0}])
    server = vergence_server(
        "--size", "320x240", "--fps", str(FPS), env={"VERGENCE_MEDIA__DIR": str(media), "VERGENCE_UDP": outputs}
    )  # fmt: skip
    viewer = viewer_of(server)
    poll(lambda: len(viewer.times) > 10, "the viewer's first frames")
    assert command(server, "record")["ok"]
    for body in ("stream stop", "port 5602", "stream start", "ip 127.0.0.2", "protocol mpegts", "stream stop"):
        at = len(viewer.times)
        assert command(server, body)["ok"], body
        poll(lambda at=at: len(viewer.times) > at + 10, f"frames after {body!r}")
    stopped = command(server, "record stop")["result"]
    assert stopped["state"] == "stopped" and len(stopped["segments"]) == 1
    recorded = assert_whole_run(stopped["segments"], viewer, media)
    assert len(recorded) > 60


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    assert mounted.returncode == 0, f"mounting a tmpfs needs root (CI runs as root): {mounted.stderr.decode()}"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs: a real disk that fills."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "3m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_ends_the_recording_in_error_while_viewers_keep_their_frame_rate(
    vergence_server, viewer_of, tiny_disk
):
    server = vergence_server(
        "--size", "640x360", "--fps", str(FPS),
        env={
            "VERGENCE_MEDIA__DIR": str(tiny_disk), "VERGENCE_RECORDING__SEGMENT_MB": "1",
            "VERGENCE_RECORDING__MIN_FREE_MB": "0", "VERGENCE_H264__BITRATE_BPS": "3000000",
        },
    )  # fmt: skip
    viewer = viewer_of(server)
    poll(lambda: len(viewer.times) > 10, "the viewer's first frames")
    control = connect(f"{server.ws_url}/ws/control", legacy=True)
    assert command(server, "record")["ok"]
    failed = poll(lambda: recording_of(server).get("state") == "error" and recording_of(server), "the disk to fill")
    event = next_event(control, lambda message: message.get("type") == "recording" and message["state"] == "error")
    control.close()
    assert event["stream"] == "cam0" and event["code"] == "disk_full", event
    failed_at = time.monotonic()
    assert failed["code"] == "disk_full" and "disk full" in failed["error"] and not failed["recording"], failed
    poll(lambda: time.monotonic() > failed_at + 3, "three seconds after the failure")
    window_start = viewer.arrivals[0] + 1  # from a second after the viewer's first frame to now
    fps = viewer.fps_between(window_start, time.monotonic())
    print(f"\nviewer {fps:.1f} fps across the recording and its disk-full failure")
    assert fps >= 29, fps
    assert httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]["state"] == "running"

    closed = [segment for segment in failed["segments"] if not segment.get("open")]
    assert closed, failed  # 3 MB hold at least one closed 1 MB segment before the disk fills
    for segment in closed[:-1]:  # earlier segments intact (the last one is the one the disk ran out on)
        times, keys, error = decoded_timecodes(segment["path"])
        assert error is None and keys[0] and ffprobe_frames(segment["path"]) == len(times) == segment["frames"]
    assert command(server, "record stop")["code"] == "conflict"  # it is not recording any more
    for path in tiny_disk.glob("*.mp4"):
        path.unlink()
    again = command(server, "record")  # space again: a new recording starts
    assert again["ok"] and again["result"]["state"] in ("waiting", "recording"), again
    assert command(server, "record stop")["ok"]


def test_the_free_space_guard_refuses_and_stops_recordings(vergence_server, tiny_disk):
    server = vergence_server(
        "--size", "640x360", "--fps", str(FPS),
        env={"VERGENCE_MEDIA__DIR": str(tiny_disk), "VERGENCE_RECORDING__MIN_FREE_MB": "2", "VERGENCE_H264__BITRATE_BPS": "3000000"},
    )  # fmt: skip
    started = command(server, "record")
    assert started["ok"], started
    stopped = poll(lambda: recording_of(server).get("state") == "error" and recording_of(server), "the guard")
    assert stopped["code"] == "low_disk_space" and "minimum 2 MB" in stopped["error"], stopped
    refused = command(server, "record")
    assert not refused["ok"] and refused["code"] == "low_disk_space", refused
    for segment in stopped["segments"]:
        times, keys, error = decoded_timecodes(segment["path"])
        assert error is None and keys[0] and ffprobe_frames(segment["path"]) == len(times)
