"""The one judge of device evidence on the version behind an alias — guard and promote --from both ask it.

For the version V behind alias A (P is the version it replaced):

1. **The window.** Only reports made while A pointed at V count: by devices following A (the signed ``alias``),
   made after A moved to V — the model-version tag ``contract.alias_since_tag(A)`` on V, which every edgeq move
   writes and devices sign into their reports (``alias_since`` must equal it; ``at``, the server's time of the
   report, must not be older). Without the tag (A moved outside edgeq) the newest history event A → V says when;
   without that, there is no lower bound and the verdict says so. Unsigned reports (counted only when accepted)
   are placed by their ``reported_at``.
2. **The whole window.** Every device that reported on V is read (paged, up to ``MAX_DEVICES``); a read that
   stopped at that cap is never judged as if it were the fleet: the verdict holds and says so.
3. **Each device's vote.** *Against* when it rejected V, or its report breaches a limit (sample accuracy more than
   ``max_accuracy_drop`` points below the registered accuracy, p99, peak RSS); else *for*. A limited figure the
   device did not send is no vote (neither a pass nor a rollback; too few votes hold). A throttled measurement is no vote on latency: a refusal on latency alone
   from a throttled device does not vote, its p99 is not judged and it is not paired for the slowdown; its
   crashes and accuracy still count.
4. **Slowdown** is judged per device, V against P on the same device: the median of the per-device p50 ratios
   over at least ``min_devices`` paired devices must not exceed ``max_slowdown`` by more than the margin.
5. **Three outcomes.** *Hold* when fewer than ``min_devices`` devices vote, when the share against (or the
   median slowdown) lies above its limit by no more than the margin, or a figure the limits need is missing;
   *roll back* when the share against is above ``max_rejected_fraction`` + margin or the slowdown breaches;
   else *keep*. Hold never moves an alias.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone

from edge import contract
from edge.limits import p99_for
from registry_tools.api import RegistryApi
from registry_tools import evidence
from registry_tools import history as alias_history
from registry_tools.device_reports import SIGNED, DeviceReport
from registry_tools.lookup import RegistryToolError, model_version, registered_model

KEEP, ROLL_BACK, HOLD = "keep", "roll back", "hold"
AGAINST, FOR, EXCLUDED = "against", "for", "excluded"
MAX_DEVICES = 200_000  # device runs read for one decision (as `edgeq aggregate`); past it the verdict holds
_TOLERANCE_MS = int(contract.CLOCK_TOLERANCE_S * 1000)  # the device's server time vs. the promoting machine's clock
_LATENCY_REFUSALS = ("p99 latency", "p50 ")  # what edge/gate.py's latency rules start with
_MISSING = "\0missing: "  # marks a check that could not be made: the figure it needs was not sent


@dataclass(frozen=True)
class Limits:
    """The limits every judge applies: guard, promote --from (``min_devices`` = --require-devices)."""

    min_devices: int = contract.DEFAULT_GUARD_MIN_DEVICES
    max_rejected_fraction: float = contract.DEFAULT_GUARD_MAX_REJECTED_FRACTION
    margin: float = contract.DEFAULT_GUARD_MARGIN
    max_accuracy_drop: float | None = None  # points below the registered accuracy
    max_p99_ms: tuple[tuple[str, float], ...] = ()  # (device id or contract.ALL_DEVICES, ms)
    max_rss_mb: float | None = None
    max_slowdown: float | None = None  # median over devices of p50 on V / p50 on P, same device
    slowdown_margin: float = contract.DEFAULT_SLOWDOWN_MARGIN

    def __post_init__(self) -> None:
        if self.min_devices < 1:
            raise ValueError(f"--min-devices must be 1 or more, got {self.min_devices}")
        if not 0 <= self.max_rejected_fraction < 1:
            raise ValueError(f"--max-rejected-fraction must be in [0, 1), got {self.max_rejected_fraction:g}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"--margin must be in [0, 1), got {self.margin:g}")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ValueError(f"--max-accuracy-drop must be 0 or more points, got {self.max_accuracy_drop:g}")
        if self.max_rss_mb is not None and not self.max_rss_mb > 0:
            raise ValueError(f"--max-rss-mb must be above 0, got {self.max_rss_mb:g}")
        if self.max_slowdown is not None and not self.max_slowdown > 1:
            raise ValueError(f"--max-slowdown must be above 1 (a ratio of p50s), got {self.max_slowdown:g}")

    def p99_limit(self, device: str) -> tuple[float, str] | None:
        """(ms, whose limit it is) for ``device``: its own, else the one for all devices."""
        return p99_for(self.max_p99_ms, device)

    def describe_device(self) -> list[str]:
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"sample accuracy ≤ {self.max_accuracy_drop:g} points below registered")
        parts += [f"p99 ≤ {ms:g} ms ({who})" for who, ms in self.max_p99_ms]
        if self.max_rss_mb is not None:
            parts.append(f"peak RSS ≤ {self.max_rss_mb:g} MB")
        return parts

    def describe(self) -> str:
        parts = [f"≥ {self.min_devices} device{'s' if self.min_devices != 1 else ''} in the window",
                 f"share against ≤ {self.max_rejected_fraction:.0%} (hold up to {self.max_rejected_fraction + self.margin:.0%})"]
        parts += self.describe_device()
        if self.max_slowdown is not None:
            parts.append(f"median p50 ratio to the replaced version ≤ {self.max_slowdown:g}× on ≥ {self.min_devices} paired devices")
        return ", ".join(parts)


# -- the window --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    alias: str
    version: str
    since: str  # ISO 8601, UTC; "" when nothing says when the alias moved to the version
    source: str  # "tag", "history" or ""

    @property
    def since_ms(self) -> int | None:
        return to_ms(self.since)

    def describe(self) -> str:
        if not self.since:
            return (f"window: no record of when {self.alias} moved to v{self.version} (no {contract.alias_since_tag(self.alias)} "
                    "tag, no history event): every report by a device following it counts")
        where = "" if self.source == "tag" else " (from the alias history: the version carries no since tag)"
        return f"window: reports by devices following {self.alias}, made since it moved to v{self.version} at {self.since}{where}"


def to_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def clock_ms() -> int:
    """This machine's clock in milliseconds, UTC: when an evaluation happens."""
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def window_for(client: RegistryApi, name: str, alias: str, version: str, tags: dict[str, str]) -> Window:
    """When ``alias`` moved to ``version``: its since tag, else the newest history event alias → version."""
    since = tags.get(contract.alias_since_tag(alias), "")
    if to_ms(since) is not None:
        return Window(alias, version, since, "tag")
    moves = [e for e in alias_history.read(client, name, alias) if e.to_version == str(version) and to_ms(e.at)]
    if moves:
        return Window(alias, version, moves[-1].at, "history")
    return Window(alias, version, "", "")


