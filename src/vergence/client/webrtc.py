"""Watch a vergence stream over WebRTC from another Python program (aiortc), with its control data channel.

```python
import asyncio
from vergence.client.webrtc import WebRtcClient

async def main() -> None:
    async with WebRtcClient("http://127.0.0.1:8000", "cam0") as client:   # offer, POST, answer; ICE connects
        frame = await client.frame()                      # av.VideoFrame, decoded by aiortc
        image = await client.frame(format="bgr24")        # or a numpy array (h, w, 3)
        print(client.capture_ns(frame))                   # capture time (ns, wall clock) from the data channel
        print(await client.request({"type": "ping", "t": 1}))          # {"type": "pong", "t": 1, "server_ns": …}
        await client.send({"type": "command", "command": {"type": "ptz", "stream": "cam0", "zoom": 2}})

asyncio.run(main())
```

Signalling is WHEP-style (docs/protocol.md, "WebRTC"): one POST of the SDP offer, the answer with every candidate, a
DELETE of the peer's `Location` on close. No STUN server is asked unless `ice_servers` names one. The data channel
speaks the /ws/control protocol and carries `{"type": "frame", "pts", "seq", "capture_ns", "send_ns"}` per frame;
`capture_ns(frame)` pairs those with decoded frames by their RTP timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, OrderedDict
from types import TracebackType
from typing import Any, cast

import httpx

from vergence.errors import ConfigError

try:
    import av
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack
except ImportError as err:  # pragma: no cover - exercised only where aiortc is missing
    raise ConfigError(f"the WebRTC client needs the aiortc package ({err}); install it: pip install aiortc") from err

RTP_WRAP = 1 << 32
FRAME_TIMES_KEPT = 300  # frame messages remembered for pairing with decoded frames (10 s at 30 fps)
VOTES_TO_LOCK = 3  # decoded frames that must agree on the RTP offset before capture times are trusted


class WebRtcClientError(Exception):
    """The server refused the offer (its HTTP status and reason), or the peer did not connect in time."""


class WebRtcClient:
    """One WebRTC viewer of one vergence stream: receive-only H.264 video, plus the control data channel."""

    def __init__(
        self,
        base_url: str,
        stream: str = "cam0",
        *,
        data_channel: bool = True,
        ice_servers: list[dict[str, Any]] | None = None,
        timeout_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.stream = stream
        self.timeout_s = timeout_s
        servers = [RTCIceServer(**server) for server in ice_servers or []]
        # An explicit list, empty by default: None would make aiortc ask a public STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.location: str | None = None
        self.frame_times: OrderedDict[int, dict[str, Any]] = OrderedDict()  # sender pts → frame message
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # every other data channel message
        self._track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._offsets: Counter[int] = Counter()
        self._voted: set[int] = set()
        self._offset: int | None = None
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)
        self.channel = self.pc.createDataChannel("control") if data_channel else None
        if self.channel is not None:
            self.channel.on("message", self._on_message)

    async def connect(self) -> None:
        """Offer, POST it, apply the answer and wait for the video track; WebRtcClientError when refused."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            response = await http.post(
                f"{self.base_url}/api/webrtc/{self.stream}",
                content=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", **self._auth},
            )
        if response.status_code != 201:
            await self.pc.close()
            raise WebRtcClientError(f"{response.status_code}: {response.text}")
        self.location = response.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        await asyncio.wait_for(asyncio.shield(self._track), self.timeout_s)

    @property
    def track(self) -> MediaStreamTrack:
        """The received video track (after `connect`)."""
        return self._track.result()

    async def frame(self, format: str | None = None) -> Any:
        """Return the next decoded frame: an av.VideoFrame, or a numpy array in `format` (e.g. "bgr24", "gray")."""
        frame = cast(av.VideoFrame, await asyncio.wait_for(self.track.recv(), self.timeout_s))
        return frame if format is None else frame.to_ndarray(format=format)

    def capture_ns(self, frame: av.VideoFrame) -> int | None:
        """The capture time of a decoded frame (wall clock, ns) from the data channel; None while not known yet."""
        message = self.frame_message(frame)
        return message["capture_ns"] if message is not None else None

    def frame_message(self, frame: av.VideoFrame) -> dict[str, Any] | None:
        """The data channel's `frame` message about a decoded frame, or None."""
        if frame.pts is None:
            return None
        if self._offset is None:
            # aiortc counts received timestamps from the first frame; the sender's pts are on the same 90 kHz clock
            # from another origin. The difference that recurs over several frames is that origin.
            if frame.pts not in self._voted:
                self._voted.add(frame.pts)
                self._offsets.update((pts - frame.pts) % RTP_WRAP for pts in self.frame_times)
            offset, votes = self._offsets.most_common(1)[0] if self._offsets else (0, 0)
            if votes < VOTES_TO_LOCK:
                return None
            self._offset = offset
        return self.frame_times.get((frame.pts + self._offset) % RTP_WRAP)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one control message over the data channel (waits for it to open)."""
        channel = self.channel
        if channel is None:
            raise WebRtcClientError("this client has no data channel (data_channel=False)")
        if channel.readyState != "open":
            opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_open() -> None:
                if not opened.done():
                    opened.set_result(None)

            channel.once("open", on_open)
            if channel.readyState != "open":
                await asyncio.wait_for(opened, self.timeout_s)
        channel.send(json.dumps(message))

    async def request(self, message: dict[str, Any], reply_type: str | None = None) -> dict[str, Any]:
        """Send a control message and return the first message of `reply_type` (default: the type sent) after it."""
        wanted = reply_type or {"ping": "pong", "command": "reply"}.get(message.get("type", ""), message.get("type"))
        await self.send(message)
        async with asyncio.timeout(self.timeout_s):
            while True:
                reply = await self.messages.get()
                if reply.get("type") in (wanted, "error"):
                    return reply

    async def close(self) -> None:
        """Hang up: DELETE the peer on the server, then close the connection."""
        if self.location is not None:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                    await http.delete(f"{self.base_url}{self.location}", headers=self._auth)
            self.location = None
        await self.pc.close()

    async def __aenter__(self) -> WebRtcClient:
        try:
            await self.connect()
        except BaseException:
            await self.pc.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and not self._track.done():
            self._track.set_result(track)

    def _on_message(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            return
        message = json.loads(text)
        if message.get("type") == "frame":
            self.frame_times[message["pts"] % RTP_WRAP] = message
            while len(self.frame_times) > FRAME_TIMES_KEPT:
                self.frame_times.popitem(last=False)
        else:
            self.messages.put_nowait(message)
