"""Everything from the registry is untrusted: lying servers, bundles that contradict themselves, missing references,
and faults of the network told apart from faults of the content. Real server, real interpreter, real files."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge import contract
from edge.bundle import read_labels, sha256_file
from edge.contract import ExitCode as Exit
from edge.outbox import Outbox, Report
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from edge.state import DeviceState
from tests.edge.registry_rest import copy_bundle, fixture_metrics, fixture_tags, register_bundle, rewrite_manifest
from tests.edge.reports import device_report

DEVICE = "pi-untrusted"


def _config(state: Path, model: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id=DEVICE, runs=5, warmup=1, **kw)


def _device_tag(rest, state: Path, version: str, name: str) -> str | None:
    return device_report(rest, state, version)[1].get(name)


# 5. A lying server: 200 and `{}` to everything.

def test_a_server_answering_empty_json_to_everything_is_nonsense_and_the_queued_report_stays(
        register, rest, registry, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    state = tmp_path / "state"
    outbox = Outbox(DeviceState(state).outbox_dir)
    outbox.put(Report(run_id=good.run_id, metrics={contract.device_key("pi-q", contract.D_P50): 2.5}, tags={},
                      timestamp_ms=int(time.time() * 1000)))
    proxy.add("", "lie")

    lied = pull(_config(state, fresh_model), RegistryClient(proxy.uri))

    assert lied.code == Exit.UNREACHABLE and "nonsense" in lied.message, lied.message
    assert len(outbox.pending()) == 1  # never counted as sent
    honest = pull(_config(state, fresh_model), registry)
    assert honest.code == Exit.OK, honest.message
    assert outbox.pending() == [] and rest.run_metrics(good.run_id)[contract.device_key("pi-q", contract.D_P50)] == 2.5


def test_a_proxy_that_swallows_reports_keeps_them_queued_until_the_server_has_them(
        register, rest, registry, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    proxy.add("runs/log-batch", "lie")

    swallowed = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert swallowed.code == Exit.UNREACHABLE and "queued" in swallowed.message, swallowed.message
    assert len(Outbox(DeviceState(tmp_path).outbox_dir).pending()) == 1
    assert _device_tag(rest, tmp_path, good.version, contract.D_STATUS) is None
    again = pull(_config(tmp_path, fresh_model), registry)
    assert again.code == Exit.OK and Outbox(DeviceState(tmp_path).outbox_dir).pending() == [], again.message
    assert _device_tag(rest, tmp_path, good.version, contract.D_STATUS) == contract.STATUS_HEALTHY


@pytest.mark.parametrize("answer", [b'{"model_version": {}}', b'{"model_version": {"name": "other", "version": "1"}}',
                                    b'{"model_version": {"version": "1", "tags": "x"}}', b"[1, 2]"])
def test_a_version_answer_missing_what_the_device_needs_is_nonsense_not_a_traceback(
        register, proxy, fresh_model, tmp_path, answer):
    register(fresh_model, "int8")
    if b'"name"' not in answer and answer.startswith(b'{"model_version": {"version"'):
        answer = answer.replace(b'{"version"', b'{"name": "%s", "version"' % fresh_model.encode())
    proxy.add("registered-models/alias", "lie", body=answer)

    outcome = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert outcome.code == Exit.UNREACHABLE and "nonsense" in outcome.message, outcome.message


# 6. A bundle is consistent or refused: labels.txt, the manifest's labels, the labels tag, the model's outputs.

def _labels(bundle: Path, names: list[str]) -> None:
    (bundle / contract.LABELS_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")


def _manifest(bundle: Path, change) -> None:
    path = bundle / contract.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _seven_labels(b: Path) -> dict:
    _labels(b, [str(i) for i in range(7)])
    rewrite_manifest(b)
    return {contract.TAG_LABELS: ",".join(read_labels(b))}


def _twelve_labels(b: Path) -> dict:
    _labels(b, [str(i) for i in range(12)])
    rewrite_manifest(b)
    return {contract.TAG_LABELS: ",".join(read_labels(b))}


def _reversed_labels(b: Path) -> dict:
    original = read_labels(b)
    _labels(b, original[::-1])
    rewrite_manifest(b)  # sha256s right…
    _manifest(b, lambda m: m.update(labels=original))  # …the manifest's labels as they were
    return {}


def _tag_disagrees(b: Path) -> dict:
    _labels(b, read_labels(b)[::-1])
    rewrite_manifest(b)  # labels.txt and the manifest agree; the version's labels tag does not
    return {}


def _only_the_model(b: Path) -> dict:
    _manifest(b, lambda m: m.update(files={contract.MODEL_FILE: m["files"][contract.MODEL_FILE]}))
    return {}


def _an_extra_file(b: Path) -> dict:
    _manifest(b, lambda m: m["files"].update({"extra.bin": "0" * 64}))
    return {}


def _files_a_list(b: Path) -> dict:
    _manifest(b, lambda m: m.update(files=sorted(m["files"])))
    return {}


def _path_outside(b: Path) -> dict:
    _manifest(b, lambda m: m["files"].update({"../outside": "0" * 64}))
    return {}


def _binary_labels(b: Path) -> dict:
    (b / contract.LABELS_FILE).write_bytes(b"\xff\xfe\x00 not text")
    _manifest(b, lambda m: m["files"].update({contract.LABELS_FILE: sha256_file(b / contract.LABELS_FILE)}))
    return {}


def _inconsistent_checksum(b: Path) -> dict:
    _labels(b, read_labels(b)[:-1] + ["cat"])  # the manifest still names the old labels.txt's sha256
    return {}


@pytest.mark.parametrize("corrupt, says", [
    (_seven_labels, "names 7 classes, the model has 10 outputs"),
    (_twelve_labels, "names 12 classes, the model has 10 outputs"),
    (_reversed_labels, "disagree"),
    (_tag_disagrees, "labels tag disagree"),
    (_only_the_model, "must list exactly"),
    (_an_extra_file, "also names ['extra.bin']"),
    (_files_a_list, "no 'files' object"),
    (_path_outside, "path outside the bundle"),
    (_binary_labels, "not UTF-8 text"),
    (_inconsistent_checksum, "does not match its sha256"),
], ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "")
def test_a_bundle_that_contradicts_itself_is_refused_remembered_and_reported(
        rest, register, registry, fresh_model, tmp_path, corrupt, says):
    bundle = copy_bundle("fp32", tmp_path / "bundle")
    tags = corrupt(bundle)
    bad = register(fresh_model, "fp32", bundle=bundle, tags=tags)
    state = tmp_path / "state"

    first = pull(_config(state, fresh_model), registry)
    second = pull(_config(state, fresh_model), registry)

    assert first.code == Exit.REJECTED and says in first.message, first.message
    assert DeviceState(state).current() is None
    assert (second.code, second.bytes_downloaded) == (Exit.REJECTED, 0), second.message  # remembered: no download
    assert _device_tag(rest, state, bad.version, contract.D_STATUS) == contract.STATUS_REJECTED
    assert says in _device_tag(rest, state, bad.version, contract.D_REASON)


# 7. No registered accuracy: no silent skip of the accuracy rule.

def test_a_version_without_registered_accuracy_is_refused_with_both_fixes_and_not_remembered(
        rest, registry, fresh_model, tmp_path):
    metrics = {k: v for k, v in fixture_metrics("int8").items() if k != contract.M_ACCURACY}
    register_bundle(rest, fresh_model, copy_bundle("int8", tmp_path / "b"), fixture_tags("int8"), metrics,
                    alias=contract.DEFAULT_ALIAS)
    state = tmp_path / "state"

    refused = pull(_config(state, fresh_model), registry)

    assert refused.code == Exit.REJECTED and refused.bytes_downloaded == 0, refused.message
    assert contract.M_ACCURACY in refused.message and "--min-sample-accuracy" in refused.message
    assert not (state / "rejected.json").exists()
    from edge.gate import GateLimits

    given = pull(_config(state, fresh_model, gate=GateLimits(min_sample_accuracy=0.5)), registry)
    assert given.code == Exit.OK, given.message


# 9. Transient (the network, the store) against permanent (the content).

def test_a_download_corrupted_once_by_the_network_is_fetched_again_and_installs_unblamed(
        rest, register, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    rule = proxy.add(f"path={contract.MODEL_FILE}", "corrupt", times=1)

    outcome = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert outcome.code == Exit.OK and rule.fired == 1, outcome.message
    assert _device_tag(rest, tmp_path, good.version, contract.D_STATUS) == contract.STATUS_HEALTHY


def test_downloads_corrupted_differently_each_time_are_the_networks_fault_not_the_versions(
        rest, register, registry, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    proxy.add(f"path={contract.MODEL_FILE}", "corrupt", times=2)

    flaky = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert flaky.code == Exit.UNREACHABLE and "different bytes" in flaky.message, flaky.message
    assert _device_tag(rest, tmp_path, good.version, contract.D_STATUS) is None  # not reported
    assert not (tmp_path / "rejected.json").exists()
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK


def test_an_artifact_missing_during_a_storage_outage_is_retried_not_remembered(
        rest, register, registry, proxy, fresh_model, tmp_path):
    good = register(fresh_model, "int8")
    proxy.add(f"path={contract.SAMPLE_FILE}", "status", status=404)

    outage = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert outage.code == Exit.UNREACHABLE and "missing" in outage.message, outage.message
    assert proxy.count(f"path={contract.MODEL_FILE}") == 0  # the large file is fetched last
    assert _device_tag(rest, tmp_path, good.version, contract.D_STATUS) is None and not (tmp_path / "rejected.json").exists()
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK


def test_a_registry_sha256_that_is_no_digest_is_refused_before_any_download(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8", tags={contract.TAG_SHA256: "not-a-digest"})

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.REJECTED and outcome.bytes_downloaded == 0 and "sha256" in outcome.message


def test_stale_temporary_files_are_cleaned_at_the_start_of_a_run(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    state = DeviceState(tmp_path)
    leftovers = [state.outbox_dir / "00001-x.json.tmp", tmp_path / "state.json.tmp", tmp_path / "rejected.json.tmp"]
    for path in leftovers:
        path.write_text("half", encoding="utf-8")

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    assert not any(path.exists() for path in leftovers)
    assert sha256_file(tmp_path / "current" / contract.MODEL_FILE) == fixture_tags("int8")[contract.TAG_SHA256]


def test_a_deleted_device_run_gets_a_new_one_and_the_report_is_not_lost(rest, register, registry, fresh_model, tmp_path):
    from tests.edge.reports import device_run_id

    register(fresh_model, "int8")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    gone = device_run_id(tmp_path)
    rest.delete_run(gone)  # a person tidying the fleet experiment, or a server started afresh
    newer = register(fresh_model, "dynamic")

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.OK, outcome.message
    assert device_run_id(tmp_path) != gone
    assert _device_tag(rest, tmp_path, newer.version, contract.D_STATUS) == contract.STATUS_HEALTHY


@pytest.mark.parametrize("body", [b"[1]", b'"a string"', b"not json at all"])
def test_an_error_answer_of_any_shape_is_one_line_not_a_traceback(register, proxy, fresh_model, tmp_path, body):
    register(fresh_model, "int8")
    proxy.add("registered-models/alias", "status", status=400, error_body=body)

    outcome = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert outcome.code == Exit.BAD_CONFIG and "HTTP 400" in outcome.message, outcome.message
