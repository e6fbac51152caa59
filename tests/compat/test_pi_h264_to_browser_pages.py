"""pi-h264-to-browser's pages in Chromium, played by jMuxer against vergence: a user's copy of the project's `web/`
folder (here pages written from its description, tests/compat/pages, with jMuxer from npm beside them) served at
`/compat/` by `[compat] pi_h264_to_browser_pages`, unchanged but for the values its server filled in."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import poll

PAGES = Path(__file__).parent / "pages"
JMUXER = Path(__file__).parents[2] / "build/node/node_modules/jmuxer/dist/jmuxer.min.js"

# Read the time code the test camera paints into the first rows: the capture time of the picture the video shows.
CAPTURE_TIME_US = """async (id) => {
  const { TimecodeReader } = await import('/static/timecode.js');
  const video = document.getElementById(id);
  return new TimecodeReader().read(video, video.videoWidth, video.videoHeight);
}"""


def copy_of_pages(tmp_path: Path, name: str) -> Path:
    """The user's folder: the project's pages and jMuxer beside them."""
    if not JMUXER.is_file():
        pytest.fail(f"{JMUXER} is missing: scripts/install.sh --test fetches jMuxer from npm")
    folder = tmp_path / name
    shutil.copytree(PAGES / name, folder)
    shutil.copy(JMUXER, folder / "jmuxer.min.js")
    return folder


def config(tmp_path: Path, pages: Path) -> Path:
    path = tmp_path / "vergence.toml"
    path.write_text(
        f'[compat]\npi_h264_to_browser = true\npi_h264_to_browser_pages = "{pages}"\n'
        '[[cameras]]\nid = "front"\nsize = "320x240"\nfps = 30\n'
        '[[cameras]]\nid = "back"\nsize = "320x240"\nfps = 30\n'
    )
    return path


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def playing(page: Any, video_id: str) -> None:
    """Wait until jMuxer's <video> shows the camera's pictures, fresh ones: their time codes advance and are recent."""
    page.wait_for_function(
        f"() => {{ const v = document.getElementById('{video_id}');"
        " return v.readyState >= 2 && v.videoWidth === 320 && v.videoHeight === 240 && v.currentTime > 0.5; }",
        polling=50,
        timeout=20000,
    )
    first = poll(lambda: page.evaluate(CAPTURE_TIME_US, video_id), f"a time code in {video_id}")
    page.wait_for_function(f"() => performance.now() > {page.evaluate('performance.now()') + 300}", timeout=5000)
    later = poll(lambda: page.evaluate(CAPTURE_TIME_US, video_id), f"a later time code in {video_id}")
    now_us = page.evaluate("Date.now() * 1000")
    assert later > first, (first, later)
    assert 0 <= now_us - later < 2_000_000, f"{video_id} shows a picture {(now_us - later) / 1e6:.2f} s old"


def slide(page: Any, selector: str, value: float) -> None:
    """Move a slider as a hand would: set its value and fire its `input` event."""
    page.eval_on_selector(
        selector, "(input, value) => { input.value = value; input.dispatchEvent(new Event('input')); }", value
    )


def test_the_single_camera_page_plays_and_its_sliders_move_the_crop(vergence_server, tmp_path, tab):
    server = vergence_server("--config", str(config(tmp_path, copy_of_pages(tmp_path, "single"))))
    page_text = httpx.get(f"http://localhost:{server.port}/compat/").text
    # What its server filled in: the picture, the crop range (the test camera's virtual sensor is 640x480), the port.
    assert "width: 320, height: 240" in page_text and 'max="320"' in page_text and 'max="240"' in page_text
    assert f"ws://localhost:{server.port}/ws/" in page_text and "$" not in page_text.replace("$(", "")
    tab.goto(f"http://localhost:{server.port}/compat/")
    playing(tab, "stream")

    slide(tab, "#x", 40)
    slide(tab, "#y", 20)
    slide(tab, "#z", 0.5)  # ScalerCrop (40, 20, 320·0.5, 240·0.5)
    ptz = lambda: httpx.get(f"{server.url}/api/cameras/front/ptz").json()  # noqa: E731
    poll(lambda: ptz()["crop"] == [40, 20, 160, 120] or None, "the crop the page's sliders asked for")


def test_the_dual_camera_page_plays_both_and_its_ptz_socket_moves_them(vergence_server, tmp_path, browser, tab):
    server = vergence_server("--config", str(config(tmp_path, copy_of_pages(tmp_path, "dual"))))
    assert httpx.get(f"{server.url}/compat", follow_redirects=False).headers["location"] == "/compat/"
    tab.goto(f"http://localhost:{server.port}/compat/")
    playing(tab, "stream0")
    playing(tab, "stream1")
    tab.wait_for_function("() => ptzState !== null", timeout=10000)
    other = browser.new_context().new_page()  # a second page open on the same server
    other.goto(f"http://localhost:{server.port}/compat/")
    other.wait_for_function("() => ptzState !== null", timeout=10000)

    crops = lambda: [httpx.get(f"{server.url}/api/cameras/{c}/ptz").json()["crop"] for c in ("front", "back")]  # noqa: E731
    assert crops() == [[0, 0, 640, 480], [0, 0, 640, 480]]
    slide(tab, "input[data-cam='2'][data-axis='z']", 1.0)  # both: a crop the picture's size, around each centre
    poll(lambda: crops() == [[160, 120, 320, 240], [160, 120, 320, 240]] or None, "both crops zoomed")
    slide(tab, "input[data-cam='0'][data-axis='x']", 200)  # camera 0's centre 200: its crop's left edge 40
    poll(lambda: crops() == [[40, 120, 320, 240], [160, 120, 320, 240]] or None, "camera 0 moved alone")
    # The other page heard it: its slider stands where this page put it.
    other.wait_for_function("() => document.querySelector('input[data-cam=\"0\"][data-axis=\"x\"]').value === '200'")
    other.context.close()


def test_the_pages_folder_gives_nothing_outside_it(vergence_server, tmp_path):
    pages = copy_of_pages(tmp_path, "single")
    (tmp_path / "secret.txt").write_text("not for the web")
    (pages / ".hidden").write_text("not for the web either")
    (pages / "link.txt").symlink_to(tmp_path / "secret.txt")  # a link inside the folder to a file outside it
    server = vergence_server("--config", str(config(tmp_path, pages)))
    jmuxer = httpx.get(f"{server.url}/jmuxer.min.js")  # where the single page looks for it
    assert jmuxer.status_code == 200 and jmuxer.content == JMUXER.read_bytes()  # a library is sent as it is
    for path in (
        "/compat/../secret.txt",
        "/compat/%2e%2e/secret.txt",
        "/compat/.hidden",
        "/compat/link.txt",
        "/compat/nothing.js",
    ):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 404 and "not for the web" not in response.text, path


def test_a_forged_host_header_never_reaches_the_page(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path, copy_of_pages(tmp_path, "single"))))
    for forged in ('x"><script>alert(1)</script>', "a'-alert(1)-'b"):  # the second passes as a host name
        page = httpx.get(f"{server.url}/compat/", headers={"Host": forged}).text
        assert "alert" not in page and re.search(r"new WebSocket\('ws://[A-Za-z0-9.:-]+/ws/'\)", page), page
