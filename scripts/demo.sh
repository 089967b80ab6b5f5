#!/usr/bin/env bash
# The offline main job, end to end: an MLflow server (SQLite, served artifacts) on
# loopback, the pipeline on scikit-learn's digits with every variant, promotion of
# the int8 version, one pull on a simulated device, and the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate

PORT=${EDGEQ_DEMO_PORT:-5000}
DIR=${EDGEQ_DEMO_DIR:-.edgeq/demo}
MODEL=edgeq-digits-tiny_cnn
export MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=1
# `mlflow run` prints MLflow's own run links, which open its GenAI layout; the pipeline prints ones that open the runs table.
export MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true
mkdir -p "$DIR"

# The project's one launcher: store, artifacts, log and pid file in $DIR.
if python -m registry_tools.mlflow_server ping "$MLFLOW_TRACKING_URI"; then
    echo "== using the MLflow server already on $MLFLOW_TRACKING_URI"
else
    echo "== starting mlflow server on $MLFLOW_TRACKING_URI (store: $DIR)"
    python -m registry_tools.mlflow_server start --dir "$DIR" --port "$PORT" >/dev/null ||
        { echo "mlflow server did not start: see $DIR/server.log (port $PORT busy? set EDGEQ_DEMO_PORT)" >&2; exit 1; }
fi

echo "== pipeline: digits, tiny CNN from scratch, 32 px, every variant"
mlflow run . --env-manager local --experiment-name edgeq-demo \
    -P quant=all -P dataset=digits -P model=tiny_cnn -P weights=none -P image_size=32 \
    -P epochs=10 -P learning_rate=0.001 -P qat_epochs=2

INT8=$(edgeq versions "$MODEL" --json | python -c 'import json,sys; print(max((r for r in json.load(sys.stdin) if r["variant"] == "int8"), key=lambda r: int(r["version"]))["version"])')
echo "== promote the int8 version (v$INT8) through the accuracy gate"
edgeq promote "$MODEL" "$INT8"

echo "== enrol the simulated device's own key, so its signed reports count (edgeq device enroll)"
KEY=$(edgeq-pull --model "$MODEL" --device-id pi-sim --state-dir "$DIR/device" identity | awk '$1 == "public" {print $3}')
edgeq device enroll pi-sim --key "$KEY" --model "$MODEL"

echo "== pull on a simulated device (state in $DIR/device)"
edgeq-pull --model "$MODEL" --device-id pi-sim --state-dir "$DIR/device" --runs 200 --warmup 20

echo "== what the registry knows now"
edgeq versions "$MODEL"
edgeq compare "$MODEL" -o "$DIR/compare.png"
echo
echo "MLflow UI (the pipeline run above holds comparison.md and tradeoff.png):"
python - "$MLFLOW_TRACKING_URI" "$MODEL" "$INT8" <<'EOF'
import sys
from mlflow import MlflowClient
from edge import contract, ui_links
uri, model, version = sys.argv[1:]
fleet = MlflowClient(uri).get_registered_model(model).tags.get(contract.TAG_FLEET_EXPERIMENT_ID)
print(f"  v{version}, its tag {contract.TAG_FLEET_SUMMARY}: {ui_links.model_url(uri, model, version)}")
if fleet:
    print(f"  the devices' runs:  {ui_links.experiment_url(uri, fleet)}")
EOF
[ -f "$DIR/server.pid" ] && echo "stop the server: .venv/bin/python -m registry_tools.mlflow_server stop --dir $DIR"
