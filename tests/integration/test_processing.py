"""Processing against a real server: plugins from files draw into the delivered frames, a failing plugin is disabled
while the stream goes on, a slow one costs the stream nothing; ROIs and overlays are validated and persisted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.sync.client import ClientConnection, connect

from tests.controlws import command, send_command
from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from tests.polling import poll

SEED_PLUGIN = """
import cv2

def process_image(image):  # the seed projects' signature: BGR in, BGR out
    cv2.rectangle(image, (20, 100), (80, 160), (0, 0, 255), -1)  # filled red
    return image
"""

RICH_PLUGIN = """
def process(frame, ctx):
    ctx.draw.rect(200, 100, 260, 160, "blue", -1)
    ctx.publish({"seq": frame.seq, "luma": float(frame.gray().mean()), "zoom": ctx.ptz["zoom"]})
"""

FAILING_PLUGIN = """
def process(frame, ctx):
    raise RuntimeError("boom")
"""

SLOW_PLUGIN = """
import time

def process(frame, ctx):
    time.sleep(0.2)  # a detector far slower than the camera
    ctx.draw.rect(120, 100, 180, 160, "yellow", -1)
"""


def write_config(tmp_path: Path, plugins: dict[str, str]) -> Path:
    tables = []
    for name, code in plugins.items():
        path = tmp_path / f"{name}.py"
        path.write_text(code)
        tables.append(f'[[cameras.plugins]]\npath = "{path}"\n')
    config = tmp_path / "vergence.toml"
    # Plugins added over the API come from this directory only (pytest made it: the service user's, mode 0700).
    processing = f'[processing]\nplugin_dir = "{tmp_path}"\n'
    config.write_text(processing + '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n' + "\n".join(tables))
    return config


def decoded_bgr(server: Any, count: int = 45, after_ns: int = 0) -> np.ndarray:
    """A frame of the H.264 stream as BGR: the `count`th, or the first captured after `after_ns` (past the GOP replay)."""
    decoder = H264Decoder()
    seen = 0
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        while True:
            message = client.next()
            frames = decoder.decode(message.payload)
            seen += len(frames)
            if frames and (message.header.capture_ns > after_ns if after_ns else seen >= count):
                return frames[-1].to_ndarray(format="bgr24").astype(int)


def box_colour(bgr: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Mean BGR well inside a box (away from its edges, where chroma subsampling blends)."""
    return bgr[y1 + 8 : y2 - 8, x1 + 8 : x2 - 8].reshape(-1, 3).mean(axis=0)


