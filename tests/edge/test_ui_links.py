"""Links into MLflow's UI: the training layout's query after the hash route, no credentials, names encoded as the UI does."""
from __future__ import annotations

import subprocess
import sys

from edge import ui_links


def test_links_carry_the_workflow_type_after_the_hash_route():
    uri = "http://127.0.0.1:5000/"
    assert ui_links.experiment_url(uri, "1") == "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    assert ui_links.run_url(uri, "1", "abc") == "http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning"
    assert ui_links.model_url(uri, "edgeq test folder", 3) == (
        "http://127.0.0.1:5000/#/models/edgeq%20test%20folder/versions/3?workflowType=machine_learning")


def test_no_credentials_and_no_link_for_a_local_store():
    assert ui_links.model_url("https://pi:s3cret@mlflow.lan:8443/mlflow", "m") == (
        "https://mlflow.lan:8443/mlflow/#/models/m?workflowType=machine_learning")
    assert ui_links.experiment_url("sqlite:///mlflow.db", "1") is None
    assert ui_links.experiment_url("./mlruns", "1") is None


def test_scripts_get_the_same_link_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "edge.ui_links", "http://h:5000", "model", "m", "2"],
                         capture_output=True, text=True, check=True).stdout
    assert out == ui_links.model_url("http://h:5000", "m", 2) + "\n"
    bad = subprocess.run([sys.executable, "-m", "edge.ui_links", "http://h:5000", "runs"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
