#!/usr/bin/env bash
# A screenshot of the real editor window on a virtual X server (docs/screenshot.png).
# Needs: apt-get install -y --no-install-recommends xvfb libxcb-icccm4 libxcb-keysyms1 \
#        libxcb-cursor0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 imagemagick
# Usage: bash scripts/screenshot.sh [OUT.png] [photos…]   (no photos: the bundled sample face)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/screenshot.png}
shift || true
. .venv/bin/activate
display=:97
Xvfb $display -screen 0 1320x840x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=$display python main.py "$@" &
app=$!
sleep "${WAIT:-20}"      # model load, detection and the first preview
DISPLAY=$display import -window root -crop 1280x800+0+0 "$out"
echo "wrote $out"
