"""Server capacity: the requests of a quiet device run and of a first install, replayed at concurrency, per store, server and workers.

    python -m bench.capacity                # PostgreSQL and SQLite, uvicorn and gthread side by side, 2 workers, ≈ 11 min
    python -m bench.capacity --stores postgres --generator wrk --concurrency 32 --rounds 2 --seconds 5   # ≈ 2 min

One store per backend (a SQLite file; a throw-away PostgreSQL cluster, scripts/server.sh db) holds the
int8 fixture behind ``production`` and 100,000 device runs in the fleet experiment recorded on the model
(inserted straight into the store: making them over HTTP would take longer than the measurement). For
each worker count, one ``mlflow server`` per server configuration serves it on loopback, all at once;
the cells then take turns (``--rounds``, the order reversed every round), so every configuration is
measured under the same conditions on a shared machine:

- **uvicorn**: ``mlflow server``'s default, the FastAPI app wrapping MLflow's Flask app;
- **gthread**: gunicorn's threaded workers serving the Flask app directly, with a database connection
  per thread (what scripts/server.sh starts).

Replayed, for device ids drawn from the first 1k/10k/100k runs:

- the **quiet run** at the defaults (15-minute runs, an hourly heartbeat): resolve the alias every run,
  ``runs/update`` of the device's run every 4th run — 1.25 requests per run — by ``wrk`` (C, one thread,
  a Lua script for the mix: bench/capacity_wrk.lua) and/or by Python threads (``requests``);
- a **first install**: resolve, the model's tags, find the device's run, create it, its identity params,
  the four bundle files, the registered accuracy, the signed report and the heartbeat's tags (one
  ``log-batch`` each), ``runs/update`` — 13 requests, by Python threads.

The load generator shares the cores with the server; a fleet's devices do not. So each cell also counts
CPU seconds from /proc: the server's processes, PostgreSQL's, the generator's, and the machine's. It
reports requests/s, p50/p99 per request, errors (any answer but 2xx/3xx, or none), the server's CPU per
request (MLflow + PostgreSQL), and the devices one server holds on a 15-minute interval with 30 %
headroom two ways: measured, ``0.7 × req/s × 900 / 1.25``; and from the server's CPU per request, with
the server alone on the cores, ``0.7 × cores / (CPU s per request) × 900 / 1.25``.
Everything is loopback, bounded in time (``--seconds`` per cell) and in count.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

from bench.capacity_cpu import Snapshot, postmaster_pid, snapshot
from bench.capacity_wrk import WrkMissing, run_wrk, wrk_path
from bench.fleet import postgres_cluster, register_model
from edge import contract
from registry_tools.mlflow_server import MlflowServer

INTERVAL_S = 900
HEADROOM = 0.30
QUIET_REQUESTS_PER_RUN = 1 + 60 / contract.DEFAULT_HEARTBEAT_MINUTES * contract.DEFAULT_INTERVAL_MINUTES / 60  # 1.25
RUNS = 100_000
API = "/api/2.0/mlflow"
CORES = os.cpu_count() or 1
GTHREAD_THREADS = 8
# What scripts/server.sh starts (tests/scripts/test_server_sh.py holds the two to the same options).
GTHREAD_OPTS = (f"--worker-class gthread --threads {GTHREAD_THREADS} --keep-alive 30 --limit-request-line 8190 "
                "--access-logfile - --no-control-socket")


@dataclass(frozen=True)
class ServerConfig:
    name: str
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


SERVERS = {
    "uvicorn": ServerConfig("uvicorn"),
    "gthread": ServerConfig("gthread", ("--gunicorn-opts", GTHREAD_OPTS),
                            (("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", str(GTHREAD_THREADS)),)),
}


@dataclass
class Cell:
    store: str
    server: str
    workers: int
    ids: int
    concurrency: int
    path: str  # quiet | install
    generator: str  # wrk | python
    seconds: float = 0.0
    requests: int = 0  # answered or failed
    errors: int = 0
    runs: int = 0  # quiet runs or installs completed (python generator)
    p50s: list[float] = field(default_factory=list)  # per round
    p99s: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.p50s) if self.p50s else float("nan")

    @property
    def p99(self) -> float:
        """The worst round's."""
        return max(self.p99s) if self.p99s else float("nan")

    @property
    def cpu_per_request_s(self) -> float:
        """Server CPU (MLflow's processes and PostgreSQL's) per request."""
        return (self.server_cpu_s + self.db_cpu_s) / self.requests if self.requests else float("nan")

    @property
    def devices_held(self) -> int:
        """Devices on a 15-minute interval one server serves with 30 % headroom, as measured (quiet runs)."""
        return int((1 - HEADROOM) * self.rps * INTERVAL_S / QUIET_REQUESTS_PER_RUN)

    @property
    def devices_by_cpu(self) -> int:
        """The same from the server's CPU per request, the server alone on ``CORES`` cores."""
        per = self.cpu_per_request_s
        return int((1 - HEADROOM) * CORES / per * INTERVAL_S / QUIET_REQUESTS_PER_RUN) if per == per and per else 0

    def add(self, seconds: float, requests_: int, errors: int, p50: float, p99: float, cpu: Snapshot, server_pid: int,
            db_pid: int | None, generator_cpu_s: float) -> None:
        self.seconds += seconds
        self.requests += requests_
        self.errors += errors
        self.p50s.append(p50)
        self.p99s.append(p99)
        self.server_cpu_s += cpu.trees[server_pid]
        self.db_cpu_s += cpu.trees[db_pid] if db_pid else 0.0
        self.generator_cpu_s += generator_cpu_s
        self.machine_cpu_s += cpu.machine_busy_s


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


