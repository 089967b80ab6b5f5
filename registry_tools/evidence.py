"""The one reader of device evidence: finds the fleet runs, verifies what they carry, counts one vote per enrolled device.

Every reader — ``guard``, ``promote --from``, ``aggregate``, ``versions`` and ``fleet`` — goes through here:

1. the fleet experiment is the one whose id the operator recorded on the model (contract.TAG_FLEET_EXPERIMENT_ID),
   not whatever is called ``edgeq-fleet`` now (anyone with EDIT on it can rename it);
2. device runs are found by their write-once identity params, a version's reporters by their write-once
   ``v<N>.evidence`` param (tags can be deleted by any device account, params cannot);
3. a vote is a signed report (edge/evidence.py) that verifies with the key enrolled for the device it names, for a
   model that device is enrolled for (registry_tools/enrolment.py); per device and version the newest sequence wins,
   wherever the report was found — so a device copying or re-posting another's report changes nothing;
4. anything else is *unverified* (bad signature, unknown or revoked device, another model) and never votes; reports
   without a signature (pullers from before signing, the legacy layout on a version's run, a tag someone edited)
   are *unsigned* and vote only where the operator said so (``--accept-unsigned``, or the model's
   ``edgeq.accept_unsigned`` tag), and then every output says that they did.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from edge import contract
from edge import evidence as signed
from registry_tools.api import RegistryApi
from registry_tools import enrolment
from registry_tools.device_reports import SIGNED, UNSIGNED, DeviceReport, device_name, device_reports, run_reports
from registry_tools.rest_client import ViewType
from registry_tools.lookup import RegistryToolError, model_version, registered_model

if TYPE_CHECKING:
    from mlflow.entities import Run

PAGE = 1000  # device runs per search request
DEFAULT_CAP = 200  # device runs read for one decision about one version; past it the decision says it stopped there


def quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r}: a quote cannot go into a search filter; rename it")
    return f"'{value}'"


@dataclass(frozen=True)
class Trust:
    """What one command trusts, read once: the enrolment register, the fleet experiment, unsigned or not."""

    model: str
    register: enrolment.Register
    experiment_id: str | None
    experiment_recorded: bool  # found by the id recorded at setup (else by name: a fleet that never enrolled)
    accept_unsigned: bool
    accept_unsigned_why: str = ""  # "--accept-unsigned" or the model's tag
    enrolled: bool = False  # a device was enrolled for the model: signed evidence is what counts


    def notes(self, unsigned_seen: int = 0, unverified_seen: int = 0) -> list[str]:
        """What a person must know about what counted, one line each (empty when everything was signed and enrolled)."""
        out = []
        if self.experiment_id and not self.experiment_recorded:
            out.append(f"fleet experiment found by its name {contract.FLEET_EXPERIMENT!r}, not by an id recorded at "
                       f"setup: run `edgeq device enroll` (it records the id on {self.model})")
        if self.accept_unsigned and unsigned_seen:
            out.append(f"{unsigned_seen} unsigned report(s) COUNTED ({self.accept_unsigned_why}): any account that can "
                       "write the fleet experiment could have written them")
        elif unsigned_seen:
            out.append(f"{unsigned_seen} unsigned report(s) not counted (no device signature; enrol the devices with "
                       "`edgeq device enroll`, or say --accept-unsigned)")
        if unverified_seen:
            out.append(f"{unverified_seen} unverified report(s) not counted (see `edgeq fleet {self.model}`)")
        return out


def trust_for(client: RegistryApi, model: str, accept_unsigned: bool = False) -> Trust:
    """Read the register, the model's recorded fleet experiment and its unsigned setting: once per command."""
    rm = registered_model(client, model)
    tags = rm.tags or {}
    recorded = tags.get(contract.TAG_FLEET_EXPERIMENT_ID, "")
    experiment_id: str | None = recorded if recorded.isdigit() else None
    if experiment_id is None:
        found = client.get_experiment_by_name(contract.FLEET_EXPERIMENT)
        experiment_id = found.experiment_id if found else None
    by_tag = tags.get(contract.TAG_ACCEPT_UNSIGNED) == "true"
    why = "--accept-unsigned" if accept_unsigned else (f"{model}'s {contract.TAG_ACCEPT_UNSIGNED} tag" if by_tag else "")
    return Trust(model, enrolment.read(client), experiment_id, experiment_id is not None and experiment_id == recorded,
                 accept_unsigned or by_tag, why, tags.get(contract.TAG_DEVICES_ENROLLED) == "true")


# -- finding the runs --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scan:
    runs: list[Run]
    truncated: bool  # stopped at the limit: more device runs exist

    def note(self, what: str = "device runs") -> str:
        return f"stopped after the first {len(self.runs)} {what} (the cap); narrow the query or raise the cap" if self.truncated else ""


