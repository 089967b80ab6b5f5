"""``edgeq guard``: move an alias back to the version it replaced when the devices' evidence on its version breaches limits.

The rules, for the version V behind the alias (the version it replaced is P):
  1. only reports about V count (several versions may share a run), and only those with a
     health status: "healthy" or "rejected" (a puller without the health gate says neither);
  2. a device is *against* V when it rejected V, or when its healthy report breaches a limit
     given here — sample accuracy more than --max-accuracy-drop points below V's registered
     accuracy, p99 above --max-p99-ms, peak RSS above --max-rss-mb, or p50 more than
     --max-slowdown times the p50 the same device reported for P; otherwise it *accepts* V;
  3. V is refused when at least --min-devices devices count (rule 1) and the share against
     V is above --max-rejected-fraction; then the alias goes back to P (the rollback stack
     ``edgeq rollback`` uses), recorded in the alias history (by "guard", why: the figures)
     and on V's run and model version;
  4. fewer devices than --min-devices, or a share at or below the limit: nothing moves;
  5. the guard never moves an alias further back than the version it restored itself: a
     restored version that breaches too is left for a person (exit 4, nothing moved).
Running it again changes nothing: after a rollback the alias is at P, judged on P's evidence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract
from registry_tools import canary, evidence, promotion
from registry_tools import history as alias_history
from registry_tools.device_reports import DeviceReport
from registry_tools.rest_client import tag
from registry_tools.lookup import RegistryToolError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_RUN_TAG_CHARS = 4000
_HISTORY_DEVICE_CHARS = 110  # of the reason kept on the version's run and model version


@dataclass(frozen=True)
class Limits:
    min_devices: int = contract.DEFAULT_GUARD_MIN_DEVICES
    max_rejected_fraction: float = contract.DEFAULT_GUARD_MAX_REJECTED_FRACTION
    max_accuracy_drop: float | None = None  # points below the registered accuracy
    max_p99_ms: tuple[tuple[str, float], ...] = ()  # (device id or canary.ALL_DEVICES, ms)
    max_rss_mb: float | None = None
    max_slowdown: float | None = None  # p50 on V / p50 on P, same device

    def __post_init__(self) -> None:
        if self.min_devices < 1:
            raise ValueError(f"--min-devices must be 1 or more, got {self.min_devices}")
        if not 0 <= self.max_rejected_fraction < 1:
            raise ValueError(f"--max-rejected-fraction must be in [0, 1), got {self.max_rejected_fraction:g}")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ValueError(f"--max-accuracy-drop must be 0 or more points, got {self.max_accuracy_drop:g}")
        if self.max_rss_mb is not None and not self.max_rss_mb > 0:
            raise ValueError(f"--max-rss-mb must be above 0, got {self.max_rss_mb:g}")
        if self.max_slowdown is not None and not self.max_slowdown > 1:
            raise ValueError(f"--max-slowdown must be above 1 (a ratio of p50s), got {self.max_slowdown:g}")

    def describe(self) -> str:
        parts = [f"≥ {self.min_devices} reporting device{'s' if self.min_devices != 1 else ''}",
                 f"share against ≤ {self.max_rejected_fraction:.0%}"]
        if self.max_accuracy_drop is not None:
            parts.append(f"sample accuracy ≤ {self.max_accuracy_drop:g} points below registered")
        parts += [f"p99 ≤ {ms:g} ms ({who})" for who, ms in self.max_p99_ms]
        if self.max_rss_mb is not None:
            parts.append(f"peak RSS ≤ {self.max_rss_mb:g} MB")
        if self.max_slowdown is not None:
            parts.append(f"p50 ≤ {self.max_slowdown:g}× the replaced version's on the same device")
        return ", ".join(parts)


@dataclass(frozen=True)
class DeviceVerdict:
    device: str
    against: bool
    why: str  # the failure, or the figures when the device accepts the version


@dataclass(frozen=True)
class Verdict:
    alias: str
    version: str
    replaced: str | None
    limits: Limits
    devices: tuple[DeviceVerdict, ...] = field(default_factory=tuple)
    note: str = ""  # e.g. that the evidence stopped at its cap of device reports

    @property
    def against(self) -> tuple[DeviceVerdict, ...]:
        return tuple(d for d in self.devices if d.against)

    @property
    def share_against(self) -> float:
        return len(self.against) / len(self.devices) if self.devices else 0.0

    @property
    def enough(self) -> bool:
        return len(self.devices) >= self.limits.min_devices

    @property
    def breached(self) -> bool:
        return self.enough and self.share_against > self.limits.max_rejected_fraction

    def summary(self, device_chars: int | None = None) -> str:
        """One line with the figures (each device's cut to ``device_chars``): for the history and the version's run."""
        head = (f"{len(self.against)} of {len(self.devices)} reporting devices against v{self.version} "
                f"({self.share_against:.0%}, limit {self.limits.max_rejected_fraction:.0%}, "
                f"{self.limits.min_devices} reports needed)")
        detail = "; ".join(_cut(f"{d.device} {d.why}", device_chars) for d in self.against)
        accepting = [d.device for d in self.devices if not d.against]
        return head + (f": {detail}" if detail else "") + (f"; accepting: {', '.join(accepting)}" if accepting else "")


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def parse_p99(specs: tuple[str, ...] | list[str]) -> tuple[tuple[str, float], ...]:
    """``--max-p99-ms`` as ``promote --from`` takes it (DEVICE=MS, all=MS), a plain MS meaning every device."""
    return canary.parse_p99_limits([f"{canary.ALL_DEVICES}={s}" if _is_number(s) else s for s in specs])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def judge_device(report: DeviceReport, version: str, limits: Limits, registered_accuracy: float | None,
                 replaced: DeviceReport | None = None) -> DeviceVerdict | None:
    """Rules 1 and 2 for one device; None when the report does not count."""
    if not report.is_about(version) or report.status not in contract.DEVICE_STATUSES:
        return None
    if report.status == contract.STATUS_REJECTED:
        return DeviceVerdict(report.device, True, f"rejected it: {report.reason or 'no reason given'}")
    # canary.judge applies the accuracy, p99 and RSS limits exactly as `promote --from` does.
    checked = canary.judge(report, version, canary.Limits(1, limits.max_accuracy_drop, limits.max_p99_ms, limits.max_rss_mb),
                           registered_accuracy)
    if checked is not None and not checked.counted:
        return DeviceVerdict(report.device, True, checked.why)
    slower = _slowdown(report, replaced, limits.max_slowdown)
    if slower:
        return DeviceVerdict(report.device, True, f"{slower} [{report.figures()}]")
    return DeviceVerdict(report.device, False, report.figures())


def _slowdown(report: DeviceReport, replaced: DeviceReport | None, limit: float | None) -> str | None:
    if limit is None or replaced is None or replaced.status != contract.STATUS_HEALTHY:
        return None
    new, old = report.metrics.get(contract.D_P50), replaced.metrics.get(contract.D_P50)
    if not new or not old:
        return None
    ratio = new / old
    return f"p50 {new:.2f} ms is {ratio:.2f}× its {old:.2f} ms on the replaced version (limit {limit:g}×)" if ratio > limit else None


def decide(alias: str, found: evidence.Evidence, replaced: str | None, replaced_reports: dict[str, DeviceReport],
           limits: Limits) -> Verdict:
    """Rules 1–3 applied to every report on the version's run."""
    verdicts = (judge_device(r, found.version, limits, found.registered_accuracy, replaced_reports.get(r.device))
                for r in found.reports.values())
    return Verdict(alias, found.version, replaced, limits, tuple(v for v in verdicts if v is not None), found.note())


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    moved: bool
    message: str  # what was done, one line
    noticed: tuple[alias_history.Event, ...] = ()  # alias moves made outside edgeq, found on the way

    @property
    def exit_code(self) -> contract.ExitCode:
        return contract.ExitCode.REJECTED if self.verdict.breached else contract.ExitCode.OK


def _restored_by_guard(client: MlflowClient, name: str, alias: str, version: str) -> bool:
    events = alias_history.read(client, name, alias)
    last = events[-1] if events else None
    return bool(last and last.kind == alias_history.ROLLBACK and last.by == contract.GUARD_BY and last.to_version == version)


def guard(client: MlflowClient, name: str, alias: str, limits: Limits, dry_run: bool = False,
          accept_unsigned: bool = False) -> Outcome:
    """Judge the version behind ``alias`` on its devices' evidence and, when refused, move the alias back (rule 3)."""
    if dry_run:  # writes nothing, not even the moves it notices
        noticed = tuple(e for e in alias_history.read(client, name) if e.kind == alias_history.OUTSIDE and not e.at)
    else:
        noticed = tuple(alias_history.notice(client, name, "edgeq guard"))
    found = evidence.for_alias(client, name, alias, accept_unsigned=accept_unsigned)  # unknown model or alias: bad input
    try:
        _, replaced = promotion.rollback_target(client, name, alias)
    except RegistryToolError:
        replaced = None
    replaced_reports = (evidence.for_version(client, name, replaced, trust=found.trust).reports
                        if replaced and limits.max_slowdown else {})
    verdict = decide(alias, found, replaced, replaced_reports, limits)
    if not verdict.enough:
        return Outcome(verdict, False, f"not enough evidence: {len(verdict.devices)} device(s) reported on "
                                       f"v{found.version}, {limits.min_devices} needed; nothing changed", noticed)
    if not verdict.breached:
        return Outcome(verdict, False, f"v{found.version} stays: {len(verdict.against)} of {len(verdict.devices)} "
                                       f"devices against ({verdict.share_against:.0%} ≤ {limits.max_rejected_fraction:.0%})", noticed)
    if _restored_by_guard(client, name, alias, found.version):
        return Outcome(verdict, False, f"v{found.version} was restored by the guard itself; not moving {alias} further back: "
                                       "a person decides (edgeq promote / edgeq rollback)", noticed)
    if replaced is None:
        return Outcome(verdict, False, f"{alias} has no earlier version to go back to; nothing changed", noticed)
    if dry_run:
        return Outcome(verdict, False, f"dry run: would move {alias} from v{found.version} back to v{replaced}", noticed)
    # The history keeps every device's figures short enough that all of them fit; the version's run keeps them whole.
    why = f"{contract.GUARD_BY}: {verdict.summary(_HISTORY_DEVICE_CHARS)}"
    result = promotion.rollback(client, name, alias, why, by=contract.GUARD_BY, expected_current=found.version)
    _mark_version(client, name, found, result.version, f"{contract.GUARD_BY}: {verdict.summary()}")
    return Outcome(verdict, True, f"{alias} moved from v{found.version} back to v{result.version}", noticed)


def _mark_version(client: MlflowClient, name: str, found: evidence.Evidence, restored: str, why: str) -> None:
    """Say on the refused version's run and model version what the guard did and on which figures."""
    tags = {
        contract.TAG_GUARD_VERDICT: contract.GUARD_ROLLED_BACK,
        contract.TAG_GUARD_REASON: why if len(why) <= _RUN_TAG_CHARS else why[: _RUN_TAG_CHARS - 1] + "…",
        contract.TAG_GUARD_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        contract.TAG_GUARD_RESTORED: str(restored),
    }
    if found.run_id:
        client.log_batch(found.run_id, tags=[tag(client, key, value) for key, value in tags.items()])
    for key, value in tags.items():
        client.set_model_version_tag(name, found.version, key, value)
