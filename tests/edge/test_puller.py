"""The puller against a real MLflow server: install, verify, reject, benchmark, report, outbox."""
from __future__ import annotations

from pathlib import Path

from edge import contract
from edge.outbox import Outbox
from edge.puller import Exit, PullConfig, pull
from edge.runtime import find_runtime
from edge.registry_client import RegistryClient
from edge.state import DeviceState
from tests.edge.fault_proxy import FaultProxy
from tests.edge.reports import device_report, device_run_id
from tests.edge.registry_rest import copy_bundle, register_fixture, rewrite_manifest


def _config(state_dir: Path, model: str, device: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state_dir, device_id=device, runs=20, warmup=2, **kw)




def test_first_pull_installs_benchmarks_and_reports_to_the_versions_run(register, rest, registry, fresh_model, tmp_path):
    version = register(fresh_model, "int8").version

    outcome = pull(_config(tmp_path, fresh_model, "pi-first"), registry)

    assert outcome.code == Exit.OK, outcome.message
    assert outcome.version == version and outcome.bytes_downloaded > 0
    current = DeviceState(tmp_path).current()
    assert (current.version, current.benchmarked) == (version, True)
    assert (tmp_path / "current").resolve() == Path(current.path).resolve()
    assert sorted(p.name for p in (tmp_path / "current").iterdir()) == sorted(contract.DEVICE_FILES)

    metrics, tags = device_report(rest, tmp_path, version)
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "peak_rss_mb", "sample_accuracy"):
        assert key in metrics, key
    assert metrics["latency_p99_ms"] >= metrics["latency_p90_ms"] >= metrics["latency_p50_ms"] > 0
    assert metrics["sample_accuracy"] >= 0.9  # the int8 fixture scores 1.0 on its own labelled sample
    assert tags[contract.D_RUNTIME] == find_runtime().package  # the one that ran
    assert tags[contract.D_MODEL_VERSION] == version
    assert rest.run_tags(device_run_id(tmp_path))[contract.TAG_DEVICE_CLASS]  # the CPU, a tag of the device's run


def test_second_run_downloads_nothing(register, registry, fresh_model, tmp_path):
    register(fresh_model, "fp16")
    assert pull(_config(tmp_path, fresh_model, "pi-again"), registry).code == Exit.OK
    before = (tmp_path / "state.json").read_text()

    again = pull(_config(tmp_path, fresh_model, "pi-again"), registry)

    assert (again.code, again.bytes_downloaded, again.result) == (Exit.OK, 0, None)
    assert "already installed" in again.message
    assert (tmp_path / "state.json").read_text() == before


def test_new_promotion_is_installed_and_previous_kept_for_rollback(register, rest, registry, fresh_model, tmp_path):
    first = register(fresh_model, "fp32").version
    second = register(fresh_model, "int8", alias=None).version
    assert pull(_config(tmp_path, fresh_model, "pi-swap"), registry).code == Exit.OK
    rest.set_alias(fresh_model, contract.DEFAULT_ALIAS, second)

    assert pull(_config(tmp_path, fresh_model, "pi-swap"), registry).code == Exit.OK

    state = DeviceState(tmp_path)
    assert (state.current().version, state.previous().version) == (second, first)
    assert (tmp_path / "previous").resolve() == Path(state.previous().path).resolve()


