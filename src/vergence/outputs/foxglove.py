"""Foxglove: the Foxglove WebSocket protocol (`foxglove.sdk.v1`, served by the `foxglove-sdk` package) for Foxglove and
other robotics tools.

Channels (docs/protocol.md, "Foxglove"), per published stream S:
- `/S/video`: `foxglove.CompressedVideo`, the stream's own H.264 access units (Annex B, SPS/PPS on keyframes; no
  re-encode), from a fresh keyframe on;
- `/S/image`: `foxglove.CompressedImage`, the stream's JPEGs;
- `/S/calibration`: `foxglove.CameraCalibration` once a second, where `[stereo] calibration` knows the camera (its
  intrinsics moved and scaled to the crop the camera shows now);
and `/ptz`, `/stereo` and `/tracking` (JSON: the events of the same name). Each message's time is the frame's capture
time (the log time, and the message's `timestamp`).

Lazy as every output: a stream's encoder is subscribed only while a Foxglove client subscribes to its video or image
channel (the SDK says so through its listener, on its own threads; the feeds start and stop on the event loop).

Commands, unless `[foxglove] commands = false`: services `/ptz` (`{"stream", "pan", "tilt", "zoom"}`), `/track`
(`{"stream", "x", "y"}`, `{"stream", "box"}` or `{"stream", "action": "stop"}`) and `/command` (any command, JSON or its
text line), each answering the command's reply; and JSON published by a client on any topic it advertises (a Foxglove
Publish panel on `/command`), carried out as a command. The protocol has no credentials: commands are taken only from
a loopback bind (or with `unauthenticated = true`), and with `[auth]` set a non-loopback bind is refused unless
`unauthenticated = true` says everyone who reaches it may watch and command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from vergence.auth import is_loopback
from vergence.errors import ConfigError
from vergence.events import EventBus, EventSubscription
from vergence.hub import Channel, SubscriptionClosed
from vergence.media.frame import EncodedPacket
from vergence.pipeline.depth import CameraModel, camera_model
from vergence.streams import eye_calibrations

if TYPE_CHECKING:
    from vergence.config import FoxgloveSettings
    from vergence.context import Parts
    from vergence.stream import Stream

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install foxglove-sdk (or vergence[foxglove])"
CALIBRATION_INTERVAL_S = 1.0
SERVICE_TIMEOUT_S = 10.0
STATE_TOPICS = {"ptz": "/ptz", "stereo": "/stereo", "tracking": "/tracking"}
#: A command published by a client: the topic a Foxglove Publish panel uses by default here.
COMMAND_TOPIC = "/command"

CommandAnswer = Callable[[Any, str], Awaitable[dict[str, Any]]]


def import_foxglove() -> Any:
    """Return the foxglove module, or raise ConfigError naming the package to install."""
    try:
        import foxglove
        import foxglove.channels
        import foxglove.messages
        import foxglove.websocket
    except ImportError as err:
        raise ConfigError(f"[foxglove] needs the foxglove-sdk package: {INSTALL_HINT}") from err
    return foxglove


def loopback_host(host: str) -> bool:
    return host == "localhost" or is_loopback(host)


def _stamp(foxglove: Any, ns: int) -> Any:
    return foxglove.messages.Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)


class _Feed:
    """One Foxglove channel fed from one hub channel while a client subscribes to it."""

    def __init__(
        self,
        stream: Stream,
        source: Channel,
        log_packet: Callable[[EncodedPacket], None],
        policy: Literal["gop", "latest"],
    ) -> None:
        self.stream = stream
        self.source = source
        self._log_packet = log_packet
        self._policy = policy
        self.subscribers = 0
        self.messages = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        h264 = self._policy == "gop"
        subscription = self.source.subscribe(self._policy, 90 if h264 else 1, name="foxglove", kind="foxglove")
        latest = self.source.latest
        skip_through = latest.seq if h264 and latest is not None else -1  # a fresh keyframe, not the cached GOP
        if h264:
            self.source.request_keyframe(force=True)
        started = not h264
        try:
            while True:
                item = await subscription.get()
                if not isinstance(item, EncodedPacket) or item.seq <= skip_through:
                    continue
                if not started:
                    if not (item.keyframe and item.config):
                        continue  # a decoder starts at a keyframe carrying SPS/PPS
                    started = True
                self._log_packet(item)
                self.messages += 1
        except SubscriptionClosed:
            return
        finally:
            subscription.close()


class FoxgloveServer:
    """The `[foxglove]` service."""

    name = "foxglove"

    def __init__(
        self,
        settings: FoxgloveSettings,
        streams: list[Stream],
        events: EventBus,
        answer: CommandAnswer,
        calibrations: dict[str, tuple[Any, Any, tuple[int, int]]],
        auth_configured: bool,
    ) -> None:
        self.settings = settings
        self.streams = streams
        self._events = events
        self._answer = answer
        self._calibrations = calibrations  # stream → (K, D, calibration picture size)
        if not loopback_host(settings.host) and auth_configured and not settings.unauthenticated:
            raise ConfigError(
                f"[foxglove] host = {settings.host!r}: the Foxglove protocol has no credentials, so [auth] would not "
                "hold there; bind a loopback address, or set [foxglove] unauthenticated = true to let everyone who "
                "reaches it watch (and command)"
            )
        self.commands_allowed = settings.commands and (loopback_host(settings.host) or settings.unauthenticated)
        self.state = "stopped"
        self.last_error: str | None = None
        self.commands = 0
        self.refused = 0
        self._foxglove: Any = None
        self._context: Any = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feeds: dict[str, _Feed] = {}  # topic → feed
        self._channels: dict[str, Any] = {}  # topic → SDK channel
        self._client_topics: dict[tuple[int, int], str] = {}  # (client, client channel) → topic
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: EventSubscription | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._server.port) if self._server is not None else self.settings.port

    async def start(self) -> None:
        foxglove = self._foxglove = import_foxglove()
        from foxglove.websocket import Capability

        self._loop = asyncio.get_running_loop()
        # Its own context (kept: the SDK drops a context's channels with it): a recording's sinks must not make these
        # channels look subscribed.
        context = self._context = foxglove.Context()
        for stream in self.streams:
            self._add_stream(foxglove, context, stream)
        for topic in STATE_TOPICS.values():
            self._channels[topic] = foxglove.Channel(topic, message_encoding="json", context=context)
        capabilities = [Capability.ClientPublish, Capability.Services] if self.commands_allowed else []
        try:
            self._server = foxglove.start_server(
                name="vergence",
                host=self.settings.host,
                port=self.settings.port,
                capabilities=capabilities,
                server_listener=_Listener(self),
                supported_encodings=["json"],
                services=self._services(foxglove) if self.commands_allowed else [],
                context=context,
            )
        except Exception as err:  # the SDK's own error type: a port in use, an address not on this machine
            raise ConfigError(f"[foxglove] cannot listen on {self.settings.host}:{self.settings.port}: {err}") from err
        self._subscription = self._events.subscribe("foxglove")
        self._tasks = [
            self._loop.create_task(self._forward_events(self._subscription)),
            self._loop.create_task(self._publish_calibrations()),
        ]
        self.state = "running"
        log.info("foxglove: %s (%d streams)", self.url, len(self.streams))

    def _add_stream(self, foxglove: Any, context: Any, stream: Stream) -> None:
        from foxglove.channels import CameraCalibrationChannel, CompressedImageChannel, CompressedVideoChannel
        from foxglove.messages import CompressedImage, CompressedVideo

        video_topic, image_topic = f"/{stream.id}/video", f"/{stream.id}/image"
        video = self._channels[video_topic] = CompressedVideoChannel(video_topic, context=context)
        image = self._channels[image_topic] = CompressedImageChannel(image_topic, context=context)

        def log_video(packet: EncodedPacket) -> None:
            stamp = _stamp(foxglove, packet.capture_ns)
            message = CompressedVideo(timestamp=stamp, frame_id=stream.id, data=packet.data, format="h264")
            video.log(message, log_time=packet.capture_ns)

        def log_image(packet: EncodedPacket) -> None:
            stamp = _stamp(foxglove, packet.capture_ns)
            image.log(CompressedImage(timestamp=stamp, frame_id=stream.id, data=packet.data, format="jpeg"),
                      log_time=packet.capture_ns)  # fmt: skip

        self._feeds[video_topic] = _Feed(stream, stream.h264, log_video, "gop")
        self._feeds[image_topic] = _Feed(stream, stream.jpeg, log_image, "latest")
        if stream.id in self._calibrations:
            topic = f"/{stream.id}/calibration"
            self._channels[topic] = CameraCalibrationChannel(topic, context=context)

    # ---- the SDK's threads → the loop

    def subscribed(self, topic: str, change: int) -> None:
        """The SDK's thread: a client subscribed (+1) to or left (-1) a channel."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._count, topic, change)

    def _count(self, topic: str, change: int) -> None:
        feed = self._feeds.get(topic)
        if feed is None:
            return
        feed.subscribers = max(0, feed.subscribers + change)
        if feed.subscribers and change > 0:
            feed.start()
        elif not feed.subscribers:
            feed.stop()

    def client_channel(self, client: int, channel: int, topic: str | None) -> None:
        """The SDK's thread: a client advertised (topic) or withdrew (None) a channel it publishes on."""
        if topic is None:
            self._client_topics.pop((client, channel), None)
        else:
            self._client_topics[(client, channel)] = topic

    def published(self, client: int, channel: int, data: bytes) -> None:
        """The SDK's thread: a client published a message: a command, carried out; its reply is logged only."""
        if not self.commands_allowed or self._loop is None:
            return
        topic = self._client_topics.get((client, channel), "?")
        future = asyncio.run_coroutine_threadsafe(
            self._run_command(data, f"Foxglove client {client} on {topic}"), self._loop
        )
        future.add_done_callback(lambda done: done.exception())  # nothing to wait for; errors are in the reply log

    def call(self, fields: dict[str, Any] | bytes, client: int) -> bytes:
        """The SDK's thread: a service call; waits for the command's reply (the loop runs it)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._run_command(fields, f"Foxglove client {client}"), self._loop)
        return json.dumps(future.result(SERVICE_TIMEOUT_S)).encode()

    async def _run_command(self, raw: Any, source: str) -> dict[str, Any]:
        reply = await self._answer(raw, source)
        self.commands += 1
        if not reply.get("ok"):
            self.refused += 1
        return reply

    def _services(self, foxglove: Any) -> list[Any]:
        from foxglove import Schema, Service
        from foxglove.websocket import MessageSchema, ServiceSchema

        def schema(name: str, body: dict[str, Any]) -> Any:
            json_schema = Schema(name=name, encoding="jsonschema", data=json.dumps(body).encode())
            return MessageSchema(encoding="json", schema=json_schema)

        reply = schema("vergence.Reply", {"type": "object"})

        def service(name: str, kind: str | None, request: dict[str, Any]) -> Any:
            def handle(call: Any) -> bytes:
                if kind is None:  # /command: any command, as JSON or a text line
                    return self.call(bytes(call.payload), call.client_id)
                fields = json.loads(bytes(call.payload) or b"{}")
                if not isinstance(fields, dict):
                    return json.dumps({"ok": False, "code": "bad_request", "error": "expected a JSON object"}).encode()
                return self.call({**fields, "type": kind}, call.client_id)

            service_schema = ServiceSchema(f"vergence{name.replace('/', '.')}", request=schema(f"vergence{name}", request),
                                           response=reply)  # fmt: skip
            return Service(name=name, schema=service_schema, handler=handle)

        stream = {"type": "string", "description": "stream id (default: the first camera)"}
        number = {"type": "number"}
        return [
            service(
                "/ptz",
                "ptz",
                {"type": "object", "properties": {"stream": stream, "pan": number, "tilt": number, "zoom": number}},
            ),  # fmt: skip
            service(
                "/track",
                "track",
                {
                    "type": "object",
                    "properties": {"stream": stream, "x": number, "y": number, "action": {"enum": ["start", "stop"]}},
                },
            ),  # fmt: skip
            service("/command", None, {"type": "object", "description": "any vergence command (docs/protocol.md)"}),
        ]

    # ---- the loop

    async def _forward_events(self, subscription: EventSubscription) -> None:
        """PTZ, stereo and tracking events, as JSON on their channels, timed by the server's clock."""
        async for event in subscription:
            topic = STATE_TOPICS.get(str(event.get("type")))
            if topic is not None:
                self._channels[topic].log(json.dumps(event).encode(), log_time=time.time_ns())

    async def _publish_calibrations(self) -> None:
        """Each known camera's calibration, as the crop it shows now makes it, once a second while someone listens."""
        while True:
            for stream in self.streams:
                channel = self._channels.get(f"/{stream.id}/calibration")
                if channel is not None and channel.has_sinks():
                    channel.log(self._calibration(stream))
            await asyncio.sleep(CALIBRATION_INTERVAL_S)

    def _calibration(self, stream: Stream) -> Any:
        """The calibration of `stream` for the picture it delivers now (pipeline/depth.py, `camera_model`)."""
        from foxglove.messages import CameraCalibration

        model = self._model(stream)
        return CameraCalibration(
            timestamp=_stamp(self._foxglove, time.time_ns()),
            frame_id=stream.id,
            width=model.width,
            height=model.height,
            distortion_model="plumb_bob",
            D=list(model.distortion),
            K=model.k(),
            R=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            P=model.p(),
        )

    def _model(self, stream: Stream) -> CameraModel:
        matrix, distortion, (cal_width, _cal_height) = self._calibrations[stream.id]
        geometry = stream.geometry
        crop = stream.crop.as_tuple() if stream.crop is not None else (0, 0, geometry.width, geometry.height)
        return camera_model(
            matrix, distortion, cal_width, geometry.width, crop, (stream.info.width, stream.info.height)
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        for feed in self._feeds.values():
            feed.stop()
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)
        self.state = "stopped"

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "commands": self.commands_allowed,
            "commands_run": self.commands,
            "commands_refused": self.refused,
            "channels": {
                topic: {"subscribers": feed.subscribers, "messages": feed.messages}
                for topic, feed in self._feeds.items()
            },
        }


class _Listener:
    """What the SDK tells vergence, on its own threads."""

    def __init__(self, server: FoxgloveServer) -> None:
        self._server = server

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self._server.subscribed(channel.topic, +1)

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        self._server.subscribed(channel.topic, -1)

    def on_client_advertise(self, client: Any, channel: Any) -> None:
        self._server.client_channel(client.id, channel.id, channel.topic)

    def on_client_unadvertise(self, client: Any, client_channel_id: int) -> None:
        self._server.client_channel(client.id, client_channel_id, None)

    def on_message_data(self, client: Any, client_channel_id: int, data: bytes) -> None:
        self._server.published(client.id, client_channel_id, bytes(data))


def create_service(parts: Parts) -> FoxgloveServer:
    """The `[foxglove]` server, publishing the streams it names (all when it names none)."""
    settings = parts.settings.foxglove
    wanted = settings.streams or parts.settings.stream_ids()
    auth = parts.settings.auth
    return FoxgloveServer(
        settings,
        [parts.streams[stream_id] for stream_id in wanted],
        parts.events,
        parts.commander.handle,
        eye_calibrations(parts.settings),
        bool(auth.tokens or auth.users),
    )