def wait_for_event(control: ClientConnection, check: Callable[[dict[str, Any]], bool], timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "event never came"
        event = json.loads(control.recv(timeout=remaining))
        if check(event):
            return event


def measured_fps(server: Any, seconds: float = 3.0) -> float:
    """Frames per second the stream runs at, from the numbers and capture times of the frames a WS viewer receives
    (after the GOP replay burst).

    Counted by frame number, not by messages: on a busy machine the encoder skips a frame a newer one overtook before
    it was encoded (by design; /api/stats counts them as encoder_skipped_frames), which thins what the viewer receives
    without the stream slowing down. A stream slowed by a plugin numbers fewer frames."""
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        first = client.next()
        while first.header.capture_ns < time.time_ns() - 50_000_000:  # skip the replayed GOP
            first = client.next()
        last = first
        while (last.header.capture_ns - first.header.capture_ns) / 1e9 < seconds:
            last = client.next()
    return (last.header.seq - first.header.seq) / ((last.header.capture_ns - first.header.capture_ns) / 1e9)


def test_plugins_from_paths_draw_in_the_frames_and_a_failing_one_is_disabled(vergence_server, tmp_path):
    config = write_config(tmp_path, {"seed": SEED_PLUGIN, "rich": RICH_PLUGIN})
    server = vergence_server("--config", str(config))
    with connect(f"{server.ws_url}/ws/control", legacy=True) as control:
        state = json.loads(control.recv(timeout=10))
        names = {p["name"]: p for p in state["processing"]["cam0"]["plugins"]}
        assert names["seed"]["kind"] == "process_image" and names["rich"]["kind"] == "process"
        result = wait_for_event(control, lambda e: e["type"] == "plugin_result" and e["plugin"] == "rich")
        assert result["stream"] == "cam0" and result["result"]["zoom"] == 1.0 and result["capture_ns"] > 0

        bgr = decoded_bgr(server)
        b, g, r = box_colour(bgr, 20, 100, 80, 160)
        assert r > 180 and g < 80 and b < 80, (b, g, r)  # the seed plugin's red box
        b, g, r = box_colour(bgr, 200, 100, 260, 160)
        assert b > 180 and g < 80 and r < 80, (b, g, r)  # the rich plugin's blue box

        failing = tmp_path / "failing.py"
        failing.write_text(FAILING_PLUGIN)
        response = httpx.post(f"{server.url}/api/cameras/cam0/plugins", json={"path": str(failing)})
        assert response.status_code == 201, response.text
        event = wait_for_event(control, lambda e: e["type"] == "plugin" and e.get("state") == "error")
        assert event["name"] == "failing" and "RuntimeError: boom" in event["error"]
    listed = {p["name"]: p for p in httpx.get(f"{server.url}/api/cameras/cam0/plugins").json()}
    assert listed["failing"]["state"] == "error" and listed["seed"]["state"] in ("inline", "branch")
    assert measured_fps(server) >= 29  # the others and the stream go on at full rate


def test_a_plugin_that_cannot_load_is_reported_and_the_stream_goes_on(vergence_server, tmp_path):
    config = write_config(tmp_path, {"broken": "import no_such_module_anywhere\n"})
    server = vergence_server("--config", str(config))
    listed = httpx.get(f"{server.url}/api/cameras/cam0/plugins").json()
    assert listed[0]["name"] == "broken" and listed[0]["state"] == "error"
    assert "ModuleNotFoundError" in listed[0]["error"]
    assert measured_fps(server, seconds=1.0) >= 28
    missing = httpx.post(f"{server.url}/api/cameras/cam0/plugins", json={"path": str(tmp_path / "nowhere.py")})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    assert "no file" in missing.json()["detail"] and missing.json()["command"] == "plugin"
    neither = httpx.post(f"{server.url}/api/cameras/cam0/plugins", json={"name": "x"})  # pydantic's prefix is gone
    assert neither.status_code == 422 and neither.json()["code"] == "invalid", neither.text
    assert neither.json()["detail"] == neither.json()["error"] == "add needs either path or module"


def test_a_plugin_taking_200_ms_per_frame_leaves_the_stream_at_full_rate(vergence_server, tmp_path):
    config = write_config(tmp_path, {"slow": SLOW_PLUGIN})
    server = vergence_server("--config", str(config))
    fps = measured_fps(server, seconds=3.0)
    assert fps >= 29, fps
    plugin = httpx.get(f"{server.url}/api/cameras/cam0/plugins").json()[0]
    assert plugin["state"] == "branch" and plugin["calls"] >= 5 and plugin["call_ms"] >= 190
    b, g, r = box_colour(decoded_bgr(server), 120, 100, 180, 160)
    assert r > 180 and g > 180 and b < 80, (b, g, r)  # its drawing is on the frames that followed


def test_rois_are_validated_and_persist_across_a_restart(vergence_server, tmp_path):
    env = {"VERGENCE_STATE__PATH": str(tmp_path / "state.json")}
    server = vergence_server("--size", "320x240", env=env)
    rois = f"{server.url}/api/cameras/cam0/rois"
    door = {"x1": 10, "y1": 20, "x2": 50, "y2": 60, "colour": "orange"}
    assert httpx.put(f"{rois}/door", json=door).status_code == 200
    assert httpx.put(f"{rois}/gate", json={**door, "colour": "#00ff00"}).status_code == 200
    for bad, why in (
        ({**door, "x2": 5}, "x2 must be > x1"),
        ({**door, "y2": 120}, "less than or equal to 100"),
        ({**door, "colour": "sparkly"}, "unknown colour 'sparkly'"),
    ):
        response = httpx.put(f"{rois}/bad", json=bad)
        assert response.status_code == 422 and why in response.text, response.text
        assert (response.json()["code"], response.json()["command"]) == ("invalid", "roi"), response.text
    missing = httpx.delete(f"{rois}/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    with connect(f"{server.ws_url}/ws/control", legacy=True) as control:
        json.loads(control.recv(timeout=10))
        send_command(control, {"type": "roi", "stream": "cam0", "action": "set", "name": "door", **door, "x2": 70})
        event = wait_for_event(control, lambda e: e["type"] == "rois")
        assert [r["x2"] for r in event["rois"] if r["name"] == "door"] == [70]
        send_command(control, "roi cam0 delete gate", "d1")
        wait_for_event(control, lambda e: e["type"] == "rois" and len(e["rois"]) == 1)
        refused = command(control, {"type": "roi", "camera": "cam0", "action": "set", "name": "x", **door, "x1": 90})
        assert not refused["ok"] and refused["code"] == "invalid" and "x2 must be > x1" in refused["error"], refused
        refused = command(control, "roi cam0 delete nothing", "d2")
        assert not refused["ok"] and refused["code"] == "not_found" and "nothing" in refused["error"], refused
    httpx.put(f"{server.url}/api/cameras/cam0/overlay", json={"timestamp": True, "grid": True}).raise_for_status()
    server.stop()

    again = vergence_server("--size", "320x240", env=env)
    assert httpx.get(f"{again.url}/api/cameras/cam0/rois").json() == [{"name": "door", **door, "x2": 70.0}]
    overlay = httpx.get(f"{again.url}/api/cameras/cam0/overlay").json()
    assert overlay["timestamp"] and overlay["grid"] and not overlay["crosshair"]


def test_overlays_and_stabilization_toggle_live_and_are_timed(vergence_server):
    server = vergence_server("--size", "640x360")
    changed_ns = time.time_ns()
    httpx.put(f"{server.url}/api/cameras/cam0/overlay", json={"crosshair": True}).raise_for_status()
    roi = {"x1": 25, "y1": 25, "x2": 75, "y2": 75, "colour": "red"}
    httpx.put(f"{server.url}/api/cameras/cam0/rois/centre", json=roi).raise_for_status()
    marked = decoded_bgr(server, after_ns=changed_ns + 100_000_000)
    edge = marked[100:260, 150:170].mean(axis=0)  # per column near the ROI's left edge, x = 25 % of 640
    b, g, r = edge[np.argmax(edge[:, 2] - edge[:, 1])]  # the reddest column is the edge: red
    assert r > 150 and g < 90 and b < 90, (b, g, r)
    arm = marked[172:189, 311:317].mean(axis=(1, 2))  # rows across the crosshair's left arm: white on black
    assert arm.max() > 200 and arm.min() < 50, (arm.min(), arm.max())
    response = httpx.put(f"{server.url}/api/cameras/cam0/stabilize", json={"enabled": True})
    assert response.json() == {"stream": "cam0", "enabled": True}
    assert httpx.get(f"{server.url}/api/cameras/cam0/stabilize").json() == {"stream": "cam0", "enabled": True}

    def timed() -> bool:
        stages = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]["stages_ms"]
        return stages["stabilize"] > 0 and stages["overlay"] > 0

    poll(timed, "the stabilize and overlay stages to be timed", deadline_s=10)
    assert measured_fps(server, seconds=2.0) >= 29
    missing = httpx.put(f"{server.url}/api/cameras/cam9/stabilize", json={"enabled": True})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    assert httpx.get(f"{server.url}/api/cameras/cam9/stabilize").status_code == 404
    bad = httpx.put(f"{server.url}/api/cameras/cam0/overlay", json={"texts": [{"text": "x", "x_pct": 200}]})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid" and "x_pct" in bad.json()["error"], bad.text


def test_the_example_plugins_load_by_module_name(vergence_server):
    server = vergence_server("--size", "320x240")
    plugins = f"{server.url}/api/cameras/cam0/plugins"
    httpx.put(
        f"{server.url}/api/cameras/cam0/rois/scene", json={"x1": 0, "y1": 30, "x2": 100, "y2": 100}
    ).raise_for_status()
    with connect(f"{server.ws_url}/ws/control", legacy=True) as control:
        json.loads(control.recv(timeout=10))
        motion = {"module": "vergence.plugins.motion", "options": {"roi": "scene"}}
        assert httpx.post(plugins, json=motion).status_code == 201
        assert httpx.post(plugins, json={"module": "vergence.plugins.edges"}).status_code == 201
        # The test pattern's scene moves all the time: motion is seen in the region.
        result = wait_for_event(control, lambda e: e["type"] == "plugin_result" and e["result"]["motion"])
        assert (
            result["plugin"] == "motion" and result["result"]["roi"] == "scene" and result["result"]["area_pct"] > 0.5
        )
    listed = {p["name"]: p for p in httpx.get(plugins).json()}
    assert listed["edges"]["kind"] == "process_image" and listed["edges"]["state"] in ("branch", "inline")
    assert listed["motion"]["error"] is None and listed["edges"]["error"] is None
    bgr = decoded_bgr(server, after_ns=time.time_ns() + 200_000_000)
    green = (bgr[:, :, 1] > 200) & (bgr[:, :, 0] < 90) & (bgr[:, :, 2] < 90)
    assert green.mean() > 0.005  # the edges, painted green
    # A motion ROI that does not exist disables the plugin with an error naming the ROIs there are.
    deleted = httpx.delete(f"{server.url}/api/cameras/cam0/rois/scene")
    assert deleted.status_code == 200 and deleted.json() == {"stream": "cam0", "rois": []}, deleted.text
    state = poll(
        lambda: (motion := {p["name"]: p for p in httpx.get(plugins).json()}["motion"])["state"] == "error" and motion,
        "the motion plugin to fail on its missing ROI",
        deadline_s=10,
    )
    assert "unknown ROI 'scene'" in state["error"]

    # Turn one off and on, remove it; each refusal in the reply shape with the status of its code.
    off = httpx.put(f"{plugins}/edges", json={"enabled": False})
    assert off.status_code == 200 and off.json()["state"] == "disabled", off.text
    assert {p["name"]: p for p in httpx.get(plugins).json()}["edges"]["state"] == "disabled"
    on = httpx.put(f"{plugins}/edges", json={"enabled": True})
    assert on.status_code == 200 and on.json()["state"] in ("branch", "inline"), on.text
    for body, status, code in (
        (b'{"enabled": "maybe"}', 422, "invalid"),
        (b"{}", 422, "invalid"),
        (b'{"enabled": tru', 400, "bad_request"),
        (b"\xff\xfe", 400, "bad_request"),  # FastAPI's own parser answered this with its own 400 shape
    ):
        refused = httpx.put(f"{plugins}/edges", content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == status, (body, refused.text)
        assert (refused.json()["ok"], refused.json()["code"]) == (False, code), (body, refused.text)
    missing = httpx.put(f"{plugins}/nope", json={"enabled": True})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    removed = httpx.delete(f"{plugins}/edges")
    assert removed.status_code == 200, removed.text
    assert removed.json()["stream"] == "cam0" and [p["name"] for p in removed.json()["plugins"]] == ["motion"]
    again = httpx.delete(f"{plugins}/edges")
    assert again.status_code == 404 and again.json()["code"] == "not_found" and "edges" in again.json()["error"]
