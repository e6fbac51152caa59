"""PTZ through REST and the control WebSocket: applied within two frames, seen by every controller, kept across restarts."""

import json
import signal
import threading
import time

import httpx
import numpy as np
from websockets.sync.client import connect

from tests.controlws import command, event, send_command
from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder

JSON = {"Content-Type": "application/json"}
OVERLAY_ROWS = 120  # time code, clock and label live at the top: compare the scene below them


def scene(frame) -> np.ndarray:
    return frame.to_ndarray(format="gray")[OVERLAY_ROWS:].astype(np.int16)


def test_a_ptz_command_changes_the_delivered_frame_within_two_frames(vergence_server):
    server = vergence_server("--size", "640x360", "--fps", "30")
    frame_ns = 1e9 / 30
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        decoder = H264Decoder()
        previous = None
        steady = []
        for _ in range(20):  # the normal frame-to-frame change of the sliding scene
            message = client.next()
            for frame in decoder.decode(message.payload):
                if previous is not None:
                    steady.append(np.abs(scene(frame) - previous).mean())
                previous = scene(frame)
        response = httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 4.0, "pan": 0.3, "tilt": 0.4})
        replied_ns = time.time_ns()
        assert response.status_code == 200 and response.json()["zoom"] == 4.0
        late_frames = None
        for _ in range(30):
            message = client.next()
            for frame in decoder.decode(message.payload):
                change = np.abs(scene(frame) - previous).mean()
                previous = scene(frame)
                if change > 3 * float(np.median(steady)) + 8:
                    late_frames = max(0, round((message.header.capture_ns - replied_ns) / frame_ns))
                    break
            if late_frames is not None:
                break
    assert late_frames is not None, f"the picture never changed (steady changes {sorted(steady)})"
    print(f"PTZ applied {late_frames} frame(s) after the command's reply")
    assert late_frames <= 2, f"the new view appeared {late_frames} frames after the command"


def test_every_controller_sees_a_change_and_a_new_one_gets_the_current_state(vergence_server):
    server = vergence_server("--size", "320x240")
    with (
        connect(f"{server.ws_url}/ws/control", legacy=True) as first,
        connect(f"{server.ws_url}/ws/control", legacy=True) as second,
    ):
        assert json.loads(first.recv(timeout=5))["type"] == "state"
        assert json.loads(second.recv(timeout=5))["cameras"]["cam0"]["zoom"] == 1.0
        send_command(first, {"type": "ptz", "stream": "cam0", "zoom": 2.5, "pan": 0.25}, "p1")
        event = json.loads(second.recv(timeout=5))  # a controller that sent nothing hears only the event
        assert event["type"] == "ptz" and event["stream"] == "cam0" and event["zoom"] == 2.5 and event["pan"] == 0.25
        # The sender hears the event too, and gets the reply; in either order.
        heard = [json.loads(first.recv(timeout=5)), json.loads(first.recv(timeout=5))]
        [reply] = [m for m in heard if m["type"] == "reply"]
        [echo] = [m for m in heard if m["type"] == "ptz"]
        assert reply["ok"] and reply["id"] == "p1" and reply["command"] == "ptz" and reply["result"]["zoom"] == 2.5
        assert echo["zoom"] == 2.5 and echo["stream"] == "cam0"
        refused = command(first, {"type": "ptz", "camera": "cam0", "zoom": 0.5}, "p2")  # `camera`: the older name
        assert not refused["ok"] and refused["code"] == "invalid" and "zoom" in refused["error"], refused
        refused = command(first, {"type": "ptz", "stream": "nope", "zoom": 2}, "p3")
        assert not refused["ok"] and refused["code"] == "not_found" and "unknown camera" in refused["error"], refused
        # A refused command changed nothing, so nobody heard of it: the next thing the other controller hears is
        # this one's event.
        command(first, {"type": "ptz", "stream": "cam0", "pan": 0.25}, "p4")
        assert json.loads(second.recv(timeout=5))["type"] == "ptz"
    with connect(f"{server.ws_url}/ws/control", legacy=True) as late:
        state = json.loads(late.recv(timeout=5))
        assert state["type"] == "state" and state["cameras"]["cam0"]["zoom"] == 2.5
    assert httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["pan"] == 0.25


def test_bad_ptz_requests_get_a_clear_4xx(vergence_server):
    server = vergence_server("--size", "320x240")
    for body in ({"zoom": 0.5}, {"pan": 1.5}, {"tilt": -0.1}, {"zoom": "far"}, {"zoom": 1000}, {"roll": 1}):
        response = httpx.put(f"{server.url}/api/cameras/cam0/ptz", json=body)
        assert response.status_code == 422, (body, response.status_code)
        refused = response.json()
        assert (refused["ok"], refused["command"], refused["code"]) == (False, "ptz", "invalid"), refused
        assert next(iter(body)) in refused["error"] and refused["detail"] == refused["error"], refused
    # Beyond this camera's max_zoom (the model allows up to 64): the camera refuses it, as invalid.
    response = httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 40})
    assert response.status_code == 422 and response.json()["code"] == "invalid", response.text
    assert "zoom" in response.json()["error"]
    missing = httpx.put(f"{server.url}/api/cameras/cam9/ptz", json={"zoom": 2})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    assert "cam9" in missing.json()["error"]
    assert httpx.get(f"{server.url}/api/cameras/cam9/ptz").status_code == 404
    # Found by fuzzing: FastAPI's 422 echoed the input, and NaN, 1e999 or a lone surrogate made that answer a 500.
    # JSON cannot carry any of them: the body is not JSON, a bad request.
    for body in ('{"pan": NaN}', '{"zoom": 1e999}', '{"tilt": "\\udcff"}', '{"pan": 0.5, "\\ud800": 1, "zoom": "x"}'):
        response = httpx.put(f"{server.url}/api/cameras/cam0/ptz", content=body, headers=JSON)
        assert response.status_code == 400, (body, response.status_code, response.text)
        refused = response.json()
        assert (refused["ok"], refused["code"]) == (False, "bad_request"), (body, response.text)
        assert "invalid JSON" in refused["error"], (body, response.text)
    assert httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"] == 1.0


