"""Links into MLflow's UI that open the training layout (runs table, model pages), built in this one place."""
from __future__ import annotations

import sys
from urllib.parse import quote, urlsplit, urlunsplit

from edge.contract import ExitCode

# MLflow 3's UI chooses its layout from a per-browser switch (GenAI by default) and lets it win over the
# experiment's mlflow.experimentKind tag; a `workflowType` in the query after the hash route wins over both
# (the UI reads it with the router's search params, so it belongs after `#/…`, not before the `#`).
WORKFLOW_TYPE = "machine_learning"
_QUERY = f"?workflowType={WORKFLOW_TYPE}"


def ui_base(tracking_uri: str) -> str | None:
    """The UI's address for an http(s) tracking URI, without credentials or a trailing slash; None for a local store."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _link(tracking_uri: str, route: str) -> str | None:
    base = ui_base(tracking_uri)
    return None if base is None else f"{base}/#/{route}{_QUERY}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str | None:
    """The experiment's runs table."""
    return _link(tracking_uri, f"experiments/{quote(str(experiment_id), safe='')}/runs")


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """One run's page (params, metrics, tags, artifacts)."""
    return _link(tracking_uri, f"experiments/{quote(str(experiment_id), safe='')}/runs/{quote(run_id, safe='')}")


def model_url(tracking_uri: str, model: str, version: str | int | None = None) -> str | None:
    """A registered model's page, or one version's page (its tags: edgeq.fleet and the guard's verdict)."""
    route = f"models/{quote(model, safe='')}"
    return _link(tracking_uri, route if version is None else f"{route}/versions/{quote(str(version), safe='')}")


def main(argv: list[str]) -> int:
    """Print one link (for scripts/demo.sh)."""
    builders = {"experiment": experiment_url, "run": run_url, "model": model_url}
    usage = "usage: python -m edge.ui_links TRACKING_URI experiment ID | run EXPERIMENT_ID RUN_ID | model NAME [VERSION]"
    arity = {"experiment": (1, 1), "run": (2, 2), "model": (1, 2)}
    if len(argv) < 2 or argv[1] not in builders or not arity[argv[1]][0] <= len(argv) - 2 <= arity[argv[1]][1]:
        print(usage, file=sys.stderr)
        return int(ExitCode.BAD_CONFIG)
    print(builders[argv[1]](argv[0], *argv[2:]) or argv[0])  # a local store has no UI address: the URI itself
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
