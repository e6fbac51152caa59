"""Restream against real servers: the push to nginx-rtmp plays back at our size, survives nginx being killed and resumes
when it is back; a silent server neither freezes vergence nor holds up a stop; RTSP reaches ffmpeg listening as a server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, start_server
from tests.nginx_rtmp import decode_frames, probe, running_nginx_rtmp
from vergence.outputs.base import Backoff
from vergence.outputs.restream import exit_reason, muxer_for

WIDTH, HEIGHT = 320, 240
TIMEOUT_S = 30.0  # generous: the machine is shared with other test runs
SECRET = "s3cret"


def serve(directory: Path, outputs: str) -> ServerProcess:
    config = directory / "vergence.toml"
    # A keyframe a second: a player joining nginx (wait_key) starts within a second, not a default GOP of four.
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "{WIDTH}x{HEIGHT}"\nfps = 15\n[h264]\ngop_frames = 15\n{outputs}'
    )
    return start_server(("--config", str(config)), directory / "server.log")


def restream(output_id: str, url: str) -> str:
    return f'[[restream]]\nid = "{output_id}"\nurl = "{url}"\nretry_initial_s = 0.5\nretry_max_s = 2\n'


def describe(server: ServerProcess, output_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/outputs/{output_id}", timeout=5)
    response.raise_for_status()
    return response.json()


def wait_for(
    server: ServerProcess, output_id: str, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the output's description until `condition` holds; fail with the last one and the server log."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        state = describe(server, output_id)
        if condition(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{output_id} not {what} within {TIMEOUT_S} s: {state}\n{server.log()[-3000:]}")
        time.sleep(0.1)  # poll interval of a deadline loop, not a wait for an event


def push_children(server: ServerProcess) -> list[int]:
    """Pids of the server's push processes (children of any of its threads)."""
    pids = []
    for task in Path(f"/proc/{server.process.pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(pid) for pid in (task / "children").read_text().split()]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"vergence.outputs.restream" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def assert_plays_back(url: str) -> None:
    video = [stream for stream in probe(url) if stream.get("codec_type") == "video"]
    assert video, f"ffprobe found no video at {url}"
    assert (video[0]["codec_name"], video[0]["width"], video[0]["height"]) == ("h264", WIDTH, HEIGHT)
    assert decode_frames(url, 10, WIDTH, HEIGHT) >= 10


def test_push_plays_back_and_resumes_after_the_server_is_killed(tmp_path: Path) -> None:
    prefix = tmp_path / "nginx"
    with running_nginx_rtmp(prefix) as nginx:
        play_url = nginx.url("cam0")
        push_url = play_url.replace("rtmp://", f"rtmp://vergence:{SECRET}@")
        server = serve(tmp_path, restream("push0", push_url))
        try:
            first = wait_for(server, "push0", lambda s: s["state"] == "live", "live")
            # Neither the password nor the stream key (the last path segment) is shown.
            assert first["url"] == play_url.replace("rtmp://", "rtmp://***@").replace("/live/cam0", "/live/***")
            assert (first["format"], first["connects"], first["failures"]) == ("flv", 1, 0)
            assert_plays_back(play_url)

            nginx.kill()
            lost = wait_for(server, "push0", lambda s: s["failures"] >= 1, "failed")
            assert lost["state"] in ("waiting", "connecting") and lost["last_error"]
        except BaseException:
            server.stop()
            raise
    try:
        with running_nginx_rtmp(prefix, port=nginx.port):
            resumed = wait_for(server, "push0", lambda s: s["state"] == "live" and s["connects"] >= 2, "live again")
            assert resumed["failures"] >= 1
            assert_plays_back(play_url)
    finally:
        server.stop()
    log = server.log()
    final = [line for line in log.splitlines() if "restream push0 to" in line and " failed: " in line]
    assert final, "every failure is logged"
    assert SECRET not in log, "credentials must never reach the log"
    assert len(final) == int(final[-1].rsplit("failure ", 1)[1].rstrip(")")), "one log line per failure"


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that completes connections (the kernel does) but never says a word: a hung media server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_a_silent_server_freezes_nothing_and_stop_ends_the_connect_at_once(tmp_path: Path) -> None:
    with silent_server() as port:
        server = serve(tmp_path, restream("hung", f"rtmp://127.0.0.1:{port}/live/cam0"))
        try:
            # The keyframe went to the push process, which now waits for an RTMP handshake that never comes.
            wait_for(server, "hung", lambda s: s["state"] == "connecting" and s["frames"] >= 1, "connecting")
            slowest = 0.0
            for _ in range(20):
                started = time.monotonic()
                assert httpx.get(f"{server.url}/api/streams", timeout=5).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0, f"the API took {slowest:.3f} s while a push hung"

            failed = wait_for(server, "hung", lambda s: s["failures"] >= 1, "timed out")
            assert failed["last_error"] == "the server did not answer within 10 s"
            assert failed["connects"] == 0
            # The next attempt hangs too; stopping it must not wait for any timeout.
            wait_for(server, "hung", lambda s: s["state"] == "connecting" and s["frames"] > failed["frames"], "again")
            assert push_children(server)
            started = time.monotonic()
            stopped = httpx.put(f"{server.url}/api/outputs/hung", json={"enabled": False}, timeout=10).json()
            elapsed = time.monotonic() - started
            assert elapsed < 2.0, f"stop took {elapsed:.2f} s"
            assert (stopped["state"], stopped["enabled"]) == ("stopped", False)
            assert stopped["failures"] == failed["failures"], "a stop is not a failure"
            assert push_children(server) == []
        finally:
            server.stop()


def test_rtsp_push_reaches_ffmpeg_listening_as_the_server(tmp_path: Path) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/live/cam0"
    server = serve(tmp_path, restream("rtsp0", url))
    try:
        # The push retries (connection refused) until ffmpeg listens; then ffmpeg decodes what it receives.
        command = ["ffmpeg", "-v", "error", "-rtsp_flags", "listen", "-rtsp_transport", "tcp", "-i", url]
        command += ["-frames:v", "10", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
        result = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S)
        assert len(result.stdout) // (WIDTH * HEIGHT) >= 10, result.stderr.decode(errors="replace")
        # The server counts the connect when it reads the push's "live", after its next send: maybe after ffmpeg is done.
        state = wait_for(server, "rtsp0", lambda s: s["connects"] >= 1, "counted as connected")
        assert state["format"] == "rtsp"
    finally:
        server.stop()


# --- the pure parts, here because this file owns the restream's tests ------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_a_stable_minute():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.failed(0.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failed(59.0) == 4.0, "a connection that fell within the minute does not reset the delay"
    assert backoff.failed(60.0) == 0.5
    assert backoff.failed(0.0) == 1.0


def test_the_muxer_follows_the_url_scheme():
    assert muxer_for("rtmp://host/live/key") == ("flv", {"flvflags": "no_duration_filesize"})
    assert muxer_for("RTMPS://host/live/key")[0] == "flv"
    assert muxer_for("rtsp://host:8554/cam") == ("rtsp", {"rtsp_transport": "tcp", "timeout": "10000000"})
    with pytest.raises(ValueError, match=r"cannot push to srt://\*\*\*@host"):
        muxer_for("srt://user:pw@host")


def test_a_silent_push_process_is_explained():
    assert exit_reason(-signal.SIGALRM, live=False) == "the server did not answer within 10 s"
    assert exit_reason(-signal.SIGALRM, live=True) == "the server stopped taking data for 10 s"
    assert exit_reason(-signal.SIGKILL, live=True) == "the push process was ended by signal 9"
    assert exit_reason(3, live=False) == "the push process exited with status 3"
