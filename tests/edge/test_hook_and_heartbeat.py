"""The app learns of a new model (--on-change, rolled back when it fails); every run sends a heartbeat."""
from __future__ import annotations

from edge import contract
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from edge.state import DeviceState
from tests.edge.reports import device_report
from tests.edge.fault_proxy import FaultProxy


def _config(state, model, **kw):
    return PullConfig(model=model, state_dir=state, device_id="pi-hook", runs=5, warmup=1, **kw)


def test_the_hook_runs_after_the_swap_with_the_model_in_its_environment(register, registry, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    seen = tmp_path / "seen.txt"
    hook = f'echo "$EDGEQ_MODEL_NAME $EDGEQ_MODEL_VERSION $EDGEQ_MODEL_PATH" > {seen}; test -f "$EDGEQ_MODEL_PATH"'

    outcome = pull(_config(tmp_path / "s", fresh_model, on_change=hook), registry)

    assert outcome.code == Exit.OK, outcome.message
    name, number, path = seen.read_text().split()
    assert (name, number) == (fresh_model, version.version)
    assert path == str(tmp_path.resolve() / "s" / "current" / contract.MODEL_FILE)


def test_a_failing_hook_rolls_back_and_is_not_retried(register, rest, registry, fresh_model, tmp_path):
    first = register(fresh_model, "fp32")
    assert pull(_config(tmp_path / "s", fresh_model), registry).code == Exit.OK
    second = register(fresh_model, "int8")
    calls = tmp_path / "calls"
    hook = f'echo call >> {calls}; echo "app cannot load v$EDGEQ_MODEL_VERSION" >&2; exit 3'

    outcome = pull(_config(tmp_path / "s", fresh_model, on_change=hook), registry)
    again = pull(_config(tmp_path / "s", fresh_model, on_change=hook), registry)

    assert outcome.code == Exit.REJECTED and "exit 3" in outcome.message and f"rolled back to v{first.version}" in outcome.message
    assert again.code == Exit.REJECTED and calls.read_text().count("call") == 1
    state = DeviceState(tmp_path / "s")
    assert state.current().version == first.version
    assert (tmp_path / "s" / "current" / contract.MODEL_FILE).is_file()
    reason = device_report(rest, tmp_path / "s", second.version)[1][contract.D_REASON]
    assert "on-change hook failed" in reason and "app cannot load" in reason


def _device_run(rest, model: str, device: str = "pi-hook") -> dict:
    experiment = rest.experiment_id(contract.FLEET_EXPERIMENT)
    runs = rest.call("POST", "runs/search", json={
        "experiment_ids": [experiment],
        "filter": f"tags.`{contract.TAG_MODEL}` = '{model}' and tags.`{contract.TAG_DEVICE_ID}` = '{device}'"})["runs"]
    assert len(runs) == 1
    return runs[0]


def test_a_heartbeat_every_run_adds_no_history_and_a_no_change_run_costs_two_requests(
        server, register, rest, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    proxy = FaultProxy(server.uri)
    try:
        assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), RegistryClient(proxy.uri)).code == Exit.OK
        first = _device_run(rest, fresh_model)["info"]
        before = len(proxy.requests_seen)
        for _ in range(3):
            assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), RegistryClient(proxy.uri)).code == Exit.OK
        no_change = proxy.requests_seen[before:]
    finally:
        proxy.close()

    # resolve + runs/update: the tags did not change, so they are not sent again.
    assert len(no_change) == 6, no_change
    assert all("registered-models/alias" in r for r in no_change[0::2]) and all("runs/update" in r for r in no_change[1::2])
    run = _device_run(rest, fresh_model)
    run_id, info = run["info"]["run_id"], run["info"]
    assert info["status"] == "FINISHED", "a device run reads as finished in the UI, not Running for ever"
    assert int(info["end_time"]) > int(first["end_time"]) >= int(info["start_time"])  # end time = last seen
    tags, metrics = rest.run_tags(run_id), rest.run_metrics(run_id)
    assert tags[contract.TAG_RUNNING_VERSION] == version.version
    assert tags[contract.TAG_LAST_STATUS] == contract.STATUS_HEALTHY
    assert tags[contract.D_THROTTLED] in ("yes", "no", "unknown")  # the benchmark's throttling, for the fleet view
    assert tags[contract.TAG_CLOCK_SKEW_S] == "0"
    # No heartbeat metric at all: four runs, no history row.
    assert contract.M_HEARTBEAT not in metrics and contract.M_RUNNING_VERSION not in metrics
    history = rest.call("GET", "metrics/get-history", params={"run_id": run_id, "metric_key": contract.M_HEARTBEAT})
    assert history.get("metrics", []) == []


def test_a_deleted_fleet_run_is_made_again_by_the_next_heartbeat(server, register, rest, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    rest.delete_run(_device_run(rest, fresh_model)["info"]["run_id"])
    assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), registry).code == Exit.OK
    run = _device_run(rest, fresh_model)
    assert run["info"]["status"] == "FINISHED" and rest.run_tags(run["info"]["run_id"])[contract.TAG_LAST_STATUS] == "healthy"
