"""The fleet experiment a device creates opens in MLflow UI's training layout, not the GenAI one."""
from __future__ import annotations

import uuid

from edge import contract


def _kind(rest, experiment_id: str) -> str | None:
    experiment = rest.call("GET", "experiments/get", params={"experiment_id": experiment_id})["experiment"]
    return {t["key"]: t["value"] for t in experiment.get("tags", [])}.get(contract.TAG_EXPERIMENT_KIND)


def test_a_created_experiment_gets_the_training_layout(registry, rest):
    experiment_id = registry.experiment_id(f"edgeq-fleet-kind-{uuid.uuid4().hex[:6]}")
    assert _kind(rest, experiment_id) == contract.EXPERIMENT_KIND_TRAINING


def test_a_reused_experiment_gets_it_when_it_has_no_kind_and_keeps_a_chosen_one(registry, rest):
    bare, chosen = (f"edgeq-fleet-kind-{what}-{uuid.uuid4().hex[:6]}" for what in ("bare", "chosen"))
    bare_id = rest.call("POST", "experiments/create", json={"name": bare})["experiment_id"]
    chosen_id = rest.call("POST", "experiments/create", json={
        "name": chosen, "tags": [{"key": contract.TAG_EXPERIMENT_KIND, "value": "genai_development"}]})["experiment_id"]
    assert _kind(rest, bare_id) is None
    assert registry.experiment_id(bare) == bare_id and registry.experiment_id(chosen) == chosen_id
    assert _kind(rest, bare_id) == contract.EXPERIMENT_KIND_TRAINING
    assert _kind(rest, chosen_id) == "genai_development"
