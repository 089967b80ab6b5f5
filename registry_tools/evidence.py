"""What each device reported on a version's own run, read back from its ``device.<id>.<name>`` metrics and tags."""
from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools.versions import RegistryToolError, model_version, registered_model


@dataclass(frozen=True)
class DeviceReport:
    device: str
    metrics: dict[str, float] = field(default_factory=dict)  # plain contract names, e.g. contract.D_P99
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return self.tags.get(contract.D_MODEL_VERSION)

    @property
    def status(self) -> str | None:
        return self.tags.get(contract.D_STATUS)

    @property
    def reason(self) -> str:
        return self.tags.get(contract.D_REASON, "")

    @property
    def throttled(self) -> bool:
        return self.tags.get(contract.D_THROTTLED) == "yes"

    def figures(self) -> str:
        """``p50 1.20 ms, p99 2.31 ms, rss 61.0 MB, sample 0.969 of 32, throttled``: what was measured."""
        m = self.metrics
        parts = [f"{label} {m[key]:.2f} ms" for label, key in (("p50", contract.D_P50), ("p99", contract.D_P99)) if key in m]
        if contract.D_PEAK_RSS in m:
            parts.append(f"rss {m[contract.D_PEAK_RSS]:.1f} MB")
        if contract.D_SAMPLE_ACCURACY in m:
            size = m.get(contract.D_SAMPLE_SIZE)
            parts.append(f"sample {m[contract.D_SAMPLE_ACCURACY]:.3f}" + (f" of {int(size)}" if size else ""))
        if self.throttled:
            parts.append("throttled")
        return ", ".join(parts) or "no figures"


def device_reports(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, DeviceReport]:
    """Every device that reported to a run, by device id."""
    found: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
    for source, slot in ((metrics, 0), (tags, 1)):
        for key, value in source.items():
            parsed = contract.parse_device_key(key)
            if parsed:
                found.setdefault(parsed[0], ({}, {}))[slot][parsed[1]] = value
    return {device: DeviceReport(device, m, t) for device, (m, t) in sorted(found.items())}


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