@dataclass
class Replayed:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    runs: int = 0


def replay(uri: str, fleet: Fleet, path: str, ids: int, concurrency: int, seconds: float,
           warmup_s: float = 1.0) -> Replayed:
    """``concurrency`` threads replay ``path`` for ``seconds`` (after a warm-up that is not counted)."""
    out = Replayed()
    lock = threading.Lock()
    stop_at = time.monotonic() + warmup_s + seconds
    counting_from = time.monotonic() + warmup_s

    def worker(index: int) -> None:
        session = requests.Session()
        rng = random.Random(index)
        runs = 0
        while time.monotonic() < stop_at:
            pick = rng.randrange(ids)
            marks: list[tuple[float, bool]] = []
            last = [time.monotonic()]

            def timed(response: requests.Response) -> None:
                now = time.monotonic()
                marks.append((now - last[0], response.ok))
                last[0] = now

            try:
                if path == "quiet":
                    _quiet(session, uri, fleet, fleet.run_ids[pick], runs % 4 == index % 4, timed)
                else:
                    _install(session, uri, fleet, f"dev-{index}-{runs}-{uuid.uuid4().hex[:6]}", timed)
            except requests.RequestException:
                marks.append((time.monotonic() - last[0], False))
            runs += 1
            if time.monotonic() >= counting_from:
                with lock:
                    out.latencies += [s for s, ok in marks if ok]
                    out.errors += sum(1 for _, ok in marks if not ok)
                    out.runs += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + warmup_s + 120)
    return out


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(cell: Cell, server: MlflowServer, db_pid: int | None, fleet: Fleet, run_ids_file: Path,
            seconds: float) -> None:
    """One round of ``cell``: a warm-up second, then ``seconds`` counted, CPU read from /proc around it."""
    roots = [server.proc.pid] + ([db_pid] if db_pid else [])
    if cell.generator == "wrk":
        run_wrk(server.uri, fleet.model, cell.ids, run_ids_file, cell.concurrency, 1)
        before = snapshot(roots)
        got = run_wrk(server.uri, fleet.model, cell.ids, run_ids_file, cell.concurrency, seconds)
        cpu = snapshot(roots).minus(before)
        cell.add(got.seconds, got.requests, got.errors, got.p50_s, got.p99_s, cpu, server.proc.pid, db_pid, got.cpu_s)
        return
    # The Python threads: their CPU is this process's, read once the 1 s warm-up is over.
    holder: dict[str, object] = {}

    def counting_starts() -> None:
        holder["cpu"], holder["own"] = snapshot(roots), time.process_time()

    timer = threading.Timer(1.0, counting_starts)
    timer.start()
    got = replay(server.uri, fleet, cell.path, cell.ids, cell.concurrency, seconds)
    timer.join()
    cpu = snapshot(roots).minus(holder["cpu"])
    own = time.process_time() - holder["own"]
    cell.runs += got.runs
    cell.add(seconds, len(got.latencies) + got.errors, got.errors, _quantile(got.latencies, 0.5),
             _quantile(got.latencies, 0.99), cpu, server.proc.pid, db_pid, own)


