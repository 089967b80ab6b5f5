"""Session fixtures: one real MLflow server, one tiny pipeline run registering every variant."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import MlflowServer

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "edgeq-test-digits"

# The tiny offline setup every pipeline test shares: digits, a small CNN, 16 px.
PIPELINE_ARGS = [
    "--dataset", "digits", "--model", "tiny_cnn", "--weights", "none", "--image-size", "16",
    "--epochs", "10", "--learning-rate", "0.001", "--qat-epochs", "1", "--qat-learning-rate", "0.0001",
    "--calibration-images", "100", "--sample-size", "16", "--registered-model", MODEL_NAME,
]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> MlflowServer:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


def run_pipeline(uri: str, *args: str, experiment: str = "edgeq-tests") -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "steps.pipeline", *args], cwd=REPO, env=env, capture_output=True, text=True)


@dataclass(frozen=True)
class PipelineRun:
    uri: str
    output: str
    versions: dict[str, str]  # variant -> version


@pytest.fixture(scope="session")
def pipeline(server: MlflowServer) -> PipelineRun:
    """`quant=all` once for the whole session."""
    proc = run_pipeline(server.uri, "--quant", "all", *PIPELINE_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri, registry_uri=server.uri)
    versions = {mv.tags["variant"]: str(mv.version) for mv in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    return PipelineRun(server.uri, proc.stdout, versions)


@pytest.fixture()
def client(server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.uri, registry_uri=server.uri)
