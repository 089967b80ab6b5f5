"""The pipeline (parent) run reads on its own in the UI: description, summary metrics, the dataset as an input."""
from __future__ import annotations

import json
import re
import uuid

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS, MLFLOW_RUN_NOTE

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


def test_description_names_the_model_and_rounds_every_figure(pipeline, parent):
    run, _ = parent
    note = run.data.tags[MLFLOW_RUN_NOTE]
    assert f"`mlflow.pyfunc.load_model(\"models:/{MODEL_NAME}@{contract.DEFAULT_ALIAS}\")`" in note
    assert "NAME" not in note
    assert re.search(r"`models:/" + re.escape(MODEL_NAME) + r"/\d+`", note), note
    assert not re.search(r"\d\.\d{4,}", note), "an unrounded float in the description"


def test_the_experiment_opens_in_mlflows_training_layout(parent, client):
    run, _ = parent
    tags = client.get_experiment(run.info.experiment_id).tags
    assert tags.get(contract.TAG_EXPERIMENT_KIND) == contract.EXPERIMENT_KIND_TRAINING


def test_a_reused_experiment_gets_the_layout_unless_it_has_a_kind(client):
    from steps.pipeline import training_layout

    bare = client.create_experiment(f"edgeq-test-kind-bare-{uuid.uuid4().hex[:6]}")
    chosen = client.create_experiment(f"edgeq-test-kind-chosen-{uuid.uuid4().hex[:6]}",
                                      tags={contract.TAG_EXPERIMENT_KIND: "genai_development"})
    for experiment_id in (bare, chosen):
        training_layout(client, experiment_id)
    assert client.get_experiment(bare).tags[contract.TAG_EXPERIMENT_KIND] == contract.EXPERIMENT_KIND_TRAINING
    assert client.get_experiment(chosen).tags[contract.TAG_EXPERIMENT_KIND] == "genai_development"


def test_every_registered_logged_model_names_its_version(pipeline, client):
    # What MLflow's UI reads to show a logged model as registered: its mlflow.modelVersions tag.
    for variant, version in pipeline.versions.items():
        mv = client.get_model_version(MODEL_NAME, version)
        assert mv.source.startswith("models:/m-"), mv.source
        linked = json.loads(client.get_logged_model(mv.source.removeprefix("models:/")).tags[MLFLOW_MODEL_VERSIONS])
        assert [e for e in linked if e["name"] == MODEL_NAME and str(e["version"]) == version], (variant, linked)


def test_link_logged_model_adds_a_version_once_and_keeps_the_others(parent, client):
    from steps.register import link_logged_model

    run, _ = parent
    model = client.create_logged_model(run.info.experiment_id, name="link-check")
    client.set_logged_model_tags(model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": "other", "version": 4}])})
    for _ in range(2):
        link_logged_model(client, model.model_id, "edgeq-link", "7")
    linked = json.loads(client.get_logged_model(model.model_id).tags[MLFLOW_MODEL_VERSIONS])
    assert linked == [{"name": "other", "version": 4}, {"name": "edgeq-link", "version": "7"}]
