"""The puller under the faults a year on cron brings, against a real MLflow server (and a loopback fault proxy)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from edge.heartbeat import fleet_run_id
from edge.outbox import DEAD_LETTER, Outbox, Report
from edge.puller import PullConfig, pull
from edge.registry_client import Deadline, RegistryClient
from edge.state import DeviceState
from tests.conftest import REPO
from tests.edge.registry_rest import disagreeing_bundle
from tests.edge.reports import device_report

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))


def _config(state: Path, model: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id="pi-fault", runs=5, warmup=1, **kw)


def _run_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """edgeq-pull in a child process; returns it and the child's own peak RSS in MB (VmHWM)."""
    wrapper = (
        "import sys, atexit\n"
        "def peak():\n"
        "    for l in open('/proc/self/status'):\n"
        "        if l.startswith('VmHWM:'): sys.stderr.write('PEAK_RSS_KB ' + l.split()[1] + '\\n')\n"
        "atexit.register(peak)\n"
        "sys.argv = ['edgeq-pull'] + sys.argv[1:]\n"
        "from edge.cli import main\n"
        "main()\n"
    )
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    full_env.update(env, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], env=full_env, capture_output=True, text=True, timeout=180)
    peaks = [int(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("PEAK_RSS_KB")]
    return proc, (peaks[-1] / 1024 if peaks else float("nan"))


def _cli_args(uri: str, model: str, state: Path, *extra: str) -> list[str]:
    return ["--tracking-uri", uri, "--model", model, "--state-dir", str(state), "--device-id", "pi-cli",
            "--runs", "5", "--warmup", "1", *extra]


# 1. A refused report must not block the device.

def test_a_report_for_a_deleted_run_goes_to_dead_letter_and_the_new_version_installs(register, rest, registry, fresh_model, tmp_path):
    old = register(fresh_model, "fp32", alias=None)
    rest.delete_run(old.run_id)
    Outbox(tmp_path / "outbox").put(Report(old.run_id, {"device.pi-fault.latency_p50_ms": 1.0}, {}, 1000))
    new = register(fresh_model, "int8")

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.OK, outcome.message
    assert DeviceState(tmp_path).current().version == new.version
    box = Outbox(tmp_path / "outbox")
    assert box.pending() == [] and len(box.dead_letters()) == 1
    assert "refused" in (tmp_path / "outbox" / DEAD_LETTER / (box.dead_letters()[0].stem + ".reason.txt")).read_text()
    assert "moved to dead-letter" in outcome.message
    # logged once: the next run does not mention it again
    assert "dead-letter" not in pull(_config(tmp_path, fresh_model), registry).message


def test_a_corrupt_outbox_file_is_quarantined_and_later_reports_still_go_out(register, rest, registry, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    box = Outbox(tmp_path / "outbox")
    (tmp_path / "outbox" / "00000000000000000001-bad.json").write_text("{not json")
    box.put(Report(good.run_id, {"device.pi-queued.latency_p50_ms": 2.5}, {}, 1000))

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.OK, outcome.message
    assert box.pending() == [] and [p.name for p in box.quarantined() if p.suffix == ".json"] == ["00000000000000000001-bad.json"]
    assert rest.run_metrics(good.run_id)["device.pi-queued.latency_p50_ms"] == 2.5


@pytest.mark.parametrize("status", [400, 404])
def test_a_report_refused_with_an_error_code_is_dead_lettered_not_retried_forever(register, rest, registry, proxy, fresh_model, tmp_path, status):
    version = register(fresh_model, "int8")
    fleet_run_id(registry, tmp_path, fresh_model, "pi-fault")  # the run exists (with its identity): next log-batch is the report
    proxy.add("runs/log-batch", "status", status=status, times=1)
    first = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))
    assert first.code == Exit.BAD_CONFIG and "refused by the server" in first.message, first.message
    box = Outbox(tmp_path / "outbox")
    assert len(box.dead_letters()) == 1 and box.pending() == []  # kept for a person, never sent again

    again = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))
    assert again.code == Exit.OK and again.version == version.version, again.message
    assert proxy.count("runs/log-batch") == 2 + 1  # first report and heartbeat, then the second heartbeat only


# 2. Downloads are streamed and capped; the run has a deadline.

