"""Fleet scale: N simulated devices on one version, written with the device's own REST bodies, then the reads timed.

    python -m bench.fleet_scale --devices 1000 10000            # SQLite, side by side in one table
    python -m bench.fleet_scale --devices 1000 --postgres URI   # the same against PostgreSQL
    python -m bench.fleet_scale --devices 10000 --direct        # bodies written with MLflow's SQL store, no HTTP
    python -m bench.fleet_scale --devices 50000 --direct --store DIR --build-only   # write now, time the reads later

Each simulated device does what ``edgeq-pull`` does on its first install, in the layout of
docs/fleet.md: creates its run in the fleet experiment recorded on the model (edge/heartbeat.py's
identity tags, and its identity params), logs the report edge/report.py builds (``v<N>.*`` keys,
``ReportContext.device_run_id``, signed with the device's own Ed25519 key: the ``edgeq.ev.*`` param
and the ``v<N>.evidence`` marker) together with the heartbeat's tags and signed status
(edge/heartbeat.py), and finishes the run (its end time is "last seen"). Every device's key is
enrolled in the register (``edgeq-devices``) as ``edgeq device enroll`` stores it, and the fleet
experiment's id is recorded on the model as the operator's setup does, so the readers verify
every report. Bodies are built by the device's own code; only the figures are synthetic. Each fleet size gets its own
store (a SQLite file, or a PostgreSQL database ``edgeq_fleet_<N>`` beside ``--postgres``'s), kept with
``--store DIR`` so that the long writes and the timed reads can run at different times. Then, per fleet size:
`edgeq versions`, `edgeq fleet`, `edgeq promote --from canary` (each a fresh process, as a user
runs them), `edgeq aggregate`, a new device's read path (resolve + registered accuracy + the
version run's answer), a no-change run (resolve + runs/update) and the rows a no-change run adds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge import clock, contract, identity
from edge.benchmark import BenchmarkResult, LatencyStats
from edge.contract import ExitCode
from edge.gate import Verdict
from edge.heartbeat import heartbeat_tags, status_params
from edge.provenance import Provenance
from edge.registry_client import ModelVersion, RegistryClient
from edge.report import ReportContext, build_report
from edge.runtime import Runtime
from edge.state import Installed

MODEL = "edgeq-bench-fleet-scale"
CLASSES = ("Cortex-A72", "Cortex-A53", "Cortex-A76")
MAX_DEVICES = 50_000
WRITTEN = "written.json"
RUNTIME = Runtime("ai-edge-litert", "2.3.0", "2.19", object)


@dataclass(frozen=True)
class _Config:  # what heartbeat_tags reads of edge.puller.PullConfig
    model: str
    alias: str = contract.CANARY_ALIAS
    version: str | None = None
    interval_s: int = 900


def device_id(i: int) -> str:
    return f"sim-{i:06d}"


def sim_key(device: str) -> identity.DeviceKey:
    """A simulated device's Ed25519 key, derived from its id: a kept store's keys can be made again, none is stored."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = hashlib.sha256(f"edgeq bench device key {device}".encode()).digest()
    return identity.DeviceKey(Ed25519PrivateKey.from_private_bytes(raw), Path("/nonexistent") / device)


def device_bodies(i: int, model: str, mv: ModelVersion, run_id: str) -> tuple[dict[str, float], dict[str, str], int, int]:
    """(metrics, tags, timestamp_ms, step) of device ``i``'s first report plus its heartbeat tags, unsigned."""
    metrics, tags, _, stamp, step = device_batch(i, model, mv, run_id)
    return metrics, tags, stamp, step


def bench_inputs(i: int) -> tuple[BenchmarkResult, Verdict, Provenance]:
    """Device ``i``'s synthetic measurement, verdict and provenance: what build_report is given."""
    p50 = 20.0 + (i % 17) * 0.5 + CLASSES.index(CLASSES[i % 3]) * 10
    result = BenchmarkResult(LatencyStats(p50, p50 * 1.2, p50 * 1.6, p50 * 1.05, 0.8, 100),
                             0.90 + (i % 7) * 0.01, 64, 60.0 + i % 5, 4)
    prov = Provenance({contract.D_CPU_FREQ_MHZ: 1500.0, contract.D_TEMP_BEFORE_C: 45.0, contract.D_TEMP_AFTER_C: 51.0},
                      {contract.D_THREADS: "4", contract.D_RUNTIME: RUNTIME.package,
                       contract.D_RUNTIME_VERSION: RUNTIME.version, contract.D_DELEGATE: "xnnpack (runtime default)",
                       contract.D_GOVERNOR: "ondemand", contract.D_THROTTLED: contract.THROTTLED_NO,
                       contract.D_THROTTLE_FLAGS: "0x0: none now"})
    return result, Verdict((), 0.85), prov


