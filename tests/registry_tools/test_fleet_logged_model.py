"""The logged model's page shows each fleet figure once, at its current value: MLflow's REST answer for the page.

MLflow's logged-model page lists the metrics linked to the model in the order the server returns them (insertion
order, no sorting or de-duplication by step or time), so a linked ``fleet.*`` metric would show its oldest value
first. The aggregates live on the version's run; the logged model carries them in a section of its description.
"""
from __future__ import annotations

import requests

from edge import contract
from registry_tools.aggregate import FLEET_HEADING, NOTE_TAG
from tests.registry_tools.devices import EXPERIMENT, _experiment, edgeq, fleet_device, new_model, report


def _logged_model(server, model_id: str) -> dict:
    answer = requests.get(f"{server.uri}/api/2.0/mlflow/logged-models/{model_id}", timeout=60)
    assert answer.ok, answer.text[:300]
    return answer.json()["model"]


def test_the_logged_model_page_shows_the_current_aggregates_once_and_keeps_the_users_description(server, client):
    model = new_model(client, "edgeq-logged")
    run_id = client.create_run(_experiment(client, EXPERIMENT)).info.run_id
    model_id = client.create_logged_model(_experiment(client, EXPERIMENT), source_run_id=run_id).model_id
    client.set_logged_model_tags(model_id, {NOTE_TAG: "int8, trained on the spring photos."})
    version = client.create_model_version(model, f"models:/{model_id}", run_id, model_id=model_id).version
    client.set_registered_model_alias(model, contract.DEFAULT_ALIAS, version)
    for n, device in enumerate(("pi-a", "pi-b", "pi-c"), start=1):
        report(client, run_id, device, str(version), alias=contract.DEFAULT_ALIAS, p50=float(n))
        fleet_device(client, model, device, running_version=str(version))
        result = edgeq(server, "aggregate", model, "--full")
        assert f"v{version}: {n} healthy" in result.output and "(written)" in result.output, result.output

    logged = _logged_model(server, model_id)
    rows = [m for m in logged.get("data", {}).get("metrics", []) if m["key"].startswith("fleet.")]
    assert rows == [], "no history rows on the logged model: its page would show the oldest value first"
    note = {t["key"]: t["value"] for t in logged["info"]["tags"]}[NOTE_TAG]
    assert note.startswith("int8, trained on the spring photos.\n\n" + FLEET_HEADING)
    assert note.count(FLEET_HEADING) == 1 and "3 healthy, 0 rejected, 0 behind" in note
    assert f"| `{contract.A_HEALTHY}` | 3 |" in note and f"| `{contract.A_REPORTING}` | 3 |" in note
    assert f"| `{contract.A_HEALTHY}` | 2 |" not in note
    # The version's run keeps the history (its page shows the latest value of each metric).
    history = requests.get(f"{server.uri}/api/2.0/mlflow/metrics/get-history",
                           params={"run_id": run_id, "metric_key": contract.A_HEALTHY}, timeout=60).json()["metrics"]
    assert [m["value"] for m in history] == [1.0, 2.0, 3.0]
    assert client.get_run(run_id).data.metrics[contract.A_HEALTHY] == 3.0
