"""A broker that stops reading must cost the MQTT bridge frames, never memory: at most one frame waits in paho."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import SimpleNamespace

from tests.aio import run
from vergence.config import MqttSettings, Settings
from vergence.events import EventBus
from vergence.hub import Channel
from vergence.media.frame import EncodedPacket
from vergence.outputs.mqtt import STOP_TIMEOUT_S, MqttBridge
from vergence.sources.base import SourceInfo

FRAME_BYTES = 200_000
FRAMES = 120
TIMEOUT_S = 10.0


class StalledBroker:
    """Accepts one MQTT client, answers its CONNECT, then never reads again (a broker stuck behind a dead link)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by the accepted socket
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        self.port = self._server.getsockname()[1]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stalled-broker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._server.settimeout(TIMEOUT_S)
        connection, _ = self._server.accept()
        with connection:
            connection.recv(1024)  # CONNECT (a small packet, read whole)
            connection.sendall(b"\x20\x02\x00\x00")  # CONNACK: accepted
            self._done.wait(TIMEOUT_S * 3)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._server.close()


def queued_bytes(bridge: MqttBridge) -> int:
    """Bytes paho holds, not yet written to its socket (its private queue: the memory a slow broker could grow)."""
    return sum(len(packet["packet"]) - packet["pos"] for packet in list(bridge._client._out_packet))


async def refuse_every_command(payload: bytes) -> tuple[str, dict[str, object]]:
    raise AssertionError(f"the stalled broker sent a command: {payload!r}")


async def offer_frames_to_a_stalled_broker() -> tuple[MqttBridge, list[int], float]:
    broker = StalledBroker()
    channel = Channel("cam0", "jpeg")
    streams = {"cam0": SimpleNamespace(info=SourceInfo(320, 240, 60.0), jpeg=channel, state="running")}
    settings = MqttSettings(enabled=True, port=broker.port, fps=60, topic="slow")
    events = EventBus(asyncio.get_running_loop())
    bridge = MqttBridge(settings, streams, events, Settings(), answer=refuse_every_command)  # type: ignore[arg-type]
    await bridge.start()
    samples = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not bridge.describe()["connected"]:
            assert time.monotonic() < deadline, "the bridge never connected"
            await asyncio.sleep(0.01)
        payload = bytes(FRAME_BYTES)
        for seq in range(FRAMES):
            channel.publish(EncodedPacket(data=payload, keyframe=True, seq=seq, pts=0, capture_ns=time.time_ns()))
            await asyncio.sleep(1 / 60)  # a 60 fps camera
            samples.append(queued_bytes(bridge))
    finally:
        stopping = time.monotonic()
        await bridge.stop()
        stop_s = time.monotonic() - stopping
        broker.close()
    return bridge, samples, stop_s


def test_a_stalled_broker_holds_at_most_one_frame_in_paho():
    bridge, samples, stop_s = run(offer_frames_to_a_stalled_broker())
    counts = bridge.describe()["streams"]["cam0"]
    print(
        f"stalled broker: {counts['sent']} frames sent, {counts['skipped']} skipped, at most {max(samples)} B queued "
        f"in paho, stopped in {stop_s:.1f} s"
    )
    assert max(samples) <= FRAME_BYTES + 1024, "more than one frame waited in paho"
    # The small kernel send buffer (128 KiB, doubled by Linux) takes about one frame; paho holds at most one more.
    assert counts["sent"] <= 3, counts
    assert counts["sent"] + counts["skipped"] >= FRAMES * 0.8, counts  # the 60 fps gate let most of them through
    # Stopping waits STOP_TIMEOUT_S for the offline status's ack, at most twice that for paho's thread: never the
    # keepalive (30 s) a stalled connection would otherwise take to end.
    assert stop_s < 3 * STOP_TIMEOUT_S + 2, stop_s


async def nodelay_of_a_bridge_connection() -> int:
    broker = StalledBroker()
    streams = {"cam0": SimpleNamespace(info=SourceInfo(320, 240, 60.0), jpeg=Channel("cam0", "jpeg"), state="running")}
    settings = MqttSettings(enabled=True, port=broker.port, topic="quick")
    events = EventBus(asyncio.get_running_loop())
    bridge = MqttBridge(settings, streams, events, Settings(), answer=refuse_every_command)  # type: ignore[arg-type]
    await bridge.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not bridge.describe()["connected"]:
            assert time.monotonic() < deadline, "the bridge never connected"
            await asyncio.sleep(0.01)
        return int(bridge._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        await bridge.stop()
        broker.close()


def test_replies_leave_without_waiting_for_the_brokers_ack():
    """Nagle's algorithm held each small reply until the broker acknowledged the one before: ~44 ms per command reply
    on loopback. The bridge's socket sends at once."""
    assert run(nodelay_of_a_bridge_connection()) != 0