def device_batch(i: int, model: str, mv: ModelVersion, run_id: str, state_root: Path | None = None
                 ) -> tuple[dict[str, float], dict[str, str], dict[str, str], int, int]:
    """(metrics, tags, params, timestamp_ms, step) of device ``i``'s first report plus its heartbeat: one log-batch.

    With ``state_root`` (the device's state dir, where its sequence file lives) the report and the
    status are signed with the device's key as edgeq-pull signs them, and the params hold the run's identity,
    the signed report, its ``v<N>.evidence`` marker and the signed status; without, the params are empty."""
    result, verdict, prov = bench_inputs(i)
    key = sim_key(device_id(i)) if state_root is not None else None
    ctx = ReportContext(device_id(i), contract.CANARY_ALIAS, None, 4, RUNTIME, run_id, key, state_root)
    report = build_report(ctx, mv, result, verdict, prov)
    installed = Installed(model, mv.version, mv.tags.get(contract.TAG_SHA256, "0" * 64), "/nonexistent", True)
    tags = {**report.tags, **heartbeat_tags(_Config(model), installed, ExitCode.OK, "ok", result, contract.THROTTLED_NO)}
    tags[contract.TAG_DEVICE_CLASS] = CLASSES[i % 3]
    tags[contract.TAG_HOSTNAME] = "raspberrypi"
    params: dict[str, str] = {}
    if key is not None and state_root is not None:
        params = {contract.P_DEVICE_ID: device_id(i), contract.P_MODEL: model, **report.params,
                  **status_params(key, state_root, _Config(model), device_id(i), installed, ExitCode.OK, "ok")}
    return report.metrics, tags, params, report.timestamp_ms, report.step


def fleet_experiment(uri: str, model: str) -> str:
    """The fleet experiment's id recorded on ``model`` (recorded now, as ``edgeq device enroll`` does, when missing)."""
    from registry_tools import enrolment
    from registry_tools.rest_client import RestClient

    return enrolment.record_fleet_experiment(RestClient(uri), model)


def enrolments(client, model: str, first: int, count: int) -> dict[str, str]:
    """The register's bucket tags with devices ``first`` … ``first + count - 1`` added, as ``edgeq device enroll``
    stores them."""
    from registry_tools import enrolment

    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    added = [enrolment.Enrolment(device_id(i), {model: sim_key(device_id(i)).public_text()}, at, "bench")
             for i in range(first, first + count)]
    return enrolment.bucket_tags(enrolment.read(client), added)


def enrol(uri: str, model: str, first: int, count: int, db_uri: str | None = None) -> float:
    """Enrol the devices' keys for ``model``: over REST (a bucket tag per request), or with
    ``db_uri`` through MLflow's own model-registry SQL store (what the server does per request, without HTTP)."""
    from registry_tools import enrolment
    from registry_tools.rest_client import RestClient

    client = RestClient(uri)
    fleet_experiment(uri, model)
    enrolment._ensure_register(client)
    client.set_registered_model_tag(model, contract.TAG_DEVICES_ENROLLED, "true")
    tags = enrolments(client, model, first, count)
    start = time.perf_counter()
    if db_uri is None:
        for key, value in tags.items():
            client.set_registered_model_tag(contract.ENROLMENT_MODEL, key, value)
    else:
        from mlflow.entities.model_registry import RegisteredModelTag
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

        store = RegistryStore(db_uri)
        for key, value in tags.items():
            store.set_registered_model_tag(contract.ENROLMENT_MODEL, RegisteredModelTag(key, value))
    return time.perf_counter() - start


def _state_root() -> Path:
    """Where the simulated devices keep their state dirs (``<root>/<device id>/identity/seq``: fsync'd per
    signature, as on a device); removed after the write."""
    return Path(tempfile.mkdtemp(prefix="edgeq-bench-devices-"))


def write_devices(uri: str, model: str, mv: ModelVersion, first: int, count: int, threads: int = 4) -> float:
    """Devices ``first`` … ``first + count - 1`` report on ``mv``, signed: three requests each; returns seconds.
    The fleet experiment is the one recorded on ``model`` (recorded here when missing); enrol the keys with `enrol`."""
    clients = [RegistryClient(uri) for _ in range(threads)]
    experiment = fleet_experiment(uri, model)
    state_root = _state_root()

    def one(i: int) -> None:
        client = clients[i % threads]
        ident = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device_id(i)}
        run_id = client.start_run(experiment, f"{device_id(i)} · {model}", ident, clock.now_ms())
        metrics, tags, params, stamp, step = device_batch(i, model, mv, run_id, state_root / device_id(i))
        client.log_batch(run_id, metrics, tags, stamp, step, params=params)
        client.finish_run(run_id, clock.now_ms())

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(first, first + count)))
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    return time.perf_counter() - start


