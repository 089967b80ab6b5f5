"""Reusing a baseline: the model comes back from its registered version's logged model, and no temporary copy stays behind."""
from __future__ import annotations

import tempfile

import numpy as np

from edge import contract
from tests.conftest import MODEL_NAME


def test_load_leaves_no_temporary_directory(pipeline, client, tmp_path, monkeypatch):
    from steps import baseline

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    mv = client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE])
    run_id = mv.run_id
    loaded = baseline.load(client, baseline.Found(run_id, baseline.logged_model_id(mv)))
    assert loaded.reused and loaded.run_id == run_id
    assert loaded.model.predict_on_batch(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 10)
    assert list(scratch.iterdir()) == []


def test_a_baseline_is_found_through_the_registry_not_through_run_tags(pipeline, client):
    """A device user may write the pipeline's runs on a team server: a run tag alone is no baseline."""
    from steps import baseline

    mv = client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE])
    key = mv.tags[contract.TAG_BASELINE_KEY]
    experiment_id = client.get_run(mv.run_id).info.experiment_id
    assert baseline.find(client, experiment_id, key) == baseline.Found(mv.run_id, baseline.logged_model_id(mv))
    impostor = client.create_run(experiment_id, tags={contract.TAG_BASELINE_KEY: "forged-key"})
    client.set_terminated(impostor.info.run_id)
    assert baseline.find(client, experiment_id, "forged-key") is None
    assert baseline.find(client, "0", key) is None  # per experiment, as before
