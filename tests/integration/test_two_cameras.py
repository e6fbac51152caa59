"""Two cameras in one server: each is its own stream; pausing or flipping one never touches the other."""

import time

import httpx


def wait_for(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def frames(server, camera):
    return httpx.get(f"{server.url}/api/stats").json()["streams"][camera]["frames"]


def test_pause_and_flip_one_camera_while_the_other_runs_on(vergence_server, tmp_path):
    config = tmp_path / "two.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\n\n[[cameras]]\nid = "cam1"\nsize = "640x360"\nfps = 15\n'
    )
    server = vergence_server("--config", str(config))
    streams = {s["id"]: s for s in httpx.get(f"{server.url}/api/streams").json()}
    assert (streams["cam0"]["width"], streams["cam1"]["width"], streams["cam1"]["fps"]) == (320, 640, 15)

    paused = httpx.put(f"{server.url}/api/cameras/cam1/pause", json={"paused": True}).json()
    assert paused["paused"] is True
    cam0_before, cam1_before = frames(server, "cam0"), frames(server, "cam1")
    wait_for(lambda: frames(server, "cam0") >= cam0_before + 30)  # cam0 goes on at its rate...
    assert frames(server, "cam1") <= cam1_before + 1  # ...while cam1 holds (one frame may have been in flight)
    stats = httpx.get(f"{server.url}/api/stats").json()["streams"]
    assert stats["cam1"]["state"] == "paused" and stats["cam0"]["state"] == "running"
    httpx.put(f"{server.url}/api/cameras/cam1/pause", json={"paused": False})
    wait_for(lambda: frames(server, "cam1") >= cam1_before + 10)

    flipped = httpx.put(f"{server.url}/api/cameras/cam1/flip", json={"horizontal": True}).json()
    assert flipped["flip"] == {"horizontal": True, "vertical": False}
    cam0_now = frames(server, "cam0")
    wait_for(lambda: frames(server, "cam0") >= cam0_now + 15)
    stats = httpx.get(f"{server.url}/api/stats").json()["streams"]
    assert stats["cam0"]["restarts"] == 0 and stats["cam1"]["restarts"] == 0
    zoomed = httpx.put(f"{server.url}/api/cameras/cam1/ptz", json={"zoom": 2}).json()
    assert zoomed["zoom"] == 2.0 and httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"] == 1.0


def test_viewers_who_join_a_paused_camera_get_its_last_picture(vergence_server):
    from tests.integration.test_http_outputs import read_mjpeg_parts
    from tests.integration.wsclient import VideoClient
    from tests.media import H264Decoder

    server = vergence_server("--size", "320x240")
    wait_for(lambda: frames(server, "cam0") >= 5)
    httpx.put(f"{server.url}/api/cameras/cam0/pause", json={"paused": True}).raise_for_status()
    held = frames(server, "cam0")
    # No encoder ran before the pause: each starts for its first viewer and must still get a picture.
    started = time.monotonic()
    (headers, jpeg), (_, again) = read_mjpeg_parts(f"{server.url}/stream/cam0.mjpeg", 2)
    assert jpeg[:2] == b"\xff\xd8" and again == jpeg  # the same picture, repeated while paused
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as viewer:
        message = viewer.next(timeout=5)
        assert message.header.keyframe and len(H264Decoder().decode(message.payload)) == 1
    assert time.monotonic() - started < 6
    assert frames(server, "cam0") <= held + 1  # still paused: repeats are not new frames
