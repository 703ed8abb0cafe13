#!/usr/bin/env bash
# Sets up .venv if needed, then starts the editor with the bundled weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec python main.py "$@"
