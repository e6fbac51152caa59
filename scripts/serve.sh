#!/usr/bin/env bash
# Install vergence (scripts/install.sh) and serve the test camera at http://localhost:8000; extra args go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/vergence serve "$@"
