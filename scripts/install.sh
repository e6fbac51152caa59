#!/usr/bin/env bash
# Install vergence into ./.venv (and Debian's python3-venv first where the system Python lacks venv). On Raspberry Pi OS
# also python3-picamera2, with .venv seeing the system's packages and pip keeping the ones picamera2 was built with.
# Usage: scripts/install.sh [--test]   --test adds what the test suite needs, system packages included.
# scripts/install_plan.py decides what to do here; `python3 scripts/install_plan.py --json` shows it without doing it.
set -euo pipefail
cd "$(dirname "$0")/.."

test_flag=()
[ "${1:-}" = "--test" ] && test_flag=(--test)

if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "install.sh: vergence needs Python 3.11 or newer as python3" >&2
  exit 1
fi

# Sets APT_PACKAGES, VENV, VENV_ARGS, PIP_TARGET, PIN_SYSTEM_PACKAGES, CHECK_PICAMERA2 and PICAMERA2_HINT; says what it
# decided on stderr, and exits 1 (with the reason) when the install cannot go on, before anything is changed.
plan="$(python3 scripts/install_plan.py "${test_flag[@]}")"
eval "$plan"

if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

case "$VENV" in
  recreate) rm -rf .venv && python3 -m venv "${VENV_ARGS[@]}" .venv ;;
  create) python3 -m venv "${VENV_ARGS[@]}" .venv ;;
esac

pip_args=()
if [ "$PIN_SYSTEM_PACKAGES" = 1 ]; then
  # Only now, after apt, are the versions that python3-picamera2 brought known.
  constraints="$(mktemp)"
  trap 'rm -f "$constraints"' EXIT
  python3 scripts/install_plan.py "${test_flag[@]}" --constraints "$constraints"
  pip_args=(--constraint "$constraints")
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "${pip_args[@]}" -e "$PIP_TARGET"
if [ "${#test_flag[@]}" -gt 0 ] && [ "$CHECK_PICAMERA2" != 1 ]; then
  # The Pi path is tested through the real picamera2 over a fake libcamera (tests/fakes): the release its facts were
  # checked against, without the dependencies it would only need on a Pi (its imports are in the test extra).
  .venv/bin/python -m pip install -q --no-deps "picamera2==0.3.36"
fi

if [ "${#test_flag[@]}" -gt 0 ]; then
  # Third-party browser clients the tests load, pinned, from npm: jMuxer (pi-h264-to-browser's pages play with it,
  # tests/compat) and medooze's WHEP client (tests/browser/test_whep_client.py); and what meetecho's simple-whip-server
  # (the WHIP front of the Janus the [[whip]] tests publish to) runs on, at Debian bookworm's versions.
  npm install --prefix build/node --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    jmuxer@2.1.1 whip-whep@1.2.0 \
    express@4.18.2 body-parser@1.20.1 cors@2.8.5 colors@1.4.0 debug@4.3.4 websocket@1.0.34 async@3.2.4 >/dev/null
  if [ ! -f build/simple-whip-server/usr/share/simple-whip-server/src/server.js ]; then
    # Debian packages simple-whip-server, but its package depends on Debian's nodejs, which conflicts with NodeSource's
    # (on this kind of machine): its files are unpacked here instead, and run with whatever node is on PATH.
    deb_dir="$(mktemp -d)" && chmod 777 "$deb_dir"  # apt downloads as _apt
    (cd "$deb_dir" && apt-get download -qq simple-whip-server)
    dpkg-deb -x "$deb_dir"/simple-whip-server_*.deb build/simple-whip-server
    rm -rf "$deb_dir"
  fi
  # ROS 2 for the [ros2] tests' subscriber and the node's own process: rclpy, the messages and Fast DDS as wheels, in a
  # venv of their own (their .pth re-executes every interpreter of that venv to set the library path: not in .venv).
  [ -x build/rosvenv/bin/python ] || python3 -m venv build/rosvenv
  build/rosvenv/bin/python -m pip install -q \
    ros-rclpy==9.1.2 ros-sensor-msgs==5.5.1 ros-std-msgs==5.5.1 ros-rmw-fastrtps-cpp==9.3.3
fi

if [ "$CHECK_PICAMERA2" = 1 ] && ! error="$(.venv/bin/python -c 'import picamera2' 2>&1)"; then
  echo "install.sh: .venv/bin/python cannot import picamera2: $(printf '%s\n' "$error" | tail -n 1)" >&2
  echo "install.sh: $PICAMERA2_HINT" >&2
  exit 1
fi
