#!/usr/bin/env bash
# Install everything the tests need (Debian chromium, mosquitto, nginx + RTMP, ffmpeg; Python packages in ./.venv)
# and run the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
exec .venv/bin/python -m pytest -ra "$@"
