"""`vergence bench soak`, short: the load runs, every sample is read, and nothing grows past the bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_a_short_soak_holds_steady(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, "-m", "vergence", "bench", "soak", "--minutes", "0.5", "--sample-s", "3"]
    command += ["--warmup-s", "9", "--size", "640x360", "--churn-per-s", "10", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    results = json.loads(out.read_text())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert results["pass"] and len(results["samples"]) >= 9
    last = results["samples"][-1]
    assert last["churned"] >= 100  # viewers came and went all along
    # The PTZ moves (10 a second), recordings and photos of the load were carried out, not refused.
    assert results["commands"]["ok"] >= 200 and results["commands"]["refused"] == 0, results["commands"]
    assert all(sample["fps"] >= 25 for sample in results["samples"][1:]), results["samples"]  # steady viewers served
