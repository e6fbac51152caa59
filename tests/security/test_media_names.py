"""Finding 10 (low): operators could create media files the recordings API can neither list nor delete (`photo .hidden`,
`record ..`): the commands let a name start with a dot, the API did not. One rule (vergence.media.names) now decides
for every door: what a command may call a recording, clip or photo is a name the API lists, serves and deletes, and no
name leaves the media directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import poll

BAD_NAMES = [".hidden", "..", ".", "-rf", "../escaped", "a/b", "a\\b", "x" * 81, ""]


def post(server: Any, body: dict[str, Any] | str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.post(
            f"{server.url}/api/commands", content=body, headers={"Content-Type": "text/plain"}, timeout=10
        )
    return httpx.post(f"{server.url}/api/commands", json=body, timeout=10)


def media_files_in_and_beside(directory: Path) -> set[str]:
    """Every entry of the media directory, hidden ones included, and the media files beside it (where `..` leads)."""
    beside = {f"../{path.name}" for path in directory.parent.iterdir() if path.suffix in (".jpg", ".mp4")}
    return set(os.listdir(directory)) | beside


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "media"


def test_a_name_the_api_could_not_list_is_refused_by_every_command_and_transport(vergence_server, media, tmp_path):
    fifo, replies = tmp_path / "commands.fifo", tmp_path / "replies.jsonl"
    server = vergence_server(
        "--size",
        "320x240",
        env={
            "VERGENCE_MEDIA__DIR": str(media),
            "VERGENCE_FIFO__ENABLED": "true",
            "VERGENCE_FIFO__PATH": str(fifo),
            "VERGENCE_FIFO__REPLY_PATH": str(replies),
        },
    )
    media.mkdir(exist_ok=True)
    before = media_files_in_and_beside(media)

    for name in BAD_NAMES:
        for kind in ("photo", "record", "clip"):
            response = post(server, {"type": kind, "name": name})
            assert response.status_code == 422, (kind, name, response.text)
            reply = response.json()
            assert reply["ok"] is False and reply["code"] == "invalid", (kind, name, reply)
            assert reply["error"].startswith("name: "), reply  # says which field, and why
            if name.startswith("."):
                assert "may not start with '.'" in reply["error"], reply
    # The text form (REST text/plain, vergence ctl, the FIFO, the SQLite inbox) parses into the same command.
    for line in ("photo .hidden", "record ..", "record .hidden", "take_photo ..."):
        response = post(server, line)
        assert response.status_code == 422, (line, response.text)
        assert response.json()["code"] == "invalid" and "is not a media name" in response.json()["error"], response.text

    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"photo .hidden\nrecord ..\n")
    os.close(fd)
    poll(lambda: replies.exists() and len(replies.read_text().splitlines()) >= 2, "two replies through the FIFO")
    lines = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [(line["ok"], line["code"]) for line in lines] == [(False, "invalid"), (False, "invalid")], lines

    # Nothing was created anywhere: not hidden in the media directory, not beside it.
    assert media_files_in_and_beside(media) == before
    assert httpx.get(f"{server.url}/api/stats", timeout=10).json()["recordings"].get("cam0", {}).get("frames", 0) == 0


def test_whatever_a_command_creates_the_api_lists_and_deletes(vergence_server, media):
    server = vergence_server("--size", "320x240", "--fps", "30", env={"VERGENCE_MEDIA__DIR": str(media)})
    good = ["north", "_under", "v1.2-final", "A" * 80]
    created = []
    for name in good + BAD_NAMES:
        reply = post(server, {"type": "photo", "name": name}).json()
        if reply["ok"]:
            created.append(Path(reply["result"]["path"]).name)
        else:
            assert name not in good and reply["code"] == "invalid", (name, reply)
    for name in ("flight_3.a", ".hidden"):
        reply = post(server, {"type": "record", "name": name}).json()
        if not reply["ok"]:
            assert reply["code"] == "invalid", reply
            continue
        poll(lambda: httpx.get(f"{server.url}/api/stats").json()["recordings"]["cam0"]["frames"] >= 5, "5 frames")
        stopped = post(server, "record stop").json()
        assert stopped["ok"], stopped
        created += [Path(segment["path"]).name for segment in stopped["result"]["segments"]]
    assert {"north.jpg", "_under.jpg", "v1.2-final.jpg", f"{'A' * 80}.jpg"} <= set(created)
    assert any(name.startswith("flight_3.a-cam0-") for name in created)

    listed = {file["name"] for file in httpx.get(f"{server.url}/api/recordings", timeout=10).json()["files"]}
    assert set(created) <= listed, f"created but not listed: {set(created) - listed}"
    assert listed == set(os.listdir(media)), "the directory holds nothing the API does not list"
    for name in listed:
        assert httpx.get(f"{server.url}/api/recordings/{name}", timeout=10).status_code == 200, name
        response = httpx.delete(f"{server.url}/api/recordings/{name}", timeout=10)
        assert response.status_code == 204, (name, response.text)
    assert os.listdir(media) == []
