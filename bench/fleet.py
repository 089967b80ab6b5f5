"""Fleet load: N simulated devices (separate ``edgeq-pull`` processes and state dirs) against one loopback server.

    python -m bench.fleet --devices 200 --concurrency 16
    python -m bench.fleet --devices 50 --postgres       # then PostgreSQL (scripts/server.sh db), side by side

Starts a throw-away ``mlflow server`` (``start_server`` takes the backend store URI, so
another backend can be measured the same way), registers the checked-in int8 fixture
bundle (or, without it, the pipeline's int8 digits model) behind ``production``, then
runs every device twice: a first pass that downloads, benchmarks and reports, and a
no-change pass. For each pass it prints devices, concurrency, wall time, failures,
exit-3 runs, reports expected on the version's run vs found, reports lost (a device
that exited 0 whose report is not there), 5xx answers in the server's log, and
devices whose heartbeat in the fleet experiment is from that pass.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from registry_tools.mlflow_server import MlflowServer

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "edgeq-bench-fleet"
MAX_DEVICES = 1000
DEVICE_TIMEOUT_S = 300
_STATUS = re.compile(r'HTTP/[0-9.]+" ([0-9]{3})')  # uvicorn's access log: ... "GET /api/... HTTP/1.1" 200


def start_server(backend_store_uri: str, root: Path, workers: int = 4, timeout_s: float = 300) -> MlflowServer:
    """``mlflow server`` on loopback with ``backend_store_uri`` and served artifacts under ``root``."""
    return MlflowServer(root, backend_store_uri=backend_store_uri, workers=workers).start(timeout_s)


def server_statuses(server: MlflowServer) -> list[str]:
    """The HTTP status of every request in the server's access log so far."""
    return _STATUS.findall(server.log.read_text(errors="replace")) if server.log.exists() else []


def register_model(uri: str) -> tuple[str, str, str]:
    """The int8 fixture bundle (or the pipeline's int8 model) behind production: (source, version, run_id)."""
    from edge import contract

    try:
        from tests.edge.registry_rest import MlflowRest, register_fixture

        registered = register_fixture(MlflowRest(uri), MODEL, "int8", alias=contract.DEFAULT_ALIAS)
        return "fixture tests/edge/fixtures/int8", registered.version, registered.run_id
    except (ImportError, FileNotFoundError):
        pass
    from mlflow.tracking import MlflowClient

    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="bench-fleet", PYTHONPATH=str(REPO))
    args = ["--quant", "int8", "--dataset", "digits", "--model", "tiny_cnn", "--weights", "none", "--image-size", "16",
            "--epochs", "5", "--calibration-images", "100", "--sample-size", "32", "--registered-model", MODEL]
    subprocess.run([sys.executable, "-m", "steps.pipeline", *args], cwd=REPO, env=env, check=True, capture_output=True)
    client = MlflowClient(uri, registry_uri=uri)
    mv = next(v for v in client.search_model_versions(f"name = '{MODEL}'") if v.tags.get(contract.TAG_VARIANT) == "int8")
    client.set_registered_model_alias(MODEL, contract.DEFAULT_ALIAS, mv.version)
    return "pipeline int8 (digits, tiny_cnn, 16 px)", str(mv.version), mv.run_id


@dataclass(frozen=True)
class DeviceRun:
    device: str
    code: int  # -1: timed out, -2: not started before the pass deadline
    seconds: float
    downloaded: bool


def _pull(uri: str, device: str, state: Path, runs: int, deadline: float) -> DeviceRun:
    if time.monotonic() > deadline:
        return DeviceRun(device, -2, 0.0, False)
    cmd = [str(BIN / "edgeq-pull"), "--tracking-uri", uri, "--model", MODEL, "--device-id", device,
           "--state-dir", str(state), "--runs", str(runs), "--warmup", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=uri)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEVICE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return DeviceRun(device, -1, time.monotonic() - start, False)
    return DeviceRun(device, proc.returncode, time.monotonic() - start, "downloaded" in proc.stdout + proc.stderr)


@dataclass(frozen=True)
class PassResult:
    name: str
    devices: int
    concurrency: int
    wall_s: float
    runs: list[DeviceRun]
    requests: int
    errors_5xx: int
    reports_found: int
    heartbeats_fresh: int | None

    def count(self, code: int) -> int:
        return sum(r.code == code for r in self.runs)

    @property
    def failures(self) -> int:
        return sum(r.code != 0 for r in self.runs)

    @property
    def reports_lost(self) -> int:
        return max(0, self.count(0) - self.reports_found)


def _reports_found(uri: str, run_id: str, devices: list[str]) -> int:
    from mlflow.tracking import MlflowClient

    from edge import contract
    from registry_tools.device_reports import device_reports

    data = MlflowClient(uri).get_run(run_id).data
    reports = device_reports(data.metrics, data.tags)
    return sum(contract.D_P50 in reports[d].metrics for d in devices if d in reports)


def _heartbeats_since(uri: str, since_ms: int) -> int | None:
    """Devices whose last heartbeat is from ``since_ms`` on; None while devices send none."""
    from mlflow.tracking import MlflowClient

    from edge import contract
    from registry_tools.fleet import fleet_runs

    runs = fleet_runs(MlflowClient(uri), MODEL)
    if not runs:
        return None
    stamps = ({m.key: m.timestamp for m in getattr(r.data, "_metric_objs", [])} for r in runs)
    return sum(s.get(contract.M_HEARTBEAT, 0) >= since_ms for s in stamps)


