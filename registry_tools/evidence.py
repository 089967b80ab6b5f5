"""The version behind an alias, with what each device reported on it (its own run, or the legacy layout)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge import contract
from registry_tools import aggregate
from registry_tools.device_reports import DeviceReport, device_reports
from registry_tools.versions import RegistryToolError, model_version, registered_model

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_CAP = 200  # healthy reports read for one decision; past it the decision says it stopped there
REJECTED_CAP = 100  # refusals listed beside them


@dataclass(frozen=True)
class Evidence:
    """The version behind an alias and the device reports on it."""

    version: str
    run_id: str
    registered_accuracy: float | None
    reports: dict[str, DeviceReport]
    truncated: bool = False  # stopped at the cap: more devices reported than were read

    def note(self) -> str:
        return (f"read {len(self.reports)} device reports (the caps: healthy ones up to the cap, {REJECTED_CAP} "
                f"refusals); more devices reported on v{self.version}: edgeq fleet --running {self.version} lists them"
                if self.truncated else "")


def for_alias(client: MlflowClient, name: str, alias: str, cap: int = DEFAULT_CAP) -> Evidence:
    """Read the version ``alias`` points to, its run (small in this layout) and the device runs that reported on
    it through a server-side filter, at most ``cap`` of them."""
    rm = registered_model(client, name)
    version = (rm.aliases or {}).get(alias)
    if version is None:
        raise RegistryToolError(
            f"model {name!r} has no alias {alias!r}: point it at a version first (edgeq promote {name} VERSION --alias {alias})"
        )
    return for_version(client, name, str(version), cap, {a: str(v) for a, v in (rm.aliases or {}).items()})


def for_version(client: MlflowClient, name: str, version: str, cap: int = DEFAULT_CAP,
                aliases: dict[str, str] | None = None) -> Evidence:
    """The device reports on ``version``: its run (legacy layout) and the device runs that reported on it."""
    mv = model_version(client, name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    metrics, tags = (run.data.metrics, run.data.tags) if run else ({}, {})
    healthy = aggregate.device_runs(client, name, aggregate.reported_on(version, contract.STATUS_HEALTHY), limit=cap)
    refused = aggregate.device_runs(client, name, aggregate.reported_on(version, contract.STATUS_REJECTED),
                                    limit=REJECTED_CAP)
    reports = aggregate.reports_by_version(healthy.runs + refused.runs).get(version, {})
    for device, report in device_reports(metrics, tags).items():  # legacy layout on the version's run
        reports.setdefault(device, report)
    if aliases is not None and len(healthy.runs) + len(refused.runs) <= aggregate.CHEAP_DEVICES:
        _refresh_when_cheap(client, name, mv, run, aliases)  # more reports than that: the probe would stop anyway
    return Evidence(version, mv.run_id or "", metrics.get(contract.M_ACCURACY), dict(sorted(reports.items())),
                    healthy.truncated or refused.truncated)


def _refresh_when_cheap(client: MlflowClient, name: str, mv, run, aliases: dict[str, str]) -> None:
    """Store the version's aggregates on the way when the model has few devices (one small search)."""
    if run is None:
        return
    scan = aggregate.device_runs(client, name, limit=aggregate.CHEAP_DEVICES)
    if not scan.truncated:
        aggregate.refresh(client, name, [mv], {mv.run_id: run}, aliases, scan=scan)
