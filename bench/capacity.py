"""Server capacity: the requests of a quiet device run and of a first install, replayed at concurrency, per store and workers.

    python -m bench.capacity                                  # SQLite and PostgreSQL, 1/2/4 workers, 1k/10k/100k ids
    python -m bench.capacity --stores postgres --workers 4 --ids 100000 --seconds 10

One store per backend (a SQLite file; a throw-away PostgreSQL cluster, scripts/server.sh db) holds the
int8 fixture behind ``production`` and 100,000 device runs in the fleet experiment recorded on the model
(inserted straight into the store: making them over HTTP would take longer than the measurement). For
each worker count a fresh ``mlflow server`` serves it on loopback; load threads then replay, for device
ids drawn from the first 1k/10k/100k runs:

- the **quiet run** at the defaults (15-minute runs, an hourly heartbeat): resolve the alias every run,
  ``runs/update`` of the device's run every 4th run — 1.25 requests per run;
- a **first install**: resolve, the model's tags, find the device's run, create it, its identity params,
  the four bundle files, the registered accuracy, the signed report and the heartbeat's tags (one
  ``log-batch`` each), ``runs/update`` — 13 requests.

Each cell reports requests/s, p50/p99 per request and errors (any answer but 2xx, or none), and the
devices one server holds on a 15-minute interval with 30 % headroom: ``0.7 × req/s × 900 / 1.25``.
Everything is loopback, bounded in time (``--seconds`` per cell) and in count.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.fleet import postgres_cluster, register_model, start_server
from edge import contract

INTERVAL_S = 900
HEADROOM = 0.30
QUIET_REQUESTS_PER_RUN = 1 + 60 / contract.DEFAULT_HEARTBEAT_MINUTES * contract.DEFAULT_INTERVAL_MINUTES / 60  # 1.25
RUNS = 100_000
API = "/api/2.0/mlflow"


@dataclass
class Cell:
    store: str
    workers: int
    ids: int
    concurrency: int
    path: str  # quiet | install
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    runs: int = 0  # quiet runs or installs completed

    @property
    def rps(self) -> float:
        return (len(self.latencies) + self.errors) / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def devices_held(self) -> int:
        """Devices on a 15-minute interval one server serves with 30 % headroom (quiet runs)."""
        return int((1 - HEADROOM) * self.rps * INTERVAL_S / QUIET_REQUESTS_PER_RUN)


class Fleet:
    """What the replay needs of the store: the model, its version, the fleet experiment and the device runs."""

    def __init__(self, model: str, version: str, experiment_id: str, run_ids: list[str]):
        self.model, self.version, self.experiment_id, self.run_ids = model, version, experiment_id, run_ids


def prepare(uri: str, db_uri: str) -> Fleet:
    """The fixture behind production, the fleet experiment recorded on the model, RUNS device runs inserted."""
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine, insert

    from mlflow.store.tracking.dbmodels.models import SqlRun

    _, version, _ = register_model(uri)
    client = MlflowClient(uri, registry_uri=uri)
    model = "edgeq-bench-fleet"
    experiment_id = client.create_experiment(contract.FLEET_EXPERIMENT + "-capacity")
    client.set_registered_model_tag(model, contract.TAG_FLEET_EXPERIMENT_ID, experiment_id)
    now = int(time.time() * 1000)
    run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
    engine = create_engine(db_uri)
    with engine.begin() as conn:
        for start in range(0, RUNS, 5000):
            conn.execute(insert(SqlRun), [
                {"run_uuid": r, "name": f"sim-{start + i:06d}", "source_type": "LOCAL", "source_name": "", "user_id": "bench",
                 "status": "FINISHED", "start_time": now, "end_time": now, "lifecycle_stage": "active",
                 "experiment_id": int(experiment_id), "artifact_uri": ""}
                for i, r in enumerate(run_ids[start:start + 5000])])
    engine.dispose()
    return Fleet(model, version, experiment_id, run_ids)


def _quiet(session: requests.Session, uri: str, fleet: Fleet, run_id: str, beat: bool, record) -> None:
    record(session.get(f"{uri}{API}/registered-models/alias", params={"name": fleet.model, "alias": "production"},
                       timeout=60))
    if beat:
        record(session.post(f"{uri}{API}/runs/update", timeout=60,
                            json={"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)}))


def _install(session: requests.Session, uri: str, fleet: Fleet, device: str, record) -> None:
    """The requests of a first install, in order (bodies of the device's sizes; no benchmark)."""
    name, version = fleet.model, fleet.version
    record(session.get(f"{uri}{API}/registered-models/alias", params={"name": name, "alias": "production"}, timeout=60))
    record(session.get(f"{uri}{API}/registered-models/get", params={"name": name}, timeout=60))
    record(session.post(f"{uri}{API}/runs/search", timeout=60, json={
        "experiment_ids": [fleet.experiment_id], "max_results": 1, "order_by": ["attributes.start_time ASC"],
        "filter": f"params.`{contract.P_DEVICE_ID}` = '{device}' and params.`{contract.P_MODEL}` = '{name}'"}))
    made = session.post(f"{uri}{API}/runs/create", timeout=60, json={
        "experiment_id": fleet.experiment_id, "run_name": device, "start_time": int(time.time() * 1000),
        "tags": [{"key": contract.TAG_DEVICE_ID, "value": device}]})
    record(made)
    run_id = made.json()["run"]["info"]["run_id"] if made.ok else fleet.run_ids[0]
    record(session.post(f"{uri}{API}/runs/log-batch", timeout=60, json={"run_id": run_id, "params": [
        {"key": contract.P_DEVICE_ID, "value": device}, {"key": contract.P_MODEL, "value": name}]}))
    for path in (contract.MODEL_FILE, contract.MANIFEST_FILE, contract.SAMPLE_FILE, contract.LABELS_FILE):
        record(session.get(f"{uri}/model-versions/get-artifact", timeout=60,
                           params={"name": name, "version": version, "path": path}))
    record(session.get(f"{uri}{API}/metrics/get-history", params={"run_id": run_id, "metric_key": contract.M_ACCURACY},
                       timeout=60))
    now = int(time.time() * 1000)
    metrics = [{"key": f"v{version}.m{i}", "value": float(i), "timestamp": now, "step": 0} for i in range(14)]
    tags = [{"key": f"v{version}.t{i}", "value": "x" * 20} for i in range(14)]
    params = [{"key": f"edgeq.ev.{uuid.uuid4().hex[:16]}", "value": "e" * 900},
              {"key": f"v{version}.evidence", "value": "1"}]
    record(session.post(f"{uri}{API}/runs/log-batch", timeout=60,
                        json={"run_id": run_id, "metrics": metrics, "tags": tags, "params": params}))
    record(session.post(f"{uri}{API}/runs/log-batch", timeout=60, json={"run_id": run_id, "tags": [
        {"key": f"edgeq.tag{i}", "value": "y" * 16} for i in range(8)], "params": [
        {"key": f"edgeq.ev.{uuid.uuid4().hex[:16]}", "value": "s" * 600}]}))
    record(session.post(f"{uri}{API}/runs/update", timeout=60,
                        json={"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)}))


def replay(uri: str, fleet: Fleet, cell: Cell, seconds: float, warmup_s: float = 1.0) -> Cell:
    """``cell.concurrency`` threads replay ``cell.path`` for ``seconds`` (after a warm-up that is not counted)."""
    lock = threading.Lock()
    stop_at = time.monotonic() + warmup_s + seconds
    counting_from = time.monotonic() + warmup_s

    def worker(index: int) -> None:
        session = requests.Session()
        rng = random.Random(index)
        runs = 0
        while time.monotonic() < stop_at:
            pick = rng.randrange(cell.ids)
            marks: list[tuple[float, bool]] = []
            last = [time.monotonic()]

            def timed(response: requests.Response) -> None:
                now = time.monotonic()
                marks.append((now - last[0], response.ok))
                last[0] = now

            try:
                if cell.path == "quiet":
                    _quiet(session, uri, fleet, fleet.run_ids[pick], runs % 4 == index % 4, timed)
                else:
                    _install(session, uri, fleet, f"dev-{index}-{runs}-{uuid.uuid4().hex[:6]}", timed)
            except requests.RequestException:
                marks.append((time.monotonic() - last[0], False))
            runs += 1
            if time.monotonic() >= counting_from:
                with lock:
                    cell.latencies += [s for s, ok in marks if ok]
                    cell.errors += sum(1 for _, ok in marks if not ok)
                    cell.runs += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(cell.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + warmup_s + 120)
    cell.seconds = seconds
    return cell


@contextlib.contextmanager
def store(kind: str, root: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{root / 'mlflow.db'}"
    else:
        with postgres_cluster() as uri:
            yield uri


def run(stores: list[str], workers: list[int], ids: list[int], concurrency: list[int], seconds: float,
        install_concurrency: int) -> list[Cell]:
    cells: list[Cell] = []
    for kind in stores:
        root = Path(tempfile.mkdtemp(prefix=f"edgeq-capacity-{kind}-"))
        try:
            with store(kind, root) as db_uri:
                fleet = None
                for w in workers:
                    server = start_server(db_uri, root, workers=w)
                    try:
                        fleet = fleet or prepare(server.uri, db_uri)
                        for n in ids:
                            for c in concurrency:
                                cells.append(replay(server.uri, fleet, Cell(kind, w, n, c, "quiet"), seconds))
                                _progress(cells[-1])
                        cells.append(replay(server.uri, fleet, Cell(kind, w, ids[-1], install_concurrency, "install"),
                                            seconds))
                        _progress(cells[-1])
                    finally:
                        server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return cells


def _progress(cell: Cell) -> None:
    print(f"  {cell.store} w{cell.workers} ids {cell.ids} c{cell.concurrency} {cell.path}: {cell.rps:.0f} req/s, "
          f"p50 {cell.quantile(0.5) * 1000:.0f} ms, p99 {cell.quantile(0.99) * 1000:.0f} ms, {cell.errors} errors",
          file=sys.stderr, flush=True)


def table(cells: list[Cell]) -> str:
    lines = ["| store | workers | device ids | path | concurrency | req/s | p50 ms | p99 ms | errors | devices held (15 min, 30 % headroom) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        held = f"{c.devices_held:,}" if c.path == "quiet" else f"{c.runs / c.seconds:.1f} installs/s"
        lines.append(f"| {c.store} | {c.workers} | {c.ids:,} | {c.path} | {c.concurrency} | {c.rps:.0f} | "
                     f"{c.quantile(0.5) * 1000:.0f} | {c.quantile(0.99) * 1000:.0f} | {c.errors} | {held} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--ids", nargs="+", type=int, default=[1000, 10_000, 100_000],
                        help=f"distinct device ids replayed (at most {RUNS})")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--install-concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell (at most 120)")
    args = parser.parse_args()
    if max(args.ids) > RUNS or not 0 < args.seconds <= 120 or max(args.concurrency + [args.install_concurrency]) > 64:
        parser.error(f"--ids at most {RUNS}, --seconds 0–120, concurrency at most 64")
    started = time.monotonic()
    cells = run(args.stores, args.workers, sorted(args.ids), args.concurrency, args.seconds, args.install_concurrency)
    print(table(cells))
    best = max((c for c in cells if c.path == "quiet"), key=lambda c: c.devices_held, default=None)
    if best:
        print(f"\nmost devices held: {best.store}, {best.workers} workers, concurrency {best.concurrency}: "
              f"{best.devices_held:,} devices ({best.rps:.0f} req/s × {INTERVAL_S} s × 0.7 / {QUIET_REQUESTS_PER_RUN:g})")
    print(f"({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
