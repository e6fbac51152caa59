"""What every network output shares: the Output interface and a channel consumer that runs blocking work on its own thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from vergence.errors import CommandError
from vergence.hub import Channel, Item, Subscription, SubscriptionClosed
from vergence.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.stream import Stream

log = logging.getLogger(__name__)


class Output(Protocol):
    """A configured, addressable output (`[[udp]]`, `[[restream]]`): started, stopped and described by id."""

    id: str
    kind: str
    stream_id: str

    @property
    def enabled(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def find_stream(streams: Mapping[str, Stream], output_id: str, stream_id: str) -> Stream:
    """The stream an output sends; CommandError naming both when it is not (or no longer) there."""
    stream = streams.get(stream_id)
    if stream is None:
        raise CommandError(f"output {output_id}: unknown stream {stream_id!r}")
    return stream


class Outputs(Registry[Output]):
    """The configured outputs ([[udp]], [[restream]]) by id."""

    noun = "output"
    empty = "no outputs are configured ([[udp]] or [[restream]] in the config)"


class Service(Protocol):
    """A server-wide part started after the streams and stopped before them (ZeroMQ, MQTT, TCP feed, inboxes)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


#: A connection that stayed up this long resets the reconnect delay to its first value.
STABLE_S = 60.0


class Backoff:
    """Reconnect delays: `initial_s`, doubled after each failure up to `max_s`; back to `initial_s` after a stable run."""

    def __init__(self, initial_s: float, max_s: float, stable_s: float = STABLE_S) -> None:
        self.initial_s, self.max_s, self.stable_s = initial_s, max_s, stable_s
        self._next_s = initial_s

    def failed(self, up_for_s: float) -> float:
        """Return how long to wait after a failure that ended a connection up for `up_for_s` (0: it never came up)."""
        if up_for_s >= self.stable_s:
            self._next_s = self.initial_s
        delay_s = self._next_s
        self._next_s = min(delay_s * 2, self.max_s)
        return delay_s


class ThreadedConsumer:
    """Consume a channel on a named thread, in order, under the hub's buffer policy.

    The thread asks the loop for each item (`Subscription.get` through `run_coroutine_threadsafe`), so the backlog of a
    slow consumer stays in its hub subscription, where the `gop` policy drops to the next keyframe, instead of in a queue of
    its own. `handle` may block (a muxer writing to a socket or a file); it never delays the producer or another consumer.
    """

    def __init__(
        self,
        channel: Channel,
        name: str,
        handle: Callable[[Item], None],
        loop: asyncio.AbstractEventLoop,
        max_packets: int = 90,
        kind: str = "other",
    ) -> None:
        self.channel = channel
        self.kind = kind
        self.name = name
        self._handle = handle
        self._loop = loop
        self._max_packets = max_packets
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def subscription(self) -> Subscription | None:
        return self._subscription

    def start(self) -> None:
        """Subscribe and start the thread; call on the event loop."""
        if self._subscription is not None:
            return
        self._subscription = self.channel.subscribe("gop", self._max_packets, name=self.name, kind=self.kind)
        self._thread = threading.Thread(target=self._run, args=(self._subscription,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Unsubscribe; the thread ends after the item it is handling. Call on the event loop; never waits."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        self._thread = None

    def _run(self, subscription: Subscription) -> None:
        while True:
            try:
                future = asyncio.run_coroutine_threadsafe(subscription.get(), self._loop)
                item = future.result()
            except (SubscriptionClosed, concurrent.futures.CancelledError, RuntimeError):
                return  # closed, or the loop is gone at shutdown
            if subscription.closed:
                return
            try:
                self._handle(item)
            except Exception:  # a bug in one output must not end its thread silently
                log.exception("%s: handling a packet failed", self.name)


class FrameGate:
    """Let frames through at most `fps` times a second on average (0: every frame), skipping the rest, never delaying."""

    def __init__(self, fps: float) -> None:
        self.interval_s = 1.0 / fps if fps > 0 else 0.0
        self._due = float("-inf")

    def ready(self, now: float) -> bool:
        """Return True when the frame arriving at `now` (monotonic seconds) should be sent."""
        if self.interval_s == 0.0:
            return True
        if now < self._due:
            return False
        # The next slot counts from this slot's due time, so the average rate stays exact whatever the camera's frame
        # grid; after a stall it counts from now, so missed slots never come out as a burst.
        late_s = now - self._due
        self._due = (self._due if late_s < self.interval_s else now) + self.interval_s
        return True
