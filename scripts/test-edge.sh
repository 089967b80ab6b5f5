#!/usr/bin/env bash
# The edge test tier without TensorFlow: a virtualenv (.venv-edge) with only the edge extra,
# pytest (+ xdist) and the MLflow server package, then `pytest tests/edge` on the checked-in bundles.
# Slow tests (building yet another virtualenv) are left out unless asked: scripts/test-edge.sh -m "".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-edge
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.edgeq-edge-installed

DEPS=(".[edge]" "pytest>=8" "pytest-xdist>=3" "mlflow>=3.17,<4")

# Reinstall only when the dependencies may have changed, or the checkout moved (the venv's scripts name its path).
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) ${DEPS[*]} $PWD/$VENV"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "${DEPS[@]}"
    echo "$WANT" >"$STAMP"
fi
if "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "test-edge: TensorFlow is installed in $VENV; this tier must run without it (remove $VENV)" >&2
    exit 2
fi

# The repository's own edge/ and tests/, not the copy pip installed.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# Two workers (each with its own server): the tier's ~50 s become ~37 s on two cores; -n 0 runs it in one process.
exec "$VENV/bin/python" -m pytest tests/edge -m "not slow" -n "${EDGEQ_TEST_WORKERS:-2}" "$@"
