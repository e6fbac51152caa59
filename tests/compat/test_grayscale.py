"""A stream configured grayscale (RPI-CameraStreaming's "export as gray") has no colour in what viewers decode, while
another camera of the same server keeps its colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder


def chroma_spread(server, stream: str) -> float:
    """How far the chroma planes of a decoded frame stray from neutral grey (128)."""
    decoder = H264Decoder()
    with VideoClient.open(server.ws_url, f"/ws/video/{stream}") as client:
        while True:
            frames = decoder.decode(client.next().payload)
            if frames:
                planes = frames[-1].to_ndarray(format="yuv420p")
                height = frames[-1].height
                return float(np.abs(planes[height:].astype(int) - 128).max())


def test_a_grayscale_stream_has_no_colour_and_another_keeps_its_own(vergence_server, tmp_path: Path):
    config = tmp_path / "vergence.toml"
    config.write_text(
        '[[cameras]]\nid = "gray"\nsize = "320x240"\nfps = 30\ngrayscale = true\n'
        '[[cameras]]\nid = "colour"\nsize = "320x240"\nfps = 30\n'
    )
    server = vergence_server("--config", str(config))
    assert chroma_spread(server, "gray") <= 2  # encoder rounding at most
    assert chroma_spread(server, "colour") > 40  # the test pattern's colour bars
