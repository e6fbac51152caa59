"""`[recording] format = "mcap"`: read back with the `mcap` package's reader (not vergence's code), the file has the
video and every side channel, and its video decodes frame for frame as a live viewer's did; a server killed mid-write
leaves a file a linear reader reads to its last complete chunk, and the library lists it."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import numpy as np
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, make_reader

from tests.conftest import ServerProcess, start_server
from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from tests.polling import poll
from tests.support.foxglove_client import CompressedPicture, descriptor_fields

PLUGIN = "def process(frame, ctx):\n    ctx.publish({'seq': frame.seq})\n"


def serve(directory: Path) -> ServerProcess:
    (directory / "results.py").write_text(PLUGIN)
    config = directory / "vergence.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "640x360"\nfps = 30\n'
        f'[[cameras.plugins]]\npath = "{directory / "results.py"}"\n'
        f'[h264]\ngop_frames = 30\n[media]\ndir = "{directory / "media"}"\n[recording]\nformat = "mcap"\n'
    )
    return start_server(("--config", str(config)), directory / "server.log")


def command(server: ServerProcess, text: str) -> dict:
    answer = httpx.post(f"{server.url}/api/commands", content=text, headers={"Content-Type": "text/plain"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def recorded_frames(server: ServerProcess) -> int:
    return command(server, "status")["recordings"]["cam0"]["frames"]


def video_pictures(path: Path) -> dict[int, bytes]:
    """Capture time → access unit of the video channel, read by the complete file's index."""
    pictures = {}
    with path.open("rb") as file:
        for schema, _channel, message in make_reader(file).iter_messages(topics=["/cam0/video"]):
            picture = CompressedPicture.parse(message.data, descriptor_fields(schema.data, schema.name))
            assert picture.stamp_ns == message.log_time and picture.format == "h264"
            pictures[picture.stamp_ns] = picture.data
    return pictures


def decoded(units: list[tuple[int, bytes]]) -> dict[int, np.ndarray]:
    """Capture time → decoded picture (I420 planes), decoding `units` in order from their first keyframe."""
    decoder = H264Decoder()
    pictures = {}
    for capture_ns, unit in units:
        for frame in decoder.decode(unit):
            pictures[capture_ns] = frame.to_ndarray(format="yuv420p")
    return pictures


def test_a_recording_has_every_channel_and_decodes_as_the_live_viewer_saw_it(tmp_path):
    server = serve(tmp_path)
    try:
        with VideoClient.open(server.ws_url, "/ws/video/cam0") as viewer:
            live = []
            for _ in range(10):
                message = viewer.next()
                live.append((message.header.capture_ns, message.payload))
            command(server, "record cam0")
            command(server, "ptz cam0 0.5 0.5 2")
            command(server, "track cam0 50,50")
            command(server, "gps 48.1,11.5,520")
            poll(lambda: recorded_frames(server) >= 90, "90 frames recorded", 20)
            for _ in range(30):
                message = viewer.next()
                live.append((message.header.capture_ns, message.payload))
            command(server, "record cam0 stop")
            for _ in range(90):  # the viewer goes on past the recording's end
                message = viewer.next()
                live.append((message.header.capture_ns, message.payload))
    finally:
        server.stop()
    (path,) = (tmp_path / "media").glob("cam0-*.mcap")
    with path.open("rb") as file:
        summary = make_reader(file).get_summary()
    topics = {channel.topic for channel in summary.channels.values()}
    assert {"/cam0/video", "/ptz", "/tracking", "/plugin_results", "/gps"} <= topics, topics
    counts = {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}
    assert all(counts.get(topic, 0) > 0 for topic in ("/ptz", "/tracking", "/plugin_results", "/gps")), counts
    recorded = video_pictures(path)
    assert len(recorded) >= 90
    from_file = decoded(sorted(recorded.items()))
    from_viewer = decoded(live)
    common = sorted(set(from_file) & set(from_viewer))
    assert len(common) >= 60, f"{len(common)} frames in both"
    for capture_ns in common:
        assert np.array_equal(from_file[capture_ns], from_viewer[capture_ns]), capture_ns
    assert len(from_file) == len(recorded)  # every recorded frame decodes


def test_a_killed_server_leaves_a_file_read_to_its_last_complete_chunk_and_listed(tmp_path):
    server = serve(tmp_path)
    try:
        command(server, "record cam0")
        poll(lambda: recorded_frames(server) >= 100, "100 frames recorded", 20)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        server.stop()
    (path,) = (tmp_path / "media").glob("cam0-*.mcap")
    with path.open("rb") as file:
        try:
            list(make_reader(file).iter_messages())
        except McapError:
            pass  # no summary, no index: expected of a killed writer
    frames, ended = [], None
    with path.open("rb") as file:
        try:
            for schema, channel, message in NonSeekingReader(file).iter_messages(log_time_order=False):
                if channel.topic == "/cam0/video":
                    picture = CompressedPicture.parse(message.data, descriptor_fields(schema.data, schema.name))
                    frames.append(picture)
        except McapError as err:
            ended = err
    print(f"{len(frames)} frames read before {type(ended).__name__}")
    assert ended is not None, "a killed writer's file should end inside a chunk"
    assert len(frames) >= 30, "less than a second of the recording was readable"  # chunks end once a second
    assert all(frame.format == "h264" for frame in frames)
    assert len(decoded([(f.stamp_ns, f.data) for f in frames])) == len(frames)
    # The library lists it, with what is readable.
    server = serve(tmp_path)
    try:
        listing = httpx.get(f"{server.url}/api/recordings", timeout=10).json()
    finally:
        server.stop()
    (entry,) = [item for item in listing["files"] if item["name"] == path.name]
    assert entry["frames"] == len(frames) and entry["kind"] == "video", entry
    assert entry["error"] and "truncated" in entry["error"], entry