def test_state_survives_sigkill_during_a_burst_of_saves(vergence_server, tmp_path):
    state_path = tmp_path / "state.json"
    env = {"VERGENCE_STATE__PATH": str(state_path)}
    server = vergence_server("--size", "320x240", env=env)
    sent = []
    stop = threading.Event()

    def burst():
        with httpx.Client() as client:
            zoom = 1.0
            while not stop.is_set():
                zoom = 1.0 + (zoom + 0.37) % 6
                # Noted before it goes out: the server saves a change on its own thread, possibly before the kill
                # lands, and the reply to that request may then never arrive.
                sent.append(zoom)
                try:
                    client.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": zoom}, timeout=2)
                except httpx.HTTPError:
                    return

    thread = threading.Thread(target=burst)
    thread.start()
    deadline = time.monotonic() + 10
    while len(sent) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=5)
    stop.set()
    thread.join(timeout=5)
    assert len(sent) >= 50
    saved = json.loads(state_path.read_text())  # whole, valid JSON: never half a write
    assert round(saved["cameras"]["cam0"]["ptz"]["zoom"], 6) in {round(z, 6) for z in sent}
    again = vergence_server("--size", "320x240", env=env)
    restored = httpx.get(f"{again.url}/api/cameras/cam0/ptz").json()
    assert restored["zoom"] == round(saved["cameras"]["cam0"]["ptz"]["zoom"], 6)


def test_a_velocity_move_zooms_pans_and_stops_by_itself(vergence_server):
    server = vergence_server("--size", "320x240", "--fps", "30")
    api = f"{server.url}/api/cameras/cam0"
    with connect(f"{server.ws_url}/ws/control", legacy=True) as watcher:
        watcher.recv(timeout=5)  # state
        reply = httpx.post(f"{api}/ptz/velocity", json={"zoom_per_s": 2.0, "pan_per_s": 0.5, "duration_s": 0.5})
        assert reply.status_code == 200 and reply.json()["moving"] is True
        events = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            event = json.loads(watcher.recv(timeout=5))
            events.append(event)
            if event.get("moving") is False:
                break
    assert events[-1]["moving"] is False, "the move did not stop by itself"
    moving = [e for e in events if e.get("moving")]
    assert len(moving) >= 2 and moving[0]["zoom"] < events[-1]["zoom"]  # controllers saw it progress
    final = httpx.get(f"{api}/ptz").json()
    assert 2.0 < final["zoom"] < 3.5  # e^(2 * 0.5) ≈ 2.7
    assert final["pan"] > 0.5
    assert httpx.post(f"{api}/ptz/velocity", json={"zoom_per_s": 11}).status_code == 422
    assert httpx.post(f"{api}/ptz/velocity", json={"duration_s": 0}).status_code == 422


def test_presets_save_recall_delete_and_survive_a_restart(vergence_server, tmp_path):
    env = {"VERGENCE_STATE__PATH": str(tmp_path / "state.json")}
    server = vergence_server("--size", "320x240", env=env)
    api = f"{server.url}/api/cameras/cam0"
    httpx.put(f"{api}/ptz", json={"zoom": 3.0, "pan": 0.2, "tilt": 0.7})
    assert httpx.put(f"{api}/presets/door").json()["door"]["zoom"] == 3.0
    assert httpx.put(f"{api}/presets/wide", json={"zoom": 1.5}).json()["wide"]["zoom"] == 1.5
    httpx.post(f"{api}/presets/home/recall")
    assert httpx.get(f"{api}/ptz").json()["zoom"] == 1.0  # home without a saved preset: the whole view
    recalled = httpx.post(f"{api}/presets/door/recall").json()
    assert recalled["zoom"] == 3.0 and abs(recalled["pan"] - 0.2) < 0.01  # pan snaps to the even-pixel crop
    missing = httpx.post(f"{api}/presets/nope/recall")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
    too_long = httpx.put(f"{api}/presets/{'x' * 41}")
    assert too_long.status_code == 422 and too_long.json()["code"] == "invalid", too_long.text
    assert httpx.delete(f"{api}/presets/wide").status_code == 200
    gone = httpx.delete(f"{api}/presets/wide")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found", gone.text
    server.stop()
    again = vergence_server("--size", "320x240", env=env)
    assert set(httpx.get(f"{again.url}/api/cameras/cam0/presets").json()) == {"door"}
    with connect(f"{again.ws_url}/ws/control", legacy=True) as control:
        state = json.loads(control.recv(timeout=5))
        assert state["cameras"]["cam0"]["presets"]["door"]["zoom"] == 3.0
        seen: list = []
        reply = command(control, {"type": "preset", "stream": "cam0", "action": "recall", "name": "home"}, seen=seen)
        assert reply["ok"] and reply["command"] == "preset" and reply["result"]["zoom"] == 1.0, reply
        if not any(m["type"] == "ptz" for m in seen):
            event(control, "ptz", stream="cam0")
        assert httpx.get(f"{again.url}/api/cameras/cam0/ptz").json()["zoom"] == 1.0
        missing = command(control, "preset cam0 recall nope", "r2")
        assert not missing["ok"] and missing["code"] == "not_found" and "nope" in missing["error"], missing
