"""pi-h264-to-browser's pages against vergence, unchanged: they open `/ws/` (single camera) or `/cam0/`, `/cam1/`
(dual) and hand every binary message, one bare Annex-B access unit, to jMuxer; the single-camera page sends `X:`,
`Y:` and `Z:` text on the same socket to set the crop (ScalerCrop = (X, Y, W·Z, H·Z)). Written from that
description: a client that does what the page does, and decodes what it gets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.media import H264Decoder
from tests.polling import poll


def config(tmp_path: Path) -> Path:
    path = tmp_path / "vergence.toml"
    path.write_text(
        "[compat]\npi_h264_to_browser = true\n"
        '[[cameras]]\nid = "front"\nsize = "320x240"\nfps = 30\n'
        '[[cameras]]\nid = "back"\nsize = "320x240"\nfps = 30\n'
    )
    return path


def decoded_frames(url: str, count: int) -> list:
    """What jMuxer does with the messages: feed each, as it comes, to an H.264 decoder."""
    decoder, frames = H264Decoder(), []
    with connect(url, open_timeout=10) as ws:
        while len(frames) < count:
            message = ws.recv(timeout=10)
            assert isinstance(message, bytes) and message.startswith((b"\0\0\0\1", b"\0\0\1")), message[:8]
            frames += decoder.decode(message)
    return frames


def test_the_pages_video_sockets_play_each_camera(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path)))
    for path in ("/ws/", "/cam0/", "/cam1/"):
        frames = decoded_frames(f"{server.ws_url}{path}", 10)
        assert (frames[-1].width, frames[-1].height) == (320, 240), path


def test_the_single_camera_pages_x_y_z_messages_move_the_crop(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path)))
    ptz = lambda: httpx.get(f"{server.url}/api/cameras/front/ptz").json()  # noqa: E731
    with connect(f"{server.ws_url}/ws/", open_timeout=10) as ws:
        ws.recv(timeout=10)
        ws.send("X:0")
        ws.send("Y:0")
        ws.send("Z:0.5")  # a crop half the picture's size, at the top-left corner of the sensor
        # ScalerCrop (0, 0, 320·0.5, 240·0.5) in sensor pixels: the test camera's virtual sensor is 640x480.
        state = poll(lambda: ptz() if ptz()["crop"] == [0, 0, 160, 120] else None, "the crop the page asked for")
    assert state["sensor"] == [640, 480] and state["zoom"] == 4.0, state


def test_the_dual_pages_ptz_socket_tells_the_state_moves_both_cameras_and_tells_every_page(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path)))
    ptz = lambda camera: httpx.get(f"{server.url}/api/cameras/{camera}/ptz").json()  # noqa: E731
    with connect(f"{server.ws_url}/ptz/", open_timeout=10) as page, connect(f"{server.ws_url}/ptz/") as other:
        state = json.loads(page.recv(timeout=10))
        other.recv(timeout=10)
        assert [entry["cam"] for entry in state] == [0, 1, 2]
        front, back, both = state
        # The test camera's 640x480 virtual sensor, a 320x240 picture, the whole field: centre (320, 240), z = 2.
        assert front["x"] == {"min": 160, "val": 320, "max": 480} and front["y"]["val"] == 240, front
        assert both["z"]["val"] == 2.0 and front["f"] == {"hor": 0, "ver": 0, "pau": 0}, state
        # The page moves camera 0 to the top-left quarter at z 1 (a 320x240 crop), flips camera 1, turns texts on.
        front["x"]["val"], front["y"]["val"], both["z"]["val"] = 160, 120, 1.0
        back["f"]["hor"], front["e"]["txt"] = 1, True
        message = json.dumps(state)
        page.send(message)
        assert json.loads(other.recv(timeout=10)) == state  # every page hears it
    assert ptz("front")["crop"] == [0, 0, 320, 240] and ptz("back")["crop"] == [160, 120, 320, 240]
    assert ptz("back")["flip"] == {"horizontal": True, "vertical": False}
    overlay = httpx.get(f"{server.url}/api/cameras/front/overlay").json()
    assert overlay["timestamp"] is True and overlay["crosshair"] is False


def test_a_viewers_crop_and_ptz_messages_are_refused(vergence_server, tmp_path):
    """The pages' PTZ moves cameras: with [auth] on, a viewer's token lets the page watch, not steer."""
    viewer = "viewer-token-0123456789abcdef"
    tokens = [{"name": "watcher", "token": viewer, "role": "viewer"}]
    server = vergence_server("--config", str(config(tmp_path)), env={"VERGENCE_AUTH__TOKENS": json.dumps(tokens)})
    before = httpx.get(f"{server.url}/api/cameras/front/ptz", headers={"Authorization": f"Bearer {viewer}"}).json()
    with connect(f"{server.ws_url}/ws/?token={viewer}", open_timeout=10) as ws:
        assert isinstance(ws.recv(timeout=10), bytes)  # it may watch
        ws.send("Z:0.5")
        poll(lambda: "PTZ from a viewer refused" in server.log(), "the crop message to be refused")
    with connect(f"{server.ws_url}/ptz/?token={viewer}", open_timeout=10) as page:
        state = json.loads(page.recv(timeout=10))
        state[2]["z"]["val"] = 1.0
        page.send(json.dumps(state))
        poll(lambda: "a viewer's message refused" in server.log(), "the /ptz/ message to be refused")
    after = httpx.get(f"{server.url}/api/cameras/front/ptz", headers={"Authorization": f"Bearer {viewer}"}).json()
    assert after["crop"] == before["crop"], (before, after)


def test_the_dual_pages_ptz_socket_with_one_camera_says_why_it_closes(vergence_server, tmp_path):
    path = tmp_path / "one.toml"
    path.write_text('[compat]\npi_h264_to_browser = true\n[[cameras]]\nid = "front"\nsize = "320x240"\n')
    server = vergence_server("--config", str(path))
    with connect(f"{server.ws_url}/ptz/", open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404, closed.value
    assert "needs two cameras" in closed.value.rcvd.reason
