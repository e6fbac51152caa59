"""MQTT: JPEG frames at a low rate, a retained online status, commands with replies, and plugin results.

Topics under the configured prefix `T` (docs/protocol.md, "MQTT"):

- `T/status` retained `{"online": true, …}` on every connect; `{"online": false, "reason": "stopped"}` on a clean stop,
  and the last will `{"online": false}`, published by the broker, when vergence vanishes.
- `T/<stream>/meta` then `T/<stream>/frame`: the metadata JSON (seq, capture_ns, size) and the JPEG bytes (no base64).
- `T/cmd` in (JSON or a `<type> <value>` line) → `T/reply` out (or the command's `reply_to`, a topic under `T/reply/`),
  echoing its `id`.
- `T/<stream>/results`: every `plugin_result` event as JSON.
- `T/<stream>/state` retained `{"state": "running" | "starting" | "restarting" | "failed" | "ended" …, "message"?}`: the
  source's state on every connect and at every change (the `source` events of the event bus).

paho-mqtt runs its network loop on its own thread (`loop_start`) and reconnects by itself. What it receives reaches the
event loop only through `run_coroutine_threadsafe`; what vergence publishes is queued from the loop (paho's publish takes
its locks briefly and wakes its thread; it never writes to the socket on the caller's thread while that thread runs).

QoS 0 messages bypass paho's `max_queued_messages` (it bounds QoS > 0 only), so frames and results are bounded here:
a stream has at most one frame waiting to be written, and results at most `MAX_PENDING_RESULTS`; what does not fit is
skipped and counted. A slow broker costs frames, never memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vergence import __version__
from vergence.errors import ConfigError
from vergence.events import EventBus, EventSubscription
from vergence.hub import Channel
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import FrameGate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.config import MqttSettings, Settings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

CommandAnswer = Callable[[bytes], Awaitable[tuple[str, dict[str, Any]]]]
paho_log = logging.getLogger(f"{__name__}.paho")

META_VERSION = 1
#: QoS 1 messages (replies, status) paho may hold while the broker is slow or away; more are refused, not queued.
MAX_QUEUED_MESSAGES = 100
#: Plugin results (QoS 0) written to paho but not yet to the socket; more are skipped.
MAX_PENDING_RESULTS = 64
#: Events a slow broker connection may leave unread before the oldest are lost (as for a control WebSocket).
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: How long a clean stop waits for the broker to acknowledge the offline status.
STOP_TIMEOUT_S = 2.0


def import_paho() -> Any:
    """Return paho's client module, or raise ConfigError naming the package to install."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as err:
        raise ConfigError("[mqtt] needs paho-mqtt 2: pip install paho-mqtt (or vergence[mqtt])") from err
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ConfigError("[mqtt] needs paho-mqtt 2 or newer: pip install -U paho-mqtt")
    return mqtt


def to_json(value: Any) -> bytes:
    """Compact JSON; numpy numbers and arrays a plugin may publish become plain numbers and lists."""

    def plain(item: Any) -> Any:
        return item.tolist() if hasattr(item, "tolist") else str(item)

    return json.dumps(value, separators=(",", ":"), default=plain).encode()


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    skipped: int = 0  # while disconnected, or with the previous frame still unwritten


