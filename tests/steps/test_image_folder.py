"""The pipeline on an image folder the test builds: labels from folder names, int8 and QAT within budget."""
from __future__ import annotations

import pytest

from edge import contract
from tests.conftest import run_pipeline
from tests.images import CLASSES, make_image_folder

MODEL = "edgeq-test-folder"


@pytest.fixture(scope="module")
def folder_run(server, tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("folder") / "patterns", per_class=200)
    proc = run_pipeline(
        server.uri, "--quant", "all", "--dataset", str(root), "--model", "tiny_cnn", "--weights", "none",
        "--image-size", "32", "--epochs", "8", "--learning-rate", "0.001", "--qat-epochs", "1",
        "--qat-learning-rate", "0.0001", "--calibration-images", "100", "--sample-size", "8",
        "--registered-model", MODEL, experiment="edgeq-tests-folder",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri, registry_uri=server.uri)
    return client, {mv.tags[contract.TAG_VARIANT]: mv for mv in client.search_model_versions(f"name = '{MODEL}'")}


def test_labels_come_from_folder_names(folder_run):
    _, versions = folder_run
    assert versions["int8"].tags[contract.TAG_LABELS] == ",".join(sorted(CLASSES))


@pytest.mark.parametrize("variant, budget", [("int8", 1.0), ("qat", 0.5), ("dynamic", 1.0), ("fp16", 0.5)])
def test_quantized_accuracy_is_within_budget(folder_run, variant, budget):
    client, versions = folder_run
    metrics = client.get_run(versions[variant].run_id).data.metrics
    baseline = client.get_run(versions[contract.BASELINE].run_id).data.metrics[contract.M_ACCURACY]
    assert baseline >= 0.9, "the generated patterns are easy: the baseline must learn them"
    assert metrics[contract.M_DROP] <= budget, f"{variant} lost {metrics[contract.M_DROP]:.2f} points"
    assert metrics[contract.M_DROP] == pytest.approx(100 * (baseline - metrics[contract.M_ACCURACY]), abs=1e-6)
