"""Real runs on generated folders: a 1,000-class model a device can check, reruns that add no identical versions,
the scan logged on the run, and runs that end FAILED with a reason when stopped by a signal."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge import contract
from edge.bundle import labels_sha256, verify_bundle
from tests.conftest import PIPELINE_ARGS, REPO, background_job, background_result, run_pipeline
from tests.servers import MlflowServer

MANY_MODEL = "edgeq-test-many-classes"
MANY_EXPERIMENT = "edgeq-tests-many-classes"
LABELS = tuple(f"class-{i:04d}-of-a-large-dataset" for i in range(1000))  # 30 characters each: 31,000 joined
STOP_TIMEOUT_S = 240


def _many_classes(root: Path) -> Path:
    """1,000 classes of two 8×8 images (one to train, one to test), three with five so validation is not empty."""
    rng = np.random.default_rng(0)
    for i, label in enumerate(LABELS):
        folder = root / label
        folder.mkdir(parents=True)
        for j in range(5 if i < 3 else 2):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{j}.png")
    (root / LABELS[0] / "notes.txt").write_text("not an image")
    return root


@dataclass(frozen=True)
class ManyClasses:
    first: subprocess.CompletedProcess
    again: subprocess.CompletedProcess  # the same command once more


@background_job("many_classes", priority=4)
def _many_classes_job(server: MlflowServer, work: Path) -> ManyClasses:
    folder = _many_classes(work / "many")
    args = ["--quant", contract.FP32, "--dataset", str(folder), "--model", "tiny_cnn", "--weights", "none",
            "--image-size", "16", "--epochs", "1", "--calibration-images", "100", "--sample-size", "16",
            "--registered-model", MANY_MODEL]
    first = run_pipeline(server.uri, *args, experiment=MANY_EXPERIMENT)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    return ManyClasses(first, run_pipeline(server.uri, *args, experiment=MANY_EXPERIMENT))


@pytest.fixture(scope="module")
def many_classes(request: pytest.FixtureRequest, server: MlflowServer) -> ManyClasses:
    return background_result(request, "many_classes")


def _versions(client, name: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for mv in client.search_model_versions(f"name = '{name}'"):
        out.setdefault(mv.tags[contract.TAG_VARIANT], []).append(mv)
    return out


def test_a_thousand_class_model_registers_labels_a_device_can_check(many_classes, client, tmp_path):
    mv = _versions(client, MANY_MODEL)[contract.FP32][0]
    assert contract.TAG_LABELS not in mv.tags, "a cut-off labels tag is what every device refused"
    assert mv.tags[contract.TAG_LABELS_COUNT] == "1000"
    assert mv.tags[contract.TAG_LABELS_SHA256] == labels_sha256(LABELS)
    local = Path(client.download_artifacts(mv.run_id, contract.ARTIFACT_DIR, str(tmp_path)))
    assert verify_bundle(local, mv.tags[contract.TAG_SHA256], mv.tags) == list(LABELS)


def test_a_rerun_registers_no_identical_version_and_says_which_it_matches(many_classes, client):
    again = many_classes.again
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert "reusing baseline run" in again.stdout
    versions = _versions(client, MANY_MODEL)
    assert {variant: len(mvs) for variant, mvs in versions.items()} == {contract.BASELINE: 1, contract.FP32: 1}
    fp32 = versions[contract.FP32][0]
    assert f"fp32: the same files as version {fp32.version} (same baseline): not registered again" in again.stdout
    runs = client.search_runs([client.get_experiment_by_name(MANY_EXPERIMENT).experiment_id],
                              f"tags.`{contract.TAG_VARIANT}` = 'fp32'")
    assert len(runs) == 2
    rerun = next(r for r in runs if r.info.run_id != fp32.run_id)
    assert rerun.data.tags[contract.TAG_SAME_AS_VERSION] == fp32.version


def test_the_scan_is_reported_and_logged_on_the_pipeline_run(many_classes, client, tmp_path):
    first = many_classes.first
    assert "2,009 images used in 1,000 classes (train 1,006, val 3, test 1,000); 1 skipped: 1 not an image (1 .txt)" \
        in first.stdout
    mv = _versions(client, MANY_MODEL)[contract.BASELINE][0]
    parent = client.get_run(mv.run_id).data.tags["mlflow.parentRunId"]
    table = Path(client.download_artifacts(parent, contract.DATA_SCAN_FILE, str(tmp_path))).read_text()
    assert f"| {LABELS[0]} | 5 | 3 | 1 | 1 |" in table and f"| {LABELS[0]}/notes.txt | not an image |" in table


# --- stopped runs ---------------------------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Stopped:
    returncode: int | None
    stderr: str
    experiment: str


def _baseline_running(client, experiment: str) -> bool:
    exp = client.get_experiment_by_name(experiment)
    return bool(exp and client.search_runs([exp.experiment_id], f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_BASELINE}'"))


@background_job("stopped_runs", priority=5)
def _stopped_job(server: MlflowServer, work: Path) -> dict[str, Stopped]:
    """The session's digits pipeline with far more epochs, signalled once its baseline run is training."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    args = [a if a != "10" else "500" for a in PIPELINE_ARGS]  # --epochs 10 -> 500: it is training when signalled
    procs = {}
    for sig in STOP_SIGNALS:
        experiment = f"edgeq-tests-stopped-{sig.name}"
        env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri, MLFLOW_EXPERIMENT_NAME=experiment, PYTHONPATH=str(REPO))
        procs[sig] = (experiment, subprocess.Popen(
            [sys.executable, "-m", "steps.pipeline", *args, "--registered-model", f"edgeq-stopped-{sig.name}"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True))
    out, deadline = {}, time.monotonic() + STOP_TIMEOUT_S
    try:
        pending = dict(procs)
        while pending and time.monotonic() < deadline:
            for sig, (experiment, proc) in list(pending.items()):
                if proc.poll() is not None or _baseline_running(client, experiment):
                    proc.send_signal(sig)
                    del pending[sig]
            time.sleep(0.5)
        for sig, (experiment, proc) in procs.items():
            try:
                _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, stderr = proc.communicate()
            out[sig.name] = Stopped(proc.returncode, stderr, experiment)
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return out


@pytest.fixture(scope="module")
def stopped_runs(request: pytest.FixtureRequest, server: MlflowServer) -> dict[str, Stopped]:
    return background_result(request, "stopped_runs")


@pytest.mark.parametrize("sig", [s.name for s in STOP_SIGNALS])
def test_a_stopped_pipeline_ends_its_runs_failed_with_the_reason(stopped_runs, client, sig):
    stopped = stopped_runs[sig]
    assert stopped.returncode == 128 + signal.Signals[sig].value, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == f"Error: stopped by {sig}: the runs it started are marked FAILED"
    runs = client.search_runs([client.get_experiment_by_name(stopped.experiment).experiment_id])
    roles = {r.data.tags.get(contract.TAG_ROLE): r for r in runs}
    assert set(roles) == {contract.ROLE_PIPELINE, contract.ROLE_BASELINE}
    for run in roles.values():
        assert run.info.status == "FAILED" and run.info.end_time, (run.info.run_name, run.info.status)
        assert run.data.tags[contract.TAG_FAILURE_REASON] == f"stopped by {sig}"
