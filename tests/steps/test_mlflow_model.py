"""Every version an MLflow model: pyfunc via a loader shipped as code, loaded and served by MLflow's own tools,
while a device's download stays the same four files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from mlflow.entities import LoggedModelStatus

from edge import contract
from edge.bundle import load_sample, sha256_file
from edge.inference import TFLiteClassifier
from edge.registry_client import RegistryClient
from tests.conftest import MODEL_NAME, copy_version
from tests.servers import free_port

FIXTURES = Path(__file__).resolve().parent.parent / "edge" / "fixtures"
TFLITE = ("fp32", "int8")  # a float and an integer input


def device_scores(model_file: Path, images: np.ndarray) -> np.ndarray:
    """What a device's interpreter answers, image by image."""
    classifier = TFLiteClassifier(model_file)
    rows = []
    for image in images:
        classifier.invoke(classifier.prepare(image))
        rows.append(classifier.scores())
    return np.stack(rows)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Each fixture bundle saved as an MLflow model directory by the flavor, locally (no server)."""
    from mlflow.models import Model

    from steps import mlflow_model

    out = {}
    for variant in TFLITE:
        path = tmp_path_factory.mktemp("saved") / variant
        classifier = TFLiteClassifier(FIXTURES / variant / contract.MODEL_FILE)
        images, _ = load_sample(FIXTURES / variant)
        mlflow_model.save_model(str(path), Model(), FIXTURES / variant,
                                mlflow_model.signature(classifier.input_shape, classifier.input_dtype, 10),
                                images[:1].astype(classifier.input_dtype))
        out[variant] = path
    return out


@pytest.mark.parametrize("variant", TFLITE)
def test_saved_model_holds_the_device_files_byte_for_byte_and_nothing_pickled(saved, variant):
    path = saved[variant]
    for name in contract.DEVICE_FILES:
        assert sha256_file(path / name) == sha256_file(FIXTURES / variant / name), name
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "edge.pyfunc_loader" and pyfunc["code"] == "code"
    assert "python_model" not in pyfunc and "data" not in pyfunc
    assert mlmodel["flavors"]["tflite"]["model_file"] == contract.MODEL_FILE
    assert not [p for p in path.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    (inputs,) = json.loads(mlmodel["signature"]["inputs"])
    assert inputs["tensor-spec"] == {"dtype": "uint8" if variant == "int8" else "float32", "shape": [-1, 16, 16, 3]}
    (outputs,) = json.loads(mlmodel["signature"]["outputs"])
    assert outputs["tensor-spec"] == {"dtype": "float32", "shape": [-1, 10]}
    assert (path / "input_example.json").is_file()


_ISOLATED = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1] + "/code")  # what MLflow does with a model's code_paths
import edge.pyfunc_loader as loader
model = loader._load_pyfunc(sys.argv[1])
with np.load(sys.argv[1] + "/sample.npz", allow_pickle=False) as sample:
    scores = model.predict(sample["images"])
edge_files = {name: mod.__file__ for name, mod in sys.modules.items() if name == "edge" or name.startswith("edge.")}
print(json.dumps({"files": edge_files, "heavy": sorted(m for m in ("mlflow", "tensorflow", "keras") if m in sys.modules),
                  "scores": scores.tolist()}))
"""


@pytest.mark.parametrize("variant", TFLITE)
def test_loader_runs_from_the_shipped_code_alone_without_mlflow_or_tensorflow(saved, variant, tmp_path):
    """In a fresh process, from the model's code/ directory: numpy and the runtime are all it imports."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, str(saved[variant])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["heavy"] == []
    code = str(saved[variant] / "code")
    assert found["files"] and all(f.startswith(code) for f in found["files"].values()), found["files"]
    images, _ = load_sample(FIXTURES / variant)
    np.testing.assert_array_equal(np.array(found["scores"], np.float32), device_scores(FIXTURES / variant / contract.MODEL_FILE, images))


# --- the pipeline's versions, on the session's server ---------------------------------------------------------

def _mlmodel(pipeline, client, model_id: str, tmp_path: Path) -> dict:
    import mlflow

    location = client.get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(tmp_path),
                                                tracking_uri=pipeline.uri)
    return yaml.safe_load(Path(local).read_text())


@pytest.mark.parametrize("variant", contract.VARIANTS)
def test_every_tflite_version_is_a_logged_model_of_its_run_with_linked_metrics(pipeline, client, variant, tmp_path):
    mv = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
    assert mv.source.startswith("models:/m-")
    model_id = mv.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    run = client.get_run(mv.run_id)
    assert logged.source_run_id == mv.run_id and logged.experiment_id == run.info.experiment_id
    assert logged.status == LoggedModelStatus.READY
    assert model_id in [o.model_id for o in run.outputs.model_outputs], "the run's Models column shows it"
    assert {"name": MODEL_NAME, "version": int(mv.version)} in json.loads(logged.tags["mlflow.modelVersions"])
    linked = {m.key: m.value for m in logged.metrics}
    for key in (contract.M_ACCURACY, contract.M_DROP, contract.M_SIZE, contract.M_P50):
        assert linked[key] == run.data.metrics[key], key
    mlmodel = _mlmodel(pipeline, client, model_id, tmp_path)
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "edge.pyfunc_loader"
    (inputs,) = json.loads(mlmodel["signature"]["inputs"])
    assert inputs["tensor-spec"]["dtype"] == mv.tags[contract.TAG_INPUT_DTYPE]
    assert inputs["tensor-spec"]["shape"] == [-1, 16, 16, 3]


@pytest.mark.parametrize("variant", contract.VARIANTS)
def test_the_device_download_endpoint_still_returns_exactly_the_bundle(pipeline, client, bundles, variant, tmp_path):
    """`get-artifact?path=<file>` (what edge/ calls) answers the same bytes the variant's run holds in model/."""
    registry = RegistryClient(pipeline.uri)
    mv = registry.version(MODEL_NAME, pipeline.versions[variant])
    for name in contract.DEVICE_FILES:
        registry.download(mv, name, tmp_path / name, 1 << 26)
        assert sha256_file(tmp_path / name) == sha256_file(bundles[variant] / name), name
    assert sha256_file(tmp_path / contract.MODEL_FILE) == mv.tags[contract.TAG_SHA256]