def write_devices_direct(uri: str, db_uri: str, artifact_root: str, model: str, mv: ModelVersion, first: int,
                         count: int) -> float:
    """The same bodies, written straight into the server's store with MLflow's own SQL store (``--direct``):
    what the server would do on each request, without HTTP — to reach 10,000+ devices in bounded time."""
    from mlflow.entities import Metric, Param, RunStatus, RunTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(db_uri, artifact_root)
    experiment = fleet_experiment(uri, model)
    state_root = _state_root()
    start = time.perf_counter()
    try:
        for i in range(first, first + count):
            ident = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device_id(i)}
            run = store.create_run(experiment, "device", clock.now_ms(), [RunTag(k, v) for k, v in ident.items()],
                                   f"{device_id(i)} · {model}")
            run_id = run.info.run_id
            metrics, tags, params, stamp, step = device_batch(i, model, mv, run_id, state_root / device_id(i))
            store.log_batch(run_id, [Metric(k, v, stamp, step) for k, v in metrics.items()],
                            [Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in tags.items()])
            store.update_run_info(run_id, RunStatus.from_string("FINISHED"), clock.now_ms(), None)
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    return time.perf_counter() - start


def register(uri: str, model: str) -> ModelVersion:
    """A version (a run with test_accuracy, a logged model) behind canary and production."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name("edgeq-bench") or client.get_experiment(client.create_experiment("edgeq-bench"))
    run = client.create_run(exp.experiment_id)
    client.log_metric(run.info.run_id, contract.M_ACCURACY, 0.95)
    client.log_metric(run.info.run_id, contract.M_DROP, 0.2)
    client.set_terminated(run.info.run_id)
    logged = client.create_logged_model(exp.experiment_id, name="int8", source_run_id=run.info.run_id)
    client.finalize_logged_model(logged.model_id, "READY")
    if not client.search_registered_models(f"name = '{model}'"):
        client.create_registered_model(model)
    mv = client.create_model_version(model, f"models:/{logged.model_id}", run.info.run_id, model_id=logged.model_id,
                                     tags={contract.TAG_FORMAT: "tflite", contract.TAG_VARIANT: "int8"})
    for alias in (contract.CANARY_ALIAS, contract.DEFAULT_ALIAS):
        client.set_registered_model_alias(model, alias, mv.version)
    return RegistryClient(uri).version(model, str(mv.version))


def _edgeq(uri: str, *args: str) -> float:
    cmd = [str(Path(sys.executable).with_name("edgeq")), "--tracking-uri", uri, *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 4):
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return took


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best(fn, repeats: int = 3) -> float:
    return min(fn() for _ in range(repeats))


def _rows(db_uri: str | None) -> int | None:
    """Rows of the tables a report or heartbeat can grow, in the store behind ``db_uri`` (SQLite or PostgreSQL)."""
    if db_uri is None:
        return None
    import sqlalchemy

    with _connection(db_uri) as conn:
        return sum(conn.execute(sqlalchemy.text(f"select count(*) from {t}")).scalar()
                   for t in ("metrics", "latest_metrics", "tags", "runs", "logged_model_metrics"))


@dataclass(frozen=True)
class Row:
    devices: int
    write_s: float
    startup_s: float  # `edgeq --help`: the interpreter and mlflow's import, in every command below
    versions_s: float
    fleet_s: float
    promote_s: float
    aggregate_s: float
    version_run_kb: float
    install_read_s: float
    no_change_s: float
    rows_per_no_change: float | None
    in_process: tuple[float, float, float] = (0.0, 0.0, 0.0)  # versions.collect, fleet.read, evidence.for_alias


def measure(uri: str, mv: ModelVersion, devices: int, write_s: float, db: str | None) -> Row:
    import requests

    startup_s = _best(lambda: _edgeq(uri, "--help"))
    agg_s = _edgeq(uri, "aggregate", MODEL)
    versions_s = _best(lambda: _edgeq(uri, "versions", MODEL))
    fleet_s = _best(lambda: _edgeq(uri, "fleet", MODEL))
    promote_s = _best(lambda: _edgeq(uri, "promote", MODEL, "--from", contract.CANARY_ALIAS, "--alias",
                                     contract.DEFAULT_ALIAS, "--require-devices", "3", "--max-p99-ms", "all=500"))
    from registry_tools import evidence, fleet, versions
    from registry_tools.rest_client import RestClient

    tools = RestClient(uri)  # the client edgeq uses over http(s)
    inproc = (_best(lambda: _timed(lambda: versions.collect(tools, MODEL))),
              _best(lambda: _timed(lambda: fleet.read(tools, MODEL, 3.0))),
              _best(lambda: _timed(lambda: evidence.for_alias(tools, MODEL, contract.CANARY_ALIAS))))
    size = len(requests.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": mv.run_id}, timeout=60).content)
    device = RegistryClient(uri)

    def install_reads() -> float:
        start = time.perf_counter()
        found = device.version_by_alias(MODEL, contract.CANARY_ALIAS)
        accuracy = device.registered_accuracy(found.run_id)
        assert accuracy == 0.95, accuracy
        return time.perf_counter() - start

    run_id = device.start_run(device.experiment_id(contract.FLEET_EXPERIMENT), "probe",
                              {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: MODEL + "-probe",
                               contract.TAG_DEVICE_ID: "probe"}, clock.now_ms())

    def no_change() -> float:
        start = time.perf_counter()
        device.version_by_alias(MODEL, contract.CANARY_ALIAS)
        device.finish_run(run_id, clock.now_ms())
        return time.perf_counter() - start

    before = _rows(db)
    runs = 20
    no_change_s = sorted(no_change() for _ in range(runs))[runs // 2]
    after = _rows(db)
    added = None if before is None or after is None else (after - before) / runs
    return Row(devices, write_s, startup_s, versions_s, fleet_s, promote_s, agg_s, size / 1024, _best(install_reads, 5),
               no_change_s, added, inproc)


def table(rows: list[Row], backend: str) -> str:
    lines = [f"| devices reporting on one version ({backend}) | write (3 req/device) | `edgeq --help` (start-up) "
             "| `edgeq versions` | `edgeq fleet` | `promote --from` | `edgeq aggregate` | version run's answer "
             "| new device's reads | no-change run | rows per no-change run | in-process: versions / fleet / evidence |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        added = "—" if r.rows_per_no_change is None else f"{r.rows_per_no_change:.0f}"
        lines.append(f"| {r.devices:,} | {r.write_s:.0f} s | {r.startup_s:.1f} s | {r.versions_s:.1f} s | {r.fleet_s:.1f} s | {r.promote_s:.1f} s "
                     f"| {r.aggregate_s:.1f} s | {r.version_run_kb:.1f} KB | {1000 * r.install_read_s:.0f} ms "
                     f"| {1000 * r.no_change_s:.0f} ms | {added} | "
                     + " / ".join(f"{t:.2f} s" for t in r.in_process) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Store:
    """One fleet size's store: SQLite in ``root`` or its own PostgreSQL database; ``written.json`` marks it complete."""
    root: Path
    devices: int
    backend_uri: str | None  # None: SQLite in root

    @property
    def backend(self) -> str:
        return "PostgreSQL" if self.backend_uri else "SQLite"

    @property
    def db(self) -> str:
        return self.backend_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    def written(self) -> float | None:
        """Seconds the complete write took, or None when this store is new or was cut short."""
        try:
            return float(json.loads((self.root / WRITTEN).read_text())["write_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def mark_written(self, write_s: float) -> None:
        (self.root / WRITTEN).write_text(json.dumps({"devices": self.devices, "write_s": write_s}))


@contextmanager
def _connection(uri: str, autocommit: bool = False) -> Iterator:
    """A connection to the store at ``uri`` (SQLite or PostgreSQL), its engine disposed afterwards."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _database(devices: int) -> str:
    return f"edgeq_fleet_{devices}"


def postgres_database(base_uri: str, devices: int) -> str:
    """The URI of database ``edgeq_fleet_<devices>`` beside ``base_uri``'s, created empty unless it is complete."""
    import sqlalchemy

    name = _database(devices)
    with _connection(base_uri, autocommit=True) as conn:
        if not conn.execute(sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    return sqlalchemy.engine.make_url(base_uri).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(base_uri: str, devices: int) -> None:
    import sqlalchemy

    with _connection(base_uri, autocommit=True) as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{_database(devices)}"'))


def stores(keep: Path, sizes: list[int], postgres: str | None) -> list[Store]:
    out = []
    for n in sorted(set(sizes)):
        root = keep / f"{'postgresql' if postgres else 'sqlite'}-{n}"
        if Store(root, n, None).written() is None:  # cut short or new: start again from nothing
            shutil.rmtree(root, ignore_errors=True)
            if postgres:
                drop_postgres_database(postgres, n)
        root.mkdir(parents=True, exist_ok=True)
        out.append(Store(root, n, postgres_database(postgres, n) if postgres else None))
    return out


def write_direct_in_parallel(uri: str, db_uri: str, artifact_root: str, model: str, mv: ModelVersion, count: int,
                             writers: int) -> float:
    """``write_devices_direct`` split over ``writers`` processes (PostgreSQL takes concurrent writers; SQLite
    would only queue them on its file lock)."""
    from concurrent.futures import ProcessPoolExecutor

    bounds = [(count * k // writers, count * (k + 1) // writers) for k in range(writers)]
    start = time.perf_counter()
    with ProcessPoolExecutor(writers) as pool:
        list(pool.map(write_devices_direct, *zip(*[(uri, db_uri, artifact_root, model, mv, a, b - a) for a, b in bounds])))
    return time.perf_counter() - start


def build(store: Store, workers: int, threads: int, direct: bool) -> float:
    """Register the version and write ``store.devices`` devices into the store (unless it is complete)."""
    done = store.written()
    if done is not None:
        return done
    from registry_tools.mlflow_server import MlflowServer

    server = MlflowServer(store.root, backend_store_uri=store.backend_uri, workers=workers).start(300)
    try:
        mv = register(server.uri, MODEL)
        enrol_s = enrol(server.uri, MODEL, 0, store.devices, server.backend_store_uri if direct else None)
        print(f"{store.devices:,} device keys enrolled in {enrol_s:.0f} s", flush=True)
        if direct and store.backend_uri:
            write_s = write_direct_in_parallel(server.uri, server.backend_store_uri, str(server.root / "artifacts"),
                                               MODEL, mv, store.devices, threads)
        elif direct:
            write_s = write_devices_direct(server.uri, server.backend_store_uri, str(server.root / "artifacts"),
                                           MODEL, mv, 0, store.devices)
        else:
            write_s = write_devices(server.uri, MODEL, mv, 0, store.devices, threads)
    finally:
        server.stop()
    store.mark_written(write_s)
    return write_s


def run(sizes: list[int], postgres: str | None, workers: int, threads: int, direct: bool = False,
        keep: Path | None = None, build_only: bool = False) -> str:
    """One store per fleet size (kept in ``keep`` and reused when complete), then each measured on its own server."""
    from registry_tools.mlflow_server import MlflowServer

    with tempfile.TemporaryDirectory(prefix="edgeq-fleet-scale-") as tmp:
        rows = []
        for store in stores(keep or Path(tmp), sizes, postgres):
            write_s = build(store, workers, threads, direct)
            print(f"{store.backend} {store.devices:,} devices written in {write_s:.0f} s", flush=True)
            if build_only:
                continue
            server = MlflowServer(store.root, backend_store_uri=store.backend_uri, workers=workers).start(300)
            try:
                mv = RegistryClient(server.uri).version_by_alias(MODEL, contract.CANARY_ALIAS)
                rows.append(measure(server.uri, mv, store.devices, write_s, store.db))
            finally:
                server.stop()
            print(table(rows[-1:], store.backend), flush=True)
            if postgres and keep is None:  # nothing kept: its database goes with the temporary directory
                drop_postgres_database(postgres, store.devices)
    if build_only:
        return "built"
    how = "written straight into the store (--direct)" if direct else f"{threads} writer threads over REST"
    return table(rows, "PostgreSQL" if postgres else "SQLite") + f"\n\n({workers} server workers; devices {how})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--postgres", default=None, metavar="URI", help="backend store URI (scripts/server.sh db)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4,
                        help="writer threads over REST; with --direct on PostgreSQL, writer processes")
    parser.add_argument("--direct", action="store_true",
                        help="write the same bodies with MLflow's SQL store in this process (no HTTP): for 10,000+")
    parser.add_argument("--store", type=Path, default=None, metavar="DIR",
                        help="keep each size's store in DIR and reuse the complete ones (writing 50,000 takes long)")
    parser.add_argument("--build-only", action="store_true", help="write the stores (with --store) and stop")
    args = parser.parse_args()
    if args.build_only and not args.store:
        parser.error("--build-only keeps nothing without --store DIR")
    if max(args.devices) > MAX_DEVICES or min(args.devices) < 1:
        parser.error(f"--devices between 1 and {MAX_DEVICES}")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    print(run(args.devices, args.postgres, args.workers, args.threads, args.direct, args.store, args.build_only))


if __name__ == "__main__":
    main()
