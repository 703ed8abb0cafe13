#!/usr/bin/env bash
# The project's test command: sets up .venv if needed, then runs every test with offscreen Qt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export QT_QPA_PLATFORM=offscreen
python -m pytest -q "$@"
