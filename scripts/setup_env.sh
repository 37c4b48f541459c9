#!/usr/bin/env bash
# Sets up .venv for a pip-only install: Debian packages (when root), Python + ROS 2 wheels, the msg/ interface
# package built by colcon into the venv, and dimgestor_ros itself (editable). Idempotent: a second run with
# unchanged inputs returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.dimgestor-setup"

inputs_hash() {
  cat requirements.txt requirements-dev.txt setup.py setup.cfg package.xml scripts/setup_env.sh \
    msg/package.xml msg/CMakeLists.txt msg/msg/*.msg | sha256sum | cut -d' ' -f1
}

HASH=$(inputs_hash)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -x "$VENV/bin/dimgestor-launch" ]; then
  exit 0
fi

log() { echo "[setup] $*"; }

# Debian packages: PortAudio (microphones), a C/C++ toolchain and CMake (building msg/), espeak-ng (synthetic corpus),
# PulseAudio with its ALSA plugin (the virtual microphone of test/test_virtual_microphone.py).
missing=()
dpkg -s libportaudio2 >/dev/null 2>&1 || missing+=(libportaudio2)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)  # synthetic speech for the synthetic gesture corpus
command -v pulseaudio >/dev/null 2>&1 || missing+=(pulseaudio)  # the daemon behind the virtual microphone
command -v pactl >/dev/null 2>&1 || missing+=(pulseaudio-utils)  # pactl: loads the FIFO-fed microphone
dpkg -s libasound2-plugins >/dev/null 2>&1 || missing+=(libasound2-plugins)  # ALSA 'pulse' device for PortAudio
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[setup] error: missing Debian packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
log "installing Python and ROS 2 wheels (first time: a few minutes)"
"${PIP[@]}" install -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c "import torch, rclpy" 2>/dev/null || { echo "[setup] error: torch/rclpy failed to install" >&2; exit 1; }

log "building msg/ (dimgestor_msgs) into the venv with colcon"
BUILD="$ROOT/build/msgs"
mkdir -p "$BUILD"
(
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
  "$VENV/bin/colcon" --log-base "$BUILD/log" build --base-paths "$ROOT/msg" --merge-install \
    --install-base "$VENV" --build-base "$BUILD" --event-handlers console_direct- >"$BUILD.log" 2>&1 \
    || { echo "[setup] error: colcon build of msg/ failed; see $BUILD.log" >&2; tail -20 "$BUILD.log" >&2; exit 1; }
)

log "installing dimgestor_ros (editable)"
"${PIP[@]}" install --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c "import dimgestor_msgs.msg, dimgestor_ros" \
  || { echo "[setup] error: the package or its messages do not import" >&2; exit 1; }
echo "$HASH" > "$STAMP"
log "done"
