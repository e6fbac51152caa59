"""Finding 13 (medium): a command's MQTT `reply_to` could name any topic, so whoever may publish a command made vergence
publish, with vergence's own broker rights, wherever it liked: over its retained status, onto its own or another
device's command topic. `reply_to` is now confined to the reply namespace, `T/reply/<suffix>`; anything else is refused,
not run, and answered on `T/reply`. Against a real mosquitto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, start_server
from tests.mosquitto import Broker, Subscriber, running_mosquitto

TOPIC = "vsec"
TIMEOUT_S = 15.0
OUTSIDE = [
    f"{TOPIC}/status",  # its retained online status: every dashboard would believe the payload
    f"{TOPIC}/cmd",  # its own command topic: the reply comes back as a command
    "robot-arm/cmd",  # another device that trusts its command topic
    f"{TOPIC}/reply",  # the default itself is not a namespace of one's own
    f"{TOPIC}/replyx/a",
    f"/{TOPIC}/reply/a",
]
MALFORMED = [
    f"{TOPIC}/reply/a/#",
    f"{TOPIC}/reply/+",
    f"{TOPIC}/reply/a//b",
    f"{TOPIC}/reply/a/",
    f"{TOPIC}/reply/" + "x" * 200,
    f"{TOPIC}/reply/\u0007",
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("mqtt-reply-to")
    config = directory / "vergence.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
        f'[mqtt]\nenabled = true\nport = {broker.port}\nfps = 0\ntopic = "{TOPIC}"\nclient_id = "vergence-sec"\n'
    )
    server = start_server(("--config", str(config)), directory / "server.log")
    yield server
    server.stop()


def zoom(server: ServerProcess) -> float:
    return httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=10).json()["zoom"]


def replies_on(observer: Subscriber, topic: str) -> list[dict]:
    """The replies (not our own commands) the observer has received on `topic` so far."""
    replies = []
    while True:
        try:
            message = observer.next(topic, timeout_s=0)
        except AssertionError:  # nothing (more) there
            return replies
        payload = json.loads(message.payload)
        if "ok" in payload:
            replies.append(payload)


def test_reply_to_outside_the_reply_namespace_is_refused_and_nothing_is_published_there(broker, server):
    with Subscriber(broker, "#") as observer, Subscriber(broker, f"{TOPIC}/reply", f"{TOPIC}/reply/me") as client:
        observer.next(f"{TOPIC}/status", TIMEOUT_S)  # the retained status, there before the test
        for number, reply_to in enumerate(OUTSIDE + MALFORMED):
            command = {"type": "zoom", "value": 3, "id": f"r{number}", "reply_to": reply_to}
            client.publish(f"{TOPIC}/cmd", json.dumps(command))
            try:
                reply = json.loads(client.next(f"{TOPIC}/reply", TIMEOUT_S).payload)
            except AssertionError:
                pytest.fail(f"reply_to {reply_to!r} was not refused; replies there: {replies_on(observer, reply_to)}")
            assert (reply["ok"], reply["code"], reply["id"]) == (False, "invalid", f"r{number}"), (reply_to, reply)
            assert "reply_to" in reply["error"], reply
        assert zoom(server) == 1, "a refused command must not run"

        # Inside the namespace it is answered there; and once that reply is seen, everything before it is too.
        client.publish(
            f"{TOPIC}/cmd", json.dumps({"type": "zoom", "value": 2, "id": "ok", "reply_to": f"{TOPIC}/reply/me"})
        )
        reply = json.loads(client.next(f"{TOPIC}/reply/me", TIMEOUT_S).payload)
        assert reply["ok"] is True and reply["id"] == "ok", reply
        observer.next(f"{TOPIC}/reply/me", TIMEOUT_S)
        assert zoom(server) == 2

        default = f"{TOPIC}/reply"  # every refusal, and nothing else, went there
        refusals = replies_on(observer, default)
        assert [(reply["id"], reply["ok"]) for reply in refusals] == [(f"r{n}", False) for n in range(len(refusals))]
        assert len(refusals) == len(OUTSIDE + MALFORMED)
        leaked = {topic: replies_on(observer, topic) for topic in OUTSIDE + MALFORMED if topic != default}
        assert not any(leaked.values()), f"vergence published outside its reply namespace: {leaked}"
