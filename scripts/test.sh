#!/usr/bin/env bash
# The project's test command: sets up .venv if needed, then runs every test with offscreen Qt
# (pytest arguments pass through; CAINGAN_TEST_WORKERS=0 runs them in this one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export QT_QPA_PLATFORM=offscreen
# Two test processes on the two cores (pytest-xdist, a file's tests in one process), each keeping
# torch and BLAS to one thread: threads beyond the free cores spin and slow everything down.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q -n "${CAINGAN_TEST_WORKERS:-2}" --dist loadfile "$@"