def test_the_puller_installs_a_pipeline_version_from_the_same_four_files(pipeline, client, fresh_model, tmp_path):
    """A device pulls a version whose source is a logged model: same files, nothing of MLmodel on the device."""
    from edge.puller import Exit, PullConfig, pull

    client.set_registered_model_alias(fresh_model, contract.DEFAULT_ALIAS, copy_version(client, pipeline, fresh_model, "int8"))
    outcome = pull(PullConfig(fresh_model, tmp_path / "state", "pi-mlflow-model", runs=5, warmup=1), RegistryClient(pipeline.uri))
    assert outcome.code == Exit.OK, outcome.message
    assert sorted(p.name for p in (tmp_path / "state" / "current").iterdir()) == sorted(contract.DEVICE_FILES)
    assert not [p for p in (tmp_path / "state").rglob("*") if p.name in ("MLmodel", "code", "pyfunc_loader.py")]


@pytest.fixture(scope="module")
def production(pipeline, tmp_path_factory) -> dict[str, str]:
    """variant -> a registered model whose @production is that pipeline version (aliases never touch MODEL_NAME)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pipeline.uri, registry_uri=pipeline.uri)
    names = {}
    for variant in TFLITE:
        name = f"edgeq-test-pyfunc-{variant}"
        client.create_registered_model(name)
        client.set_registered_model_alias(name, contract.DEFAULT_ALIAS, copy_version(client, pipeline, name, variant))
        names[variant] = name
    return names


@pytest.mark.parametrize("variant", TFLITE)
def test_pyfunc_load_by_alias_answers_like_the_device(pipeline, bundles, production, variant, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.uri)
    model = mlflow.pyfunc.load_model(f"models:/{production[variant]}@{contract.DEFAULT_ALIAS}")
    images, _ = load_sample(bundles[variant])
    dtype = np.uint8 if variant == "int8" else np.float32
    scores = model.predict(images.astype(dtype))
    assert scores.shape == (len(images), 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, device_scores(bundles[variant] / contract.MODEL_FILE, images))


def test_mlflow_models_serve_answers_invocations_like_the_device(pipeline, bundles, production, tmp_path):
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=pipeline.uri,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("PYTHONPATH", None)
    uri = f"models:/{production['int8']}@{contract.DEFAULT_ALIAS}"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri, "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        images, _ = load_sample(bundles["int8"])
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": images.tolist()}, timeout=60)
        assert answer.status_code == 200, answer.text[:1000]
        served = np.array(answer.json()["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(served, device_scores(bundles["int8"] / contract.MODEL_FILE, images))
        wrong = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": images[:, :8].tolist()}, timeout=60)
        assert wrong.status_code == 400
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_keras_baseline_is_logged_with_the_keras_flavor(pipeline, client, bundles, tmp_path, monkeypatch):
    import mlflow

    mv = client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE])
    model_id = mv.source.removeprefix("models:/")
    assert client.get_logged_model(model_id).source_run_id == mv.run_id
    mlmodel = _mlmodel(pipeline, client, model_id, tmp_path)
    assert {"keras", "python_function"} <= set(mlmodel["flavors"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.uri)
    model = mlflow.pyfunc.load_model(mv.source)
    images, labels = load_sample(bundles["fp32"])
    scores = np.asarray(model.predict(images.astype(np.float32)))
    assert scores.shape == (len(images), 10)
    assert np.mean(scores.argmax(axis=1) == labels) >= 0.75, "the trained baseline classifies its own test sample"
