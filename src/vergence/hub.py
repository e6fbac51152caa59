"""Per-stream fan-out: a Channel per encoded format, a bounded Subscription per consumer, and a keyframe cache.

Everything here runs on the event loop thread. Producers (encoder threads) reach it only through
`loop.call_soon_threadsafe(channel.publish, packet)`. Publishing never waits for a subscriber: each one has a bounded
buffer with a declared policy, and what does not fit is dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vergence.media import h264
from vergence.media.frame import EncodedPacket
from vergence.metrics import RateLimitedLog, TimingMs, WindowedRate

log = logging.getLogger(__name__)

Policy = Literal["latest", "gop"]
Item = EncodedPacket | dict[str, Any]


class Producer(Protocol):
    """What a channel starts while it has subscribers and stops when the last one has gone."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def request_keyframe(self) -> None: ...


class SubscriptionClosed(Exception):
    """The subscription was closed; no more packets will come."""


class Subscription:
    """One consumer's bounded buffer.

    `latest` keeps only the newest packet (JPEG viewers). `gop` keeps up to `max_packets`; on overflow it empties the buffer
    and drops packets until the next keyframe, so the consumer resumes with a picture that decodes (H.264 viewers); the
    keyframe is asked for once the consumer is back for more (`get`).
    Notices (dicts such as source status) travel in the same queue so they stay in order with the packets.

    A consumer may set a `sink`: while nothing is queued, a packet the policy lets through is first offered to it, and
    one it takes (returns True) is delivered there and then, without waking the consumer's task. One that can take
    nothing now (a full socket) returns False, and the packet is queued under the policy as usual.
    """

    def __init__(self, channel: Channel, policy: Policy, max_packets: int, name: str, kind: str = "other") -> None:
        self.channel = channel
        self.policy = policy
        self.max_packets = 1 if policy == "latest" else max_packets
        self.name = name
        self.kind = (
            kind  # what consumes it (ws, mjpeg, webrtc, udp, restream, rec, mqtt, zmq, tcp): metrics count by it
        )
        self.drops = 0
        self.delivered = 0
        self.peak = 0  # most items ever queued: the bound in action
        self._queue: deque[Item] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._finished = False  # the channel ended: what is queued is the last there will be
        self._awaiting_keyframe = policy == "gop"
        self.sink: Callable[[EncodedPacket], bool] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, item: Item) -> None:
        """Queue an item without ever blocking; drop per policy."""
        if self._closed or self._finished:
            return
        if isinstance(item, EncodedPacket):
            # The sink first (the common case of a viewer keeping up), unless the policy would drop the packet.
            if (
                self.sink is not None
                and not self._queue
                and not (self._awaiting_keyframe and not (item.keyframe or item.init))
                and self.sink(item)
            ):
                self.delivered += 1
                self._awaiting_keyframe = self._awaiting_keyframe and item.init
                return
            self._offer_packet(item)
        else:
            self._queue.append(item)
        self.peak = max(self.peak, len(self._queue))
        self._wakeup.set()

    def _offer_packet(self, packet: EncodedPacket) -> None:
        if self.policy == "latest":
            stale = sum(1 for queued in self._queue if isinstance(queued, EncodedPacket))
            if stale:
                self.drops += stale
                self.channel.note_drops(self, stale)
                self._queue = deque(queued for queued in self._queue if not isinstance(queued, EncodedPacket))
            self._queue.append(packet)
            return
        if packet.init:  # an fMP4 init segment: always first, and no picture to wait for
            self._queue.append(packet)
            return
        if self._awaiting_keyframe and not packet.keyframe:
            self._drop(1)
            return
        if len(self._queue) >= self.max_packets:
            self._drop(len(self._queue) + (0 if packet.keyframe else 1))
            self._queue.clear()
            if not packet.keyframe:
                self._awaiting_keyframe = True
                return
        self._awaiting_keyframe = False
        self._queue.append(packet)

    def _drop(self, count: int) -> None:
        self.drops += count
        self.channel.note_drops(self, count)

    async def get(self) -> Item:
        """Return the next item, waiting for one; raise SubscriptionClosed once closed, or once finished and emptied.

        A consumer that asks while its subscription waits for a keyframe (it overflowed, and has now drained what it
        held) gets one asked of the producer, within the channel's rate limit. Not at the overflow itself: a viewer
        that stopped reading would then pull a keyframe into everyone's stream every few seconds, for nothing.
        """
        while not self._queue:
            if self._closed or self._finished:
                raise SubscriptionClosed(self.name)
            if self._awaiting_keyframe:
                self.channel.request_keyframe()
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._queue.popleft()
        if isinstance(item, EncodedPacket):
            self.delivered += 1
        return item

    def finish(self) -> None:
        """Take nothing more: get() returns what is queued, then raises SubscriptionClosed (the channel ended)."""
        self._finished = True
        self._wakeup.set()

    def close(self) -> None:
        """Leave the channel; a pending get() raises SubscriptionClosed."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wakeup.set()
        self.channel.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None


@dataclass
class ChannelStats:
    """Counters of one channel, kept across subscribers that come and go."""

    packets: int = 0
    drops: int = 0
    keyframe_requests: int = 0
    rate: WindowedRate = field(default_factory=WindowedRate)
    capture_to_send_ms: TimingMs = field(default_factory=TimingMs)
    send_to_wire_ms: TimingMs = field(default_factory=TimingMs)


class Channel:
    """One encoded format of one stream (`cam0` / `h264`): publishes to subscribers, runs its producer on demand."""

    KEYFRAME_REQUEST_INTERVAL_S = 1.0  # a slow viewer must not be able to flood the stream with keyframes

    def __init__(
        self,
        stream_id: str,
        format: str,
        producer: Producer | None = None,
        *,
        linger_s: float = 2.0,
        cache_gop: bool = False,
        max_cached_packets: int = 300,
    ) -> None:
        self.stream_id = stream_id
        self.format = format
        self.producer = producer
        self.linger_s = linger_s
        self.cache_gop = cache_gop
        self.max_cached_packets = max_cached_packets
        self.subscribers: set[Subscription] = set()
        self.stats = ChannelStats()
        self.codec: str | None = None
        self.init_segment: EncodedPacket | None = None  # fMP4 init, sent first to every subscriber
        self._cache: list[EncodedPacket] = []
        self._producing = False
        self._linger: asyncio.TimerHandle | None = None
        self._drop_log = RateLimitedLog()
        self._last_keyframe_request = 0.0
        self.end_notice: dict[str, Any] | None = None  # set once the stream has ended for good
        self.listeners: list[Callable[[EncodedPacket], None]] = []  # in-process consumers called on publish

    @property
    def name(self) -> str:
        return f"{self.stream_id}/{self.format}"

    @property
    def producing(self) -> bool:
        return self._producing

    @property
    def latest(self) -> EncodedPacket | None:
        """The newest packet published, if any is cached."""
        return self._cache[-1] if self._cache else None

    def publish(self, item: Item) -> None:
        """Hand a packet (or a notice) to every subscriber; call on the event loop thread."""
        if isinstance(item, EncodedPacket):
            self._account(item)
            for listener in list(self.listeners):
                listener(item)
        for subscription in list(self.subscribers):
            subscription.offer(item)

    def _account(self, packet: EncodedPacket) -> None:
        packet.send_ns = time.time_ns()
        if packet.capture_ns:
            self.stats.capture_to_send_ms.add((packet.send_ns - packet.capture_ns) / 1e6)
        self.stats.packets += 1
        self.stats.rate.add(len(packet.data))
        if packet.init:
            self.init_segment = packet
            return
        if packet.config and self.format == "h264":
            self.codec = h264.codec_string(packet.data) or self.codec
        if not self.cache_gop or packet.keyframe:
            self._cache = [packet]
        elif self._cache and len(self._cache) < self.max_cached_packets:
            self._cache.append(packet)
        else:  # no keyframe cached or the GOP outgrew the cache: nothing a joiner could decode from
            self._cache = []

    def subscribe(self, policy: Policy, max_packets: int = 90, name: str = "", kind: str = "other") -> Subscription:
        """Add a consumer; it first gets the cached keyframe and what followed it, so its first packet decodes. On an
        ended channel it gets the end notice alone, and then its end."""
        subscription = Subscription(self, policy, max_packets, name or f"{self.name}#{len(self.subscribers)}", kind)
        if self.end_notice is not None:
            subscription.offer(self.end_notice)
            subscription.finish()
            self.subscribers.add(subscription)  # until its consumer closes it, as any other
            return subscription
        if self.init_segment is not None:
            subscription.offer(self.init_segment)
        if policy == "latest":
            replay = self._cache[-1:]
        else:
            replay = self._cache if self.cache_gop else []
        if len(replay) > subscription.max_packets:
            replay = []  # cut short it would lose its keyframe and decode nothing: ask for a fresh keyframe instead
        for packet in replay:
            subscription.offer(packet)
        self.subscribers.add(subscription)
        if not replay and policy == "gop":
            self.request_keyframe(force=True)
        self._ensure_producing()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a consumer; the producer stops after `linger_s` without any."""
        self.subscribers.discard(subscription)
        if not self.subscribers and not self.listeners:
            self._schedule_stop()

    def add_listener(self, listener: Callable[[EncodedPacket], None]) -> None:
        """Register an in-process consumer that must see every packet (e.g. a muxer); it keeps the producer running."""
        self.listeners.append(listener)
        self._ensure_producing()

    def remove_listener(self, listener: Callable[[EncodedPacket], None]) -> None:
        self.listeners.remove(listener)
        if not self.subscribers and not self.listeners:
            self._schedule_stop()

    def _ensure_producing(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._producing and self.producer is not None:
            self._producing = True
            log.info("starting %s for its first consumer", self.name)
            self.producer.start()

    def _schedule_stop(self) -> None:
        if not self._producing or self._linger is not None:
            return
        self._linger = asyncio.get_running_loop().call_later(self.linger_s, self.stop_producing)

    def stop_producing(self) -> None:
        """Stop the producer now and forget the cache (a restarted encoder begins a new GOP)."""
        self._linger = None
        if self._producing and self.producer is not None:
            log.info("stopping %s: no consumer left", self.name)
            self.producer.stop()
        self._producing = False
        self._cache = []
        self.init_segment = None

    def request_keyframe(self, force: bool = False) -> None:
        """Ask the producer for a keyframe, at most once per KEYFRAME_REQUEST_INTERVAL_S unless forced."""
        now = time.monotonic()
        if self.producer is None or (
            not force and now - self._last_keyframe_request < self.KEYFRAME_REQUEST_INTERVAL_S
        ):
            return
        self._last_keyframe_request = now
        self.stats.keyframe_requests += 1
        self.producer.request_keyframe()

    def note_drops(self, subscription: Subscription, count: int) -> None:
        self.stats.drops += count
        if self._drop_log.ready():
            log.warning(
                "%s: reader %s too slow, discarding %d frames", self.name, subscription.name, self._drop_log.take()
            )

    def snapshot(self) -> dict[str, Any]:
        """Counters for /api/stats."""
        return {
            "running": self._producing,
            "viewers": len(self.subscribers),
            "bitrate_bps": round(self.stats.rate.amount_per_second() * 8),
            "packets": self.stats.packets,
            "drops": self.stats.drops,
            "keyframe_requests": self.stats.keyframe_requests,
            "capture_to_send_ms": round(self.stats.capture_to_send_ms.mean(), 3),
            "send_to_wire_ms": round(self.stats.send_to_wire_ms.mean(), 3),
            "subscribers": [
                {
                    "name": sub.name,
                    "policy": sub.policy,
                    "queued": len(sub),
                    "peak": sub.peak,
                    "max_packets": sub.max_packets,
                    "drops": sub.drops,
                }
                for sub in self.subscribers
            ],
        }

    def end(self, notice: dict[str, Any]) -> None:
        """The stream has ended for good: every subscriber gets what it holds, then `notice`, then its end (a clean
        end, not a failure); later subscribers get `notice` and their end at once. Call on the event loop thread."""
        self.end_notice = notice
        for subscription in list(self.subscribers):
            subscription.offer(notice)
            subscription.finish()

    def close(self) -> None:
        """Close every subscription and stop the producer."""
        for subscription in list(self.subscribers):
            subscription.close()
        if self._linger is not None:
            self._linger.cancel()
        self.stop_producing()


class Hub:
    """All channels, by stream id and format."""

    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], Channel] = {}

    def add(self, channel: Channel) -> Channel:
        self._channels[(channel.stream_id, channel.format)] = channel
        return channel

    def get(self, stream_id: str, format: str) -> Channel | None:
        return self._channels.get((stream_id, format))

    def channels(self, stream_id: str) -> list[Channel]:
        return [channel for (sid, _), channel in self._channels.items() if sid == stream_id]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
