"""The media library on real files: MP4 segments muxed by SegmentWriter from H.264 made in memory, and JPEGs."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest
import simplejpeg

from tests.media import encode_h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.recording import library
from vergence.recording.library import MediaLibrary, MediaNameError, media_path, parse_name
from vergence.recording.segment import SegmentWriter

FPS = 30
FRAME_PTS = round(1 / FPS / float(TIME_BASE))  # 3000 ticks of 90 kHz
GOP = 10


@pytest.fixture(scope="module")
def units() -> list[bytes]:
    return encode_h264(60, width=160, height=120, gop=GOP)


def write_mp4(path: Path, units: list[bytes], frames: int) -> Path:
    """Mux `frames` access units at 30 fps as a recording does."""
    packets = [
        EncodedPacket(unit, i % GOP == 0, i, i * FRAME_PTS, 1_000 + i, config=i % GOP == 0)
        for i, unit in enumerate(units[:frames])
    ]
    writer = SegmentWriter(path, 160, 120, packets[0], FRAME_PTS)
    for packet in packets:
        writer.write(packet)
    writer.close()
    return path


def write_jpeg(path: Path, width: int = 64, height: int = 48) -> Path:
    image = np.zeros((height, width, 3), np.uint8)
    path.write_bytes(simplejpeg.encode_jpeg(image, quality=80))
    return path


def by_name(files: list[dict]) -> dict[str, dict]:
    return {file["name"]: file for file in files}


def test_lists_videos_clips_and_photos_newest_first_with_what_they_hold(tmp_path, units):
    write_mp4(tmp_path / "cam0-20240102-030405-678.mp4", units, 45)
    write_mp4(tmp_path / "flight-1-cam1-20240102-030500-000-clip.mp4", units, 20)
    write_jpeg(tmp_path / "cam0-20240102-030600-001.jpg", 64, 48)
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    write_jpeg(tmp_path / "sub" / "cam0-20240102-030700-000.jpg")  # not recursive

    files = MediaLibrary().files(tmp_path, streams=["cam0", "cam1"])

    assert [file["name"] for file in files] == [
        "cam0-20240102-030600-001.jpg",
        "flight-1-cam1-20240102-030500-000-clip.mp4",
        "cam0-20240102-030405-678.mp4",
    ]
    photo, clip, video = files
    assert video["kind"] == "video" and video["stream"] == "cam0"
    assert video["frames"] == 45 and video["duration_s"] == pytest.approx(45 / FPS, abs=1 / FPS)
    assert (video["width"], video["height"]) == (160, 120)
    assert video["size_bytes"] == (tmp_path / video["name"]).stat().st_size
    assert video["recording"] is False and video["error"] is None
    started = datetime.fromisoformat(video["started"])
    assert started.utcoffset() is not None  # local time with its offset
    assert started.replace(tzinfo=None) == datetime(2024, 1, 2, 3, 4, 5, 678000)
    assert clip["kind"] == "clip" and clip["stream"] == "cam1" and clip["frames"] == 20
    assert clip["duration_s"] == pytest.approx(20 / FPS, abs=1 / FPS)
    assert photo["kind"] == "photo" and photo["stream"] == "cam0"
    assert (photo["width"], photo["height"]) == (64, 48) and photo["duration_s"] is None


def test_a_file_being_written_is_marked_recording(tmp_path, units):
    path = write_mp4(tmp_path / "cam0-20240102-030405-678.mp4", units, 10)
    (listed,) = MediaLibrary().files(tmp_path, open_paths={path})
    assert listed["recording"] is True


def test_a_file_cut_in_the_middle_lists_what_demuxes_and_an_error(tmp_path, units):
    whole = write_mp4(tmp_path / "whole.mp4", units, 60)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "tail.mp4").write_bytes(data[:-100])  # the last fragment lost its end

    files = by_name(MediaLibrary().files(tmp_path))

    assert files["whole.mp4"]["error"] is None and files["whole.mp4"]["frames"] == 60
    cut = files["cut.mp4"]
    assert cut["error"] and "truncated" in cut["error"]
    assert 0 < cut["frames"] < 60
    assert cut["duration_s"] == pytest.approx(cut["frames"] / FPS, abs=1 / FPS)
    assert files["tail.mp4"]["error"] and "100 bytes" in files["tail.mp4"]["error"]


def test_a_file_being_written_is_not_called_truncated(tmp_path, units):
    data = write_mp4(tmp_path / "whole.mp4", units, 60).read_bytes()
    growing = tmp_path / "cam0-20240102-030405-678.mp4"
    growing.write_bytes(data[: len(data) // 2])
    files = by_name(MediaLibrary().files(tmp_path, open_paths={growing}))
    assert files[growing.name]["recording"] is True and files[growing.name]["error"] is None
    assert files[growing.name]["frames"] > 0


def test_empty_and_garbage_files_list_with_an_error_not_an_exception(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(3000))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "empty.jpg").write_bytes(b"")

    files = by_name(MediaLibrary().files(tmp_path))

    assert set(files) == {"empty.mp4", "garbage.mp4", "broken.jpg", "empty.jpg"}
    for file in files.values():
        assert file["error"], file
    assert files["empty.mp4"]["size_bytes"] == 0 and files["empty.mp4"]["duration_s"] is None
    assert files["garbage.mp4"]["duration_s"] is None


def test_a_name_without_a_stamp_starts_at_its_modification_time(tmp_path):
    path = write_jpeg(tmp_path / "north.jpg")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    (listed,) = MediaLibrary().files(tmp_path)
    assert listed["stream"] is None and listed["kind"] == "photo"
    assert datetime.fromisoformat(listed["started"]).timestamp() == 1_700_000_000


@pytest.mark.parametrize(
    ("name", "streams", "kind", "stream", "started"),
    [
        ("cam0-20240102-030405-678.mp4", (), "video", "cam0", datetime(2024, 1, 2, 3, 4, 5, 678000)),
        ("cam0-20240102-030405-678-2.mp4", (), "video", "cam0", datetime(2024, 1, 2, 3, 4, 5, 678000)),
        ("cam0-20240102-030405-678-clip-3.mp4", (), "clip", "cam0", datetime(2024, 1, 2, 3, 4, 5, 678000)),
        ("flight-1-cam0-20240102-030405-678.mp4", (), "video", "cam0", datetime(2024, 1, 2, 3, 4, 5, 678000)),
        (
            "trip-left-eye-20240102-030405-678.jpg",
            ("left-eye", "eye"),
            "photo",
            "left-eye",
            datetime(2024, 1, 2, 3, 4, 5, 678000),
        ),
        ("cam0-20241302-030405-678.mp4", (), "video", "cam0", None),  # month 13: no date
        ("north.jpg", (), "photo", None, None),
        ("manual-clip.mp4", (), "clip", None, None),
    ],
)
def test_parse_name(name, streams, kind, stream, started):
    info = parse_name(name, streams)
    assert (info.kind, info.stream, info.started) == (kind, stream, started)


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "..",
        "a/b.mp4",
        "/etc/passwd",
        "x.txt",
        ".hidden.mp4",
        "a\x00.mp4",
        "a.mp4/",
        "a" * 300 + ".mp4",
        "",
    ],
)
def test_media_path_refuses_what_is_not_a_plain_media_name(tmp_path, name):
    with pytest.raises(MediaNameError):
        media_path(tmp_path, name)


def test_media_path_refuses_a_link_out_of_the_directory(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    outside = write_jpeg(tmp_path / "outside.jpg")
    (media / "link.jpg").symlink_to(outside)
    with pytest.raises(MediaNameError):
        media_path(media, "link.jpg")
    assert media_path(media, "cam0.jpg") == media.resolve() / "cam0.jpg"
    assert MediaLibrary().files(media) == []  # links are not listed either


def test_videos_are_read_once_until_they_change(tmp_path, units, monkeypatch):
    for i in range(5):
        write_mp4(tmp_path / f"cam0-20240102-0304{i:02d}-000.mp4", units, 10)
    opens: list[str] = []
    real_open = av.open

    def counting_open(*args, **kwargs):
        if (args[1:2] or [kwargs.get("mode", "r")])[0] == "r":  # reads only, not SegmentWriter's
            opens.append(str(args[0]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(library.av, "open", counting_open)
    media = MediaLibrary()

    first = media.files(tmp_path)
    assert len(opens) == 5
    assert media.files(tmp_path) == first
    assert len(opens) == 5  # all from the cache

    changed = tmp_path / "cam0-20240102-030400-000.mp4"
    write_mp4(changed, units, 20)  # rewritten: new size and mtime
    assert by_name(media.files(tmp_path))[changed.name]["frames"] == 20
    assert opens[5:] == [str(changed)]

    changed.unlink()
    media.files(tmp_path)
    assert str(changed) not in media._cache  # a deleted file's entry is dropped


def test_describe_gives_the_directory_and_its_free_space(tmp_path):
    described = MediaLibrary().describe(tmp_path)
    assert described["dir"] == str(tmp_path) and described["free_bytes"] > 0 and described["files"] == []
    missing = MediaLibrary().describe(tmp_path / "not-yet")
    assert missing["files"] == [] and missing["free_bytes"] is None
