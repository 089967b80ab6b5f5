"""The device's own state is untrusted input too: what a crash, a person or another version's puller left in the
state dir ends in a documented exit code and one log line, never a traceback, and never keeps the device from updating.
Real files, the session's real MLflow server, the real puller."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from edge.outbox import FLUSH_MAX_REPORTS, QUARANTINE, Outbox, Report, load_report
from edge.puller import PullConfig, pull
from edge.registry_client import Deadline, RegistryClient
from edge.state import DeviceState
from tests.conftest import REPO
from tests.edge.registry_rest import copy_bundle, fixture_tags

DEVICE = "pi-damaged"
_CLI = "import sys; sys.argv = ['edgeq-pull'] + sys.argv[1:]; from edge.cli import main; main()"


def _config(state: Path, model: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id=DEVICE, runs=5, warmup=1, **kw)


def _cli(uri: str, model: str, state: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    args = ["--tracking-uri", uri, "--model", model, "--state-dir", str(state), "--device-id", DEVICE,
            "--runs", "5", "--warmup", "1"]
    return subprocess.run([sys.executable, "-c", _CLI, *args], env=env, capture_output=True, text=True, timeout=180)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# An outbox entry that is JSON but not a report.

_GOOD = {"run_id": "r" * 32, "metrics": {"m": 1.0}, "tags": {"t": "x"}, "timestamp_ms": 1000, "step": 0}
_NOT_REPORTS = {
    "a list": [1, 2],
    "metrics a string": {**_GOOD, "metrics": "fast"},
    "metrics null": {**_GOOD, "metrics": None},
    "a metric a string": {**_GOOD, "metrics": {"m": "abc"}},
    "a metric a bool": {**_GOOD, "metrics": {"m": True}},
    "a metric past a float": {**_GOOD, "metrics": {"m": 10 ** 400}},
    "a tag a number": {**_GOOD, "tags": {"t": 1}},
    "run_id a number": {**_GOOD, "run_id": 5},
    "timestamp a string": {**_GOOD, "timestamp_ms": "1000"},
    "timestamp past int64": {**_GOOD, "timestamp_ms": 10 ** 30},
    "step a float": {**_GOOD, "step": 1.5},
    "a key missing": {k: v for k, v in _GOOD.items() if k != "tags"},
    "an extra key": {**_GOOD, "priority": "high"},
    "params a list": {**_GOOD, "params": ["a"]},
    "a param a number": {**_GOOD, "params": {"p": 1}},
}


@pytest.mark.parametrize("what", sorted(_NOT_REPORTS))
def test_an_entry_that_is_not_a_well_typed_report_does_not_load(tmp_path, what):
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(_NOT_REPORTS[what]), encoding="utf-8")

    with pytest.raises(ValueError):
        load_report(path)


def test_a_report_without_a_step_loads(tmp_path):
    path = tmp_path / "entry.json"
    path.write_text(json.dumps({k: v for k, v in _GOOD.items() if k != "step"}), encoding="utf-8")
    assert load_report(path).step == 0


def test_a_report_with_signed_params_loads(tmp_path):
    from dataclasses import fields

    if "params" not in {f.name for f in fields(Report)}:
        pytest.skip("this Report has no params")
    path = tmp_path / "entry.json"
    path.write_text(json.dumps({**_GOOD, "params": {"edgeq.ev.x": "y"}}), encoding="utf-8")
    assert load_report(path).params == {"edgeq.ev.x": "y"}


def test_every_field_of_a_report_has_a_type_the_loader_checks():
    from dataclasses import fields

    from edge.outbox import _TYPES

    assert all(f.type in _TYPES for f in fields(Report))


def test_the_same_report_queued_again_under_its_id_replaces_the_waiting_one(tmp_path):
    box = Outbox(tmp_path)
    box.put(Report("r", {"m": 1.0}, {}, 1000), "abc")
    box.put(Report("r", {"m": 2.0}, {}, 2000), "abc")
    box.put(Report("r", {"m": 3.0}, {}, 1500))

    assert [load_report(p).metrics["m"] for p in box.pending()] == [3.0, 2.0]
    assert box.unrecorded("abc").metrics == {"m": 2.0}
    box.recorded()
    assert box.unrecorded("abc") is None


class _Slow:
    """A server that takes 50 ms a request and stores everything."""

    def __init__(self):
        self.points = []

    def log_batch(self, run_id, metrics, tags, timestamp_ms, step=0, params=None):
        time.sleep(0.05)
        self.points += [(timestamp_ms, value) for value in metrics.values()]

    def metric_history(self, run_id, key):
        return self.points


def test_the_flush_stops_when_its_time_is_spent_and_keeps_the_rest(tmp_path):
    box = Outbox(tmp_path)
    for i in range(40):
        box.put(Report("r", {"m": float(i)}, {}, 1000 + i))

    result = Outbox(tmp_path).flush(_Slow(), budget_s=0.3)

    assert 0 < result.sent < 10 and result.deferred == 40 - result.sent and len(box.pending()) == result.deferred
    assert "older queued report(s) kept for later runs" in result.note()


def test_wrongly_typed_outbox_entries_are_quarantined_in_one_line_each_and_the_device_still_updates(
        register, rest, registry, fresh_model, tmp_path, caplog):
    good = register(fresh_model, "int8")
    box = Outbox(DeviceState(tmp_path).outbox_dir)
    names = [f"{i + 1:020d}-other.json" for i in range(len(_NOT_REPORTS))]
    for name, what in zip(names, sorted(_NOT_REPORTS)):
        (box.directory / name).write_text(json.dumps(_NOT_REPORTS[what]), encoding="utf-8")
    box.put(Report(good.run_id, {"device.pi-queued.latency_p50_ms": 2.5}, {}, 1000))

    with caplog.at_level(logging.WARNING, logger="edgeq-pull"):
        outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.OK, outcome.message
    assert DeviceState(tmp_path).current().version == good.version
    assert box.pending() == [] and sorted(p.name for p in box.quarantined() if p.suffix == ".json") == names
    assert f"{len(names)} unreadable report(s) moved to {QUARANTINE}/" in outcome.message
    quarantined = [r.getMessage() for r in caplog.records if QUARANTINE in r.getMessage()]
    assert len(quarantined) == len(names) and all("\n" not in line for line in quarantined)
    assert rest.run_metrics(good.run_id)["device.pi-queued.latency_p50_ms"] == 2.5


# A current link that loops or leads outside the state dir.

def _two_versions(register, registry, fresh_model: str, state: Path):
    first = register(fresh_model, "fp32")
    assert pull(_config(state, fresh_model), registry).code == Exit.OK
    second = register(fresh_model, "int8")
    assert pull(_config(state, fresh_model), registry).code == Exit.OK
    return first, second


def _loop(state: Path) -> None:
    (state / "current").unlink()
    (state / "loop-a").symlink_to("loop-b")
    (state / "loop-b").symlink_to("loop-a")
    (state / "current").symlink_to("loop-a")


def _outside(state: Path) -> None:
    """A bundle with a plausible record, but outside the state dir (another puller's, a person's copy)."""
    elsewhere = state.parent / "elsewhere" / "v1-000000000000"
    shutil.copytree((state / "current").resolve(), elsewhere)
    shutil.copy((state / "current").resolve().with_suffix(".json"), elsewhere.with_suffix(".json"))
    (state / "current").unlink()
    (state / "current").symlink_to(os.path.relpath(elsewhere, state))


@pytest.mark.parametrize("damage", [_loop, _outside], ids=["loop", "outside"])
def test_a_current_link_that_loops_or_leaves_the_state_dir_goes_back_to_the_previous_model_in_one_line(
        register, registry, fresh_model, tmp_path, caplog, damage):
    state = tmp_path / "state"
    first, second = _two_versions(register, registry, fresh_model, state)
    damage(state)
    rest_at = register(fresh_model, "int8", tags={contract.TAG_SHA256: "not-a-digest"})  # refused before download

    with caplog.at_level(logging.WARNING, logger="edgeq-pull"):
        outcome = pull(_config(state, fresh_model), registry)

    assert outcome.code == Exit.REJECTED and outcome.version == rest_at.version, outcome.message
    now = DeviceState(state).current()
    assert now.version == first.version and Path(now.path).parent.parent == state.resolve() / "models"
    lines = [r.getMessage() for r in caplog.records if "current" in r.getMessage() and "back to" in r.getMessage()]
    assert len(lines) == 1 and f"back to v{first.version} (previous)" in lines[0], caplog.text
    assert f"v{first.version} keeps serving" in outcome.message


def _installed(state: DeviceState, variant: str, version: str, tmp_path: Path):
    bundle = copy_bundle(variant, tmp_path / f"dl-{version}")
    return state.stage(bundle, "m", version, fixture_tags(variant)[contract.TAG_SHA256])


def test_without_a_valid_previous_link_the_last_benchmarked_verified_bundle_serves(tmp_path):
    state = DeviceState(tmp_path / "s")
    old = _installed(state, "fp32", "1", tmp_path)
    state.activate(old)
    state.mark_benchmarked(old)
    (state.root / "current").unlink()
    (state.root / "current").symlink_to("current")

    line = state.repair_current()

    assert state.current().version == "1" and "back to v1" in line and "loop" in line


def test_with_nothing_valid_installed_a_broken_current_link_is_removed(tmp_path):
    state = DeviceState(tmp_path / "s")
    (state.root / "current").symlink_to("/etc")

    line = state.repair_current()

    assert not (state.root / "current").is_symlink() and state.current() is None
    assert "outside the state dir" in line and "no model" in line
    assert state.repair_current() is None  # nothing to say the next time


def test_a_bundle_that_no_longer_verifies_is_not_gone_back_to(tmp_path):
    state = DeviceState(tmp_path / "s")
    first = _installed(state, "fp32", "1", tmp_path)
    state.activate(first)
    state.activate(_installed(state, "int8", "2", tmp_path))
    (Path(first.path) / contract.MODEL_FILE).write_bytes(b"damaged")
    (state.root / "current").unlink()
    (state.root / "current").symlink_to("current")

    line = state.repair_current()

    assert state.current() is None and "no model" in line


# Something of the wrong kind where the state dir keeps a folder or the lock.

def _file_at(rel: str):
    def make(state: Path) -> Path:
        (state / rel).parent.mkdir(parents=True, exist_ok=True)
        (state / rel).write_text("not a folder")
        return state / rel
    make.__name__ = rel
    return make


def _dir_at_lock(state: Path) -> Path:
    (state / "lock").mkdir(parents=True)
    return state / "lock"


@pytest.mark.parametrize("make", [_file_at("downloads"), _file_at("outbox"), _file_at("models"),
                                  _file_at("outbox/quarantine"), _dir_at_lock],
                         ids=["downloads", "outbox", "models", "quarantine", "lock"])
def test_a_file_where_a_folder_belongs_or_a_folder_where_the_lock_belongs_is_exit_6_naming_path_and_fix(tmp_path, make):
    state = tmp_path / "state"
    state.mkdir()
    wrong = make(state)

    proc = _cli("http://127.0.0.1:9", "m", state)

    assert proc.returncode == Exit.STORAGE, proc.stderr
    line = _one_error_line(proc)
    assert str(wrong) in line and f"mv {wrong} {wrong}.bad" in line


# A backlog in the outbox may not take the run's deadline.

def test_a_backlog_of_1500_reports_is_sent_newest_first_within_a_budget_and_the_new_version_installs(
        register, rest, server, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    box = Outbox(DeviceState(tmp_path).outbox_dir)
    base = int(time.time() * 1000) - 10_000_000
    for i in range(1500):
        box.put(Report(good.run_id, {"backlog.i": float(i)}, {}, base + i * 1000))
    queued = [p.name for p in box.pending()]
    client = RegistryClient(server.uri, deadline=Deadline(60))

    outcome = pull(_config(tmp_path, fresh_model), client)

    assert outcome.code == Exit.OK, outcome.message
    assert DeviceState(tmp_path).current().version == good.version
    left = [p.name for p in box.pending()]
    assert 0 < len(left) <= 1500 - 1 and left == queued[:len(left)], "the newest go first, the oldest wait"
    sent = 1500 - len(left)
    assert sent <= FLUSH_MAX_REPORTS and f"{len(left)} older queued report(s) kept for later runs" in outcome.message
    assert rest.run_metrics(good.run_id)["backlog.i"] == 1499.0
