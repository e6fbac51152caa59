#!/usr/bin/env bash
# Install vergence into ./.venv (and Debian's python3-venv first where the system Python lacks venv).
# Usage: scripts/install.sh [--test]   --test adds what the test suite needs, system packages included.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: need root to apt-get install $*" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "install.sh: vergence needs Python 3.11 or newer as python3" >&2
  exit 1
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3-venv
fi

if [ "$want_test" = 1 ]; then
  missing=()
  for pkg in chromium mosquitto nginx libnginx-mod-rtmp ffmpeg iproute2; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
