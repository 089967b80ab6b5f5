"""Promotion on canary evidence: which device reports count, and whether enough of them do.

For each device that reported on the version's run, in this order:
  1. a report about another version is ignored (several versions may share a run);
  2. a rejection never counts;
  3. only an explicit "healthy" counts (a puller older than the health gate sends no status);
  4. every limit given must hold — accuracy drop, p99 (the device's own limit, else the
     one for all devices), peak RSS; a limit whose figure the device did not send fails.
The version may move on when at least ``required`` devices count.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge import contract
from registry_tools.device_reports import DeviceReport

ALL_DEVICES = "all"  # --max-p99-ms all=MS


@dataclass(frozen=True)
class Limits:
    required: int
    max_accuracy_drop: float | None = None  # points a device's sample accuracy may lie below the registered accuracy
    max_p99_ms: tuple[tuple[str, float], ...] = ()  # (device id or ALL_DEVICES, ms)
    max_rss_mb: float | None = None

    def p99_limit(self, device: str) -> tuple[float, str] | None:
        """(ms, whose limit it is) for ``device``: its own, else the one for all devices."""
        limits = dict(self.max_p99_ms)
        for who in (device, ALL_DEVICES):
            if who in limits:
                return limits[who], who
        return None

    def describe(self) -> str:
        parts = [f"≥ {self.required} healthy device{'s' if self.required != 1 else ''}"]
        if self.max_accuracy_drop is not None:
            parts.append(f"sample accuracy ≤ {self.max_accuracy_drop:g} points below registered")
        parts += [f"p99 ≤ {ms:g} ms ({who})" for who, ms in self.max_p99_ms]
        if self.max_rss_mb is not None:
            parts.append(f"peak RSS ≤ {self.max_rss_mb:g} MB")
        return ", ".join(parts)


def parse_p99_limits(specs: tuple[str, ...] | list[str]) -> tuple[tuple[str, float], ...]:
    """``["all=50", "pi-kitchen=80"]`` → ``(("all", 50.0), ("pi-kitchen", 80.0))``; ValueError names the bad one."""
    out: dict[str, float] = {}
    for spec in specs:
        who, sep, value = spec.partition("=")
        try:
            ms = float(value)
        except ValueError:
            ms = float("nan")
        if not sep or not who.strip() or not ms > 0:
            raise ValueError(f"--max-p99-ms {spec!r}: expected DEVICE=MS or {ALL_DEVICES}=MS with MS > 0, e.g. {ALL_DEVICES}=50")
        who = who.strip()
        out[who if who == ALL_DEVICES else contract.sanitize_device_id(who)] = ms
    return tuple(out.items())


@dataclass(frozen=True)
class Verdict:
    device: str
    counted: bool
    why: str  # the figures used when counted, else what failed
    report: DeviceReport


def judge(report: DeviceReport, version: str, limits: Limits, registered_accuracy: float | None) -> Verdict | None:
    """One device's report against the rules; None when it is about another version."""
    if not report.is_about(version):
        return None
    if report.status == contract.STATUS_REJECTED:
        return Verdict(report.device, False, f"rejected it: {report.reason or 'no reason given'}", report)
    if report.status != contract.STATUS_HEALTHY:
        return Verdict(report.device, False, f"no health status reported ({report.status or 'puller without the health gate'})", report)
    failures = [f for f in (_accuracy(report, limits, registered_accuracy), _p99(report, limits), _rss(report, limits)) if f]
    if failures:
        return Verdict(report.device, False, "; ".join(failures) + f" [{report.figures()}]", report)
    return Verdict(report.device, True, report.figures(), report)


def _accuracy(report: DeviceReport, limits: Limits, registered: float | None) -> str | None:
    if limits.max_accuracy_drop is None:
        return None
    measured = report.metrics.get(contract.D_SAMPLE_ACCURACY)
    if measured is None or registered is None:
        return "sample accuracy limit given but " + ("the device sent none" if measured is None else "the version has no registered accuracy")
    drop = 100 * (registered - measured)
    if drop > limits.max_accuracy_drop:
        return f"sample accuracy {measured:.3f} is {drop:.2f} points below registered {registered:.3f} (limit {limits.max_accuracy_drop:g})"
    return None


def _p99(report: DeviceReport, limits: Limits) -> str | None:
    limit = limits.p99_limit(report.device)
    if limit is None:
        return None
    ms, who = limit
    p99 = report.metrics.get(contract.D_P99)
    if p99 is None:
        return f"p99 limit {ms:g} ms ({who}) given but the device sent no p99"
    return f"p99 {p99:.2f} ms > limit {ms:g} ms ({who})" if p99 > ms else None


def _rss(report: DeviceReport, limits: Limits) -> str | None:
    if limits.max_rss_mb is None:
        return None
    rss = report.metrics.get(contract.D_PEAK_RSS)
    if rss is None:
        return f"peak RSS limit {limits.max_rss_mb:g} MB given but the device sent none"
    return f"peak RSS {rss:.1f} MB > limit {limits.max_rss_mb:g} MB" if rss > limits.max_rss_mb else None


@dataclass(frozen=True)
class Decision:
    version: str
    limits: Limits
    verdicts: tuple[Verdict, ...]

    @property
    def counted(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.counted)

    @property
    def not_counted(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if not v.counted)

    @property
    def approved(self) -> bool:
        return len(self.counted) >= self.limits.required

    def summary(self) -> str:
        """One line for the history and for the refusal message."""
        used = "; ".join(f"{v.device} ({v.why})" for v in self.counted) or "none"
        text = f"canary v{self.version}: {len(self.counted)} of {self.limits.required} required devices healthy within limits: {used}"
        if self.not_counted:
            text += "; not counted: " + "; ".join(f"{v.device} {v.why}" for v in self.not_counted)
        return text


def decide(version: str, reports: dict[str, DeviceReport] | list[DeviceReport], limits: Limits,
           registered_accuracy: float | None) -> Decision:
    """Apply the rules to every report on the version's run."""
    items = reports.values() if isinstance(reports, dict) else reports
    verdicts = (judge(r, version, limits, registered_accuracy) for r in items)
    return Decision(str(version), limits, tuple(v for v in verdicts if v is not None))
