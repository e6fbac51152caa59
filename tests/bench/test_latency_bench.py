"""`vergence bench latency` keeps working: a short run measures every row it promises (figures are not judged here)."""

import json

import pytest

from bench.latency import run


@pytest.mark.browser
def test_a_short_latency_run_measures_vergence_and_the_floor(tmp_path):
    out = tmp_path / "latency.json"
    results = run(
        seconds=2, size="640x360", fps=30, players=["webrtc", "webcodecs", "mjpeg"], json_out=out, warmup_s=0.5
    )
    rows = {row["mode"]: row for row in results["rows"]}
    for mode in ("floor (before)", "webrtc", "webcodecs", "mjpeg", "floor (after)"):
        assert "error" not in rows[mode], rows[mode]
        assert rows[mode]["frames"] >= 30 and 0 < rows[mode]["p50_ms"] <= rows[mode]["p95_ms"] <= rows[mode]["max_ms"]
    assert rows["webcodecs"]["player"] == "webcodecs" and rows["mjpeg"]["player"] == "mjpeg"
    assert rows["webrtc"]["player"] == "webrtc" and rows["webrtc"]["latency_sources"]["timecode"] >= 30
    assert results["ratio"]["p50"] > 0
    assert json.loads(out.read_text())["rows"]
