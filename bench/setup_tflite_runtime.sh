#!/usr/bin/env bash
# A second virtualenv with tflite-runtime 2.14 (the last release; needs numpy<2) for bench/latency.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-tflite-runtime/bin/python ] || "$PYTHON" -m venv .venv-tflite-runtime
.venv-tflite-runtime/bin/python -m pip install -q "tflite-runtime==2.14.0" "numpy<2" requests click
