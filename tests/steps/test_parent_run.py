"""The pipeline (parent) run reads on its own in the UI: description, summary metrics, the dataset as an input."""
from __future__ import annotations

import json

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from edge import contract
from tests.conftest import MODEL_NAME


@pytest.fixture(scope="module")
def parent(pipeline):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pipeline.uri, registry_uri=pipeline.uri)
    baseline_run = client.get_run(client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE]).run_id)
    return client.get_run(baseline_run.data.tags["mlflow.parentRunId"]), baseline_run


def _variant_metrics(pipeline, client) -> dict[str, dict[str, float]]:
    out = {}
    for variant in contract.VARIANTS:
        mv = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
        out[variant] = client.get_run(mv.run_id).data.metrics
    return out


def test_summary_metrics_agree_with_the_variant_runs(pipeline, client, parent):
    run, _ = parent
    metrics, tags = run.data.metrics, run.data.tags
    found = _variant_metrics(pipeline, client)
    int8_family = {v: m for v, m in found.items() if v in contract.INT8_FAMILY}
    assert metrics[contract.M_BEST_INT8_DROP] == min(m[contract.M_DROP] for m in int8_family.values())
    within = {v: m for v, m in found.items() if m[contract.M_DROP] <= contract.DEFAULT_MAX_ACCURACY_DROP}
    smallest = min(within, key=lambda v: within[v][contract.M_SIZE])
    fastest = min(within, key=lambda v: within[v][contract.M_P50])
    assert metrics[contract.M_SMALLEST_SIZE] == within[smallest][contract.M_SIZE]
    assert metrics[contract.M_FASTEST_P50] == within[fastest][contract.M_P50]
    assert tags[contract.TAG_SMALLEST] == f"{smallest} (v{pipeline.versions[smallest]})"
    assert tags[contract.TAG_FASTEST] == f"{fastest} (v{pipeline.versions[fastest]})"
    assert tags[contract.TAG_BEST_INT8].split(" ")[0] in contract.INT8_FAMILY
    assert tags[contract.TAG_BUDGET] == f"{contract.DEFAULT_MAX_ACCURACY_DROP:g}"


def test_description_says_what_the_run_did(pipeline, parent):
    run, _ = parent
    note = run.data.tags[MLFLOW_RUN_NOTE]
    assert note.startswith(f"**{MODEL_NAME}: tiny_cnn on digits, 16px**")
    assert "1257 train, 359 val, 181 test" in note
    assert "Best int8-family variant:" in note and "Smallest within 1 accuracy points:" in note
    assert "trained in this run" in note
    for variant in contract.VARIANTS:
        assert f"| {variant} | {pipeline.versions[variant]} |" in note, "the comparison table is in the description"


def test_dataset_is_an_input_with_source_digest_and_split_counts(parent):
    run, baseline_run = parent
    (entry,) = run.inputs.dataset_inputs
    dataset = entry.dataset
    assert dataset.name == "digits"
    assert dataset.digest == baseline_run.data.params["data_fingerprint"]
    assert dataset.source_type == "code" and "load_digits" in dataset.source
    profile = json.loads(dataset.profile)
    assert (profile["train_images"], profile["val_images"], profile["test_images"]) == (1257, 359, 181)
    assert profile["classes"] == 10 and profile["image_size"] == 16
    schema = json.loads(dataset.schema)["mlflow_tensorspec"]
    assert json.loads(schema["features"])[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 16, 16, 3]}
    tags = {t.key: t.value for t in entry.tags}
    assert tags["mlflow.data.context"] == "training" and tags["test_images"] == "181"


def test_parent_run_logs_the_comparison_artifacts(parent, client):
    run, _ = parent
    assert {"comparison.md", "comparison.html", "tradeoff.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