def _search(client: RegistryApi, experiment_id: str, query: str, limit: int, order_by: list[str] | None) -> Scan:
    runs: list[Run] = []
    token = None
    while True:
        want = min(PAGE, limit - len(runs) + 1)  # one more than allowed tells whether the cap cut anything
        page = client.search_runs([experiment_id], query, ViewType.ACTIVE_ONLY, want, order_by=order_by, page_token=token)
        runs += list(page)
        token = page.token
        if len(runs) > limit:
            return Scan(runs[:limit], True)
        if not token:
            return Scan(runs, False)


def device_run_pages(client: RegistryApi, trust: Trust, *clauses: str, version: str | None = None,
                     order_by: list[str] | None = None) -> Iterator[list[Run]]:
    """The runs ``device_runs`` finds, a page at a time (a pass over the whole fleet in bounded memory).

    The tag query keeps only runs without the identity params, so no run comes twice and no run id is remembered.
    """
    queries = _queries(trust, clauses, version)
    if len(queries) > 1:
        queries[1] += f" and params.`{contract.P_MODEL}` IS NULL"
    for query in queries:
        token = None
        while True:
            page = client.search_runs([trust.experiment_id], query, ViewType.ACTIVE_ONLY, PAGE, order_by=order_by,
                                      page_token=token)
            if len(page):
                yield list(page)
            token = page.token
            if not token:
                break


def _queries(trust: Trust, clauses: Iterable[str], version: str | None) -> list[str]:
    if trust.experiment_id is None:
        return []
    model = quote(trust.model)
    by_params = [f"params.`{contract.P_MODEL}` = {model}"]
    by_tags = [f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_DEVICE}'", f"tags.`{contract.TAG_MODEL}` = {model}"]
    if version is not None:
        by_params.append(f"params.`{contract.version_key(version, contract.D_EVIDENCE)}` IS NOT NULL")
        by_tags.append(f"tags.`{contract.version_key(version, contract.D_STATUS)}` IS NOT NULL")
    queries = [" and ".join(by_params + list(clauses))]
    if trust.accept_unsigned or not trust.enrolled:
        queries.append(" and ".join(by_tags + list(clauses)))
    return queries


def device_runs(client: RegistryApi, trust: Trust, *clauses: str, version: str | None = None, limit: int = DEFAULT_CAP,
                order_by: list[str] | None = None) -> Scan:
    """Device runs of the model (that reported on ``version`` when given), narrowed by tag ``clauses``, at most ``limit``.

    Found by their write-once params; runs that carry only tags (pullers from before signing) are added where
    unsigned evidence counts, or when nothing is enrolled for the model (so the fleet view still lists them).
    """
    if trust.experiment_id is None or limit <= 0:
        return Scan([], False)
    queries = _queries(trust, clauses, version)
    seen: dict[str, Run] = {}
    truncated = False
    for query in queries:
        scan = _search(client, trust.experiment_id, query, limit, order_by)
        truncated = truncated or scan.truncated
        for run in scan.runs:
            seen.setdefault(run.info.run_id, run)
    runs = list(seen.values())
    return Scan(runs[:limit], truncated or len(runs) > limit)


# -- verifying what they carry -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unverified:
    run_id: str
    device: str  # as claimed by the value (or the run)
    version: str
    why: str


@dataclass
class Read:
    """What a set of device runs says, sorted by trust."""

    reports: dict[str, dict[str, DeviceReport]] = field(default_factory=dict)  # version → device → the vote
    statuses: dict[str, signed.Payload] = field(default_factory=dict)  # device → its newest verified status
    unsigned: dict[str, dict[str, DeviceReport]] = field(default_factory=dict)  # not counted unless accepted
    unverified: list[Unverified] = field(default_factory=list)
    run_of: dict[str, str] = field(default_factory=dict)  # device → the run its newest verified statement sits in

    def unsigned_count(self, version: str | None = None) -> int:
        return sum(len(v) for k, v in self.unsigned.items() if version is None or k == version)

    def unverified_count(self, version: str | None = None) -> int:
        return sum(1 for u in self.unverified if version is None or u.version == version)


def _vote(payload: signed.Payload, run: Run) -> DeviceReport:
    """A verified report as the judges read it: the signed figures and verdict, nothing from the run's tags
    but the display-only hostname and CPU."""
    tags = {contract.D_STATUS: payload.verdict, contract.D_REASON: payload.reason,
            contract.D_MODEL_VERSION: payload.version, contract.D_ALIAS: payload.alias,
            contract.D_THROTTLED: payload.throttled, contract.D_HOSTNAME: run.data.tags.get(contract.TAG_HOSTNAME, ""),
            contract.D_CPU: run.data.tags.get(contract.TAG_DEVICE_CLASS, "")}
    return DeviceReport(payload.device, dict(payload.figures), tags, trust=SIGNED, seq=payload.seq, at_ms=payload.at,
                        alias_since=payload.alias_since, run_id=run.info.run_id)


