"""The control protocol over a WebRTC peer's data channel (the page names it `control`): the same messages as the
control WebSocket (`transports.websocket.answer_control`), on the connection that carries the video.

`outputs.webrtc.WebRtcPeers` sends the video and the per-frame capture times; when a peer opens a data channel it hands
the channel here (`attach`), and calls the closer this returns when the peer goes away.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vergence.control.transports.websocket import answer_control, new_client_id
from vergence.media import json_text

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from vergence.outputs.webrtc import Peer


class DataChannelControl:
    """Speaks the control protocol on each peer's data channel: the state on open, every event, replies."""

    def __init__(self, vergence: Any) -> None:
        self._vergence = vergence

    def attach(self, peer: Peer, channel: RTCDataChannel) -> Callable[[], None]:
        """Serve `channel` for `peer`; return what to call when the peer closes."""
        vergence = self._vergence
        controllers = vergence.commander.controllers
        client_id = new_client_id()
        events = vergence.events.subscribe(f"data channel {peer.client}")

        async def forward() -> None:
            _send_json(channel, controllers.snapshot())
            async for event in events:
                _send_json(channel, event)

        async def answer(text: str) -> None:
            try:
                message = json_text.loads(text)
            except ValueError as err:
                _send_json(channel, {"type": "error", "code": "bad_json", "error": f"messages must be JSON: {err}"})
                return
            reply = await answer_control(message, client_id, vergence, peer.principal)
            if reply is not None:
                _send_json(channel, reply)

        channel.on("message", lambda text: peer.spawn(answer(text)) if isinstance(text, str) else None)
        if channel.readyState == "open":
            peer.spawn(forward())
        else:
            channel.on("open", lambda: peer.spawn(forward()))

        def close() -> None:
            events.close()
            vergence.client_reports.pop(client_id, None)

        return close


def _send_json(channel: RTCDataChannel, message: dict[str, Any]) -> None:
    if channel.readyState == "open":
        channel.send(json.dumps(message, separators=(",", ":")))
