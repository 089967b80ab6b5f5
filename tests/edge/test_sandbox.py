"""A candidate that crashes the runtime, never answers or eats memory is refused like any other bad version:
the puller survives, remembers and reports it, and the current model keeps serving. Real interpreter, real server."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.sandbox import CandidateJob, CandidateRefused, SandboxLimits, run_candidate
from edge.state import DeviceState
from tests.conftest import REPO
from tests.edge.hostile import hostile_bundle, register_hostile
from tests.edge.registry_rest import fixture_bundle
from tests.edge.reports import device_report

DEVICE = "pi-sandbox"


def _config(state: Path, model: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id=DEVICE, runs=5, warmup=1, **kw)


# On x86_64 each bundle fails the one way it was built to; a 32-bit ARM runtime may fail another way
# (refuse the flatbuffer, fail the 1 GB allocation in a 3 GB address space): still a refusal with a reason.
_ELSEWHERE = "" if platform.machine() == "x86_64" else "|the runtime cannot load the model|test inference failed"


@pytest.mark.parametrize("kind, limits, says", [
    ("crash", SandboxLimits(timeout_s=60), "the runtime crashed: SIG" + _ELSEWHERE),
    ("hang", SandboxLimits(timeout_s=3), "no answer in 3 s"),
    ("oom", SandboxLimits(timeout_s=60), "over 512 MB" + _ELSEWHERE),  # the default limit, against a 1 GB tensor
])
def test_a_hostile_version_is_refused_remembered_reported_and_the_current_model_keeps_serving(
        rest, register, registry, fresh_model, tmp_path, kind, limits, says):
    good = register(fresh_model, "int8")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    bad = register_hostile(rest, fresh_model, kind)
    started = time.monotonic()

    refused = pull(_config(tmp_path, fresh_model, check_timeout_s=limits.timeout_s), registry)

    assert refused.code == Exit.REJECTED and re.search(says, refused.message), refused.message
    assert time.monotonic() - started < limits.timeout_s + 30
    current = DeviceState(tmp_path).current()
    assert current is not None and current.version == good.version
    assert DeviceState(tmp_path).rejection_for(fresh_model, bad.version, rest.version_tags(fresh_model, bad.version)[
        contract.TAG_SHA256]) is not None
    tags = device_report(rest, tmp_path, bad.version)[1]
    assert tags[contract.D_STATUS] == contract.STATUS_REJECTED
    assert re.search(says, tags[contract.D_REASON])
    again = pull(_config(tmp_path, fresh_model, check_timeout_s=limits.timeout_s), registry)
    assert (again.code, again.bytes_downloaded) == (Exit.REJECTED, 0), again.message  # not downloaded or run again


def test_a_hang_does_not_hold_the_device_the_next_version_installs(rest, register, registry, fresh_model, tmp_path):
    register_hostile(rest, fresh_model, "hang")
    assert pull(_config(tmp_path, fresh_model, check_timeout_s=2), registry).code == Exit.REJECTED
    fixed = register(fresh_model, "int8")

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert (outcome.code, outcome.version) == (Exit.OK, fixed.version), outcome.message


def test_a_hard_memory_limit_of_the_users_choice_names_the_limit():
    job = CandidateJob(hostile_bundle("oom"), labels=10, runs=1, warmup=0)

    with pytest.raises(CandidateRefused, match="over 150 MB" + _ELSEWHERE):
        run_candidate(job, SandboxLimits(timeout_s=60, max_rss_mb=150), Path("/tmp"))


def test_a_good_model_passes_the_sandbox_with_its_own_peak_memory():
    result = run_candidate(CandidateJob(fixture_bundle("int8"), labels=10, runs=5, warmup=1), SandboxLimits(), Path("/tmp"))

    assert result.sample_size == 32 and result.accuracy is not None and 0 < result.peak_rss_mb < 512


def test_the_crashing_version_leaves_the_real_command_alive_with_exit_4_and_one_line(
        server, rest, register, fresh_model, tmp_path):
    # Before: the segfault killed edgeq-pull itself (exit 139, no log line), on every cron run.
    register_hostile(rest, fresh_model, "crash")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    cli = "import sys; sys.argv = ['edgeq-pull'] + sys.argv[1:]; from edge.cli import main; main()"

    proc = subprocess.run([sys.executable, "-c", cli, "--tracking-uri", server.uri, "--model", fresh_model,
                           "--state-dir", str(tmp_path), "--device-id", DEVICE, "--runs", "5", "--warmup", "1"],
                          env=env, capture_output=True, text=True, timeout=180)

    assert proc.returncode == Exit.REJECTED, proc.stderr
    assert "Traceback" not in proc.stderr and re.search("the runtime crashed: SIG" + _ELSEWHERE, proc.stderr)
