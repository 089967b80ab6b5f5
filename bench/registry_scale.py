"""``edgeq versions`` on a model with 1,000 versions: one get_run per version vs runs fetched in batches.

A throw-away ``mlflow server`` on loopback (SQLite); each version gets a run of its own with the
metrics the pipeline logs and one device's figures. Both ways build the same rows (checked);
run alone with ``python -m bench.registry_scale [--versions N] [--chunk N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools import runs
from registry_tools.versions import collect
from registry_tools.mlflow_server import MlflowServer

MODEL = "edgeq-bench-scale"
VARIANTS = contract.VARIANTS


def populate(db_uri: str, count: int) -> None:
    """``count`` versions, each with its own run holding variant metrics and one device's report.

    Written straight into the server's SQLite store before it starts: through the REST API
    the setup alone takes minutes on a loaded machine, and it is not what is measured.
    """
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    tracking = TrackingStore(db_uri, "mlflow-artifacts:/")
    registry = RegistryStore(db_uri)
    experiment = tracking.create_experiment("bench-scale")
    registry.create_registered_model(MODEL)
    for i in range(count):
        now = int(time.time() * 1000)
        run = tracking.create_run(experiment, "bench", now, [], f"scale-{i}")
        metrics = {contract.M_ACCURACY: 0.9 + (i % 7) / 100, contract.M_DROP: (i % 5) / 4, contract.M_SIZE: 100_000 + i,
                   contract.M_SIZE_RATIO: 10.0, contract.M_P50: 0.03 + i / 1e5, contract.M_P90: 0.04 + i / 1e5,
                   contract.M_SPEEDUP: 2.0, contract.device_key("pi-bench", contract.D_P50): 0.5 + i / 1e4}
        tracking.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()], params=[],
                           tags=[RunTag(contract.device_key("pi-bench", contract.D_THROTTLED), "no")])
        tracking.update_run_info(run.info.run_id, RunStatus.FINISHED, now, None)
        tags = [ModelVersionTag(contract.TAG_VARIANT, VARIANTS[i % len(VARIANTS)]), ModelVersionTag(contract.TAG_FORMAT, "tflite")]
        registry.create_model_version(MODEL, f"{run.info.artifact_uri}/{contract.ARTIFACT_DIR}", run.info.run_id, tags)


def _time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(versions: int = 1000, chunk: int = runs.CHUNK, repeats: int = 3) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        server = MlflowServer(Path(tmp) / "mlflow")
        start = time.perf_counter()
        populate(f"sqlite:///{server.root / 'mlflow.db'}", versions)
        setup_s = time.perf_counter() - start
        server.start()
        try:
            client = MlflowClient(server.uri, registry_uri=server.uri)
            one_by_one_s, old_rows = _time(lambda: collect(client, MODEL, fetch_runs=runs.runs_one_by_one), repeats)
            batched_s, new_rows = _time(
                lambda: collect(client, MODEL, fetch_runs=lambda c, ids: runs.runs_by_id(c, ids, chunk)), repeats)
            if old_rows != new_rows or len(new_rows) != versions:
                raise RuntimeError("the batched rows differ from the per-run rows")
            cli = [str(Path(sys.executable).with_name("edgeq")), "--tracking-uri", server.uri, "versions", MODEL]
            start = time.perf_counter()
            proc = subprocess.run(cli, capture_output=True, text=True, env=dict(os.environ))
            cli_s = time.perf_counter() - start
            if proc.returncode != 0 or len(proc.stdout.splitlines()) != versions + 2:
                raise RuntimeError(f"edgeq versions failed: {proc.stderr[-2000:]}")
        finally:
            server.stop()
    return "\n".join([
        f"### Registry reads: `edgeq versions` with {versions:,} versions (loopback server, SQLite)\n",
        "| way | requests | median of %d (s) | versions / s |" % repeats,
        "|---|---|---|---|",
        f"| one `get_run` per version (before) | {versions + 2:,} | {one_by_one_s:.2f} | {versions / one_by_one_s:,.0f} |",
        f"| `search_runs` with `run_id IN (…)`, {chunk} per request | {-(-versions // chunk) + 3} | {batched_s:.2f} | "
        f"{versions / batched_s:,.0f} |",
        "",
        f"Batched is **{one_by_one_s / batched_s:.1f}×** faster; the whole `edgeq versions` command "
        f"(process start and imports included) took {cli_s:.1f} s. Writing the {versions:,} versions into the store took {setup_s:.0f} s.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=runs.CHUNK)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(run(args.versions, args.chunk, args.repeats))


if __name__ == "__main__":
    main()