# -- each device's vote ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vote:
    device: str
    vote: str  # AGAINST, FOR or EXCLUDED
    why: str  # the failure, the figures against the limits, or why the report is not in the window
    alias: str = ""
    at_ms: int | None = None  # when the report was made (server time)
    ratio: float | None = None  # p50 on V / p50 on P on this device
    report: DeviceReport | None = None

    def age(self, now_ms: int) -> str:
        if self.at_ms is None:
            return "?"
        seconds = max(0, (now_ms - self.at_ms) // 1000)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"


def report_ms(report: DeviceReport) -> int | None:
    """When the report was made: the signed server time, else (unsigned) its reported_at tag, read as the end of
    its whole second (a report in the same second as a move or an evaluation is not taken for an older one)."""
    if report.trust == SIGNED and report.at_ms:
        return report.at_ms
    stated = to_ms(report.tags.get(contract.D_REPORTED_AT))
    return None if stated is None else stated + 999


def outside(report: DeviceReport, window: Window, at_ms: int | None) -> str:
    """Why ``report`` is not in ``window`` ("" when it is)."""
    alias = report.tags.get(contract.D_ALIAS, "")
    if alias != window.alias:
        return f"follows {alias}, not {window.alias}" if alias else "pinned to the version: follows no alias"
    since_ms = window.since_ms
    if since_ms is None:
        return ""
    if report.trust == SIGNED and window.source == "tag" and report.alias_since and report.alias_since != window.since:
        return f"from an earlier window ({window.alias} moved to v{window.version} at {report.alias_since})"
    if at_ms is None:
        return "no report time: cannot place it in the window"
    if at_ms < since_ms - _TOLERANCE_MS:
        return f"made before {window.alias} moved to v{window.version} ({window.since})"
    return ""


def latency_only(reason: str) -> bool:
    """A device's refusal that names only latency rules (edge/gate.py)."""
    parts = [p.strip().removeprefix("health gate:").strip() for p in reason.split(";") if p.strip()]
    return bool(parts) and all(p.startswith(_LATENCY_REFUSALS) for p in parts)


def vote(report: DeviceReport, window: Window, limits: Limits, registered_accuracy: float | None,
         replaced: DeviceReport | None = None) -> Vote:
    """One device's vote on the version, or why it has none."""
    at_ms = report_ms(report)
    alias = report.tags.get(contract.D_ALIAS, "")

    def make(kind: str, why: str, ratio: float | None = None) -> Vote:
        return Vote(report.device, kind, why, alias, at_ms, ratio, report)

    excluded = outside(report, window, at_ms)
    if excluded:
        return make(EXCLUDED, excluded)
    if report.status not in contract.DEVICE_STATUSES:
        return make(EXCLUDED, f"no health status reported ({report.status or 'puller without the health gate'})")
    if report.status == contract.STATUS_REJECTED:
        if report.throttled and latency_only(report.reason):
            return make(EXCLUDED, f"throttled: a refusal on latency alone is no vote ({report.reason})")
        return make(AGAINST, f"rejected it: {report.reason or 'no reason given'}")
    checks = [_accuracy(report, limits, registered_accuracy), _rss(report, limits),
              None if report.throttled else _p99(report, limits)]
    failures = [c for c in checks if c and not c.startswith(_MISSING)]
    missing = [c.removeprefix(_MISSING) for c in checks if c and c.startswith(_MISSING)]
    if failures:
        return make(AGAINST, "; ".join(failures + missing) + f" [{report.figures()}]")
    if missing:  # a figure the limits need and nobody sent is neither a pass nor a reason to roll back
        return make(EXCLUDED, "no vote: " + "; ".join(missing) + f" [{report.figures()}]")
    ratio = None if report.throttled else _ratio(report, replaced)
    text = report.figures()
    if ratio is not None:
        text += f", {ratio:.2f}× its p50 on the replaced version"
    if report.throttled and limits.p99_limit(report.device):
        text += " (throttled: latency not judged)"
    return make(FOR, text, ratio)


def _accuracy(report: DeviceReport, limits: Limits, registered: float | None) -> str | None:
    """With the sample's size, the binomial bound the devices' gate uses (edge/gate.py), around the registered
    accuracy less the limit: a small sample is refused only when a model at that floor would almost never score so."""
    if limits.max_accuracy_drop is None:
        return None
    measured = report.metrics.get(contract.D_SAMPLE_ACCURACY)
    if measured is None or registered is None:
        return _MISSING + "sample accuracy limit given but " + ("the device sent none" if measured is None else
                                                                "the version has no registered accuracy")
    floor = registered - limits.max_accuracy_drop / 100
    n = int(report.metrics.get(contract.D_SAMPLE_SIZE) or 0)
    if n > 0:
        from edge.gate import FALSE_REJECTION_RATE, min_hits  # numpy: only when an accuracy limit is given

        hits, needed = round(measured * n), min_hits(floor, n)
        if hits < needed:
            return (f"sample accuracy {measured:.1%} ({hits}/{n}) is below {needed / n:.1%}, the least a model at "
                    f"{floor:.1%} (registered {registered:.1%} less {limits.max_accuracy_drop:g} points) scores on {n} "
                    f"images (false alarm < {FALSE_REJECTION_RATE:.1%})")
        return None
    drop = 100 * (registered - measured)
    if drop > limits.max_accuracy_drop:
        return (f"sample accuracy {measured:.1%} is {drop:.2f} points below registered {registered:.1%} "
                f"(limit {limits.max_accuracy_drop:g})")
    return None


def _p99(report: DeviceReport, limits: Limits) -> str | None:
    limit = limits.p99_limit(report.device)
    if limit is None:
        return None
    ms, who = limit
    p99 = report.metrics.get(contract.D_P99)
    if p99 is None:
        return f"{_MISSING}p99 limit {ms:g} ms ({who}) given but the device sent no p99"
    return f"p99 {p99:.2f} ms > limit {ms:g} ms ({who})" if p99 > ms else None


def _rss(report: DeviceReport, limits: Limits) -> str | None:
    if limits.max_rss_mb is None:
        return None
    rss = report.metrics.get(contract.D_PEAK_RSS)
    if rss is None:
        return f"{_MISSING}peak RSS limit {limits.max_rss_mb:g} MB given but the device sent none"
    return f"peak RSS {rss:.1f} MB > limit {limits.max_rss_mb:g} MB" if rss > limits.max_rss_mb else None


def _ratio(report: DeviceReport, replaced: DeviceReport | None) -> float | None:
    if replaced is None or replaced.status != contract.STATUS_HEALTHY or replaced.throttled:
        return None
    new, old = report.metrics.get(contract.D_P50), replaced.metrics.get(contract.D_P50)
    return new / old if new and old else None


# -- the verdict -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    alias: str
    version: str
    replaced: str | None
    limits: Limits
    window: Window
    votes: tuple[Vote, ...]
    outcome: str  # KEEP, ROLL_BACK or HOLD
    reason: str  # one line: why this outcome (for hold: what is missing)
    notes: tuple[str, ...] = ()
    run_id: str = ""
    now_ms: int = 0

    @property
    def voters(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.vote != EXCLUDED)

    @property
    def against(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.vote == AGAINST)

    @property
    def accepting(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.vote == FOR)

    @property
    def excluded(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.vote == EXCLUDED)

    @property
    def carrying(self) -> tuple[Vote, ...]:
        """The reports a breach rests on: those against, and those slower than --max-slowdown on their own device."""
        slow = self.limits.max_slowdown
        return self.against + tuple(v for v in self.accepting if slow is not None and v.ratio is not None and v.ratio > slow)

    @property
    def share_against(self) -> float:
        return len(self.against) / len(self.voters) if self.voters else 0.0

    def summary(self, device_chars: int | None = None) -> str:
        """One line with the figures (each device's cut to ``device_chars``): for the history and the version's run."""
        head = (f"{len(self.against)} of {len(self.voters)} devices in the window against v{self.version} "
                f"({self.share_against:.0%}, limit {self.limits.max_rejected_fraction:.0%}, "
                f"{self.limits.min_devices} needed)")
        detail = "; ".join(_cut(f"{v.device} {v.why}", device_chars) for v in self.against[:50])
        more = f" (+{len(self.against) - 50} more)" if len(self.against) > 50 else ""
        return f"{head}: {self.reason}" + (f"; {detail}{more}" if detail else "")


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def decide(alias: str, version: str, replaced: str | None, limits: Limits, window: Window, votes: list[Vote],
           capped: bool = False, notes: tuple[str, ...] = (), run_id: str = "", now_ms: int = 0) -> Verdict:
    """Rule 5 on the votes of one window."""
    outcome, reason = _outcome(limits, votes, capped)
    return Verdict(alias, version, replaced, limits, window, tuple(votes), outcome, reason, notes, run_id, now_ms)


def _outcome(limits: Limits, votes: list[Vote], capped: bool) -> tuple[str, str]:
    if capped:
        return HOLD, (f"the read stopped at {MAX_DEVICES} device runs: a capped page is not the fleet; "
                      "judge with `edgeq aggregate` figures or narrow the fleet")
    voters = [v for v in votes if v.vote != EXCLUDED]
    if len(voters) < limits.min_devices:
        return HOLD, f"too few devices in the window: {len(voters)} voted, {limits.min_devices} needed"
    against = sum(1 for v in voters if v.vote == AGAINST)
    share, limit = against / len(voters), limits.max_rejected_fraction
    slow_outcome, slow_reason = _slowdown(limits, voters)
    if share > limit + limits.margin:
        return ROLL_BACK, f"{share:.0%} against > {limit:.0%} + margin {limits.margin:.0%}"
    if slow_outcome == ROLL_BACK:
        return ROLL_BACK, slow_reason
    if share > limit:
        return HOLD, (f"mixed: {share:.0%} against is above {limit:.0%} but within the margin "
                      f"({limit + limits.margin:.0%}); more reports decide")
    if slow_outcome == HOLD:
        return HOLD, slow_reason
    return KEEP, f"{against} of {len(voters)} against ({share:.0%} ≤ {limit:.0%})" + (f"; {slow_reason}" if slow_reason else "")


def _slowdown(limits: Limits, voters: list[Vote]) -> tuple[str, str]:
    if limits.max_slowdown is None:
        return KEEP, ""
    ratios = [v.ratio for v in voters if v.ratio is not None]
    if len(ratios) < limits.min_devices:
        return HOLD, (f"slowdown not judged: {len(ratios)} device(s) measured both this version and the replaced one "
                      f"unthrottled, {limits.min_devices} needed")
    median, limit = statistics.median(ratios), limits.max_slowdown
    where = f"median p50 ratio {median:.2f}× over {len(ratios)} paired devices"
    if median > limit * (1 + limits.slowdown_margin):
        return ROLL_BACK, f"{where} > {limit:g}× (+{limits.slowdown_margin:.0%} margin)"
    if median > limit:
        return HOLD, f"mixed: {where} is above {limit:g}× but within the {limits.slowdown_margin:.0%} margin"
    return KEEP, f"{where} ≤ {limit:g}×"


# -- reading a window from the server ----------------------------------------------------------------------------------

def evaluate(client: RegistryApi, name: str, alias: str, limits: Limits, trust: evidence.Trust | None = None,
             replaced: str | None = None, now_ms: int | None = None, stage: tuple[str, int] | None = None) -> Verdict:
    """Judge the version behind ``alias`` on the whole window of its evidence.

    ``stage`` = (what, since ms) narrows the window to reports made since a stage of a staged rollout began: the
    others are no vote ("made in an earlier stage").
    """
    trust = trust or evidence.trust_for(client, name)
    version = (registered_model(client, name).aliases or {}).get(alias)
    if version is None:
        raise RegistryToolError(
            f"model {name!r} has no alias {alias!r}: point it at a version first (edgeq promote {name} VERSION --alias {alias})")
    version = str(version)
    now_ms = now_ms if now_ms is not None else clock_ms()
    window = window_for(client, name, alias, version, model_version(client, name, version).tags or {})
    found = evidence.for_version(client, name, version, cap=MAX_DEVICES, trust=trust)
    before: dict[str, DeviceReport] = {}
    if replaced and limits.max_slowdown is not None:
        before = evidence.for_version(client, name, replaced, cap=MAX_DEVICES, trust=trust).reports
    votes = [vote(r, window, limits, found.registered_accuracy, before.get(r.device)) for r in found.reports.values()]
    if stage is not None:
        votes = [_in_stage(v, *stage) for v in votes]
    notes = tuple(n for n in found.notes() if "(the cap)" not in n) + ((window.describe(),) if not window.since else ())
    return decide(alias, version, replaced, limits, window, votes, found.truncated, notes, found.run_id, now_ms)


def _in_stage(v: Vote, what: str, since_ms: int) -> Vote:
    if v.vote == EXCLUDED or (v.at_ms is not None and v.at_ms >= since_ms - _TOLERANCE_MS):
        return v
    return Vote(v.device, EXCLUDED, f"made in an earlier stage, before {what}", v.alias, v.at_ms, v.ratio, v.report)


def table(verdict: Verdict, width: int | None = None) -> str:
    """Every device, one line: report age, alias, vote, figure against the limit, why excluded (--explain, the artifact).

    ``width``: fit a terminal that wide (the prose wrapped, the free text cut with …); None: every character.
    """
    from registry_tools.table import render, wrap

    rows = [[v.device, v.age(verdict.now_ms), v.alias or "-", v.vote, v.why]
            for v in sorted(verdict.votes, key=lambda v: ({AGAINST: 0, FOR: 1, EXCLUDED: 2}[v.vote], v.device))]
    head = wrap([f"{verdict.alias} at v{verdict.version}: {verdict.outcome} — {verdict.reason}", verdict.window.describe(),
                 f"limits: {verdict.limits.describe()}", *(f"note: {n}" for n in verdict.notes)], width) + [""]
    body = render(["device", "age", "alias", "vote", "figures against the limits / why excluded"], rows,
                  free_last="---", width=width) if rows else [f"no device has reported on v{verdict.version}"]
    return "\n".join(head + list(body))
