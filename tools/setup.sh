#!/usr/bin/env bash
# Install everything Orpheus needs on a fresh Debian/Ubuntu machine: the system libraries
# (PortAudio for `record`, FluidSynth for the example corpus) and a virtual environment.
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${EXTRAS:-test}"
DEBS=(libportaudio2 fluidsynth libfluidsynth3)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages first (as root):" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
echo "setup: installing orpheus[$EXTRAS] into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import orpheus, tensorflow, librosa, soundfile" 2>/dev/null \
  || { echo "setup: the install failed (see the pip output above)" >&2; exit 1; }
