#!/usr/bin/env bash
# The test suite: unit, integration (real MLflow server on loopback), end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
