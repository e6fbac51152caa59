"""`vergence bench webrtc` keeps working: a short run measures every row it promises (figures are not judged here)."""

import json

import aiortc.rtcrtpreceiver

from bench.webrtc import run


def test_a_short_webrtc_bench_measures_peers_and_encodes(tmp_path, capsys, ice_address):
    decoder = aiortc.rtcrtpreceiver.get_decoder
    out = tmp_path / "webrtc.json"
    results = run(seconds=1.5, size="640x360", fps=30, peers=3, json_out=out)
    printed = capsys.readouterr().out
    assert results["private_network"] and "private network: yes" in printed
    assert results["baseline_cores"] > 0 and results["peers_cores"] > 0
    assert len(results["sent_fps_per_peer"]) == 3 and min(results["sent_fps_per_peer"]) > 10
    assert results["received_fps_per_peer"] > 10  # the peers really received pictures (counted, not decoded)
    assert results["encodes"]["encodes"] == 3 and results["encodes"]["frames_each"] == 45
    assert results["encodes"]["packets"] >= 3 * 45 and results["encodes"]["per_encode_cores"] > 0
    for row in ("increment for 3 peers", "3 libx264 encodes", "per-peer cost / per-encode cost", "RESULT: "):
        assert row in printed, row
    assert json.loads(out.read_text())["per_peer_cores"] == results["per_peer_cores"]
    assert aiortc.rtcrtpreceiver.get_decoder is decoder  # other tests' peers decode again
