"""MQTT against a real mosquitto and a real server: JPEG frames at the configured rate, a retained online status, commands
with replies (and errors), plugin results, and the offline status on a clean stop and as the last will of a killed server."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess, start_server
from tests.media import write_feed
from tests.mosquitto import Broker, Subscriber, running_mosquitto

TOPIC = "vtest"
FPS = 5
TIMEOUT_S = 15.0  # generous: the machine is shared with other test runs

RESULT_PLUGIN = """
def process(frame, ctx):
    if frame.seq % 3 == 0:
        ctx.publish({"seq": frame.seq, "luma": float(frame.gray().mean())})
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


def serve(
    directory: Path, broker: Broker, client_id: str, topic: str = TOPIC, plugin: str = "", extra: str = ""
) -> ServerProcess:
    config = directory / "vergence.toml"
    plugin_table = ""
    if plugin:
        (directory / "results.py").write_text(plugin)
        plugin_table = f'[[cameras.plugins]]\npath = "{directory / "results.py"}"\n'
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n{plugin_table}'
        f'[mqtt]\nenabled = true\nport = {broker.port}\nfps = {FPS}\ntopic = "{topic}"\nclient_id = "{client_id}"\n'
        f"{extra}"
    )
    return start_server(("--config", str(config)), directory / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[ServerProcess]:
    server = serve(tmp_path_factory.mktemp("mqtt"), broker, "vergence-main", plugin=RESULT_PLUGIN)
    yield server
    server.stop()


def online_status(subscriber: Subscriber, topic: str) -> dict:
    """The next online status, skipping an offline one left by an earlier server."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        message = subscriber.next(f"{topic}/status", max(0.1, deadline - time.monotonic()))
        status = json.loads(message.payload)
        if status["online"]:
            return status


def test_frames_are_decodable_jpegs_at_the_configured_rate(broker, server):
    with Subscriber(broker, f"{TOPIC}/cam0/frame", f"{TOPIC}/cam0/meta") as subscriber:
        # Each frame's metadata comes just before it; a frame whose metadata was sent before the subscription is skipped.
        first_meta = subscriber.next(f"{TOPIC}/cam0/meta", TIMEOUT_S)
        first = subscriber.next(f"{TOPIC}/cam0/frame", TIMEOUT_S)
        while first.at < first_meta.at:
            first = subscriber.next(f"{TOPIC}/cam0/frame", TIMEOUT_S)
        frames = [first]
        while frames[-1].at - first.at < 3.0:
            frames.append(subscriber.next(f"{TOPIC}/cam0/frame", TIMEOUT_S))
        metas = [json.loads(first_meta.payload)]
        metas += [json.loads(subscriber.next(f"{TOPIC}/cam0/meta", TIMEOUT_S).payload) for _ in frames[1:]]
    rate = (len(frames) - 1) / (frames[-1].at - first.at)
    print(f"MQTT frames at {rate:.2f} fps over {frames[-1].at - first.at:.2f} s (configured {FPS})")
    assert 3.5 <= rate <= 6.5, rate
    for frame in frames:
        image = cv2.imdecode(np.frombuffer(frame.payload, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (240, 320, 3)
    seqs = [meta["seq"] for meta in metas]
    assert seqs == sorted(set(seqs)), seqs
    assert {(meta["v"], meta["stream"], meta["width"], meta["height"]) for meta in metas} == {(1, "cam0", 320, 240)}
    assert all(meta["capture_ns"] <= meta["send_ns"] for meta in metas)
    assert [meta["bytes"] for meta in metas] == [len(frame.payload) for frame in frames]


def test_a_late_subscriber_gets_the_retained_online_status(broker, server):
    with Subscriber(broker, f"{TOPIC}/status") as subscriber:
        message = subscriber.next(f"{TOPIC}/status", TIMEOUT_S)
    assert message.retain, "the status must be retained"
    status = json.loads(message.payload)
    assert status["online"] is True
    assert status["streams"] == ["cam0"] and status["frames"] == ["cam0"] and status["fps"] == FPS
    assert status["version"]


def test_a_command_moves_the_camera_and_its_reply_echoes_the_id(broker, server):
    with Subscriber(broker, f"{TOPIC}/reply", f"{TOPIC}/reply/mine") as subscriber:
        subscriber.publish(f"{TOPIC}/cmd", json.dumps({"type": "zoom", "value": 2, "id": "a1"}))
        reply = json.loads(subscriber.next(f"{TOPIC}/reply", TIMEOUT_S).payload)
        assert reply["ok"] is True and reply["id"] == "a1" and reply["command"] == "zoom", reply
        assert httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"] == 2

        subscriber.publish(f"{TOPIC}/cmd", "zoom 1.5")
        reply = json.loads(subscriber.next(f"{TOPIC}/reply", TIMEOUT_S).payload)
        assert reply["ok"] is True and reply["result"]["zoom"] == 1.5, reply
        assert httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"] == 1.5

        subscriber.publish(f"{TOPIC}/cmd", json.dumps({"type": "status", "id": 9, "reply_to": f"{TOPIC}/reply/mine"}))
        reply = json.loads(subscriber.next(f"{TOPIC}/reply/mine", TIMEOUT_S).payload)
        assert reply["ok"] is True and reply["id"] == 9 and reply["result"]["cameras"]["cam0"]["zoom"] == 1.5


def test_invalid_commands_get_error_replies(broker, server):
    with Subscriber(broker, f"{TOPIC}/reply") as subscriber:
        for payload, code, word in [
            (json.dumps({"type": "zoom", "value": 100, "id": "b1"}), "invalid", "value"),
            (json.dumps({"type": "warp", "id": "b2"}), "unknown_command", "warp"),
            ("{not json", "bad_request", "JSON"),
            (json.dumps({"type": "status", "id": "b3", "reply_to": "vtest/#"}), "invalid", "reply_to"),
        ]:
            subscriber.publish(f"{TOPIC}/cmd", payload)
            reply = json.loads(subscriber.next(f"{TOPIC}/reply", TIMEOUT_S).payload)
            assert reply["ok"] is False and word in reply["error"], (payload, reply)
            assert reply["code"] == code if code else reply["code"], (payload, reply)
            if payload.startswith('{"'):
                assert reply["id"] == json.loads(payload)["id"], reply
        subscriber.publish(f"{TOPIC}/cmd", json.dumps({"type": "status", "id": "after"}))
        assert json.loads(subscriber.next(f"{TOPIC}/reply", TIMEOUT_S).payload)["ok"] is True


def test_plugin_results_reach_the_results_topic(broker, server):
    with Subscriber(broker, f"{TOPIC}/cam0/results") as subscriber:
        events = [json.loads(subscriber.next(f"{TOPIC}/cam0/results", TIMEOUT_S).payload) for _ in range(3)]
    for event in events:
        assert (event["type"], event["stream"], event["plugin"]) == ("plugin_result", "cam0", "results")
        assert event["result"]["seq"] == event["seq"] and event["seq"] % 3 == 0
        assert event["capture_ns"] > 0 and 0 <= event["result"]["luma"] <= 255
    assert [event["seq"] for event in events] == sorted({event["seq"] for event in events})


def test_a_clip_triggered_over_mqtt_is_written(broker, tmp_path):
    media = tmp_path / "media"
    recording = f'[media]\ndir = "{media}"\n[recording]\npre_event_s = 1\npost_event_s = 0.5\n'
    server = serve(tmp_path, broker, "vergence-clip", topic="vclip", extra=recording)
    try:
        with Subscriber(broker, "vclip/reply", "vclip/status") as subscriber:
            online_status(subscriber, "vclip")  # published once vergence has subscribed to its commands
            subscriber.publish("vclip/cmd", json.dumps({"type": "clip", "id": "c1"}))
            reply = json.loads(subscriber.next("vclip/reply", TIMEOUT_S).payload)
        assert reply["ok"] and reply["id"] == "c1" and reply["result"]["kind"] == "clip", reply
        deadline = time.monotonic() + TIMEOUT_S
        while httpx.get(f"{server.url}/api/stats").json()["recordings"]["cam0"]["clip"]["state"] != "stopped":
            assert time.monotonic() < deadline, "the clip did not end"
            time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event
        [clip] = media.glob("cam0-*-clip.mp4")
        with av.open(str(clip)) as container:
            frames = list(container.decode(video=0))
        assert frames and frames[0].key_frame and len(frames) >= 15, len(frames)  # ≥ 0.5 s after the trigger at 30 fps
    finally:
        server.stop()


def test_offline_status_on_a_clean_stop_and_as_the_last_will(broker, tmp_path):
    topic = "vstop"  # not the module server's topics: it is still online
    with Subscriber(broker, f"{topic}/status") as subscriber:
        for stop in ("clean", "killed"):
            directory = tmp_path / stop
            directory.mkdir()
            server = serve(directory, broker, f"vergence-{stop}", topic=topic)
            try:
                assert online_status(subscriber, topic)["streams"] == ["cam0"]
                if stop == "clean":
                    server.stop()  # SIGINT: vergence says goodbye itself
                else:
                    server.process.send_signal(signal.SIGKILL)  # no goodbye: the broker sends the last will
                    server.process.wait(timeout=TIMEOUT_S)
                message = subscriber.next(f"{topic}/status", TIMEOUT_S)
                expected = {"online": False, "reason": "stopped"} if stop == "clean" else {"online": False}
                assert json.loads(message.payload) == expected, (stop, message)
            finally:
                server.stop()
    with Subscriber(broker, f"{topic}/status") as late:
        message = late.next(f"{topic}/status", TIMEOUT_S)
    assert message.retain and json.loads(message.payload) == {"online": False}


def test_the_bridge_reconnects_when_the_broker_comes_back(tmp_path):
    with running_mosquitto(tmp_path) as first:
        server = serve(tmp_path, first, "vergence-reconnect", topic="vback")
        try:
            with Subscriber(first, "vback/status") as subscriber:
                assert online_status(subscriber, "vback")["online"]
            port = first.port
        except BaseException:
            server.stop()
            raise
    try:
        # The broker is gone (and with it every retained message); the server goes on and retries in the background.
        with running_mosquitto(tmp_path, port) as again, Subscriber(again, "vback/status", "vback/cam0/frame") as late:
            status = late.next("vback/status", TIMEOUT_S)  # only a reconnected server can have published it
            assert json.loads(status.payload)["online"] is True
            frame = late.next("vback/cam0/frame", TIMEOUT_S)
            assert cv2.imdecode(np.frombuffer(frame.payload, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
            with Subscriber(again, "vback/status") as later:
                status = later.next("vback/status", TIMEOUT_S)
            assert status.retain and json.loads(status.payload)["online"] is True
        assert server.process.poll() is None
    finally:
        server.stop()


def test_each_sources_state_is_published_retained_and_follows_its_changes(broker, tmp_path):
    feed = tmp_path / "short.h264"
    write_feed(feed, frames=30)  # a live feed of one second: it ends, is opened again, and so on
    config = tmp_path / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsource = "{feed}"\nsize = "320x240"\nfps = 30\n'
        f'[mqtt]\nenabled = true\nport = {broker.port}\ntopic = "vstate"\nclient_id = "vergence-state"\n'
    )
    server = start_server(("--config", str(config)), tmp_path / "server.log")
    try:
        with Subscriber(broker, "vstate/cam0/state") as subscriber:
            states = [json.loads(subscriber.next("vstate/cam0/state", TIMEOUT_S).payload)]
            while not any(s["state"] == "restarting" for s in states) or states[-1]["state"] != "running":
                states.append(json.loads(subscriber.next("vstate/cam0/state", TIMEOUT_S).payload))
        restarting = next(s for s in states if s["state"] == "restarting")
        assert restarting.get("message"), states  # why it restarts
        with Subscriber(broker, "vstate/cam0/state") as late:
            kept = late.next("vstate/cam0/state", TIMEOUT_S)
        assert kept.retain and json.loads(kept.payload)["state"] in {"running", "restarting", "starting"}, kept
    finally:
        server.stop()