def device_pass(name: str, server: MlflowServer, run_id: str, states: Path, devices: list[str], concurrency: int,
                runs: int, max_s: float) -> PassResult:
    logged_before = len(server_statuses(server))
    started_ms = int(time.time() * 1000)
    start = time.monotonic()
    deadline = start + max_s
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda d: _pull(server.uri, d, states / d, runs, deadline), devices))
    wall = time.monotonic() - start
    statuses = server_statuses(server)[logged_before:]
    return PassResult(name, len(devices), concurrency, wall, results, len(statuses), sum(s.startswith("5") for s in statuses),
                      _reports_found(server.uri, run_id, devices), _heartbeats_since(server.uri, started_ms))


def fleet_view_seconds(uri: str) -> tuple[float, int]:
    """How long ``edgeq fleet`` takes to gather its rows, and how many it found."""
    from mlflow.tracking import MlflowClient

    from registry_tools import fleet

    start = time.monotonic()
    rows = fleet.collect(MlflowClient(uri, registry_uri=uri), MODEL, 3.0)
    return time.monotonic() - start, len(rows)


def table(passes: list[PassResult]) -> str:
    lines = ["| pass | devices | concurrency | wall s | per device p50 / max s | failures | exit 3 | timed out / not run "
             "| downloads | reports found / expected | reports lost | server requests | server 5xx | fresh heartbeats |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in passes:
        secs = [r.seconds for r in p.runs if r.code != -2] or [0.0]
        beats = "— (puller sends none)" if p.heartbeats_fresh is None else f"{p.heartbeats_fresh} / {p.devices}"
        lines.append(
            f"| {p.name} | {p.devices} | {p.concurrency} | {p.wall_s:.1f} | {statistics.median(secs):.2f} / {max(secs):.2f} "
            f"| {p.failures} | {p.count(3)} | {p.count(-1)} / {p.count(-2)} | {sum(r.downloaded for r in p.runs)} "
            f"| {p.reports_found} / {p.devices} | {p.reports_lost} | {p.requests} | {p.errors_5xx} | {beats} |")
    other = sorted({r.code for p in passes for r in p.runs} - {0, 3, -1, -2})
    if other:
        lines.append(f"\nother exit codes: {', '.join(map(str, other))}")
    return "\n".join(lines)


def run(devices: int = 50, concurrency: int = 16, runs: int = 5, workers: int = 4, max_minutes: float = 20,
        backend: str | None = None, passes_out: list[PassResult] | None = None) -> str:
    devices = min(devices, MAX_DEVICES)
    with tempfile.TemporaryDirectory(prefix="edgeq-fleet-") as tmp:
        root = Path(tmp)
        server = start_server(backend or f"sqlite:///{root / 'mlflow.db'}", root / "server", workers)
        try:
            source, version, run_id = register_model(server.uri)
            ids = [f"sim-{i:04d}" for i in range(devices)]
            passes = []
            for name in ("first (download + benchmark + report)", "no change"):
                passes.append(device_pass(name, server, run_id, root / "devices", ids, concurrency, runs, max_minutes * 60))
            view_s, view_rows = fleet_view_seconds(server.uri)
            if passes_out is not None:
                passes_out.extend(passes)
        finally:
            server.stop()
    backend_name = (backend or "sqlite").split(":", 1)[0]
    return (f"### Fleet load: {devices} simulated devices, one mlflow server ({backend_name}, {workers} workers)\n\n"
            f"Model: {source}, v{version}; each device: its own `edgeq-pull` process and state dir, "
            f"`--runs {runs} --warmup 1`.\n\n{table(passes)}\n\n"
            f"`edgeq fleet` over the fleet experiment: {view_rows} device rows in {view_s:.2f} s.\n")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (scripts/server.sh db) in /tmp; yields its backend store URI."""
    root = Path(tempfile.mkdtemp(prefix="edgeq-fleet-pg-"))
    root.chmod(0o755)  # the cluster's owner (the postgres user, as root) must reach it
    server_sh = ["bash", str(REPO / "scripts" / "server.sh")]
    try:
        made = subprocess.run([*server_sh, "db", "--dir", str(root)], capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {made.stderr.strip()}")
        yield made.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([*server_sh, "stop", "--dir", str(root)], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help=f"simulated devices (at most {MAX_DEVICES})")
    parser.add_argument("--concurrency", type=int, default=16, help="devices running at the same time")
    parser.add_argument("--runs", type=int, default=5, help="timed inferences per device")
    parser.add_argument("--workers", type=int, default=4, help="mlflow server worker processes")
    parser.add_argument("--max-minutes", type=float, default=20, help="per pass: devices not started by then are not run")
    parser.add_argument("--backend-store-uri", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--postgres", action="store_true",
                        help="then the same against a fresh project-local PostgreSQL (scripts/server.sh db), side by side")
    args = parser.parse_args()
    if not 1 <= args.devices <= MAX_DEVICES or args.concurrency < 1 or args.runs < 1:
        parser.error(f"--devices must be 1..{MAX_DEVICES}, --concurrency and --runs at least 1")
    start = time.perf_counter()
    sqlite: list[PassResult] = []
    print(run(args.devices, args.concurrency, args.runs, args.workers, args.max_minutes, args.backend_store_uri, sqlite))
    if args.postgres:
        postgres: list[PassResult] = []
        with postgres_cluster() as uri:
            print(run(args.devices, args.concurrency, args.runs, args.workers, args.max_minutes, uri, postgres))
        print("PostgreSQL / SQLite wall time: " + ", ".join(
            f"{a.name.split(' (')[0]} pass {b.wall_s / a.wall_s:.2f}×" for a, b in zip(sqlite, postgres)))
    print(f"_total {time.perf_counter() - start:.0f} s_")


if __name__ == "__main__":
    main()