class MqttBridge:
    """The `[mqtt]` service: one paho client publishing frames, status and results, and running commands."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        streams: Mapping[str, Stream],
        events: EventBus,
        server: Settings,
        answer: CommandAnswer,
    ) -> None:
        self._mqtt = import_paho()
        self.settings = settings
        self._streams = streams
        self._bus = events
        self._server_settings = server
        self._answer = answer  # a command payload → (reply topic, reply): control.transports.mqtt
        topic = settings.topic.rstrip("/")
        self.status_topic = f"{topic}/status"
        self.command_topic = f"{topic}/cmd"
        self._topic = topic
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._events: EventSubscription | None = None
        self._counts: dict[str, _Counts] = {}
        self._connections = 0  # successful connects so far: a reconnect voids what paho held unwritten
        self._online_status = b""
        self._unreachable_logged = False
        self.commands = 0
        self.results = 0
        self.results_skipped = 0

    def _channels(self) -> list[Channel]:
        if self.settings.fps == 0:
            return []
        stream_ids = self.settings.streams or [camera.id for camera in self._server_settings.cameras]
        channels = []
        for stream_id in stream_ids:
            stream = self._streams.get(stream_id)
            channel = stream.jpeg if stream is not None else None
            if channel is None:
                raise ConfigError(f"mqtt.streams: unknown stream {stream_id!r}; streams: {', '.join(self._streams)}")
            channels.append(channel)
        return channels

    async def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start publishing."""
        mqtt = self._mqtt
        settings = self.settings
        channels = self._channels()
        self._loop = loop = asyncio.get_running_loop()
        self._online_status = to_json(
            {
                "online": True,
                "version": __version__,
                "streams": list(self._streams),
                "frames": [channel.stream_id for channel in channels],
                "fps": settings.fps,
            }
        )
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv311,  # every broker speaks it; `reply_to` in the JSON stands in for v5's response topic
        )
        client.on_log = self._on_log
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else None
            client.username_pw_set(settings.username, password)
        client.will_set(self.status_topic, to_json({"online": False}), qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._client = client
        client.loop_start()  # paho's thread connects, and reconnects with backoff after any loss
        for channel in channels:
            self._counts[channel.stream_id] = _Counts()
            publish = self._publish_frames(channel, settings.fps, self._send_frame)
            self._spawn(loop, publish, f"mqtt frames {channel.stream_id}")
        compat = self._server_settings.compat.camera_web_stream
        if compat.mqtt_topic is not None:  # camera-web-stream's clients: base64 JPEGs on its topic
            stream = self._streams[compat.stream or next(iter(self._streams))]
            self._counts[compat.mqtt_topic] = _Counts()
            publish = self._publish_frames(stream.jpeg, compat.mqtt_fps, self._send_base64, compat.mqtt_topic)
            self._spawn(loop, publish, f"mqtt frames {compat.mqtt_topic}")
        self._events = self._bus.subscribe("mqtt")
        self._spawn(loop, self._publish_events(self._events), "mqtt events")
        log.info("MQTT: broker %s:%d, topics %s/…", settings.host, settings.port, self._topic)

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None], name: str) -> None:
        task = loop.create_task(work, name=name)
        task.add_done_callback(_report_failure)
        self._tasks.append(task)

    # paho's thread -------------------------------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning(
                "MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason_code
            )
            return
        log.info("MQTT: connected to %s:%d", self.settings.host, self.settings.port)
        self._connections += 1
        self._unreachable_logged = False
        client.subscribe(self.command_topic, qos=1)
        client.publish(self.status_topic, self._online_status, qos=1, retain=True)
        for stream_id, stream in list(self._streams.items()):  # where each source is now; changes follow as events
            client.publish(self._state_topic(stream_id), to_json({"state": stream.state}), qos=1, retain=True)

    def _state_topic(self, stream_id: str) -> str:
        return f"{self._topic}/{stream_id}/state"

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._unreachable_logged:  # once per outage: paho retries with backoff, up to every RECONNECT_MAX_S
            self._unreachable_logged = True
            log.warning(
                "MQTT: cannot reach the broker at %s:%d; retrying in the background",
                self.settings.host,
                self.settings.port,
            )

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("MQTT: lost the broker (%s); reconnecting", reason_code)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        # A small kernel buffer, as for every viewer (architecture.md): else Linux grows it to megabytes for a slow
        # broker, the one-frame bound above never engages, and subscribers get frames seconds old.
        with contextlib.suppress(AttributeError, OSError):  # not a plain socket (a proxy, a WebSocket wrapper)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._server_settings.server.send_buffer_bytes)
        # Replies, status and results are small: Nagle's algorithm held each until the broker acknowledged the one
        # before (about 44 ms per command reply on loopback).
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        # paho 2.2 reports its loop finding no socket (after a clean disconnect, between reconnect attempts) as an
        # error; losing the broker is already logged, once, by _on_disconnect.
        quiet = text.startswith("Client is not connected")
        paho_log.log(logging.DEBUG if quiet else self._mqtt.LOGGING_LEVEL.get(level, logging.DEBUG), "%s", text)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._run_command(bytes(message.payload)), loop)
        except RuntimeError:  # the loop is shutting down
            pass

    # the event loop ------------------------------------------------------------------------------------------------

    async def _run_command(self, payload: bytes) -> None:
        self.commands += 1
        topic, reply = await self._answer(payload)
        client = self._client
        if client is not None:  # None once stopped
            client.publish(topic, to_json(reply), qos=1)

    async def _publish_frames(
        self,
        channel: Channel,
        fps: float,
        send: Callable[[str, EncodedPacket], tuple[Any, int] | None],
        counted_as: str | None = None,
    ) -> None:
        stream_id = channel.stream_id
        counts = self._counts[counted_as or stream_id]
        gate = FrameGate(fps)
        # paho's MQTTMessageInfo of the last frame (marked published once written to the socket), and the connection
        # it was queued on: paho forgets unwritten packets when it reconnects.
        in_flight: tuple[Any, int] | None = None
        subscription = channel.subscribe("latest", name="mqtt", kind="mqtt")
        try:
            async for packet in subscription:
                if not isinstance(packet, EncodedPacket) or not gate.ready(time.monotonic()):
                    continue
                waiting = (
                    in_flight is not None and in_flight[1] == self._connections and not in_flight[0].is_published()
                )
                if waiting or not self._client.is_connected():
                    counts.skipped += 1
                    continue
                in_flight = send(stream_id, packet)
                counts.sent += 1
        finally:
            subscription.close()

    def _send_frame(self, stream_id: str, packet: EncodedPacket) -> tuple[Any, int] | None:
        """Publish a frame's metadata and then its JPEG; return the frame's message info, if paho took it."""
        client = self._client
        connection = self._connections
        info = self._streams[stream_id].info
        meta = {
            "v": META_VERSION,
            "stream": stream_id,
            "seq": packet.seq,
            "capture_ns": packet.capture_ns,
            "send_ns": time.time_ns(),
            "width": packet.width or info.width,  # JPEG packets do not carry their size
            "height": packet.height or info.height,
            "bytes": len(packet.data),
        }
        client.publish(f"{self._topic}/{stream_id}/meta", to_json(meta), qos=0)
        sent = client.publish(f"{self._topic}/{stream_id}/frame", packet.data, qos=0)
        # A frame paho refused (the connection was lost meanwhile) will never be marked published: do not wait for it.
        return (sent, connection) if sent.rc == self._mqtt.MQTT_ERR_SUCCESS else None

    def _send_base64(self, stream_id: str, packet: EncodedPacket) -> tuple[Any, int] | None:
        """Publish a frame as camera-web-stream did: the JPEG base64-encoded, alone, at QoS 0, on its topic."""
        topic = self._server_settings.compat.camera_web_stream.mqtt_topic
        assert topic is not None
        connection = self._connections
        sent = self._client.publish(topic, base64.b64encode(packet.data), qos=0)
        return (sent, connection) if sent.rc == self._mqtt.MQTT_ERR_SUCCESS else None

    async def _publish_events(self, events: EventSubscription) -> None:
        """Plugin results to `T/<stream>/results`; source states, retained, to `T/<stream>/state`."""
        pending: deque[Any] = deque()  # results paho holds, not yet written to the socket
        connection = self._connections
        async for event in events:
            if event.get("type") == "source" and self._client.is_connected():
                state = {key: value for key, value in event.items() if key in ("state", "message")}
                self._client.publish(self._state_topic(event["stream"]), to_json(state), qos=1, retain=True)
                continue
            if event.get("type") != "plugin_result":
                continue
            if connection != self._connections:  # paho forgot what it held when it reconnected
                pending.clear()
                connection = self._connections
            while pending and pending[0].is_published():
                pending.popleft()
            client = self._client
            if not client.is_connected() or len(pending) >= MAX_PENDING_RESULTS:
                self.results_skipped += 1
                continue
            sent = client.publish(f"{self._topic}/{event.get('stream')}/results", to_json(event), qos=0)
            if sent.rc == self._mqtt.MQTT_ERR_SUCCESS:
                pending.append(sent)
            self.results += 1

    async def stop(self) -> None:
        """Publish the offline status, disconnect and stop paho's thread. Safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._events is not None:
            self._events.close()
        self._events = None
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            # A clean disconnect discards the last will, so say it ourselves and wait (a little) for the broker's ack.
            stopped = to_json({"online": False, "reason": "stopped"})
            offline = client.publish(self.status_topic, stopped, qos=1, retain=True)
            await asyncio.to_thread(_wait_published, offline, STOP_TIMEOUT_S)
        client.disconnect()
        await _stop_network_thread(client)

    def describe(self) -> dict[str, Any]:
        """Broker, connection, topics and counters."""
        client = self._client
        return {
            "name": self.name,
            "broker": f"{self.settings.host}:{self.settings.port}",
            "connected": bool(client is not None and client.is_connected()),
            "topic": self._topic,
            "fps": self.settings.fps,
            "streams": {stream_id: {"sent": c.sent, "skipped": c.skipped} for stream_id, c in self._counts.items()},
            "commands": self.commands,
            "results": self.results,
            "results_skipped": self.results_skipped,
        }


async def _stop_network_thread(client: Any) -> None:
    """Join paho's thread without ever hanging the shutdown on a broker that stopped reading.

    paho's loop ends only once everything queued is written, DISCONNECT last; behind frames a stalled broker never reads
    that could take until the keepalive gives up. So after STOP_TIMEOUT_S the socket is shut down (safe from another
    thread, unlike close): paho sees the connection end and its loop returns. The join runs on a thread of its own, not
    the default executor, which the interpreter would wait for at exit.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def join() -> None:
        client.loop_stop()
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=join, name="mqtt-stop", daemon=True).start()
    for _ in range(2):
        try:
            await asyncio.wait_for(stopped.wait(), STOP_TIMEOUT_S)
            return
        except TimeoutError:
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
    log.warning("MQTT: paho's network thread did not stop within %g s; leaving it behind", 2 * STOP_TIMEOUT_S)


def _wait_published(info: Any, timeout_s: float) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError):  # refused by paho (not connected, queue full): nothing to wait for
        pass


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended: %r", task.get_name(), task.exception(), exc_info=task.exception())