def test_a_huge_model_body_is_capped_and_the_puller_stays_small(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    proxy.add("get-artifact", "huge", size=1 << 30)  # 1 GiB, no Content-Length

    proc, peak_mb = _run_cli(_cli_args(proxy.uri, fresh_model, tmp_path), {})

    assert proc.returncode == Exit.REJECTED, proc.stderr
    assert "larger than" in proc.stderr and "Traceback" not in proc.stderr
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"
    assert not list((tmp_path / "downloads").iterdir())


def test_a_huge_error_body_is_not_read_whole(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    proxy.add("registered-models/alias", "huge", size=1 << 30)

    proc, peak_mb = _run_cli(_cli_args(proxy.uri, fresh_model, tmp_path), {})

    assert proc.returncode == Exit.UNREACHABLE, proc.stderr
    assert "Traceback" not in proc.stderr and peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"


def test_a_stalled_download_ends_at_the_deadline(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    proxy.add("get-artifact", "drip", seconds=30)

    proc, _ = _run_cli(_cli_args(proxy.uri, fresh_model, tmp_path, "--deadline", "4"), {})

    assert proc.returncode == Exit.UNREACHABLE, proc.stderr
    assert "deadline" in proc.stderr and "Traceback" not in proc.stderr


# 3. Cuts and refused credentials map to exit codes.

def test_a_connection_cut_mid_body_exits_3_without_a_traceback(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    proxy.add("get-artifact", "cut")

    proc, _ = _run_cli(_cli_args(proxy.uri, fresh_model, tmp_path), {})

    assert proc.returncode == Exit.UNREACHABLE, proc.stderr
    assert "broke" in proc.stderr and "Traceback" not in proc.stderr
    assert DeviceState(tmp_path).current() is None


def test_a_wrong_password_with_a_report_queued_exits_2_and_keeps_the_report(register, proxy, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    Outbox(tmp_path / "outbox").put(Report(version.run_id, {"device.x.latency_p50_ms": 1.0}, {}, 1000))
    proxy.add("/", "status", status=401)

    proc, _ = _run_cli(_cli_args(proxy.uri, fresh_model, tmp_path), {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "wrong"})

    assert proc.returncode == Exit.BAD_CONFIG, proc.stderr
    assert "refused the credentials" in proc.stderr and "Traceback" not in proc.stderr
    assert len(Outbox(tmp_path / "outbox").pending()) == 1


# 4. A rejected version is remembered until the alias moves.

def test_a_rejected_version_is_not_downloaded_again_until_the_alias_moves(register, rest, registry, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "fp32")
    assert pull(_config(tmp_path / "s", fresh_model), registry).code == Exit.OK
    bad = register(fresh_model, "int8", bundle=disagreeing_bundle("int8", tmp_path / "broken"))

    first = pull(_config(tmp_path / "s", fresh_model), RegistryClient(proxy.uri))
    downloads = proxy.count("get-artifact")
    second = pull(_config(tmp_path / "s", fresh_model), RegistryClient(proxy.uri))

    assert (first.code, second.code) == (Exit.REJECTED, Exit.REJECTED), (first.message, second.message)
    assert downloads == len(contract.DEVICE_FILES) and proxy.count("get-artifact") == downloads
    assert "not downloaded again" in second.message
    assert DeviceState(tmp_path / "s").current().version == good.version
    tags = device_report(rest, tmp_path / "s", bad.version)[1]
    assert tags[contract.D_STATUS] == contract.STATUS_REJECTED
    assert "sample accuracy" in tags[contract.D_REASON]

    newer = register(fresh_model, "dynamic")
    moved = pull(_config(tmp_path / "s", fresh_model), registry)
    assert (moved.code, moved.version) == (Exit.OK, newer.version), moved.message


# 5. Killed runs leave downloads behind: cleaned at start.

def test_stale_downloads_are_removed_at_the_start_of_a_run(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    stale = tmp_path / "downloads" / "dl-killed"
    stale.mkdir(parents=True)
    (stale / contract.MODEL_FILE).write_bytes(b"\0" * 1000)

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    assert list((tmp_path / "downloads").iterdir()) == []


# 7. Server-provided names never reach paths.

def test_a_version_that_is_not_a_number_is_refused(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")

    def evil(answer: dict) -> dict:
        answer["model_version"]["version"] = "1/../../x"
        return answer

    proxy.add("registered-models/alias", "rewrite", rewrite=evil)
    outcome = pull(_config(tmp_path / "state", fresh_model), RegistryClient(proxy.uri))

    assert outcome.code == Exit.UNREACHABLE and "whole number" in outcome.message, outcome.message
    assert not (tmp_path / "x").exists() and list((tmp_path / "state" / "models").iterdir()) == []


def test_a_pinned_version_that_is_not_a_number_is_bad_configuration(fresh_model, tmp_path, server):
    proc, _ = _run_cli(_cli_args(server.uri, fresh_model, tmp_path, "--model-version", "1/../../x"), {})
    assert proc.returncode == Exit.BAD_CONFIG and "whole number" in proc.stderr and "Traceback" not in proc.stderr


def test_the_deadline_object_refuses_once_spent():
    deadline = Deadline(0.01)
    import time

    time.sleep(0.02)
    from edge.registry_client import ServerUnreachable

    with pytest.raises(ServerUnreachable, match="deadline"):
        deadline.timeout()


# 8. A wrong model, alias or version: one plain line naming it and the fix, not the server's error code.

def _names_it_and_the_fix(message: str, *parts: str) -> None:
    assert "\n" not in message and "RESOURCE_DOES_NOT_EXIST" not in message, message
    assert "INVALID_PARAMETER_VALUE" not in message, message
    for part in parts:
        assert part in message, message


def test_an_alias_the_model_does_not_have_names_the_model_the_alias_and_the_fix(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    outcome = pull(_config(tmp_path, fresh_model, alias="prod"), registry)
    assert outcome.code == Exit.BAD_CONFIG
    _names_it_and_the_fix(outcome.message, repr(fresh_model), "alias 'prod'", "--alias",
                          f"edgeq versions {fresh_model}", f"{contract.DEFAULT_ALIAS} → v1")


def test_an_alias_name_the_server_refuses_is_named_with_the_fix(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    outcome = pull(_config(tmp_path, fresh_model, alias="not an alias"), registry)
    assert outcome.code == Exit.BAD_CONFIG
    _names_it_and_the_fix(outcome.message, repr(fresh_model), "alias 'not an alias'", "--alias")


def test_a_model_the_server_does_not_have_is_named_with_the_fix(registry, fresh_model, tmp_path):
    outcome = pull(_config(tmp_path, fresh_model), registry)
    assert outcome.code == Exit.BAD_CONFIG
    _names_it_and_the_fix(outcome.message, repr(fresh_model), "--model", "edgeq versions")


def test_a_version_the_model_does_not_have_is_named_with_the_fix(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    outcome = pull(_config(tmp_path, fresh_model, version="7"), registry)
    assert outcome.code == Exit.BAD_CONFIG
    _names_it_and_the_fix(outcome.message, repr(fresh_model), "version 7", "--model-version", f"edgeq versions {fresh_model}")
