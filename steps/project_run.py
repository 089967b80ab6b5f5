"""The run `mlflow run` made for the pipeline, ended FAILED with its one-line reason when the pipeline stops early."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from edge import contract


@contextlib.contextmanager
def failing_before_start(client: MlflowClient) -> Iterator[None]:
    """Around the pipeline's command: under `mlflow run`, a failure before the pipeline started (and so ended)
    the run `mlflow run` made ends that run FAILED, tagged with the one line the pipeline prints."""
    try:
        yield
    except BaseException as exc:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id and not (isinstance(exc, SystemExit) and not exc.code):
            with contextlib.suppress(Exception):  # a courtesy: never hide the failure behind it
                if client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.RUNNING):
                    client.set_tag(run_id, contract.TAG_FAILURE_REASON, _reason(exc)[:500])
                    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):  # the pipeline printed why (stopped by a signal) and exits with a code
        return f"exited with code {exc.code}"
    text = (exc.format_message() if isinstance(exc, click.ClickException) else str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
