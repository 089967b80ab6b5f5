"""Many runs by id in a few requests: ``search_runs`` with ``run_id IN (...)`` in chunks, not one ``get_run`` each."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from registry_tools.api import RegistryApi
from registry_tools.rest_client import ViewType, error_code

if TYPE_CHECKING:
    from mlflow.entities import Run

CHUNK = 200  # run ids per search request: a short SQL IN list, and 5 requests for 1,000 versions
_RUN_ID = re.compile(r"[0-9A-Za-z_-]+")  # what goes into the filter string unescaped


def experiment_ids(client: RegistryApi) -> list[str]:
    """Every experiment (deleted ones too: a version may point at a run of one)."""
    ids, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def runs_by_id(client: RegistryApi, run_ids: Iterable[str], chunk: int = CHUNK) -> dict[str, Run]:
    """``{run_id: Run}`` for the ids that exist, fetched ``chunk`` at a time."""
    wanted = sorted({r for r in run_ids if r})
    found: dict[str, Run] = {}
    batchable = [r for r in wanted if _RUN_ID.fullmatch(r)]
    experiments = experiment_ids(client) if batchable else []
    for start in range(0, len(batchable), chunk):
        part = batchable[start : start + chunk]
        quoted = ", ".join(f"'{run_id}'" for run_id in part)
        for run in client.search_runs(experiments, filter_string=f"attributes.run_id IN ({quoted})",
                                      run_view_type=ViewType.ALL, max_results=len(part)):
            found[run.info.run_id] = run
    # A run the search did not return (an experiment created meanwhile, an odd id): ask for it alone.
    for run_id in wanted:
        if run_id not in found:
            run = _get(client, run_id)
            if run is not None:
                found[run_id] = run
    return found


def runs_one_by_one(client: RegistryApi, run_ids: Iterable[str]) -> dict[str, Run]:
    """The former way, one ``get_run`` per id (kept for the side-by-side bench)."""
    found = {}
    for run_id in dict.fromkeys(r for r in run_ids if r):
        run = _get(client, run_id)
        if run is not None:
            found[run_id] = run
    return found


def _get(client: RegistryApi, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except Exception as exc:  # MlflowException or rest_client.ApiError
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
