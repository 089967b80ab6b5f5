"""Write to a real MLflow server exactly what the pipeline and the devices write, without TensorFlow or a Pi.

Versions are tiny (a run with the pipeline's metrics, a version tagged as a .tflite);
device reports and fleet heartbeats follow ``edge/contract.py`` key for key.
"""
from __future__ import annotations

import itertools
import time

from click.testing import CliRunner, Result
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools.cli import main

EXPERIMENT = "edgeq-registry-tests"
_names = itertools.count(1)


def edgeq(server, *args: str) -> Result:
    """``edgeq --tracking-uri <server.uri> ARGS`` in this process (``server``: anything with a ``uri``)."""
    return CliRunner().invoke(main, ["--tracking-uri", server.uri, *args], catch_exceptions=False)


def enroll(server, state_dir, device: str, *models: str) -> str:
    """Enrol the key a puller with ``state_dir`` signs with (made now if it has none), as an operator would."""
    from edge import identity

    key = identity.load_or_create(state_dir).public_text()
    args = [a for m in models for a in ("--model", m)]
    result = edgeq(server, "device", "enroll", device, "--key", key, *args)
    assert result.exit_code == 0, result.output
    return key


def new_model(client: MlflowClient, prefix: str = "edgeq-rt", accept_unsigned: bool = True) -> str:
    """A fresh registered model; by default its operator counts unsigned reports (these helpers write them unsigned,
    as pullers before signing did): tests of signed evidence pass ``accept_unsigned=False``."""
    name = f"{prefix}-{next(_names)}-{int(time.time() * 1000) % 100000}"
    tags = {contract.TAG_FLEET_EXPERIMENT_ID: _experiment(client, contract.FLEET_EXPERIMENT)}  # as the operator's setup
    if accept_unsigned:
        tags[contract.TAG_ACCEPT_UNSIGNED] = "true"
    client.create_registered_model(name, tags=tags)
    return name


def _experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def tiny_version(client: MlflowClient, model: str, accuracy: float = 0.95, drop: float = 0.2,
                 alias: str | None = None, variant: str = "int8") -> tuple[str, str]:
    """A registered .tflite version whose own run holds the pipeline's accuracy metrics: (version, run_id)."""
    run = client.create_run(_experiment(client, EXPERIMENT))
    run_id = run.info.run_id
    client.log_batch(run_id, metrics=[Metric(contract.M_ACCURACY, accuracy, _now_ms(), 0), Metric(contract.M_DROP, drop, _now_ms(), 0)])
    client.set_terminated(run_id)
    tags = {contract.TAG_FORMAT: "tflite", contract.TAG_VARIANT: variant, contract.TAG_QUANTIZATION: variant}
    mv = client.create_model_version(model, f"{run.info.artifact_uri}/{contract.ARTIFACT_DIR}", run_id, tags=tags,
                                     await_creation_for=0)
    if alias:
        client.set_registered_model_alias(model, alias, mv.version)
    return str(mv.version), run_id


def _now_ms() -> int:
    return int(time.time() * 1000)


def report(client: MlflowClient, run_id: str, device: str, version: str, *, status: str = contract.STATUS_HEALTHY,
           reason: str = "", p50: float = 1.0, p99: float = 2.0, rss: float = 60.0, sample_accuracy: float = 0.95,
           sample_size: int = 32, throttled: str = "no", alias: str = contract.CANARY_ALIAS) -> None:
    """What a device logs to the version's run after its health gate (one log-batch, like edgeq-pull)."""
    figures = {contract.D_P50: p50, contract.D_P90: (p50 + p99) / 2, contract.D_P99: p99, contract.D_MEAN: p50,
               contract.D_STD: 0.1, contract.D_PEAK_RSS: rss, contract.D_SAMPLE_ACCURACY: sample_accuracy,
               contract.D_SAMPLE_SIZE: sample_size, contract.D_ACCURACY_BOUND: 0.8, contract.D_CPU_FREQ_MHZ: 1500.0,
               contract.D_TEMP_BEFORE_C: 45.0, contract.D_TEMP_AFTER_C: 52.0}
    tags = {contract.D_STATUS: status, contract.D_REASON: reason, contract.D_HOSTNAME: "raspberrypi",
            contract.D_CPU: "Cortex-A72", contract.D_RUNTIME: "ai-edge-litert", contract.D_RUNTIME_VERSION: "2.3.0",
            contract.D_DELEGATE: "xnnpack", contract.D_THREADS: "4", contract.D_MODEL_VERSION: str(version),
            contract.D_ALIAS: alias, contract.D_GOVERNOR: "ondemand", contract.D_THROTTLED: throttled,
            contract.D_THROTTLE_FLAGS: "0x0: none now" if throttled == "no" else "0x50005: under-voltage, throttled",
            contract.D_REPORTED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    now = _now_ms()
    client.log_batch(run_id, metrics=[Metric(contract.device_key(device, k), float(v), now, 0) for k, v in figures.items()],
                     tags=[RunTag(contract.device_key(device, k), v) for k, v in tags.items()])


def fleet_device(client: MlflowClient, model: str, device: str, *, alias: str = contract.DEFAULT_ALIAS,
                 running_version: str | None, seen_s_ago: float = 5.0, interval_s: float = 60.0,
                 status: str = contract.STATUS_HEALTHY, reason: str = "", p50: float | None = 1.0,
                 p99: float | None = 2.0, sample_accuracy: float | None = 0.95) -> str:
    """The device's own run in the fleet experiment with one heartbeat ``seen_s_ago`` seconds ago: its run id."""
    tags = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_DEVICE_ID: device, contract.TAG_MODEL: model,
            contract.TAG_ALIAS: alias, contract.TAG_HOSTNAME: f"host-{device}", contract.TAG_INTERVAL_S: str(interval_s),
            contract.TAG_LAST_STATUS: status, contract.TAG_LAST_REASON: reason}
    if running_version is not None:
        tags[contract.TAG_RUNNING_VERSION] = str(running_version)
    run = client.create_run(_experiment(client, contract.FLEET_EXPERIMENT), tags=tags, run_name=f"{model}@{device}",
                            start_time=_now_ms() - int(seen_s_ago * 1000) - 1000)
    at = _now_ms() - int(seen_s_ago * 1000)
    metrics = [Metric(contract.M_HEARTBEAT, 1.0, at, 0)]
    if running_version is not None:
        metrics.append(Metric(contract.M_RUNNING_VERSION, float(running_version), at, 0))
    for key, value in ((contract.D_P50, p50), (contract.D_P99, p99), (contract.D_SAMPLE_ACCURACY, sample_accuracy)):
        if value is not None:
            metrics.append(Metric(key, value, at, 0))
    client.log_batch(run.info.run_id, metrics=metrics)
    return run.info.run_id
