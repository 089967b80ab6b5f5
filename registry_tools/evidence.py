"""The version behind an alias, with what each device reported on its own run."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools.device_reports import DeviceReport, device_reports
from registry_tools.versions import RegistryToolError, model_version, registered_model


@dataclass(frozen=True)
class Evidence:
    """The version behind an alias and every device report on its run."""

    version: str
    run_id: str
    registered_accuracy: float | None
    reports: dict[str, DeviceReport]


def for_alias(client: MlflowClient, name: str, alias: str) -> Evidence:
    """Read the version ``alias`` points to and its run (three calls)."""
    version = (registered_model(client, name).aliases or {}).get(alias)
    if version is None:
        raise RegistryToolError(
            f"model {name!r} has no alias {alias!r}: point it at a version first (edgeq promote {name} VERSION --alias {alias})"
        )
    mv = model_version(client, name, str(version))
    if not mv.run_id:
        return Evidence(str(version), "", None, {})
    data = client.get_run(mv.run_id).data
    return Evidence(str(version), mv.run_id, data.metrics.get(contract.M_ACCURACY), device_reports(data.metrics, data.tags))