@contextlib.contextmanager
def store(kind: str, root: Path) -> Iterator[tuple[str, int | None]]:
    """The backend store URI and the pid of its database server (None for SQLite)."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'mlflow.db'}", None
    else:
        with postgres_cluster() as uri:
            socket_dir = parse_qs(urlparse(uri).query)["host"][0]
            yield uri, postmaster_pid(str(Path(socket_dir).parent / "data"))


def start(config: ServerConfig, db_uri: str, root: Path, workers: int) -> MlflowServer:
    """``config``'s ``mlflow server`` on loopback (its environment only for it), serving the artifacts they all share."""
    server = MlflowServer(root / f"{config.name}-w{workers}", backend_store_uri=db_uri, workers=workers,
                          extra_args=config.extra_args)
    (root / "artifacts").mkdir(exist_ok=True)
    if not (server.root / "artifacts").exists():
        (server.root / "artifacts").symlink_to(root / "artifacts")
    saved = dict(os.environ)
    os.environ.update(config.env)
    try:
        server.launch()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return server.wait_ready(300)


def run(stores: list[str], servers: list[str], workers: list[int], ids: list[int], concurrency: list[int],
        generators: list[str], seconds: float, rounds: int, install_concurrency: int) -> list[Cell]:
    cells: list[Cell] = []
    for kind in stores:
        root = Path(tempfile.mkdtemp(prefix=f"edgeq-capacity-{kind}-"))
        try:
            with store(kind, root) as (db_uri, db_pid):
                fleet = None
                run_ids_file = root / "run_ids.txt"
                for w in workers:
                    running: dict[str, MlflowServer] = {}
                    try:
                        for name in servers:
                            running[name] = start(SERVERS[name], db_uri, root, w)
                        if fleet is None:
                            fleet = prepare(running[servers[0]].uri, db_uri)
                            run_ids_file.write_text("\n".join(fleet.run_ids) + "\n")
                        plan = [Cell(kind, name, w, n, c, "quiet", g) for n in ids for c in concurrency
                                for g in generators for name in servers]
                        if install_concurrency:
                            plan += [Cell(kind, name, w, ids[-1], install_concurrency, "install", "python")
                                     for name in servers]
                        for r in range(rounds):
                            for cell in (plan if r % 2 == 0 else plan[::-1]):
                                measure(cell, running[cell.server], db_pid, fleet, run_ids_file, seconds)
                        for cell in plan:
                            _progress(cell)
                        cells += plan
                    finally:
                        for server in running.values():
                            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return cells


def _progress(cell: Cell) -> None:
    print(f"  {cell.store} {cell.server} w{cell.workers} ids {cell.ids} c{cell.concurrency} {cell.path} "
          f"({cell.generator}): {cell.rps:.0f} req/s, p50 {cell.p50 * 1000:.0f} ms, p99 {cell.p99 * 1000:.0f} ms, "
          f"{cell.errors} errors, server {cell.cpu_per_request_s * 1000:.2f} CPU ms/request, "
          f"generator {cell.generator_cpu_s / cell.seconds:.2f} cores", file=sys.stderr, flush=True)