def read_runs(runs: Iterable[Run], trust: Trust) -> Read:
    """Verify what the runs carry; one vote per enrolled device and version (the newest sequence that verifies).

    Statements are grouped by what they claim (device, kind, version) and verified newest first, so a device's
    long history costs one signature check per version, not one per report it ever made.
    """
    out = Read()
    claims: dict[tuple[str, str, str], list[tuple[signed.Payload, str, Run]]] = {}
    runs = list(runs)
    for run in runs:
        for key, value in run.data.params.items():
            if not key.startswith(signed.PARAM_PREFIX):
                continue
            try:
                claim = signed.claimed(value)
            except signed.EvidenceError as exc:
                out.unverified.append(Unverified(run.info.run_id, "?", "", f"not signed evidence ({exc})"))
                continue
            if claim.model != trust.model or trust.register.get(claim.device) is None:
                continue  # another model's business; or nobody vouches for the device: its tags are unsigned evidence
            if claim.kind == signed.KIND_REPORT and not claim.version.isdigit():
                continue
            version = claim.version if claim.kind == signed.KIND_REPORT else ""
            claims.setdefault((claim.device, claim.kind, version), []).append((claim, value, run))
    signed_about: set[tuple[str, str]] = set()
    for (device, kind, version), group in claims.items():
        key, why = trust.register.key_for(device, trust.model)  # a loaded key, one per device
        seen: set[str] = set()
        for claim, value, run in sorted(group, key=lambda c: c[0].seq, reverse=True):
            if value in seen:
                continue  # the same statement posted in several runs
            seen.add(value)
            try:
                if key is None:
                    raise signed.EvidenceError(why)
                payload = signed.verify(value, key, claim)
            except signed.EvidenceError as exc:
                out.unverified.append(Unverified(run.info.run_id, device, version, str(exc)))
                continue
            if kind == signed.KIND_STATUS:
                out.statuses[device], out.run_of[device] = payload, run.info.run_id
            else:
                out.reports.setdefault(version, {})[device] = _vote(payload, run)
                signed_about.add((device, version))
            break  # older statements of the group are superseded, not checked
    out.reports = {v: dict(sorted(r.items())) for v, r in out.reports.items()}
    for run in runs:  # what the tags say, where no verified report covers it
        device = device_name(run.data.tags, run.info.run_id)
        for version, report in run_reports(run.data.metrics, run.data.tags, device).items():
            if (device, version) not in signed_about and report.status in contract.DEVICE_STATUSES:
                _add_unsigned(out, trust, version, device, report)
    return out


def _add_unsigned(out: Read, trust: Trust, version: str, device: str, report: DeviceReport) -> None:
    report = replace(report, trust=UNSIGNED)
    out.unsigned.setdefault(version, {}).setdefault(device, report)
    if trust.accept_unsigned:
        out.reports.setdefault(version, {}).setdefault(device, report)


def add_legacy(out: Read, trust: Trust, version: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
    """Reports in the legacy layout on a version's own run: unsigned by nature."""
    for device, report in device_reports(metrics, tags).items():
        if report.is_about(version) and device not in out.reports.get(version, {}):
            _add_unsigned(out, trust, version, device, report)


# -- the evidence on one version, for a decision -----------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """The version behind an alias and the votes on it, with what did not count."""

    version: str
    run_id: str
    registered_accuracy: float | None
    reports: dict[str, DeviceReport]
    truncated: bool = False  # stopped at the cap: more devices reported than were read
    unsigned: int = 0
    unverified: tuple[Unverified, ...] = ()
    trust: Trust | None = None

    def notes(self) -> list[str]:
        out = list(self.trust.notes(self.unsigned, len(self.unverified))) if self.trust else []
        if self.truncated:
            out.append(f"read the first {DEFAULT_CAP}+ device runs that reported on v{self.version} (the cap); "
                       f"edgeq fleet --running {self.version} lists them")
        return out

    def note(self) -> str:
        return "; ".join(self.notes())


def for_alias(client: RegistryApi, name: str, alias: str, cap: int = DEFAULT_CAP, accept_unsigned: bool = False) -> Evidence:
    """The version ``alias`` points to and the verified votes on it."""
    rm = registered_model(client, name)
    version = (rm.aliases or {}).get(alias)
    if version is None:
        raise RegistryToolError(
            f"model {name!r} has no alias {alias!r}: point it at a version first (edgeq promote {name} VERSION --alias {alias})"
        )
    return for_version(client, name, str(version), cap, trust_for(client, name, accept_unsigned))


def for_version(client: RegistryApi, name: str, version: str, cap: int = DEFAULT_CAP, trust: Trust | None = None) -> Evidence:
    """The votes on ``version``: the device runs that reported on it, verified, and (unsigned) its run's legacy reports."""
    trust = trust or trust_for(client, name)
    mv = model_version(client, name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    metrics, tags = (run.data.metrics, run.data.tags) if run else ({}, {})
    scan = device_runs(client, trust, version=version, limit=cap)
    found = read_runs(scan.runs, trust)
    add_legacy(found, trust, version, metrics, tags)
    return Evidence(version, mv.run_id or "", metrics.get(contract.M_ACCURACY),
                    dict(sorted(found.reports.get(version, {}).items())), scan.truncated,
                    found.unsigned_count(version), tuple(u for u in found.unverified if u.version == version), trust)
