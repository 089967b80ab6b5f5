"""`mlflow run` passes values with spaces through MLproject as one argument each (MLflow quotes them itself)."""
from __future__ import annotations

import json
import shlex

from edge import contract
from tests.conftest import FOLDER_EXPERIMENT, FOLDER_MODEL

# The run itself: the session's `folder_run` (tests/conftest.py): `mlflow run` on "…/my images", with
# data_dir "…/tfds data" passed through like any value, registering under "edgeq test folder".


def test_mlflow_run_with_paths_and_names_containing_spaces(folder_run, client):
    proc = folder_run.proc
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert " " in str(folder_run.data) and " " in str(folder_run.data_dir) and " " in FOLDER_MODEL
    assert "Got unexpected extra argument" not in proc.stderr
    (parent,) = client.search_runs([client.get_experiment_by_name(FOLDER_EXPERIMENT).experiment_id],
                                   filter_string=f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PIPELINE}'")
    assert parent.info.status == "FINISHED"
    # `mlflow run` logs a parameter as it put it on the command line (shell-quoted); the pipeline got it whole:
    assert parent.data.params["dataset"] == shlex.quote(str(folder_run.data))
    (dataset,) = [d.dataset for d in parent.inputs.dataset_inputs]
    assert json.loads(dataset.source)["uri"] == str(folder_run.data) and dataset.name == "my images"
    variants = {mv.tags[contract.TAG_VARIANT] for mv in client.search_model_versions(f"name = '{FOLDER_MODEL}'")}
    assert variants == {contract.BASELINE, *contract.VARIANTS}
