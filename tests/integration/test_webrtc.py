"""WebRTC against a real server subprocess, with real aiortc peers on the session's private network (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.aio import run
from tests.conftest import ServerProcess, start_server
from tests.controlws import envelope
from vergence.client.webrtc import WebRtcClient, WebRtcClientError
from vergence.media import timecode
from vergence.outputs.webrtc import PLAYOUT_DELAY

pytestmark = pytest.mark.usefixtures("ice_address")  # fails, never skips, without a private network for ICE

SIZE = (640, 360)
CONNECT_TIMEOUT_S = 3.0  # long enough to list the new peer before it is dropped, on a busy machine too
REPORT_GAP_MAX_S = 1.5  # aiortc sends a receiver report every 0.5 + random() s
STALL_TIMEOUT_S = 3.0  # above aiortc's longest gap between receiver reports plus the watchdog's 1 s poll


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A 640x360@30 test pattern whose keyframes come only every 20 s, unless someone asks for one."""
    env = {"VERGENCE_H264__GOP_FRAMES": "600"}
    path = tmp_path_factory.mktemp("webrtc") / "server.log"
    process = start_server(("--size", f"{SIZE[0]}x{SIZE[1]}", "--fps", "30"), path, env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two peers at most, kept for the default connect timeout (the test's unconnected peers outlive its steps)."""
    path = tmp_path_factory.mktemp("webrtc-capped") / "server.log"
    process = start_server(("--size", "320x180", "--fps", "30"), path, {"VERGENCE_WEBRTC__MAX_PEERS": "2"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A short connect timeout and a short stall timeout."""
    env = {
        "VERGENCE_WEBRTC__CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "VERGENCE_WEBRTC__STALL_TIMEOUT_S": str(STALL_TIMEOUT_S),
    }
    path = tmp_path_factory.mktemp("webrtc-strict") / "server.log"
    process = start_server(("--size", "320x180", "--fps", "30"), path, env)
    yield process
    process.stop()


async def get_json(server: ServerProcess, path: str) -> Any:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(server.url + path)
        response.raise_for_status()
        return response.json()


async def poll(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Call `check` (sync or async) until it returns something truthy; fail after `timeout_s` saying `what`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)  # poll interval inside a deadline loop
    pytest.fail(f"{what}: not within {timeout_s} s")


async def make_offer(video: bool = True, data: bool = True) -> tuple[RTCPeerConnection, str]:
    """An aiortc peer connection with its offer set (host candidates gathered)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if video:
        pc.addTransceiver("video", direction="recvonly")
    if data:
        pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def without_h264(sdp: str) -> str:
    """The offer with H.264 (and the RTX streams repairing it) removed from the video m-line."""
    h264 = set(re.findall(r"^a=rtpmap:(\d+) H264/", sdp, re.MULTILINE))
    h264 |= {pt for pt, apt in re.findall(r"^a=fmtp:(\d+) apt=(\d+)", sdp, re.MULTILINE) if apt in h264}
    lines = []
    for line in sdp.splitlines():
        if line.startswith("m=video"):
            head, formats = line.split(" ")[:3], line.split(" ")[3:]
            line = " ".join(head + [pt for pt in formats if pt not in h264])
        elif re.match(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+) ", line) and line.split(":", 1)[1].split(" ")[0] in h264:
            continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def test_a_python_client_receives_decodes_and_times_frames(server: ServerProcess) -> None:
    async def main() -> None:
        streams = {s["id"]: s for s in await get_json(server, "/api/streams")}
        async with WebRtcClient(server.url, "cam0") as client:
            assert re.findall(r"typ (\w+)", client.pc.remoteDescription.sdp) and set(
                re.findall(r"typ (\w+)", client.pc.remoteDescription.sdp)
            ) == {"host"}, "the answer holds host candidates only"
            frames, codes, paired = 0, 0, 0
            # Capture times come over the data channel, which opens beside the video, not before it: read until 30
            # frames have paired, however many went by first.
            deadline = time.monotonic() + 20
            while frames < 45 or paired < 30:
                assert time.monotonic() < deadline, f"only {paired} of {frames} frames paired with a capture time"
                frame = await client.frame()
                frames += 1
                assert (frame.width, frame.height) == (streams["cam0"]["width"], streams["cam0"]["height"]) == SIZE
                painted = timecode.read(frame.to_ndarray(format="gray"))
                codes += painted is not None
                captured = client.capture_ns(frame)
                if captured is not None and painted is not None:
                    paired += 1
                    # The time code holds whole microseconds of the very capture time the data channel reports.
                    assert captured // 1000 * 1000 == painted
                    assert 0 < time.time_ns() - captured < 2_000_000_000
            message = next(iter(client.frame_times.values()))
            assert set(message) == {"type", "pts", "seq", "capture_ns", "send_ns"}
            assert message["send_ns"] >= message["capture_ns"]
        assert frames - codes <= 5, f"time code read in {codes} of {frames} frames"
        listing = await get_json(server, "/api/webrtc")
        assert listing["peers"] == 0 and listing["closed"].get("hung up", 0) >= 1

    run(main())


def test_malformed_offers_get_4xx_and_the_server_keeps_serving(server: ServerProcess) -> None:
    async def main() -> None:
        pc_video, video_offer = await make_offer()
        pc_data, data_only = await make_offer(video=False)
        await pc_video.close()
        await pc_data.close()
        garbage_sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=garbage\r\nc=IN IP4 x\r\n"
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("garbage text", "/api/webrtc/cam0", {"content": b"hello, server"}, 400),
            ("garbage SDP", "/api/webrtc/cam0", {"content": garbage_sdp}, 400),
            ("not UTF-8", "/api/webrtc/cam0", {"content": b"\xff\xfe\x00m=video"}, 400),
            ("empty body", "/api/webrtc/cam0", {"content": b""}, 400),
            ("JSON without sdp", "/api/webrtc/cam0", {"json": {"type": "offer"}}, 400),
            ("JSON answer", "/api/webrtc/cam0", {"json": {"type": "answer", "sdp": video_offer}}, 400),
            (
                "broken JSON",
                "/api/webrtc/cam0",
                {"content": b"{", "headers": {"Content-Type": "application/json"}},
                400,
            ),
            (  # found by fuzzing: a RecursionError, answered 500
                "JSON nested too deep",
                "/api/webrtc/cam0",
                {"content": b"[" * 5000 + b"]" * 5000, "headers": {"Content-Type": "application/json"}},
                400,
            ),
            ("no video", "/api/webrtc/cam0", {"content": data_only}, 400),
            ("no H.264", "/api/webrtc/cam0", {"content": without_h264(video_offer)}, 415),
            ("too large", "/api/webrtc/cam0", {"content": video_offer + "a=x-pad:" + "x" * 65536 + "\r\n"}, 413),
            ("unknown stream", "/api/webrtc/nope", {"content": video_offer}, 404),
        ]
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for name, path, request, status in cases:
                if "content" in request:
                    request.setdefault("headers", {"Content-Type": "application/sdp"})
                response = await http.post(path, **request)
                assert response.status_code == status, (name, response.status_code, response.text)
                assert response.json()["detail"], name
            assert (await http.delete("/api/webrtc/cam0/no-such-peer")).status_code == 404
            # A well-formed JSON offer is answered in JSON.
            pc, offer = await make_offer()
            response = await http.post("/api/webrtc/cam0", json={"type": "offer", "sdp": offer})
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["type"] == "answer" and body["location"] == response.headers["location"]
            assert "a=rtpmap:" in body["sdp"] and "H264/90000" in body["sdp"]
            assert (await http.delete(body["location"])).status_code == 200
            again = await http.delete(body["location"])  # the session is gone already: success, and says so
            assert again.status_code == 200 and again.json()["ended"] is True, again.text
            await pc.close()
        assert server.process.poll() is None
        assert (await get_json(server, "/api/webrtc"))["peers"] == 0
        async with WebRtcClient(server.url, "cam0") as client:
            for _ in range(5):
                await client.frame()
        assert "Traceback" not in server.log()

    run(main())


def test_offer_and_hang_up_cycles_leave_nothing_behind(server: ServerProcess) -> None:
    quick, mid_ice, full = 80, 10, 10

    async def full_cycle() -> None:
        async with WebRtcClient(server.url, "cam0") as client:
            await client.frame()

    async def main() -> None:
        async with WebRtcClient(server.url, "cam0", data_channel=False) as watcher:  # keeps the encoder running
            await watcher.frame()
            await full_cycle()  # warm-up: whatever the first peer allocates once
            pc, offer = await make_offer()
            await pc.close()  # nobody will answer the server's ICE checks
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

                async def settled() -> dict[str, Any] | None:
                    stats = await get_json(server, "/api/stats")
                    return stats if stats["webrtc"]["peers"] == 1 else None

                response = await http.post(
                    "/api/webrtc/cam0", content=offer, headers={"Content-Type": "application/sdp"}
                )
                assert (await http.delete(response.headers["location"])).status_code == 200
                before = await poll(settled, 10, "warm-up peers gone")
                for _ in range(quick):
                    response = await http.post(
                        "/api/webrtc/cam0", content=offer, headers={"Content-Type": "application/sdp"}
                    )
                    assert response.status_code == 201, response.text
                    assert (await http.delete(response.headers["location"])).status_code == 200
                for _ in range(mid_ice):  # the server's ICE agent is checking pairs when the hang-up comes
                    pc, mine = await make_offer()
                    response = await http.post(
                        "/api/webrtc/cam0", content=mine, headers={"Content-Type": "application/sdp"}
                    )
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
                    assert (await http.delete(response.headers["location"])).status_code == 200
                    await pc.close()
                for _ in range(full):
                    await full_cycle()
                base = before["process"]

                async def back_to_baseline() -> dict[str, Any] | None:
                    stats = await get_json(server, "/api/stats")
                    now = stats["process"]
                    if stats["webrtc"]["peers"] == 1 and all(
                        now[key] <= base[key] for key in ("fds", "tasks", "threads")
                    ):
                        return stats
                    return None

                try:
                    after = await poll(back_to_baseline, 15, "fds, tasks, threads and peers back to where they were")
                except pytest.fail.Exception:
                    stats = await get_json(server, "/api/stats")
                    raise AssertionError(
                        f"before {before['process']}, after {stats['process']}, {stats['webrtc']}"
                    ) from None
                hung_up = after["webrtc"]["closed"]["hung up"] - before["webrtc"]["closed"]["hung up"]
                assert hung_up == quick + mid_ice + full
            # The peer that watched all along never missed a beat.
            for _ in range(5):
                await watcher.frame()

    run(main(), timeout_s=90)


def test_a_receivers_pli_reaches_the_encoder_and_a_keyframe_follows(server: ServerProcess) -> None:
    async def requests() -> int:
        stats = await get_json(server, "/api/stats")
        return stats["streams"]["cam0"]["channels"]["h264"]["keyframe_requests"]

    async def main() -> None:
        async with WebRtcClient(server.url, "cam0", data_channel=False) as client:
            first = await client.frame()
            assert first.key_frame
            receiver = client.pc.getReceivers()[0]
            # The video's SSRC, as the answer declares it: aiortc's receiver stats hold one "inbound-rtp" entry, which
            # is the retransmission stream's once a packet has been resent, and a PLI naming that SSRC reaches nobody.
            ssrc = int(re.search(r"^a=ssrc-group:FID (\d+) \d+", client.pc.remoteDescription.sdp, re.M)[1])
            # Keyframes come every 600 frames (20 s) unless asked for, and requests are served once a second: keep
            # sending PLIs (as a receiver that lost a picture does) until the server counts one.
            start = await requests()
            keyframes_seen = 0

            async def pli_counted() -> bool:
                nonlocal keyframes_seen
                await receiver._send_rtcp_pli(ssrc)  # aiortc's own RTCP path, as after a decoding error
                frame = await client.frame()
                keyframes_seen += frame.key_frame
                return await requests() > start

            await poll(pli_counted, 10, "keyframe_requests rising after a PLI", interval_s=0)
            deadline = time.monotonic() + 5
            while not keyframes_seen:
                assert time.monotonic() < deadline, "no keyframe arrived after the PLI was counted"
                keyframes_seen += (await client.frame()).key_frame

    run(main())


async def channel_command(
    client: WebRtcClient, command: dict[str, Any] | str, command_id: int, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Send one command on the data channel and return the reply carrying its id; other messages go to `seen`."""
    await client.send(envelope(command, command_id))
    return await channel_message(client, lambda m: m.get("type") == "reply" and m.get("id") == command_id, seen)


async def channel_message(
    client: WebRtcClient, match: Callable[[dict[str, Any]], bool], seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The first control message on the data channel `match` accepts; others go to `seen`."""
    async with asyncio.timeout(10):
        while True:
            message = await client.messages.get()
            if match(message):
                return message
            if seen is not None:
                seen.append(message)


def test_ptz_and_ping_over_the_data_channel(server: ServerProcess) -> None:
    async def main() -> None:
        async with WebRtcClient(server.url, "cam0") as client:
            pong = await client.request({"type": "ping", "t": 42.5})
            assert pong["type"] == "pong" and pong["t"] == 42.5 and abs(pong["server_ns"] - time.time_ns()) < 1e9
            zoom = 1.5 if (await get_json(server, "/api/cameras/cam0/ptz"))["zoom"] != 1.5 else 2.5
            seen: list[dict[str, Any]] = []
            done = await channel_command(client, {"type": "ptz", "stream": "cam0", "zoom": zoom, "pan": 0.4}, 1, seen)
            assert done["ok"] and done["command"] == "ptz" and done["result"]["zoom"] == zoom, done
            # The state event every controller hears comes on the channel too, before or after the reply.
            event = next((m for m in seen if m.get("type") == "ptz"), None) or await channel_message(
                client, lambda m: m.get("type") == "ptz"
            )
            assert event["type"] == "ptz" and event["stream"] == "cam0" and event["zoom"] == zoom, event
            ptz = await get_json(server, "/api/cameras/cam0/ptz")
            assert ptz["zoom"] == zoom and ptz["pan"] == pytest.approx(0.4, abs=0.01)
            bad = await channel_command(client, {"type": "ptz", "stream": "cam0", "zoom": "lots"}, 2)
            assert not bad["ok"] and bad["code"] == "invalid" and "zoom" in bad["error"], bad
            text = await channel_command(client, "zoom cam0 9000", 3)
            assert not text["ok"] and text["code"] == "invalid", text
            legacy = await client.request({"type": "ptz", "camera": "cam0", "zoom": 1}, "error")
            assert legacy["type"] == "error" and legacy["code"] == "unknown_message", legacy
            assert (await get_json(server, "/api/cameras/cam0/ptz"))["zoom"] == zoom  # nothing refused moved it
            reply = await channel_command(client, {"type": "ptz", "camera": "cam0", "zoom": 1}, 4)  # the older key
            assert reply["type"] == "reply" and reply["ok"], reply
            assert (await get_json(server, "/api/cameras/cam0/ptz"))["zoom"] == 1

    run(main())


STALL_CLIENT = """
import asyncio, sys
from vergence.client.webrtc import WebRtcClient

async def main():
    client = WebRtcClient(sys.argv[1], "cam0", data_channel=False)
    await client.connect()
    await client.frame()
    print(client.location, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_max_peers_answers_503(capped_server: ServerProcess) -> None:
    async def main() -> None:
        pc, offer = await make_offer()
        await pc.close()
        async with httpx.AsyncClient(base_url=capped_server.url, timeout=10) as http:
            headers = {"Content-Type": "application/sdp"}
            peers = [await http.post("/api/webrtc/cam0", content=offer, headers=headers) for _ in range(2)]
            assert [p.status_code for p in peers] == [201, 201]
            full = await http.post("/api/webrtc/cam0", content=offer, headers=headers)
            assert full.status_code == 503 and "max_peers" in full.json()["detail"]
            assert (await http.delete(peers[0].headers["location"])).status_code == 200
            again = await http.post("/api/webrtc/cam0", content=offer, headers=headers)
            assert again.status_code == 201
            for response in (peers[1], again):
                assert (await http.delete(response.headers["location"])).status_code == 200
        assert (await get_json(capped_server, "/api/webrtc"))["peers"] == 0

    run(main())


def test_the_watchdog_drops_peers_that_never_connect_or_vanish(strict_server: ServerProcess, tmp_path: Path) -> None:
    async def closed(reason: str) -> int:
        return (await get_json(strict_server, "/api/webrtc"))["closed"].get(reason, 0)

    async def never_connects() -> None:
        pc, offer = await make_offer()  # kept open, but it never learns the answer, so ICE never completes
        try:
            before = await closed("never connected")
            posted = time.monotonic()  # before the server makes the peer, whose timeout starts there
            async with httpx.AsyncClient(base_url=strict_server.url, timeout=10) as http:
                response = await http.post(
                    "/api/webrtc/cam0", content=offer, headers={"Content-Type": "application/sdp"}
                )
            assert response.status_code == 201
            listing = await get_json(strict_server, "/api/webrtc")
            assert [p["state"] for p in listing["list"]] in (["new"], ["connecting"])

            async def dropped() -> bool:
                return await closed("never connected") == before + 1

            await poll(dropped, CONNECT_TIMEOUT_S + 5, "the unconnected peer dropped")
            assert time.monotonic() - posted >= CONNECT_TIMEOUT_S
            assert (await get_json(strict_server, "/api/webrtc"))["peers"] == 0
        finally:
            await pc.close()

    async def vanishes() -> None:
        before = await closed("stalled")
        client = subprocess.Popen(
            [sys.executable, "-c", STALL_CLIENT, strict_server.url],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "client.log").open("wb"),
        )
        try:
            assert client.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(client.stdout.readline), 20)
            assert line.startswith(b"/api/webrtc/cam0/"), (tmp_path / "client.log").read_text()
            listing = await get_json(strict_server, "/api/webrtc")
            assert [p["state"] for p in listing["list"]] == ["connected"]
            # Gone without a DTLS close, an RTCP BYE or a DELETE: as a browser tab killed, or a cable pulled.
            killed = time.monotonic()  # its last report came before this, at most REPORT_GAP_MAX_S before
            client.send_signal(signal.SIGKILL)
            client.wait()

            async def dropped() -> bool:
                return await closed("stalled") == before + 1

            await poll(dropped, STALL_TIMEOUT_S + 5, "the vanished peer dropped as stalled", interval_s=0.1)
            assert time.monotonic() - killed >= STALL_TIMEOUT_S - REPORT_GAP_MAX_S
            assert (await get_json(strict_server, "/api/webrtc"))["peers"] == 0
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()

    async def main() -> None:
        await never_connects()
        await vanishes()

    run(main())


def test_no_outside_stun_server_is_asked(
    vergence_server: Callable[..., ServerProcess], ice_address: str, tmp_path: Path
) -> None:
    """A configured STUN server hears a Binding request while the server answers; by default there is none to ask."""

    class StunServer(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.requests: list[stun.Message] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            request = stun.parse_message(data)
            self.requests.append(request)
            response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            self.transport.sendto(bytes(response), addr)  # type: ignore[attr-defined]

    async def answer_with(server: ServerProcess) -> str:
        pc, offer = await make_offer()
        await pc.close()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.post("/api/webrtc/cam0", content=offer, headers={"Content-Type": "application/sdp"})
            assert response.status_code == 201
            assert (await http.delete(response.headers["location"])).status_code == 200
        return response.text

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, stun_server = await loop.create_datagram_endpoint(StunServer, local_addr=(ice_address, 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            config = tmp_path / "stun.toml"
            config.write_text(f'[webrtc]\nice_servers = [{{urls = ["stun:{ice_address}:{port}"]}}]\n')
            configured = vergence_server("--size", "320x180", "--config", str(config))
            answer = await answer_with(configured)
            assert stun_server.requests, "the configured STUN server was never asked"
            assert all(r.message_method == stun.Method.BINDING for r in stun_server.requests)
            assert "typ srflx" in answer
            configured.stop()
            default = vergence_server("--size", "320x180")
            answer = await answer_with(default)
            assert set(re.findall(r"typ (\w+)", answer)) == {"host"}
        finally:
            transport.close()

    run(main())
    # What the default server's ICE agent is built with (the public STUN server aiortc falls back to is not in the
    # private network, so no packet could show it): no STUN, no TURN; while aiortc's own default has Google's.
    from aiortc.rtcicetransport import RTCIceGatherer

    from vergence.config import WebRtcSettings
    from vergence.outputs.webrtc import WebRtcPeers

    ours = RTCIceGatherer(WebRtcPeers(WebRtcSettings())._configuration().iceServers)._connection
    assert (ours.stun_server, ours.turn_server) == (None, None)
    aiortc_default = RTCIceGatherer(RTCConfiguration().iceServers)._connection
    assert aiortc_default.stun_server == ("stun.l.google.com", 19302)


def test_a_refused_offer_is_a_client_error(server: ServerProcess) -> None:
    async def main() -> None:
        with pytest.raises(WebRtcClientError, match="404"):
            async with WebRtcClient(server.url, "no-such-stream"):
                pass

    run(main())


def with_playout_delay(sdp: str, extension_id: int) -> str:
    """The offer with Chrome's playout-delay extension added to its video m-line."""
    lines = sdp.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("m=video")) + 1
    lines.insert(at, f"a=extmap:{extension_id} {PLAYOUT_DELAY}")
    return "\r\n".join(lines) + "\r\n"


def test_a_browser_offering_playout_delay_is_told_zero_and_still_plays(server: ServerProcess) -> None:
    async def scenario() -> None:
        plain_pc, plain = await make_offer(data=False)
        async with httpx.AsyncClient(timeout=10) as http:
            answered = await http.post(server.url + "/api/webrtc/cam0", content=plain)
            assert answered.status_code == 201 and PLAYOUT_DELAY not in answered.text  # not offered: not answered
            await http.delete(server.url + answered.headers["location"])
            await plain_pc.close()

            pc, offer = await make_offer(data=False)
            frames: asyncio.Queue[Any] = asyncio.Queue()
            pc.on("track", lambda track: frames.put_nowait(track))
            response = await http.post(server.url + "/api/webrtc/cam0", content=with_playout_delay(offer, 14))
            assert response.status_code == 201
            assert f"a=extmap:14 {PLAYOUT_DELAY}" in response.text.splitlines()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
            track = await asyncio.wait_for(frames.get(), 10)
            frame = await asyncio.wait_for(track.recv(), 10)  # packets carrying the extension still decode
            assert (frame.width, frame.height) == SIZE
            await http.delete(server.url + response.headers["location"])
            await pc.close()

    run(scenario())
