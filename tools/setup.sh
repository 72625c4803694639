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
# pip's exit status decides (pipefail); the filter only hides a harmless warning.
quiet() { { "$@" 2>&1; } | { grep -v "^WARNING: Location" || true; }; }
quiet "$VENV/bin/python" -m pip install -q --upgrade pip \
  || { echo "setup: could not upgrade pip in $VENV (see the output above)" >&2; exit 1; }
echo "setup: installing orpheus[$EXTRAS] into $VENV"
quiet "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]" \
  || { echo "setup: pip could not install orpheus[$EXTRAS] (see the output above)" >&2; exit 1; }

# Prove that every part installed imports: the core, then each extra asked for.
modules=(orpheus tensorflow keras librosa soundfile av h5py mutagen sounddevice)
IFS=, read -ra extras <<<"$EXTRAS"
for extra in "${extras[@]}"; do
  case "$extra" in
    test) modules+=(pytest xdist) ;;
    beam) modules+=(apache_beam) ;;
  esac
done
for module in "${modules[@]}"; do
  "$VENV/bin/python" -c "import $module" 2>/dev/null || {
    echo "setup: '$module' does not import in $VENV: the install of orpheus[$EXTRAS] is broken" >&2
    echo "  try: rm -rf $VENV && EXTRAS=$EXTRAS bash tools/setup.sh" >&2
    exit 1
  }
done
"$VENV/bin/ruff" --version >/dev/null 2>&1 || [[ ",$EXTRAS," != *,test,* ]] \
  || { echo "setup: ruff is missing from $VENV" >&2; exit 1; }
