"""registry_tools/rest_client.py on a real server: the same answers as MlflowClient, and no mlflow import in edgeq."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.fleet_scale import register, write_devices
from edge import contract
from registry_tools import aggregate, evidence, fleet, versions
from registry_tools.cli import registry_client, uses_rest
from registry_tools.lookup import RegistryToolError
from registry_tools.rest_client import ApiError, RestClient, ViewType
from tests.registry_tools.devices import new_model, tiny_version


@pytest.fixture()
def rest(server) -> RestClient:
    return RestClient(server.uri)


def test_registry_answers_match_mlflows_client(server, client, rest):
    model = new_model(client, "edgeq-rest")
    v1, run1 = tiny_version(client, model, accuracy=0.91, alias=contract.CANARY_ALIAS)
    v2, _ = tiny_version(client, model, accuracy=0.97, alias=contract.DEFAULT_ALIAS, variant="fp16")
    client.set_registered_model_tag(model, "note", "é ✓")
    client.update_registered_model(model, description="two versions")

    ours, theirs = rest.get_registered_model(model), client.get_registered_model(model)
    assert ours.aliases == {contract.CANARY_ALIAS: v1, contract.DEFAULT_ALIAS: v2} == theirs.aliases
    assert (ours.tags, ours.description) == (theirs.tags, theirs.description)
    assert ours.tags["note"] == "é ✓" and ours.description == "two versions"

    mv, their_mv = rest.get_model_version(model, v2), client.get_model_version(model, v2)
    for attr in ("name", "version", "run_id", "source", "tags", "creation_timestamp", "current_stage", "status"):
        assert getattr(mv, attr) == getattr(their_mv, attr), attr
    assert mv.aliases == [contract.DEFAULT_ALIAS]
    assert sorted(m.version for m in rest.search_model_versions(f"name = '{model}'")) == sorted([v1, v2])

    run, their_run = rest.get_run(run1), client.get_run(run1)
    assert run.info.run_id == run1 and run.info.status == their_run.info.status == "FINISHED"
    assert run.info.end_time == their_run.info.end_time and run.info.end_time
    assert run.data.metrics == their_run.data.metrics and run.data.metrics[contract.M_ACCURACY] == 0.91
    assert run.data.tags == their_run.data.tags
    assert {m.key: m.timestamp for m in run.data._metric_objs} == {m.key: m.timestamp for m in their_run.data._metric_objs}


def test_searches_page_like_mlflows_client(server, client, rest):
    model = new_model(client, "edgeq-rest-pages")
    mv = register(server.uri, model)
    write_devices(server.uri, model, mv, 0, 5, threads=1)
    experiment = rest.get_experiment_by_name(contract.FLEET_EXPERIMENT).experiment_id
    query = f"tags.`{contract.TAG_ROLE}` = 'device' and tags.`{contract.TAG_MODEL}` = '{model}'"
    ids, token = [], None
    while True:
        page = rest.search_runs([experiment], query, ViewType.ACTIVE_ONLY, 2, page_token=token)
        assert len(page) <= 2
        ids += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    theirs = client.search_runs([experiment], query, ViewType.ACTIVE_ONLY, 100)
    assert sorted(ids) == sorted(r.info.run_id for r in theirs) and len(ids) == 5
    assert rest.get_experiment_by_name("edgeq-no-such-experiment") is None
    everything = rest.search_experiments(ViewType.ALL)
    assert experiment in {e.experiment_id for e in everything}


def test_readers_give_the_same_answer_with_either_client(server, client, rest):
    model = new_model(client, "edgeq-rest-readers")
    mv = register(server.uri, model)
    write_devices(server.uri, model, mv, 0, 4, threads=1)
    assert evidence.device_runs(rest, evidence.trust_for(rest, model)).runs  # both clients see the device runs
    by_rest = [r.as_dict() for r in versions.collect(rest, model)]
    by_mlflow = [r.as_dict() for r in versions.collect(client, model)]
    assert by_rest == by_mlflow and by_rest[0]["fleet"][contract.A_HEALTHY] == 4
    assert [r.as_dict() for r in fleet.read(rest, model, 3.0).rows] == [r.as_dict() for r in fleet.read(client, model, 3.0).rows]
    ours, theirs = evidence.for_alias(rest, model, contract.CANARY_ALIAS), evidence.for_alias(client, model, contract.CANARY_ALIAS)
    assert ours == theirs and len(ours.reports) == 4


def test_aggregates_written_by_rest_are_linked_to_the_logged_model(server, client, rest):
    model = new_model(client, "edgeq-rest-agg")
    mv = register(server.uri, model)
    write_devices(server.uri, model, mv, 0, 3, threads=1)
    found = versions.all_versions(rest, model)
    result = aggregate.refresh(rest, model, found, {found[0].run_id: rest.get_run(found[0].run_id)},
                               {contract.CANARY_ALIAS: mv.version})
    assert result.written == (mv.version,)
    model_id = aggregate.logged_model_id(client.get_model_version(model, mv.version))
    logged = client.get_logged_model(model_id)
    assert f"| `{contract.A_HEALTHY}` | 3 |" in logged.tags[aggregate.NOTE_TAG]
    assert client.get_model_version(model, mv.version).tags[contract.TAG_FLEET_SUMMARY].startswith("3 healthy")


def test_errors_carry_mlflows_error_code(server, rest):
    with pytest.raises(ApiError) as missing:
        rest.get_registered_model("edgeq-no-such-model")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RegistryToolError, match="unknown model"):
        versions.registered_model(rest, "edgeq-no-such-model")
    with pytest.raises(ApiError) as bad:
        rest.search_runs(["0"], "this is not a filter")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_client_follows_the_tracking_uri(tmp_path, monkeypatch):
    assert isinstance(registry_client("http://127.0.0.1:5000", "versions"), RestClient)
    assert uses_rest("https://mlflow.example", "promote")
    assert not uses_rest("http://127.0.0.1:5000", "webhook")  # MLflow's webhook API
    assert not uses_rest(f"sqlite:///{tmp_path}/mlflow.db", "versions")
    assert not uses_rest("https://user:secret@mlflow.example", "versions")
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))  # only mlflow does mTLS
    assert not uses_rest("https://mlflow.example", "versions")


def test_edgeq_reads_without_importing_mlflow(server, client):
    """The point of the REST client: a command's start-up does not pay mlflow's import (~3 s)."""
    model = new_model(client, "edgeq-rest-import")
    tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from registry_tools.cli import main\n"
        f"out = [CliRunner().invoke(main, ['--tracking-uri', {server.uri!r}, *args]) for args in "
        f"(['versions', {model!r}], ['fleet', {model!r}], ['history', {model!r}])]\n"
        "print(json.dumps({'codes': [r.exit_code for r in out], 'mlflow': sorted(m for m in sys.modules if m == 'mlflow'"
        " or m.startswith('mlflow.'))[:5], 'output': out[0].output}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["codes"] == [0, 0, 0], found["output"]
    assert found["mlflow"] == [], found["mlflow"]
    assert contract.DEFAULT_ALIAS in found["output"]
