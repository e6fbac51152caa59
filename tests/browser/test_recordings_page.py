"""The page's record, photo and recordings controls against a real server: what the buttons start shows in the panel
and in GET /api/recordings, files download and delete from the panel, and a recording that fails says so."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

BUTTONS_READY = (
    "window.vergence && window.vergence.stream === 'cam0' && !document.querySelector('#rec-button').disabled"
)
ROWS = "document.querySelectorAll('#recs-files li[data-name]')"


def listing(server: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/api/recordings", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["files"]


def wait_for_rest(server: Any, check, what: str, timeout_s: float = 10) -> list[dict[str, Any]]:
    """Poll GET /api/recordings until `check(files)` holds; fail with the last listing."""
    deadline = time.monotonic() + timeout_s
    while True:
        files = listing(server)
        if check(files):
            return files
        assert time.monotonic() < deadline, f"never {what}; last listing: {files}"
        time.sleep(0.05)  # poll interval of a deadline loop


def open_page(player_page: Any, server: Any) -> Any:
    player_page.open(server, "mjpeg")
    player_page.wait_for(BUTTONS_READY, 10000)
    page = player_page.page
    assert page.locator("#recordings").is_hidden()
    page.click("#recordings-toggle")
    assert page.locator("#recordings").is_visible()
    player_page.wait_for("document.querySelector('#recs-summary').textContent.includes('0 files')", 5000)
    return page


def test_record_photo_download_and_delete_from_the_page(player_page, vergence_server, tmp_path):
    media = tmp_path / "media"
    server = vergence_server("--size", "320x240", "--fps", "30", env={"VERGENCE_MEDIA__DIR": str(media)})
    page = open_page(player_page, server)
    assert page.locator("#recs-files li.empty").is_visible()

    # REC: the button turns red and counts, the panel lists the file being written.
    page.click("#rec-button")
    player_page.wait_for("document.querySelector('#rec-button').classList.contains('recording')", 5000)
    player_page.wait_for(f"[...{ROWS}].some((li) => li.querySelector('.badge.recording'))", 10000)
    player_page.wait_for("/● REC 0:0[2-9]/.test(document.querySelector('#rec-button').textContent)", 10000)
    [writing] = wait_for_rest(server, lambda files: len(files) == 1 and files[0]["recording"], "recording listed")
    assert page.locator(
        f'#recs-files li[data-name="{writing["name"]}"] button'
    ).is_disabled()  # no delete while written

    # Stop: the row loses its badge and shows a duration of about what was recorded.
    page.click("#rec-button")
    player_page.wait_for("!document.querySelector('#rec-button').classList.contains('recording')", 10000)
    assert page.locator("#rec-button").text_content() == "● REC"
    [video] = wait_for_rest(server, lambda files: len(files) == 1 and not files[0]["recording"], "recording stopped")
    assert video["kind"] == "video" and video["stream"] == "cam0" and video["error"] is None
    assert 1.5 < video["duration_s"] < 10
    row = f'#recs-files li[data-name="{video["name"]}"]'
    player_page.wait_for(f"document.querySelector('{row}') && !document.querySelector('{row} .badge.recording')", 5000)
    duration = page.locator(f"{row} .recs-duration").text_content()
    assert re.fullmatch(r"0:0\d", duration) and duration == f"0:{int(video['duration_s']):02d}", duration
    assert page.locator(f"{row} .recs-size").text_content().endswith(("KB", "MB"))
    link = page.locator(f"{row} a")
    assert link.get_attribute("href") == f"/api/recordings/{video['name']}" and link.get_attribute("download")

    # 📷: a toast links to the new photo, which the panel lists.
    page.click("#photo-button")
    player_page.wait_for("!document.querySelector('#toast').hidden", 5000)
    toast = page.locator("#toast")
    assert "saved" in toast.text_content()
    photo_name = toast.locator("a").text_content()
    assert photo_name.startswith("cam0-") and photo_name.endswith(".jpg")
    assert (media / photo_name).read_bytes()[:2] == b"\xff\xd8"
    fetched = page.evaluate(
        "async (href) => { const r = await fetch(href); return [r.status, r.headers.get('content-type')]; }",
        toast.locator("a").get_attribute("href"),
    )
    assert fetched == [200, "image/jpeg"]
    player_page.wait_for(
        f"!!document.querySelector('#recs-files li[data-name=\"{photo_name}\"][data-kind=photo]')", 5000
    )
    assert [file["kind"] for file in listing(server)] == ["photo", "video"]  # newest first, as the panel

    assert page.evaluate(f"[...{ROWS}].map((li) => li.dataset.name)") == [photo_name, video["name"]]

    # Delete the video from its row, accepting the confirmation.
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.click(f"{row} button")
    player_page.wait_for(f"!document.querySelector('{row}')", 5000)
    assert dialogs and video["name"] in dialogs[0]
    assert [file["name"] for file in listing(server)] == [photo_name]
    assert not (media / video["name"]).exists()


def test_a_recording_that_fails_shows_its_error(player_page, vergence_server, tmp_path):
    media = tmp_path / "media"
    env = {
        "VERGENCE_MEDIA__DIR": str(media),
        "VERGENCE_RECORDING__SEGMENT_MB": "0.001",  # a new file at every keyframe …
        "VERGENCE_H264__GOP_FRAMES": "10",  # … three times a second
    }
    server = vergence_server("--size", "320x240", "--fps", "30", env=env)
    page = open_page(player_page, server)
    page.click("#rec-button")
    player_page.wait_for("document.querySelector('#rec-button').classList.contains('recording')", 5000)

    # The media directory becomes a plain file: the next segment cannot be created, and the recording ends in error.
    media.rename(tmp_path / "media-moved")
    Path(media).write_text("in the way")

    player_page.wait_for("document.querySelector('#rec-button').classList.contains('error')", 10000)
    stats = httpx.get(f"{server.url}/api/stats", timeout=5).json()["recordings"]["cam0"]
    assert stats["state"] == "error" and stats["code"] == "io_error" and stats["error"], stats
    # The failure shows on the button, in the panel and in a toast, in the server's words.
    assert stats["error"] in page.locator("#rec-button").get_attribute("title")
    assert page.locator("#recs-error").is_visible() and stats["error"] in page.locator("#recs-error").text_content()
    assert page.locator("#toast.error").is_visible() and stats["error"] in page.locator("#toast").text_content()
    assert httpx.get(f"{server.url}/api/recordings", timeout=5).status_code == 200  # a file where the directory was
