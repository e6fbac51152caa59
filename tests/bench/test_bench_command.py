"""`vergence bench` finds the benchmarks in the checkout vergence runs from (bench/ is not in the installed package), and
says what to do where there is none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python_path(*entries: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(entries)}


def test_a_bench_runs_from_the_checkout_without_it_on_the_path(tmp_path: Path) -> None:
    # Outside the checkout and without its root on PYTHONPATH, `bench` alone is not importable ...
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env = _python_path(*kept)
    alone = subprocess.run([sys.executable, "-c", "import bench"], cwd=tmp_path, env=env, capture_output=True)
    assert alone.returncode != 0 and b"No module named 'bench'" in alone.stderr
    # ... yet `vergence bench` finds it beside the vergence it runs (and tests/support, which the benches import).
    out = tmp_path / "still.json"
    command = [sys.executable, "-m", "vergence", "bench", "still", "--stills", "1", "--size", "320x240"]
    done = subprocess.run(
        [*command, "--json", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["stills"] == 1 and results["camera"] == "fake imx708" and results["video"] == "320x240@30"
    assert "1 stills:" in done.stdout


def test_an_installed_copy_without_a_checkout_says_where_the_benches_are(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "src" / "vergence", site / "vergence", ignore=shutil.ignore_patterns("__pycache__"))
    env = _python_path(str(site))
    where = [sys.executable, "-c", "import vergence; print(vergence.__file__)"]
    found = subprocess.run(where, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert Path(found.stdout.strip()) == site / "vergence" / "__init__.py", found.stdout + found.stderr  # the copy runs
    command = [sys.executable, "-m", "vergence", "bench", "dual", "--seconds", "1"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the benchmarks come with a checkout of vergence" in done.stderr
    assert "pip install -e '.[test]'" in done.stderr
    assert "Traceback" not in done.stderr
