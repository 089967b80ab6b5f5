"""Kill the puller at each step of an install (as power loss or kill -9 would) and check the next run.

Every crash point must recover on the next run: the right version current, no new
download where the bundle was already verified on disk, and its report delivered once.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from edge.registry_client import RegistryClient
from edge.state import DeviceState
from tests.conftest import REPO
from tests.edge.registry_rest import fixture_tags
from tests.edge.reports import device_report, device_run_id

_CRASHER = """
import os, sys
point = os.environ["EDGEQ_TEST_CRASH_AT"]
import edge.state, edge.puller, edge.outbox
def die(*args, **kwargs):
    os._exit(137)
if point == "before-stage":
    edge.state.DeviceState.stage = die
elif point == "before-gate":
    edge.puller.judge = die
elif point == "between-links":
    real = edge.state.atomic_symlink
    def symlink(target, link):
        if link.name == "current":
            os._exit(137)
        return real(target, link)
    edge.state.atomic_symlink = symlink
elif point == "before-mark":
    edge.state.DeviceState.mark_benchmarked = die
elif point == "before-send":
    edge.outbox.Outbox.send = die
elif point == "before-remember":
    edge.state.DeviceState.remember_rejection = die
sys.argv = ["edgeq-pull"] + sys.argv[1:]
from edge.cli import main
main()
"""

# crash point -> whether the next run must download the bundle again
POINTS = {
    "before-stage": True,  # only downloads/ had it: cleaned, fetched again
    "before-gate": False,
    "between-links": False,
    "before-mark": False,
    "before-send": False,
}


def _pull(uri: str, model: str, state: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(REPO), **({"EDGEQ_TEST_CRASH_AT": crash_at} if crash_at else {}))
    args = ["--tracking-uri", uri, "--model", model, "--state-dir", str(state), "--device-id", "pi-crash",
            "--runs", "5", "--warmup", "1"]
    code = _CRASHER if crash_at else "import sys; sys.argv=['edgeq-pull']+sys.argv[1:]; from edge.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_run_killed_at_each_step_recovers_on_the_next(point, server, register, rest, fresh_model, tmp_path):
    first = register(fresh_model, "fp32")
    assert _pull(server.uri, fresh_model, tmp_path).returncode == 0
    second = register(fresh_model, "int8")

    killed = _pull(server.uri, fresh_model, tmp_path, crash_at=point)
    assert killed.returncode == 137, killed.stderr

    after = _pull(server.uri, fresh_model, tmp_path)

    assert after.returncode == Exit.OK, after.stderr
    assert bool(re.search(r"downloaded \d+ bytes", after.stderr)) == POINTS[point], after.stderr
    state = DeviceState(tmp_path)
    assert (state.current().version, state.current().benchmarked) == (second.version, True)
    assert state.previous().version == first.version
    assert (tmp_path / "current" / contract.MODEL_FILE).is_file()
    assert list((tmp_path / "downloads").iterdir()) == []
    assert device_report(rest, tmp_path, second.version)[1][contract.D_STATUS] == contract.STATUS_HEALTHY
    assert DeviceState(tmp_path).current().path == str((tmp_path / "current").resolve())
    assert not list((tmp_path / "outbox").glob("*.json"))
    assert len(_reports_of(server.uri, tmp_path, second.version)) == 1, "the report reached the server once"


def _reports_of(uri: str, state: Path, version: str) -> list[tuple[int, float]]:
    """The points of the device's reports about ``version``: one per report (its first metric)."""
    history = RegistryClient(uri).metric_history(device_run_id(state), contract.M_REPORTED_VERSION)
    return [point for point in history if point[1] == float(version)]


def test_a_run_killed_between_queueing_a_refusal_and_remembering_it_reports_it_once(
        server, register, rest, fresh_model, tmp_path):
    register(fresh_model, "fp32")
    assert _pull(server.uri, fresh_model, tmp_path).returncode == 0
    bad = register(fresh_model, "int8", tags={contract.TAG_LABELS: "a,b"})  # refused after the download

    killed = _pull(server.uri, fresh_model, tmp_path, crash_at="before-remember")
    assert killed.returncode == 137, killed.stderr

    after = _pull(server.uri, fresh_model, tmp_path)

    assert after.returncode == Exit.REJECTED, after.stderr
    assert device_report(rest, tmp_path, bad.version)[1][contract.D_STATUS] == contract.STATUS_REJECTED
    assert len(_reports_of(server.uri, tmp_path, bad.version)) == 1, "the refusal reached the server once"
    assert DeviceState(tmp_path).rejection_for(fresh_model, bad.version, fixture_tags("int8")[contract.TAG_SHA256])
    assert not list((tmp_path / "outbox").glob("*.json"))


def test_empty_or_damaged_state_files_cost_a_benchmark_not_a_download(server, register, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    assert _pull(server.uri, fresh_model, tmp_path).returncode == 0
    (tmp_path / "state.json").write_text("")
    (tmp_path / "rejected.json").write_text("{\x00garbage")

    after = _pull(server.uri, fresh_model, tmp_path)

    assert after.returncode == Exit.OK, after.stderr
    assert not re.search(r"downloaded \d+ bytes", after.stderr) and "reported to run" in after.stderr
    assert DeviceState(tmp_path).current().version == version.version


def test_a_dangling_current_link_is_treated_as_no_model(server, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "current").symlink_to("models/gone/v9-000000000000")

    after = _pull(server.uri, fresh_model, tmp_path)

    assert after.returncode == Exit.OK, after.stderr
    assert (tmp_path / "current" / contract.MODEL_FILE).is_file()
