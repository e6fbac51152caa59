"""MJPEG over HTTP (multipart/x-mixed-replace) with each part's capture time in its headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from vergence.hub import SubscriptionClosed
from vergence.media.frame import EncodedPacket
from vergence.stream import Stream

BOUNDARY = "vergenceframe"
MEDIA_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"


def part(packet: EncodedPacket) -> bytes:
    """One multipart part: headers with seq and capture time, then the JPEG."""
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(packet.data)}\r\n"
        f"X-Seq: {packet.seq}\r\nX-Capture-Ns: {packet.capture_ns}\r\n\r\n"
    ).encode()
    return head + packet.data + b"\r\n"


async def mjpeg_parts(stream: Stream, name: str) -> AsyncIterator[bytes]:
    """Yield multipart parts of the newest JPEGs for as long as the client reads (a slow client skips frames); when the
    stream ends (or the server stops), the closing delimiter, so the client sees a whole response."""
    subscription = stream.jpeg.subscribe("latest", name=name, kind="mjpeg")
    try:
        async for item in subscription:
            if isinstance(item, EncodedPacket):
                yield part(item)
    except SubscriptionClosed:
        pass
    finally:
        subscription.close()
    yield f"--{BOUNDARY}--\r\n".encode()
