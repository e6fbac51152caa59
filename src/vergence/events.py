"""The one event bus: every state change (PTZ, presets, stereo, processing, plugins, recordings, sources) is published
here, and every part that tells someone about changes (the control WebSocket, the WebRTC data channel, MQTT status,
recordings) subscribes. Bounded: a subscriber that falls behind loses its oldest events, never slows the publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Publish = Callable[[Event], None]
QUEUE_SIZE = 256  # events a slow subscriber may fall behind before it loses the oldest


class EventSubscription:
    """One subscriber's bounded queue of events; `async for event in subscription` until it is closed."""

    def __init__(self, bus: EventBus, name: str, maxsize: int) -> None:
        self.name = name
        self.dropped = 0
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

    def put(self, event: Event) -> None:
        """Queue an event (on the loop); when full, the oldest goes."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving events (safe to call twice)."""
        self._bus.unsubscribe(self)

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Publish state events to every subscriber. `publish` runs on the event loop; other threads use
    `publish_threadsafe`, which is the one door from a capture or plugin thread to the subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop  # where `publish_threadsafe` hands events to: the server's
        self._subscriptions: set[EventSubscription] = set()
        self.published = 0

    def subscribe(self, name: str, maxsize: int = QUEUE_SIZE) -> EventSubscription:
        """A new subscriber, receiving every event published from now on."""
        subscription = EventSubscription(self, name, maxsize)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: EventSubscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: Event) -> None:
        """Give an event to every subscriber (on the event loop)."""
        self.published += 1
        for subscription in list(self._subscriptions):
            subscription.put(event)

    def publish_threadsafe(self, event: Event) -> None:
        """Publish from any thread (a capture thread, a plugin's): the event reaches subscribers through the loop."""
        loop = self._loop
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.publish, event)
        except RuntimeError:  # the loop closed between the check and the call: nobody is listening any more
            pass

    def describe(self) -> dict[str, Any]:
        """Subscribers and what they lost (for /api/stats)."""
        return {
            "published": self.published,
            "subscribers": len(self._subscriptions),
            "dropped": sum(subscription.dropped for subscription in self._subscriptions),
        }
