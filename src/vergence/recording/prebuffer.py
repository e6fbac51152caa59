"""The pre-event buffer: the last N seconds of a stream's encoded H.264, whole GOPs from a keyframe, for clips that begin
before their trigger."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from vergence.hub import Channel
from vergence.media.frame import EncodedPacket


class PreEventBuffer:
    """Keep whole GOPs covering at least `seconds` of capture time; hand every packet to clips while they record.

    It listens to the H.264 channel (so the encoder keeps running) and is called on the event loop for every packet, in
    order: a clip that takes `snapshot()` and then `follow()`s in the same loop turn gets every packet exactly once.
    """

    def __init__(self, channel: Channel, seconds: float) -> None:
        self.channel = channel
        self.seconds = seconds
        self._gops: deque[list[EncodedPacket]] = deque()
        self._followers: list[Callable[[EncodedPacket], None]] = []
        self.bytes = 0

    def start(self) -> None:
        self.channel.add_listener(self._on_packet)

    def stop(self) -> None:
        if self._on_packet in self.channel.listeners:
            self.channel.remove_listener(self._on_packet)
        self._gops.clear()
        self._followers.clear()
        self.bytes = 0

    def snapshot(self) -> list[EncodedPacket]:
        """Return the buffered packets, oldest first; the first is a keyframe with SPS/PPS (or there are none)."""
        return [packet for gop in self._gops for packet in gop]

    def follow(self, follower: Callable[[EncodedPacket], None]) -> None:
        """Call `follower` with every packet from now on (on the loop), until `unfollow`."""
        self._followers.append(follower)

    def unfollow(self, follower: Callable[[EncodedPacket], None]) -> None:
        if follower in self._followers:
            self._followers.remove(follower)

    @property
    def span_s(self) -> float:
        """Capture time from the oldest buffered packet to the newest."""
        if not self._gops:
            return 0.0
        return (self._gops[-1][-1].capture_ns - self._gops[0][0].capture_ns) / 1e9

    def _on_packet(self, packet: EncodedPacket) -> None:
        if packet.keyframe and packet.config:
            self._gops.append([packet])
            self.bytes += len(packet.data)
        elif self._gops:  # before the first keyframe nothing would decode: not kept
            self._gops[-1].append(packet)
            self.bytes += len(packet.data)
        # Drop the oldest GOP while the next one alone still reaches back `seconds`: the buffer always starts at a
        # keyframe at least `seconds` before the newest packet (once it has run that long).
        horizon_ns = packet.capture_ns - int(self.seconds * 1e9)
        while len(self._gops) > 1 and self._gops[1][0].capture_ns <= horizon_ns:
            dropped = self._gops.popleft()
            self.bytes -= sum(len(old.data) for old in dropped)
        for follower in list(self._followers):
            follower(packet)

    def describe(self) -> dict[str, float | int]:
        return {"seconds": self.seconds, "span_s": round(self.span_s, 3), "bytes": self.bytes}
