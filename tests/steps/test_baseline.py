"""Reusing a baseline: the model comes back from the run, and no temporary copy stays behind."""
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
    run_id = client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE]).run_id
    loaded = baseline.load(client, run_id)
    assert loaded.reused and loaded.run_id == run_id
    assert loaded.model.predict_on_batch(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 10)
    assert list(scratch.iterdir()) == []
