"""Everything known about each version of a registered model, gathered in one pass."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools import runs
from registry_tools.device_reports import device_reports
from registry_tools.table import THROTTLED_MARK, THROTTLED_NOTE, num, render

RunFetcher = Callable[[MlflowClient, Iterable[str]], dict[str, Run]]


class RegistryToolError(Exception):
    """A one-line problem with the user's input (unknown model, version, alias, device…): exit code 2."""


class GateRefused(RegistryToolError):
    """A check refused the promotion (accuracy, runtime, not a .tflite, no version within budget): exit code 4."""


@dataclass(frozen=True)
class VersionRow:
    version: str
    variant: str
    format: str
    run_id: str
    accuracy: float | None
    drop_points: float | None
    size_bytes: int | None
    host_p50_ms: float | None
    device_p50_ms: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created: str = ""
    min_runtime: str = ""
    device_throttled: tuple[str, ...] = ()  # devices whose figures were measured while throttled
    refused_by: tuple[str, ...] = ()  # devices whose health gate (or check) rejected this version

    def as_dict(self) -> dict:
        return {
            "version": self.version, contract.TAG_VARIANT: self.variant, contract.TAG_FORMAT: self.format,
            "run_id": self.run_id, contract.M_ACCURACY: self.accuracy, contract.M_DROP: self.drop_points,
            contract.M_SIZE: self.size_bytes, contract.M_P50: self.host_p50_ms,
            "device_" + contract.D_P50: self.device_p50_ms, "aliases": list(self.aliases), "created": self.created,
            contract.TAG_MIN_RUNTIME: self.min_runtime, "device_throttled": list(self.device_throttled),
            "refused_by": list(self.refused_by),
        }


def registered_model(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryToolError(f"unknown model {name!r}: see the registered models in the MLflow UI") from None
        raise


def model_version(client: MlflowClient, name: str, version: str):
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryToolError(f"model {name!r} has no version {version!r}") from None
        raise


def all_versions(client: MlflowClient, name: str) -> list:
    """Every version of ``name``, page by page."""
    out, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def collect(client: MlflowClient, name: str, fetch_runs: RunFetcher = runs.runs_by_id) -> list[VersionRow]:
    """All versions of ``name``, newest first, with run metrics and device figures (runs fetched in batches)."""
    rm = registered_model(client, name)
    aliases_of: dict[str, list[str]] = {}
    for alias, version in (rm.aliases or {}).items():
        aliases_of.setdefault(str(version), []).append(alias)
    rows = []
    versions = all_versions(client, name)
    fetched = fetch_runs(client, [mv.run_id for mv in versions])
    for mv in versions:
        run = fetched.get(mv.run_id) if mv.run_id else None
        data = run.data if run else None
        metrics, tags = (data.metrics, data.tags) if data else ({}, {})
        reports = device_reports(metrics, tags)  # sorted by device
        size = metrics.get(contract.M_SIZE)
        rows.append(
            VersionRow(
                version=str(mv.version),
                variant=mv.tags.get(contract.TAG_VARIANT, "?"),
                format=mv.tags.get(contract.TAG_FORMAT, "?"),
                run_id=mv.run_id or "",
                accuracy=metrics.get(contract.M_ACCURACY),
                drop_points=metrics.get(contract.M_DROP),
                size_bytes=int(size) if size is not None else None,
                host_p50_ms=metrics.get(contract.M_P50),
                device_p50_ms={d: r.metrics[contract.D_P50] for d, r in reports.items() if contract.D_P50 in r.metrics},
                aliases=tuple(sorted(aliases_of.get(str(mv.version), []))),
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                min_runtime=mv.tags.get(contract.TAG_MIN_RUNTIME, ""),
                device_throttled=tuple(d for d, r in reports.items() if r.throttled),
                refused_by=tuple(d for d, r in reports.items() if r.status == contract.STATUS_REJECTED),
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


def devices(rows: list[VersionRow]) -> list[str]:
    return sorted({d for r in rows for d in r.device_p50_ms})


def format_table(rows: list[VersionRow]) -> str:
    devs = devices(rows)
    refusals = any(r.refused_by for r in rows)
    header = (["version", "variant", "accuracy %", "drop pts", "size MB", "host p50 ms"] + [f"{d} p50 ms" for d in devs]
              + ["aliases", "created"] + (["refused by"] if refusals else []))
    body = [
        [r.version, r.variant, num(None if r.accuracy is None else 100 * r.accuracy, ".2f"), num(r.drop_points, "+.2f"),
         num(None if r.size_bytes is None else r.size_bytes / 1e6, ".3f"), num(r.host_p50_ms, ".3f")]
        + [num(r.device_p50_ms.get(d), ".3f") + (THROTTLED_MARK if d in r.device_throttled else "") for d in devs]
        + [",".join(r.aliases) or "-", r.created] + ([",".join(r.refused_by) or "-"] if refusals else [])
        for r in rows
    ]
    lines = render(header, body)
    if any(r.device_throttled for r in rows):
        lines.append(THROTTLED_NOTE)
    return "\n".join(lines)