def test_pinned_version_overrides_the_alias(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    version = register(fresh_model, "dynamic", alias=None).version
    outcome = pull(_config(tmp_path, fresh_model, "pi-pin", version=version), registry)
    assert outcome.code == Exit.OK and DeviceState(tmp_path).current().version == version


def _serving(register, registry, model: str, state_dir: Path) -> str:
    good = register(model, "int8").version
    assert pull(_config(state_dir, model, "pi-guard"), registry).code == Exit.OK
    return good


def _assert_still_serving(state_dir: Path, version: str) -> None:
    state = DeviceState(state_dir)
    assert state.current().version == version
    assert (state_dir / "current" / contract.MODEL_FILE).is_file()
    assert not list((state_dir / "downloads").iterdir()), "rejected downloads are cleaned up"


def test_sha_mismatch_is_rejected_and_the_old_model_keeps_serving(register, registry, fresh_model, tmp_path):
    good = _serving(register, registry, fresh_model, tmp_path)
    register(fresh_model, "fp32", tags={contract.TAG_SHA256: "0" * 64})

    outcome = pull(_config(tmp_path, fresh_model, "pi-guard"), registry)

    assert outcome.code == Exit.REJECTED
    assert "sha256" in outcome.message and f"v{good} keeps serving" in outcome.message
    _assert_still_serving(tmp_path, good)


def test_truncated_tflite_is_rejected_and_the_old_model_keeps_serving(register, registry, fresh_model, tmp_path):
    good = _serving(register, registry, fresh_model, tmp_path / "state")
    # A bundle whose sha256 tag and manifest are consistent, but whose model is cut in half.
    broken = copy_bundle("fp32", tmp_path / "broken")
    data = (broken / contract.MODEL_FILE).read_bytes()
    (broken / contract.MODEL_FILE).write_bytes(data[: len(data) // 2])
    rewrite_manifest(broken)
    register(fresh_model, "fp32", bundle=broken)

    outcome = pull(_config(tmp_path / "state", fresh_model, "pi-guard"), registry)

    assert outcome.code == Exit.REJECTED, outcome.message
    assert "truncated" in outcome.message or "test inference failed" in outcome.message
    _assert_still_serving(tmp_path / "state", good)


def test_model_needing_a_newer_runtime_is_rejected_before_download(register, registry, fresh_model, tmp_path):
    good = _serving(register, registry, fresh_model, tmp_path)
    register(fresh_model, "fp32", tags={contract.TAG_MIN_RUNTIME: "9.0.0"})

    outcome = pull(_config(tmp_path, fresh_model, "pi-guard"), registry)

    assert (outcome.code, outcome.bytes_downloaded) == (Exit.REJECTED, 0)
    assert "9.0.0" in outcome.message
    _assert_still_serving(tmp_path, good)


def test_unknown_model_or_alias_is_bad_configuration(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")  # the model exists, with another alias set
    assert pull(_config(tmp_path, "no-such-model", "pi"), registry).code == Exit.BAD_CONFIG
    outcome = pull(_config(tmp_path, fresh_model, "pi", alias="nobody-set-this"), registry)
    assert outcome.code == Exit.BAD_CONFIG and "nobody-set-this" in outcome.message


def test_two_devices_report_on_the_same_version_each_on_its_own_run(register, rest, registry, fresh_model, tmp_path):
    version = register(fresh_model, "dynamic").version

    for device in ("pi4-kitchen", "pi5-garage"):
        assert pull(_config(tmp_path / device, fresh_model, device), registry).code == Exit.OK

    for device in ("pi4-kitchen", "pi5-garage"):
        assert device_report(rest, tmp_path / device, version)[0][contract.D_P50] > 0


class _GoesDownBeforeReporting(RegistryClient):
    """The server goes away between the benchmark and the report: its port refuses connections from then on."""

    def __init__(self, front: FaultProxy):
        super().__init__(front.uri)
        self.front = front

    def log_batch(self, run_id, metrics, *args, **kwargs):
        if metrics:  # a report (its run's identity params, logged when the run is made, come first)
            self.front.close()
        return super().log_batch(run_id, metrics, *args, **kwargs)


def test_server_down_results_wait_in_the_outbox_and_are_sent_later(server, rest, fresh_model, tmp_path):
    # The device reaches the server through a front of its own that closes: what it sees is a server that is down,
    # while the shared server stays up for the other tests.
    front = FaultProxy(server.uri)
    version = register_fixture(rest, fresh_model, "int8").version
    try:
        outcome = pull(_config(tmp_path, fresh_model, "pi-offline"), _GoesDownBeforeReporting(front))
        assert outcome.code == Exit.UNREACHABLE and "queued" in outcome.message
        assert len(Outbox(tmp_path / "outbox").pending()) == 1

        while_down = pull(_config(tmp_path, fresh_model, "pi-offline"), RegistryClient(front.uri))
        assert while_down.code == Exit.UNREACHABLE
        assert len(Outbox(tmp_path / "outbox").pending()) == 1, "nothing measured is lost while the server is down"
    finally:
        front.close()
    front = FaultProxy(server.uri, port=front.port)

    back = pull(_config(tmp_path, fresh_model, "pi-offline"), RegistryClient(front.uri))
    front.close()

    assert back.code == Exit.OK and "sent 1 queued report" in back.message
    assert Outbox(tmp_path / "outbox").pending() == []
    assert device_report(rest, tmp_path, version)[0][contract.D_P50] > 0


# Loaded by the candidate's child process through PYTHONPATH: its runtime passes the probe (an empty model)
# but creating the model's interpreter hits the NumPy ABI break, as tflite-runtime 2.14 does under NumPy 2.
_NUMPY_ABI_BREAK = """
import dataclasses
import edge.runtime as rt

_load = rt.load_runtime

def _broken(package):
    real = _load(package)
    def interpreter_class(model_path=None, model_content=None, num_threads=None):
        if model_path:
            raise SystemError("returned a result with an exception set") from ImportError("_ARRAY_API not found")
        return real.interpreter_class(model_content=model_content)
    return dataclasses.replace(real, interpreter_class=interpreter_class)

rt.load_runtime = _broken
"""


def test_a_runtime_that_fails_only_on_the_model_is_bad_configuration_and_not_remembered(
        register, registry, fresh_model, tmp_path, monkeypatch):
    # The device is at fault, not the version: exit 2 with the fix, nothing remembered or reported.
    version = register(fresh_model, "int8").version
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NUMPY_ABI_BREAK)
    monkeypatch.setenv("PYTHONPATH", str(site))
    state = tmp_path / "state"

    broken = pull(_config(state, fresh_model, "pi-numpy"), registry)

    assert broken.code == Exit.BAD_CONFIG and 'pip install "numpy<2"' in broken.message, broken.message
    assert DeviceState(state).current() is None and not (state / "rejected.json").exists()
    monkeypatch.undo()
    fixed = pull(_config(state, fresh_model, "pi-numpy"), registry)
    assert (fixed.code, fixed.version) == (Exit.OK, version), fixed.message
