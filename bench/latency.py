"""`python bench/latency.py [--seconds 10] [--check] ...`: the same benchmark as `vergence bench latency`."""

from __future__ import annotations

import argparse
from pathlib import Path

from vergence.bench.latency import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="capture → decoded latency per player mode, beside a bare floor")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per player mode")
    parser.add_argument("--size", default="1280x720", help="picture size WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second")
    parser.add_argument("--players", default="webcodecs,mse,mjpeg", help="comma-separated player modes")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare floor pipeline")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a WebCodecs goal fails")
    args = parser.parse_args()
    run(
        seconds=args.seconds,
        size=args.size,
        fps=args.fps,
        players=args.players.split(","),
        floor=not args.no_floor,
        json_out=args.json,
        check=args.check,
    )
