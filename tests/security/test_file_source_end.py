"""Finding 11 (low): `loop = false` on a file source was ignored: at the file's end the supervisor restarted the source
as if it had failed, so the file played again and again. Now the stream ends for good in state `ended`, shown by
/api/streams and /api/stats; viewers get the last pictures, an `ended` notice and a clean end, and the source is not
opened again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.media import write_clip

FPS = 30
CLIP_FRAMES = 150  # five seconds: a viewer is connected well before the end, however slowly the server starts
END_DEADLINE_S = 30.0
MJPEG_END = b"--vergenceframe--\r\n"


def start_once(vergence_server: Any, tmp_path: Path) -> Any:
    clip = tmp_path / "once.mp4"
    write_clip(clip, frames=CLIP_FRAMES, fps=FPS)
    config = tmp_path / "vergence.toml"
    config.write_text(f'[[cameras]]\nid = "cam0"\nsource = "{clip}"\nsize = "320x240"\nfps = {FPS}\nloop = false\n')
    return vergence_server("--config", str(config))


def watch_to_the_end(server: Any) -> tuple[int, list[dict[str, Any]], int | None]:
    """Read the video WebSocket until the server closes it: frames received, text messages, the close code."""
    frames, texts = 0, []
    deadline = time.monotonic() + END_DEADLINE_S
    with connect(f"{server.ws_url}/ws/video/cam0", max_size=None, open_timeout=10) as ws:
        try:
            while True:
                try:
                    message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise AssertionError(
                        f"the stream did not end within {END_DEADLINE_S} s: {frames} frames, then {texts[-3:]}"
                    ) from None
                if isinstance(message, str):
                    texts.append(json.loads(message))
                else:
                    frames += 1
        except ConnectionClosed:
            pass
        return frames, texts, ws.close_code


def read_mjpeg(server: Any, into: list[bytes]) -> None:
    with httpx.stream("GET", f"{server.url}/stream/cam0.mjpeg", timeout=END_DEADLINE_S) as response:
        for chunk in response.iter_bytes():
            into.append(chunk)


def test_a_file_with_loop_false_plays_once_and_its_viewers_see_a_clean_end(vergence_server, tmp_path):
    server = start_once(vergence_server, tmp_path)
    mjpeg: list[bytes] = []
    mjpeg_viewer = threading.Thread(target=read_mjpeg, args=(server, mjpeg), daemon=True)
    mjpeg_viewer.start()

    frames, texts, close_code = watch_to_the_end(server)
    assert frames > 0, "the viewer saw none of the file"
    assert close_code == 1000, f"not a normal close: {close_code}"
    states = [text["state"] for text in texts if text.get("type") == "status"]
    assert states[-1] == "ended" and "restarting" not in states, states
    assert "played to its end" in texts[-1]["message"], texts[-1]

    mjpeg_viewer.join(END_DEADLINE_S)
    assert not mjpeg_viewer.is_alive(), "the MJPEG response did not end with the stream"
    body = b"".join(mjpeg)
    assert body.count(b"Content-Type: image/jpeg") > 0 and body.endswith(MJPEG_END), body[-80:]

    stream = httpx.get(f"{server.url}/api/streams", timeout=10).json()[0]
    assert stream["state"] == "ended", stream
    stats = httpx.get(f"{server.url}/api/stats", timeout=10).json()["streams"]["cam0"]
    assert stats["state"] == "ended" and stats["restarts"] == 0 and stats["last_error"] is None, stats
    assert stats["frames"] <= CLIP_FRAMES


def test_a_stream_that_ended_stays_ended_for_later_viewers(vergence_server, tmp_path):
    server = start_once(vergence_server, tmp_path)
    watch_to_the_end(server)
    frames_at_end = httpx.get(f"{server.url}/api/stats", timeout=10).json()["streams"]["cam0"]["frames"]

    # A viewer arriving later is told at once, and gets no picture: the file is not opened again.
    frames, texts, close_code = watch_to_the_end(server)
    assert (frames, close_code) == (0, 1000), (frames, close_code, texts)
    assert [text["state"] for text in texts] == ["ended"], texts
    with httpx.stream("GET", f"{server.url}/stream/cam0.mjpeg", timeout=10) as response:
        assert response.status_code == 200 and response.read() == MJPEG_END

    stats = httpx.get(f"{server.url}/api/stats", timeout=10).json()["streams"]["cam0"]
    assert stats["state"] == "ended" and stats["restarts"] == 0 and stats["frames"] == frames_at_end, stats
    assert "restarting" not in server.log()
