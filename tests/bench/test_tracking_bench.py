"""`vergence bench tracking` runs both methods on the test camera's target and reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_tracking_bench_compares_both_methods(tmp_path: Path) -> None:
    out = tmp_path / "tracking.json"
    command = [sys.executable, "-m", "vergence", "bench", "tracking", "--seconds", "2", "--size", "640x360"]
    done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = {(r["method"], r["run"]): r for r in json.loads(out.read_text())}
    assert set(results) == {(m, run) for m in ("template", "mil") for run in ("follow", "still view")}
    follow = results[("template", "follow")]
    assert follow["frames"] == 60 and follow["cost_ms_p50"] > 0
    assert follow["on_target"] >= 0.9 and follow["worst_offset"] < 0.05, follow
    assert "| template | follow |" in done.stdout
