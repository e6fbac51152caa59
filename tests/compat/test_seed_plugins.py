"""A plugin of the seed projects, as written: it imports a module from its own folder, draws into the BGR image in
place and returns True (or None, or the image). Loaded from its file, it draws into the stream."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_processing import box_colour, decoded_bgr
from tests.polling import poll

SHAPES = """
import cv2

RED = (0, 0, 255)


def filled_box(image, x1, y1, x2, y2):
    cv2.rectangle(image, (x1, y1), (x2, y2), RED, -1)
"""

DETECTOR = """
from shapes import filled_box  # a sibling module of the plugin, as the seed's plugins import theirs


def process_image(image):
    filled_box(image, 120, 80, 200, 160)
    return RETURNED  # the seed's convention: drawn in place, True for "done"
"""


@pytest.mark.parametrize("returned", ["True", "None", "image"])
def test_a_seed_plugin_imports_its_sibling_and_draws_in_place(vergence_server, tmp_path, returned):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "shapes.py").write_text(SHAPES)
    (folder / "detector.py").write_text(DETECTOR.replace("RETURNED", returned))
    config = tmp_path / "vergence.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
        f'[[cameras.plugins]]\npath = "{folder / "detector.py"}"\n'
    )
    server = vergence_server("--config", str(config))

    def detector_ran() -> dict | None:
        listed = httpx.get(f"{server.url}/api/cameras/cam0/plugins").json()
        (plugin,) = listed
        assert plugin["error"] is None, plugin  # it imported its sibling and its True was not taken for an image
        return plugin if plugin["calls"] >= 10 else None

    plugin = poll(detector_ran, "the seed plugin to run ten times")
    assert plugin["kind"] == "process_image" and plugin["state"] in ("branch", "inline")
    b, g, r = box_colour(decoded_bgr(server), 120, 80, 200, 160)
    assert r > 180 and g < 80 and b < 80, (b, g, r)  # its red box, in the frames viewers get