def table(cells: list[Cell]) -> str:
    lines = ["| store | server | workers | device ids | path | generator | concurrency | req/s | p50 ms | p99 ms | errors "
             "| server CPU ms/request (MLflow + DB) | generator, cores | other work, cores "
             "| devices held, measured | devices held, server CPU alone on the cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        other = (c.machine_cpu_s - c.server_cpu_s - c.db_cpu_s - c.generator_cpu_s) / c.seconds
        cpu = f"{c.cpu_per_request_s * 1000:.2f} ({c.server_cpu_s * 1000 / c.requests:.2f} + {c.db_cpu_s * 1000 / c.requests:.2f})"
        if c.path == "quiet":
            held, by_cpu = f"{c.devices_held:,}", f"{c.devices_by_cpu:,}"
        else:
            held, by_cpu = f"{c.runs / c.seconds:.1f} installs/s", f"{CORES / c.cpu_per_request_s / 13:.1f} installs/s"
        if c.store == "sqlite":
            by_cpu = "– (SQLite's write lock, not CPU, bounds it)"
        lines.append(f"| {c.store} | {c.server} | {c.workers} | {c.ids:,} | {c.path} | {c.generator} | {c.concurrency} "
                     f"| {c.rps:.0f} | {c.p50 * 1000:.0f} | {c.p99 * 1000:.0f} | {c.errors} | {cpu} "
                     f"| {c.generator_cpu_s / c.seconds:.2f} | {max(0.0, other):.2f} | {held} | {by_cpu} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgres"], default=["postgres", "sqlite"])
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS),
                        help="server configurations, side by side (uvicorn: mlflow's default; gthread: scripts/server.sh's)")
    parser.add_argument("--workers", nargs="+", type=int, default=[2], help="worker processes (one run per count)")
    parser.add_argument("--ids", nargs="+", type=int, default=[100_000], help=f"distinct device ids replayed (at most {RUNS})")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--generator", nargs="+", choices=["wrk", "python"], default=["wrk", "python"],
                        help="quiet-run load: wrk (C, Debian's package; installed as root when missing) and/or Python threads")
    parser.add_argument("--install-concurrency", type=int, default=8, help="0: no install cells")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell and round (at most 120)")
    parser.add_argument("--rounds", type=int, default=3, help="turns every cell takes, the order reversed each round")
    args = parser.parse_args()
    if (max(args.ids) > RUNS or not 0 < args.seconds <= 120 or not 1 <= args.rounds <= 10
            or max(args.concurrency + [args.install_concurrency]) > 64):
        parser.error(f"--ids at most {RUNS}, --seconds 0–120, --rounds 1–10, concurrency at most 64")
    if "wrk" in args.generator:
        try:
            wrk_path()
        except WrkMissing as exc:
            parser.exit(2, f"{exc}\n")
    started = time.monotonic()
    cells = run(args.stores, args.servers, args.workers, sorted(args.ids), args.concurrency, args.generator, args.seconds,
                args.rounds, args.install_concurrency)
    print(table(cells))
    quiet = [c for c in cells if c.path == "quiet" and c.errors == 0]
    for name in args.servers:
        mine = [c for c in quiet if c.server == name]
        if mine:
            best = max(mine, key=lambda c: c.devices_held)
            print(f"\n{name}: most devices held as measured: {best.store}, {best.workers} workers, {best.generator}, "
                  f"concurrency {best.concurrency}: {best.devices_held:,} ({best.rps:.0f} req/s × {INTERVAL_S} s × 0.7 / "
                  f"{QUIET_REQUESTS_PER_RUN:g})")
        costly = max((c for c in mine if c.store == "postgres"), key=lambda c: c.cpu_per_request_s, default=None)
        if costly:
            print(f"{name}: from the server's CPU, the costliest PostgreSQL cell ({costly.cpu_per_request_s * 1000:.2f} ms "
                  f"per request) on {CORES} cores alone: {costly.devices_by_cpu:,} devices with 30 % headroom")
    print(f"({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
