"""`vergence bench fanout` keeps working: a short run with a stalled viewer measures every row it promises, and the
healthy viewers get their frames while the stalled one is present (CPU figures are not judged here)."""

import json

from vergence.bench.fanout import run

FPS = 30


def test_a_short_fanout_run_with_a_stalled_viewer(tmp_path, capsys):
    out = tmp_path / "fanout.json"
    results = run(
        viewers=20,
        size="640x360",
        fps=FPS,
        seconds=3,
        client_processes=2,
        stalled=1,
        reference=True,
        json_out=out,
        warmup_s=1,
    )
    printed = capsys.readouterr().out
    rows = {row["phase"]: row for row in results["rows"]}
    assert list(rows) == [
        "vergence, 1 viewer",
        "vergence, 20 viewers",
        "vergence, 20 viewers + 1 stalled",
        "bare uvicorn, 20 viewers",
    ]
    for row in rows.values():
        assert row["server_cpu_percent"] > 0 and row["clients_cpu_percent"] > 0, row
        assert row["closed"] == 0 and row["message_bytes"] > 24, row
        assert 0 <= row["lag_ms"]["p50"] <= row["lag_ms"]["p95"] <= row["lag_ms"]["max"], row
    assert rows["vergence, 1 viewer"]["viewers"] == 1
    assert rows["vergence, 20 viewers"]["viewers"] == rows["bare uvicorn, 20 viewers"]["viewers"] == 20

    stalled = rows["vergence, 20 viewers + 1 stalled"]
    assert stalled["viewers"] == 20  # the stalled one is not counted among the viewers it must not harm
    assert stalled["fps_min"] >= 0.9 * FPS, stalled  # every healthy viewer got ≥ 90 % of the frames
    assert len(stalled["stalled_drops_total"]) == 1 and stalled["stalled_drops_total"][0] > 0  # the stalled one is cut
    assert stalled["healthy_hub_drops_total"] == 0  # and no healthy viewer lost a packet in the hub, ever
    assert results["compressed_viewers"] == 0  # offered permessage-deflate as browsers do, and declined
    assert results["ratio_vergence_to_bare"] > 0
    for text in ("| vergence, 20 viewers + 1 stalled |", "vergence / bare uvicorn CPU", "RESULT: "):
        assert text in printed, text
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(results["rows"]))
