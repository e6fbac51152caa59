"""Publish a stream over WHIP (RFC 9725) to a WebRTC server that fans it out: Janus, mediamtx, LiveKit, Cloudflare Stream.

One session is one aiortc peer sending the stream's own H.264 access units (PassthroughTrack, as the WebRTC viewers
get: aiortc packetizes, never encodes), set up by one POST of our offer (every candidate in it, no trickle) and ended
by a DELETE of the session URL the server answered with (`Location`). The server's PLI/FIR reach the stream's encoder.

A session has failed when its connection fails or closes (a server that restarts closes it at once), when it does not
connect within `connect_timeout_s`, or when the server's receiver reports stop for `stall_timeout_s` (a server that
died without a word). Then the session is DELETEd (before any new POST: some servers, simple-whip-server among them,
name the session after the endpoint, so a late DELETE would end the next session), and a new one is offered after
`retry_initial_s`, doubling up to `retry_max_s`, back to the start after a stable minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from vergence.errors import redact
from vergence.media.frame import EncodedPacket
from vergence.metrics import WindowedRate
from vergence.outputs.base import Backoff, find_stream
from vergence.outputs.webrtc import (
    PassthroughTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    add_video,
    fail_pending_ice,
    last_receiver_report,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.config import WhipSettings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0
#: A DELETE that ends a session is a courtesy: it must not hold up a reconnect or a stop for longer than this.
DELETE_TIMEOUT_S = 2.0
REPORT_EVERY_S = 0.5


class SessionFailed(Exception):
    """A WHIP session that could not start or did not last; the message says why."""


class WhipOutput:
    """A `[[whip]]` output: one stream published to a WHIP endpoint, offered again until stopped."""

    kind = "whip"

    def __init__(self, settings: WhipSettings, streams: Mapping[str, Stream]) -> None:
        self.id = settings.id
        self.stream_id = settings.stream
        self.settings = settings
        self.url = redact(settings.url)
        self._streams = streams
        self._enabled = settings.enabled
        self._task: asyncio.Task[None] | None = None
        self._commands = asyncio.Lock()
        self._rate = WindowedRate()
        self._frames_before = self._drops_before = 0
        self._track: PassthroughTrack | None = None
        self._retry_at = 0.0
        self.state = "stopped"
        self.connects = self.failures = self.bytes = 0
        self.last_error: str | None = None
        self.session_url: str | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _stream(self) -> Stream:
        return find_stream(self._streams, self.id, self.stream_id)

    async def start(self) -> None:
        """Start publishing; a no-op when running."""
        async with self._commands:
            if self._task is not None:
                return
            self._stream()
            self._enabled = True
            self.state = "connecting"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"whip-{self.id}")
            log.info("whip %s: publishing %s to %s", self.id, self.stream_id, self.url)

    async def stop(self) -> None:
        """Stop publishing: the session is closed and DELETEd. Safe to call twice."""
        async with self._commands:
            self._enabled = False
            task, self._task = self._task, None
            if task is None:
                return
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.state = "stopped"
            log.info("whip %s: stopped after %d frames", self.id, self.frames)

    @property
    def frames(self) -> int:
        return self._frames_before + (self._track.frames if self._track is not None else 0)

    def describe(self) -> dict[str, Any]:
        """The output as listed by GET /api/outputs."""
        track = self._track
        return {
            "id": self.id,
            "kind": self.kind,
            "stream": self.stream_id,
            "url": self.url,
            "enabled": self._enabled,
            "state": self.state,
            "connects": self.connects,
            "failures": self.failures,
            "last_error": self.last_error,
            "frames": self.frames,
            "bytes": self.bytes,
            "bitrate_bps": round(self._rate.amount_per_second() * 8),
            "drops": self._drops_before + (track.drops if track is not None else 0),
            "retry_in_s": round(max(0.0, self._retry_at - time.monotonic()), 2) if self.state == "waiting" else None,
        }

    # --- sessions ----------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            while True:
                connected_at: float | None = None
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates; [] keeps aiortc off STUN
                try:
                    connected_at = await self._session(http, pc)
                except SessionFailed as failure:
                    reason = str(failure)
                except httpx.HTTPError as err:
                    reason = f"{type(err).__name__}: {err}"
                except Exception as err:  # a bug or aiortc's surprise must end the session, not the output
                    log.exception("whip %s: the session broke", self.id)
                    reason = f"{type(err).__name__}: {err}"
                finally:
                    await self._end(http, pc)  # also when cancelled by stop()
                up_for_s = time.monotonic() - connected_at if connected_at is not None else 0.0
                delay_s = backoff.failed(up_for_s)
                self.failures += 1
                self.last_error = redact(reason)
                self.state = "waiting"
                self._retry_at = time.monotonic() + delay_s
                log.warning(
                    "whip %s to %s: %s; offering again in %.1f s (failure %d)",
                    self.id,
                    self.url,
                    self.last_error,
                    delay_s,
                    self.failures,
                )
                await asyncio.sleep(delay_s)  # the backoff itself, not a wait for an event

    async def _session(self, http: httpx.AsyncClient, pc: RTCPeerConnection) -> float:
        """Offer, connect and publish until the session fails (raises SessionFailed); return when it connected."""
        stream = self._stream()
        self.state = "connecting"
        track = self._track = PassthroughTrack(stream.h264, f"whip {self.id}", self._sent)
        sender = add_video(pc, track)
        failed = asyncio.Event()

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                failed.set()

        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
        headers = {"Content-Type": "application/sdp"}
        if self.settings.token is not None:
            headers["Authorization"] = f"Bearer {self.settings.token.get_secret_value()}"
        answer = await http.post(self.settings.url, content=pc.localDescription.sdp, headers=headers)
        if answer.status_code != 201:
            raise SessionFailed(f"the endpoint answered {answer.status_code}: {' '.join(answer.text.split())[:200]}")
        location = answer.headers.get("location")
        if not location:
            raise SessionFailed("the endpoint's answer has no Location (the session URL)")
        self.session_url = urljoin(self.settings.url, location)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        except Exception as err:  # aiortc's SDP parser raises whatever the text trips it on
            raise SessionFailed(f"cannot use the endpoint's answer: {type(err).__name__}: {err}") from None
        # aiortc's sender turns a receiver's PLI/FIR into a flag for an encoder of its own; ours is the stream's.
        sender._send_keyframe = stream.h264.request_keyframe  # type: ignore[method-assign]
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while pc.connectionState != "connected":
            if failed.is_set():
                raise SessionFailed(f"the connection {pc.connectionState} before it was up")
            if time.monotonic() >= deadline:
                raise SessionFailed(f"not connected within {self.settings.connect_timeout_s:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failed.wait(), REPORT_EVERY_S)
        connected_at = time.monotonic()
        self.connects += 1
        self.state = "live"
        log.info("whip %s: live to %s (connect %d)", self.id, self.url, self.connects)
        await self._watch(pc, failed)
        return connected_at

    async def _watch(self, pc: RTCPeerConnection, failed: asyncio.Event) -> None:
        """Return (by raising SessionFailed) when the session ends: closed, failed, or no receiver report for a while."""
        heard_at, last_report = time.monotonic(), None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failed.wait(), REPORT_EVERY_S)
            if failed.is_set():
                raise SessionFailed(f"the connection {pc.connectionState}")
            report = await last_receiver_report(pc)
            if report is not None and report != last_report:
                heard_at, last_report = time.monotonic(), report
            elif time.monotonic() - heard_at > self.settings.stall_timeout_s:
                raise SessionFailed(f"no receiver report for {self.settings.stall_timeout_s:g} s")

    def _sent(self, pts: int, packet: EncodedPacket) -> None:
        self.bytes += len(packet.data)
        self._rate.add(len(packet.data))

    async def _end(self, http: httpx.AsyncClient, pc: RTCPeerConnection) -> None:
        """Close the peer and DELETE the session (shielded: a stop that cancels us still hangs up)."""
        track, self._track = self._track, None
        if track is not None:
            self._frames_before += track.frames
            self._drops_before += track.drops
            track.stop()
        session_url, self.session_url = self.session_url, None
        await asyncio.shield(self._hang_up(http, pc, session_url))

    async def _hang_up(self, http: httpx.AsyncClient, pc: RTCPeerConnection, session_url: str | None) -> None:
        await pc.close()
        fail_pending_ice(pc)
        if session_url is None:
            return
        headers = {}
        if self.settings.token is not None:
            headers["Authorization"] = f"Bearer {self.settings.token.get_secret_value()}"
        try:
            await http.delete(session_url, headers=headers, timeout=DELETE_TIMEOUT_S)
        except httpx.HTTPError as err:
            log.info("whip %s: DELETE of the session failed (%s); the server ends it on its own", self.id, err)


def create_output(settings: WhipSettings, streams: Mapping[str, Stream]) -> WhipOutput:
    """The output a `[[whip]]` entry makes (the composition root finds this by the section's name)."""
    return WhipOutput(settings, streams)
