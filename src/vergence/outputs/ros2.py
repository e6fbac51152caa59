"""The `[ros2]` node: every stream as sensor_msgs/CompressedImage (the stream's JPEGs) and sensor_msgs/CameraInfo with
the capture time as their header stamp, the stereo pair as `<stereo>/left` and `<stereo>/right` with the same stamp on
both, and a command topic (std_msgs/String: a command as JSON or its text line) onto the one command model.

rclpy runs in a process of its own (outputs/ros2_child.py) under `[ros2] python`, the Python that has ROS 2 (on a
robot the system's, with ROS sourced), so ROS's libraries never load into the server. vergence writes it JPEGs on a
pipe and only while a ROS subscriber listens (the child says `watch`; the JPEG encoder stays lazy); a stream's picture
stays with vergence's hub when the child is slow (its feed keeps only the newest). A missing rclpy is a configuration
error naming what to install; a child that dies is started again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vergence.errors import ConfigError
from vergence.hub import SubscriptionClosed
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import Backoff
from vergence.pipeline.depth import camera_model
from vergence.streams import eye_calibrations

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from vergence.config import Ros2Settings
    from vergence.context import Parts
    from vergence.stream import Stream

log = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("ros2_child.py")
HEADER = struct.Struct(">BHIQ")  # kind, topic index, payload length, stamp ns (ros2_child.py)
KIND_IMAGE, KIND_INFO = 1, 2
START_TIMEOUT_S = 20.0
HINT = (
    "on a robot, start vergence where ROS 2 is sourced (source /opt/ros/<distro>/setup.bash) or set [ros2] python to "
    "a Python that has rclpy, sensor_msgs and std_msgs"
)


@dataclass
class Topic:
    """One published camera: a stream, or one eye of the stereo pair (`pair`: the other eye's topic index)."""

    topic: str
    stream: Stream
    pair: int | None = None
    watched: bool = False
    frames: int = 0
    info: bytes = b""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Ros2Node:
    """The `[ros2]` service."""

    name = "ros2"

    def __init__(
        self,
        settings: Ros2Settings,
        topics: list[Topic],
        answer: Callable[[Any, str], Awaitable[dict[str, Any]]],
        calibrations: dict[str, tuple[Any, Any, tuple[int, int]]],
    ) -> None:
        self.settings = settings
        self.topics = topics
        self._answer = answer
        self._calibrations = calibrations
        self.state = "stopped"
        self.last_error: str | None = None
        self.failures = 0
        self.commands = 0
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._backoff = Backoff(1.0, 30.0)
        self._stopping = False
        self._pairs: dict[int, EncodedPacket] = {}  # left topic index → its newest JPEG, waiting for the right's

    async def start(self) -> None:
        self._stopping = False
        said = await self._spawn()
        if said is not None:
            raise ConfigError(f"[ros2]: {said}; {HINT}")

    async def _spawn(self) -> str | None:
        """Start the child and wait for `ready`; the reason when it did not come."""
        config = {
            "node": self.settings.node,
            "namespace": self.settings.namespace,
            "command_topic": self.settings.command_topic if self.settings.commands else "",
            "streams": [{"topic": topic.topic, "frame_id": topic.topic.replace("/", "_")} for topic in self.topics],
        }
        try:
            process = await asyncio.create_subprocess_exec(
                self.settings.python, "-u", str(CHILD), json.dumps(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as err:
            return f"cannot run {self.settings.python!r}: {err}"
        assert process.stdout is not None and process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            return f"the ROS 2 process did not start within {START_TIMEOUT_S:g} s"
        said = line.decode(errors="replace").strip()
        if said != "ready":
            errors = (await process.stderr.read()).decode(errors="replace").strip().splitlines()[-3:]
            await process.wait()
            return (said.removeprefix("error ") or f"the ROS 2 process exited with {process.returncode}") + (
                f" ({' / '.join(errors)})" if errors and not said else ""
            )
        self._process = process
        self._reader = asyncio.get_running_loop().create_task(self._read(process))
        asyncio.get_running_loop().create_task(self._log_stderr(process))
        self.state = "running"
        log.info("ros2: node %r publishing %s", self.settings.node, ", ".join(t.topic for t in self.topics))
        return None

    async def _log_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            log.info("ros2 node: %s", line.decode(errors="replace").rstrip())

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        """The child's lines: which topics are watched, and commands."""
        assert process.stdout is not None
        async for raw in process.stdout:
            kind, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if kind == "watch":
                index, watched = (int(value) for value in rest.split())
                self._watch(index, bool(watched))
            elif kind == "command" and self.settings.commands:
                text = json.loads(rest)
                reply = await self._answer(text, "ROS 2 command topic")
                self.commands += 1
                if not reply.get("ok"):
                    log.info("ros2: command %r refused: %s", text[:80], reply.get("error"))
        await process.wait()
        self._child_ended(process)

    def _child_ended(self, process: asyncio.subprocess.Process) -> None:
        for index in range(len(self.topics)):
            self._watch(index, False)
        if self._stopping or process is not self._process:
            return
        self._process = None
        self.failures += 1
        self.state, self.last_error = "failed", f"the ROS 2 process exited with {process.returncode}"
        wait_s = self._backoff.failed(0)
        log.error("ros2: %s; starting it again in %.0f s", self.last_error, wait_s)
        asyncio.get_running_loop().call_later(wait_s, lambda: asyncio.ensure_future(self._again()))

    async def _again(self) -> None:
        if self._stopping:
            return
        said = await self._spawn()
        if said is not None:
            self.last_error = said
            log.error("ros2: %s", said)

    def _watch(self, index: int, watched: bool) -> None:
        """Feed a topic's JPEGs while someone subscribes (an eye of the pair: both eyes, for the pair's stamps)."""
        if not 0 <= index < len(self.topics):
            return
        topic = self.topics[index]
        topic.watched = watched
        indices = [index] if topic.pair is None else [index, topic.pair]
        for i in indices:
            feeding = self.topics[i]
            wanted = feeding.watched or (feeding.pair is not None and self.topics[feeding.pair].watched)
            if wanted and (feeding.task is None or feeding.task.done()):
                feeding.task = asyncio.get_running_loop().create_task(self._feed(i))
            elif not wanted and feeding.task is not None:
                feeding.task.cancel()
                feeding.task = None

    async def _feed(self, index: int) -> None:
        topic = self.topics[index]
        subscription = topic.stream.jpeg.subscribe("latest", 1, name=f"ros2-{topic.topic}", kind="ros2")
        try:
            while True:
                item = await subscription.get()
                if isinstance(item, EncodedPacket):
                    await self._picture(index, item)
        except SubscriptionClosed:
            return
        finally:
            subscription.close()

    async def _picture(self, index: int, packet: EncodedPacket) -> None:
        topic = self.topics[index]
        if topic.pair is None:
            await self._send(index, packet.capture_ns, packet)
            return
        # The pair: both eyes go out once each has a picture of the same instant, stamped alike (the left's time).
        other = self._pairs.pop(topic.pair, None)
        tolerance_ns = 0.5e9 / max(1.0, topic.stream.info.fps)
        if other is None or abs(other.capture_ns - packet.capture_ns) > tolerance_ns:
            self._pairs[index] = packet
            return
        left, right = (index, topic.pair) if topic.topic.endswith("/left") else (topic.pair, index)
        pictures = {index: packet, topic.pair: other}
        stamp = pictures[left].capture_ns
        await self._send(left, stamp, pictures[left])
        await self._send(right, stamp, pictures[right])

    async def _send(self, index: int, stamp_ns: int, packet: EncodedPacket) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        topic = self.topics[index]
        info = self._info(topic)
        try:
            if info != topic.info:
                topic.info = info
                process.stdin.write(_record(KIND_INFO, index, stamp_ns, info))
            process.stdin.write(_record(KIND_IMAGE, index, stamp_ns, packet.data))
            await process.stdin.drain()
        except (ConnectionError, RuntimeError):
            return  # the child is gone: _read sees it end
        topic.frames += 1

    def _info(self, topic: Topic) -> bytes:
        """The camera info of a topic's stream now: its size, and with a calibration the model for its current crop."""
        stream = topic.stream
        size = (stream.info.width, stream.info.height)
        described: dict[str, Any] = {"width": size[0], "height": size[1]}
        calibration = self._calibrations.get(stream.id)
        if calibration is not None:
            matrix, distortion, (cal_width, _) = calibration
            geometry = stream.geometry
            crop = stream.crop.as_tuple() if stream.crop is not None else (0, 0, geometry.width, geometry.height)
            model = camera_model(matrix, distortion, cal_width, geometry.width, crop, size)
            described.update(distortion_model="plumb_bob", d=list(model.distortion), k=model.k(), p=model.p())
        return json.dumps(described).encode()

    async def stop(self) -> None:
        self._stopping = True
        for topic in self.topics:
            if topic.task is not None:
                topic.task.cancel()
                topic.task = None
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the child shuts its node down when its input ends
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.state = "stopped"

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "node": self.settings.node,
            "failures": self.failures,
            "last_error": self.last_error,
            "commands": self.commands,
            "topics": {t.topic: {"watched": t.watched, "frames": t.frames} for t in self.topics},
        }


def _record(kind: int, index: int, stamp_ns: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, index, len(payload), stamp_ns) + payload


def create_service(parts: Parts) -> Ros2Node:
    """The `[ros2]` node: every stream it names (all cameras when it names none) and the stereo pair's eyes."""
    settings = parts.settings
    ros = settings.ros2
    wanted = ros.streams or [camera.id for camera in settings.cameras]
    topics = [Topic(stream_id, parts.streams[stream_id]) for stream_id in wanted if stream_id != settings.stereo.id]
    if settings.stereo.enabled and (not ros.streams or settings.stereo.id in ros.streams):
        left = len(topics)
        topics.append(Topic(f"{settings.stereo.id}/left", parts.streams[settings.stereo.left], pair=left + 1))
        topics.append(Topic(f"{settings.stereo.id}/right", parts.streams[settings.stereo.right], pair=left))
    return Ros2Node(ros, topics, parts.commander.handle, eye_calibrations(settings))
