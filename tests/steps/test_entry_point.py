"""The MLproject's command as a user runs it: a stop before training is one line, and the run says why; links open the runs table."""
from __future__ import annotations

import re

from edge import contract
from tests.conftest import mlflow_run

EXPERIMENT = "edgeq-tests-entry"
# What `mlflow run` itself logs around the command (the command it runs, that the run failed): not the pipeline's.
MLFLOW_OWN = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR) mlflow\.")


def test_a_stop_before_training_is_one_line_and_ends_the_run_failed_with_it(server, client):
    # Fails in the pipeline's checks after TensorFlow is imported, and needs no network either way.
    proc = mlflow_run(server.uri, EXPERIMENT, {"quant": contract.INT8, "dataset": "digits", "model": "tiny_cnn",
                                               "weights": "imagenet", "registered_model": "edgeq-tests-entry"})
    assert proc.returncode != 0
    own = [line for line in proc.stderr.splitlines() if line.strip() and not MLFLOW_OWN.match(line)]
    assert len(own) == 1, "\n".join(own)  # no TensorFlow or absl start-up lines, no traceback
    (line,) = own
    assert line.startswith("Error: ") and "tiny_cnn has no pretrained weights" in line
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                filter_string="params.registered_model = 'edgeq-tests-entry'")
    assert run.info.status == "FAILED"
    assert run.data.tags[contract.TAG_FAILURE_REASON] == line.removeprefix("Error: ")


def test_the_pipeline_prints_links_that_open_the_runs_table_and_not_mlflows_own(pipeline, client):
    run_id = re.search(r"pipeline run: (\w+)", pipeline.output).group(1)
    experiment_id = client.get_run(run_id).info.experiment_id
    base = f"{pipeline.uri}/#/"
    assert f"runs:  {base}experiments/{experiment_id}/runs?workflowType=machine_learning" in pipeline.output
    assert f"run:   {base}experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning" in pipeline.output
    assert "View experiment at" not in pipeline.output  # MLflow's own links open its GenAI layout
