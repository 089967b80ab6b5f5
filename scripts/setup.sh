#!/usr/bin/env bash
# Create .venv with edgeq and every extra (pipeline, edge, registry, dev). Idempotent:
# reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else "edgeq needs Python 3.10 to 3.13 (TensorFlow 2.21); set PYTHON=python3.11")'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.edgeq-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing edgeq[dev] into .venv (TensorFlow included: a few minutes the first time)…" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
fi
