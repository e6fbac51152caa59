"""The recordings API against a real server: list, download, delete what the record and photo commands wrote, and
refuse every name that is not a plain file of the media directory."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import poll

FPS = 30


def command(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(f"{server.url}/api/commands", json=body, timeout=10).json()
    assert reply["ok"], reply
    return reply["result"]


def listing(server: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/recordings", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def recorded_frames(server: Any) -> int:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()["recordings"].get("cam0", {}).get("frames", 0)


def raw_request(server: Any, method: str, target: str) -> tuple[int, bytes]:
    """Send the request line exactly as written (no client normalises its `..` or `%2F`); return status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def ffprobe_frames(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr, done.stderr
    return json.loads(done.stdout)["streams"][0]


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def server(vergence_server: Any, media: Path) -> Any:
    return vergence_server("--size", "320x240", "--fps", str(FPS), env={"VERGENCE_MEDIA__DIR": str(media)})


def test_a_recording_is_listed_downloaded_and_deleted(server, media, tmp_path):
    assert listing(server)["files"] == []
    command(server, {"type": "record", "action": "start"})
    poll(lambda: recorded_frames(server) >= 2 * FPS, "two seconds recorded")
    stopped = command(server, {"type": "record", "action": "stop"})
    [segment] = stopped["segments"]
    path = Path(segment["path"])

    listed = listing(server)
    assert Path(listed["dir"]) == media and listed["free_bytes"] > 0
    [file] = listed["files"]
    assert file["name"] == path.name and file["kind"] == "video" and file["stream"] == "cam0"
    assert file["size_bytes"] == path.stat().st_size
    assert file["frames"] == stopped["frames"]
    # The span of the frames' own times plus one frame: frames / FPS only while the encoder skips none (it skips a
    # frame a newer one overtook on a busy machine), and the recorder's duration_s stops at the last frame's start.
    assert file["duration_s"] == pytest.approx(segment["duration_s"] + 1 / FPS, abs=2 / FPS)
    assert (file["width"], file["height"]) == (320, 240)
    assert file["recording"] is False and file["error"] is None
    assert file["url"] == f"/api/recordings/{path.name}"

    download = httpx.get(f"{server.url}{file['url']}", timeout=10)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert (
        download.headers["content-disposition"].startswith("attachment;")
        and path.name in download.headers["content-disposition"]
    )
    assert download.content == path.read_bytes()
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(download.content)
    probed = ffprobe_frames(copy)
    assert probed["codec_name"] == "h264" and (probed["width"], probed["height"]) == (320, 240)
    assert int(probed["nb_read_frames"]) == stopped["frames"]

    ranged = httpx.get(f"{server.url}{file['url']}", headers={"Range": "bytes=0-7"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == path.read_bytes()[:8]

    deleted = httpx.delete(f"{server.url}{file['url']}", timeout=10)
    assert deleted.status_code == 204, deleted.text
    assert not path.exists()
    assert listing(server)["files"] == []
    assert httpx.get(f"{server.url}{file['url']}", timeout=10).status_code == 404
    assert httpx.delete(f"{server.url}{file['url']}", timeout=10).status_code == 404


def test_a_file_being_recorded_downloads_but_does_not_delete(server):
    command(server, {"type": "record", "action": "start"})
    writing = poll(
        lambda: [file for file in listing(server)["files"] if file["recording"] and file["frames"]],
        "a file being recorded",
    )
    [file] = writing
    assert file["error"] is None  # its growing last fragment is not called truncated

    refused = httpx.delete(f"{server.url}{file['url']}", timeout=10)
    assert refused.status_code == 409 and "being recorded" in refused.json()["detail"]

    partial = httpx.get(f"{server.url}{file['url']}", timeout=10)  # as far as it is written now
    assert partial.status_code == 200 and partial.content[4:8] == b"ftyp"
    assert len(partial.content) == int(partial.headers["content-length"]) > 0

    command(server, {"type": "record", "action": "stop"})
    after = {listed["name"]: listed for listed in listing(server)["files"]}[file["name"]]
    assert after["recording"] is False
    assert httpx.delete(f"{server.url}{file['url']}", timeout=10).status_code == 204


def test_photos_are_listed_as_photos(server, media):
    photo = command(server, {"type": "photo"})
    named = command(server, {"type": "photo", "name": "north"})
    files = {file["name"]: file for file in listing(server)["files"]}
    default = files[Path(photo["path"]).name]
    assert default["kind"] == "photo" and default["stream"] == "cam0" and default["duration_s"] is None
    assert default["width"] and default["height"] and default["size_bytes"] == Path(photo["path"]).stat().st_size
    assert files["north.jpg"]["kind"] == "photo" and files["north.jpg"]["stream"] is None
    download = httpx.get(f"{server.url}/api/recordings/north.jpg", timeout=10)
    assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
    assert download.content == Path(named["path"]).read_bytes()


def test_names_outside_the_media_directory_are_refused(server, media, tmp_path):
    media.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not for download")
    (media / "inside.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (media / "link.mp4").symlink_to(secret)
    (media / "notes.txt").write_text("not media")
    targets = [
        "/api/recordings/..%2Fsecret.mp4",
        "/api/recordings/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/recordings/%2e%2e",
        "/api/recordings/%2e%2e%2fsecret.mp4",
        "/api/recordings/..",
        "/api/recordings/../secret.mp4",
        "/api/recordings/a/b.mp4",
        "/api/recordings/%2Fetc%2Fpasswd",
        "/api/recordings/x.txt",
        "/api/recordings/notes.txt",
        "/api/recordings/link.mp4",
        "/api/recordings/inside.jpg%00.mp4",
        "/api/recordings/..%5Csecret.mp4",
        "/api/recordings/.hidden.mp4",
        f"/api/recordings/{'a' * 5000}.mp4",
    ]
    for method in ("GET", "DELETE"):
        for target in targets:
            status, body = raw_request(server, method, target)
            assert status in (400, 404), (method, target, status, body[:200])
            assert b"not for download" not in body and b"root:" not in body
    assert secret.read_bytes() == b"not for download"
    assert (media / "link.mp4").is_symlink() and (media / "inside.jpg").exists() and (media / "notes.txt").exists()
    assert raw_request(server, "GET", "/api/recordings/x.txt")[0] == 400
    assert raw_request(server, "GET", "/api/recordings/inside.jpg")[0] == 200
    assert [file["name"] for file in listing(server)["files"]] == ["inside.jpg"]
