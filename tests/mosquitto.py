"""A real mosquitto broker for tests, on a free 127.0.0.1 port, and a small paho subscriber that waits on messages."""

from __future__ import annotations

import contextlib
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.daemons import STARTUP_TIMEOUT_S, require, stop, wait_listening

MOSQUITTO = Path("/usr/sbin/mosquitto")


@dataclass
class Broker:
    """A running mosquitto."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    host: str = "127.0.0.1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def mosquitto_path() -> Path | None:
    if MOSQUITTO.exists():
        return MOSQUITTO
    found = shutil.which("mosquitto")
    return Path(found) if found else None


@contextlib.contextmanager
def running_mosquitto(directory: Path, port: int | None = None) -> Iterator[Broker]:
    """Start mosquitto with a tiny config (anonymous, no persistence), wait until its port accepts, stop it after.

    Give `port` to start a broker again where one was (a restart): it comes back empty, retained messages included.
    """
    binary = mosquitto_path()
    require(binary is not None, "mosquitto")
    assert binary is not None
    port = port or free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log_path = directory / "mosquitto.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([str(binary), "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    broker = Broker(process, port, log_path)
    try:
        wait_listening(process, port, "mosquitto", broker.log, broker.host)
        yield broker
    finally:
        stop(process)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival


class Subscriber:
    """A paho client subscribed to some topics; `next()` waits (with a deadline) for the next message on a topic."""

    def __init__(self, broker: Broker, *topics: str, client_id: str = "") -> None:
        import paho.mqtt.client as mqtt

        self._messages: dict[str, queue.Queue[Received]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda client, *_: client.subscribe([(topic, 1) for topic in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(STARTUP_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"could not subscribe to {topics} on {broker.host}:{broker.port}")

    def _queue(self, topic: str) -> queue.Queue[Received]:
        with self._lock:
            return self._messages.setdefault(topic, queue.Queue())

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        received = Received(message.topic, bytes(message.payload), bool(message.retain), time.monotonic())
        self._queue(message.topic).put(received)

    def next(self, topic: str, timeout_s: float = 10.0) -> Received:
        try:
            return self._queue(topic).get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"nothing on {topic} within {timeout_s} s") from None

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(STARTUP_TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
