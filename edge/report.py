"""What one device reports about one model version it measured or refused, and to which run.

Layout (docs/fleet.md): the report goes to the device's own run in the fleet experiment
(``ReportContext.device_run_id``), its keys carrying the version — metrics ``v<N>.<figure>``
with step N, tags ``v<N>.<fact>`` — so a version's run never grows with the fleet.
Without a device run id it falls back to the legacy layout (``device.<id>.<name>`` on the
version's run), which the readers still understand. The first metric of every report,
``reported_version``, is what the outbox reads back to confirm the report was stored.
In the fleet layout the report also carries its signed evidence (edge/evidence.py) as a write-once
param, with the ``v<N>.evidence`` marker readers search by; decisions read only that.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from edge import clock, contract, evidence, identity, provenance
from edge.benchmark import BenchmarkResult
from edge.device_info import cpu_model, hostname
from edge.gate import Verdict
from edge.outbox import Report
from edge.registry_client import ModelVersion
from edge.runtime import Runtime

# Figures also kept un-prefixed (step = version) so the MLflow UI charts a device's latency across versions.
CHARTED = (contract.D_P50, contract.D_P99, contract.D_SAMPLE_ACCURACY)


@dataclass(frozen=True)
class ReportContext:
    """Who reports: the device, what it follows and how it measures; ``device_run_id`` is where it reports."""

    device_id: str
    alias: str
    pinned_version: str | None
    threads: int | None
    runtime: Runtime
    device_run_id: str = ""  # the device's run in the fleet experiment (edge.heartbeat.fleet_run_id)
    key: identity.DeviceKey | None = None  # signs the report's evidence (fleet layout)
    state_root: Path | None = None  # where the key's sequence is kept


def _figures(result: BenchmarkResult | None, verdict: Verdict | None,
             prov: provenance.Provenance | None) -> dict[str, float]:
    figures = dict(result.metrics()) if result else {}
    if result:
        figures[contract.D_SAMPLE_SIZE] = float(result.sample_size)
        figures.update(prov.metrics if prov else {})
    if verdict and verdict.accuracy_bound is not None:
        figures[contract.D_ACCURACY_BOUND] = verdict.accuracy_bound
    return figures


def _facts(ctx: ReportContext, mv: ModelVersion, result: BenchmarkResult | None, prov: provenance.Provenance | None,
           reason: str) -> dict[str, str]:
    facts = {
        contract.D_STATUS: contract.STATUS_REJECTED if reason else contract.STATUS_HEALTHY,
        contract.D_REASON: reason,
        contract.D_RUNTIME: ctx.runtime.package,
        contract.D_RUNTIME_VERSION: ctx.runtime.version,
        contract.D_MODEL_VERSION: mv.version,
        contract.D_ALIAS: ctx.alias if not ctx.pinned_version else "",
        contract.D_THREADS: str(ctx.threads or "default"),
        contract.D_REPORTED_AT: clock.CLOCK.iso_now(),
    }
    if result and prov:
        facts.update(prov.tags)
    detectable = mv.tags.get(contract.TAG_GATE_DETECTABLE_DROP)
    if detectable:  # what this sample could tell, so a healthy report is read for what it proves
        facts[contract.TAG_GATE_DETECTABLE_DROP] = detectable
    return facts


def build_report(ctx: ReportContext, mv: ModelVersion, result: BenchmarkResult | None, verdict: Verdict | None,
                 prov: provenance.Provenance | None, reason: str = "") -> Report:
    """The report for ``mv``: figures when measured, the verdict, and the device's facts; ``reason`` when refused."""
    figures, facts = _figures(result, verdict, prov), _facts(ctx, mv, result, prov, reason)
    stamp = clock.now_ms()
    if not ctx.device_run_id:
        return _legacy(ctx, mv, figures, facts, stamp)
    v = mv.version
    metrics = {contract.M_REPORTED_VERSION: float(v)}  # first: the outbox confirms the report by this key
    metrics.update({contract.version_key(v, k): value for k, value in figures.items()})
    metrics.update({k: figures[k] for k in CHARTED if k in figures})
    tags = {contract.version_key(v, k): value for k, value in facts.items()}
    tags.update({
        contract.TAG_HOSTNAME: hostname(),
        contract.TAG_DEVICE_CLASS: cpu_model(),
        contract.TAG_RUNTIME: f"{ctx.runtime.package} {ctx.runtime.version}",
    })
    skew = clock.CLOCK.skew_tag()
    if skew is not None:
        tags[contract.TAG_CLOCK_SKEW_S] = skew
    params = _evidence(ctx, mv, figures, facts, stamp) if ctx.key and ctx.state_root else {}
    return Report(run_id=ctx.device_run_id, metrics=metrics, tags=tags, timestamp_ms=stamp, step=int(v), params=params)


def _evidence(ctx: ReportContext, mv: ModelVersion, figures: dict[str, float], facts: dict[str, str],
              stamp: int) -> dict[str, str]:
    """The signed report as its write-once param, and the version's search marker."""
    alias = facts[contract.D_ALIAS]
    payload = evidence.Payload(
        kind=evidence.KIND_REPORT, device=ctx.device_id, model=mv.name, seq=identity.next_seq(ctx.state_root),
        at=stamp, version=mv.version, sha256=mv.tags.get(contract.TAG_SHA256, ""), alias=alias,
        alias_since=mv.tags.get(contract.alias_since_tag(alias), "") if alias else "",
        verdict=facts[contract.D_STATUS], reason=facts[contract.D_REASON],
        throttled=facts.get(contract.D_THROTTLED, ""),
        # JSON has no NaN or infinity: such a figure stays in the metrics but cannot be signed.
        figures={k: v for k, v in figures.items() if math.isfinite(v)})
    value = sign(payload, ctx.key)
    return {evidence.param_key(value): value, contract.version_key(mv.version, contract.D_EVIDENCE): contract.EVIDENCE_MARK}


def sign(payload: evidence.Payload, key: identity.DeviceKey) -> str:
    """The encoded, signed payload; a reason too long for one param (escaped non-ASCII) is cut to 200 characters."""
    try:
        return evidence.encode(payload, key.sign)
    except evidence.EvidenceError:
        return evidence.encode(dataclasses.replace(payload, reason=payload.reason[:200]), key.sign)


def _legacy(ctx: ReportContext, mv: ModelVersion, figures: dict[str, float], facts: dict[str, str], stamp: int) -> Report:
    """Today's layout on the version's run: kept until the puller passes ``device_run_id``."""
    key = lambda name: contract.device_key(ctx.device_id, name)  # noqa: E731
    metrics = {key(contract.M_REPORTED_VERSION): float(mv.version)}
    metrics.update({key(k): v for k, v in figures.items()})
    tags = {key(k): v for k, v in facts.items()}
    tags[key(contract.D_HOSTNAME)] = hostname()
    tags[key(contract.D_CPU)] = cpu_model()
    return Report(run_id=mv.run_id, metrics=metrics, tags=tags, timestamp_ms=stamp)
