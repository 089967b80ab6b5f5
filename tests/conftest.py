"""Session fixtures: one real MLflow server, one tiny pipeline run registering every variant."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge import contract
from tests.servers import MlflowServer

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "edgeq-test-digits"

# The tiny offline setup every pipeline test shares: digits, a small CNN, 16 px.
PIPELINE_ARGS = [
    "--dataset", "digits", "--model", "tiny_cnn", "--weights", "none", "--image-size", "16",
    "--epochs", "10", "--learning-rate", "0.001", "--qat-epochs", "1", "--qat-learning-rate", "0.0001",
    "--calibration-images", "100", "--sample-size", "16", "--registered-model", MODEL_NAME,
]


_SERVER = pytest.StashKey[MlflowServer]()


def _launch(config: pytest.Config) -> MlflowServer:
    srv = config.stash[_SERVER] = MlflowServer(Path(tempfile.mkdtemp(prefix="edgeq-mlflow-"))).launch()
    return srv


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the session's server now, and run the modules that never use it first, while it starts."""
    if config.option.collectonly:
        return
    uses = {item.nodeid.split("::")[0] for item in items if "server" in getattr(item, "fixturenames", ())}
    if not uses:
        return
    # Whole modules move, so module-scoped fixtures are still set up once.
    items[:] = sorted(items, key=lambda item: item.nodeid.split("::")[0] in uses)
    _launch(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    srv = config.stash.get(_SERVER, None)
    if srv is not None:
        srv.stop()
        shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> MlflowServer:
    srv = request.config.stash.get(_SERVER, None)
    if srv is None:  # asked for by a test the collection did not see (getfixturevalue)
        srv = _launch(request.config)
    yield srv.wait_ready()
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


@pytest.fixture(scope="session")
def bundles(pipeline, tmp_path_factory) -> dict[str, Path]:
    """variant -> a local copy of that version's device files, as the pipeline registered them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pipeline.uri, registry_uri=pipeline.uri)
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for variant in contract.VARIANTS:
        mv = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
        out[variant] = Path(client.download_artifacts(mv.run_id, contract.ARTIFACT_DIR, str(root / variant)))
    return out


_names = itertools.count(1)


@pytest.fixture()
def fresh_model(pipeline, client) -> str:
    """A fresh registered model for one test, so aliases set here never touch other tests."""
    name = f"edgeq-test-model-{next(_names)}"
    client.create_registered_model(name)
    return name


def copy_version(client, pipeline, name: str, variant: str, source: str | None = None, run_id: str | None = None,
                 **tag_overrides: str) -> str:
    """Register the pipeline's ``variant`` version again under ``name`` (optionally with other tags or files)."""
    src = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
    tags = {**src.tags, **tag_overrides}
    source = source or src.source
    # A logged model as source (the pipeline's versions): the server wants its id alongside.
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    mv = client.create_model_version(name, source=source, run_id=run_id or src.run_id, tags=tags, model_id=model_id)
    return str(mv.version)


def version_in_own_run(client, pipeline, name: str, variant: str, bundle: Path, metrics: dict[str, float] | None = None,
                       **tag_overrides: str) -> str:
    """Register ``bundle`` as a version of ``name`` whose source is a new run of its own (with ``metrics``),
    tagged like the pipeline's ``variant`` version apart from ``tag_overrides``."""
    src = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
    run = client.create_run(client.get_run(src.run_id).info.experiment_id)
    client.log_artifacts(run.info.run_id, str(bundle), contract.ARTIFACT_DIR)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return copy_version(client, pipeline, name, variant, source=f"{run.info.artifact_uri}/{contract.ARTIFACT_DIR}",
                        run_id=run.info.run_id, **tag_overrides)
