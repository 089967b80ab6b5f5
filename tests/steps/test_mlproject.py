"""`mlflow run` passes values with spaces through MLproject as one argument each (MLflow quotes them itself)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from edge import contract
from tests.conftest import REPO
from tests.images import make_image_folder

MODEL = "edgeq test mlproject"  # a space in the registered model's name too


def test_mlflow_run_with_paths_and_names_containing_spaces(server, client, tmp_path):
    data = make_image_folder(tmp_path / "my images", per_class=12)
    tfds_dir = tmp_path / "tfds data"  # unused by an image folder, but passed through like any value
    params = {"quant": "fp32", "dataset": str(data), "data_dir": str(tfds_dir), "model": "tiny_cnn", "weights": "none",
              "image_size": 16, "epochs": 1, "min_test_images": 1, "calibration_images": 100, "qat_epochs": 0,
              "sample_size": 4, "registered_model": MODEL}
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri, PATH=path)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("mlflow")), "run", str(REPO), "--env-manager", "local",
         "--experiment-name", "edgeq-tests-mlproject", *[a for k, v in params.items() for a in ("-P", f"{k}={v}")]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )

    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Got unexpected extra argument" not in proc.stderr
    (parent,) = client.search_runs([client.get_experiment_by_name("edgeq-tests-mlproject").experiment_id],
                                   filter_string=f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_PIPELINE}'")
    assert parent.info.status == "FINISHED"
    # `mlflow run` logs a parameter as it put it on the command line (shell-quoted); the pipeline got it whole:
    assert parent.data.params["dataset"] == shlex.quote(str(data))
    (dataset,) = [d.dataset for d in parent.inputs.dataset_inputs]
    assert json.loads(dataset.source)["uri"] == str(data) and dataset.name == "my images"
    variants = {mv.tags[contract.TAG_VARIANT] for mv in client.search_model_versions(f"name = '{MODEL}'")}
    assert variants == {contract.BASELINE, "fp32"}
