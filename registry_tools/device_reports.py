"""One device's report on a version's run, grouped from its ``device.<id>.<name>`` metrics and tags."""
from __future__ import annotations

from dataclasses import dataclass, field

from edge import contract

SIGNED, UNSIGNED = "signed", "unsigned"  # DeviceReport.trust: verified against the device's enrolled key, or not


@dataclass(frozen=True)
class DeviceReport:
    device: str
    metrics: dict[str, float] = field(default_factory=dict)  # plain contract names, e.g. contract.D_P99
    tags: dict[str, str] = field(default_factory=dict)
    trust: str = UNSIGNED
    seq: int = 0  # the device's sequence number (signed reports)
    at_ms: int = 0  # server time the device stated it (signed reports)
    alias_since: str = ""  # when the alias it followed moved to the version, as the version told the device
    run_id: str = ""

    @property
    def version(self) -> str | None:
        return self.tags.get(contract.D_MODEL_VERSION)

    def is_about(self, version: str) -> bool:
        """Whether this report may count for ``version`` (a report naming another version does not)."""
        return self.version in (None, str(version))

    @property
    def status(self) -> str | None:
        return self.tags.get(contract.D_STATUS)

    @property
    def reason(self) -> str:
        return self.tags.get(contract.D_REASON, "")

    @property
    def throttled(self) -> bool:
        return self.tags.get(contract.D_THROTTLED) == contract.THROTTLED_YES

    def figures(self) -> str:
        """``p50 1.20 ms, p99 2.31 ms, rss 61.0 MB, sample 96.9 % of 32, throttled``: what was measured."""
        m = self.metrics
        parts = [f"{label} {m[key]:.2f} ms" for label, key in (("p50", contract.D_P50), ("p99", contract.D_P99)) if key in m]
        if contract.D_PEAK_RSS in m:
            parts.append(f"rss {m[contract.D_PEAK_RSS]:.1f} MB")
        if contract.D_SAMPLE_ACCURACY in m:
            size = m.get(contract.D_SAMPLE_SIZE)
            parts.append(f"sample {100 * m[contract.D_SAMPLE_ACCURACY]:.1f} %" + (f" of {int(size)}" if size else ""))
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


def device_name(tags: dict[str, str], fallback: str = "") -> str:
    """The device id a fleet run belongs to."""
    return tags.get(contract.TAG_DEVICE_ID) or fallback


def run_reports(metrics: dict[str, float], tags: dict[str, str], device: str) -> dict[str, DeviceReport]:
    """Every version one device reported on its own run (keys ``v<N>.<name>``), by version.

    Device-wide facts (hostname, CPU) are copied into each report, so a report reads the same
    whichever layout it came from.
    """
    found: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
    for source, slot in ((metrics, 0), (tags, 1)):
        for key, value in source.items():
            parsed = contract.parse_version_key(key)
            if parsed:
                found.setdefault(parsed[0], ({}, {}))[slot][parsed[1]] = value
    common = {contract.D_HOSTNAME: tags.get(contract.TAG_HOSTNAME, ""), contract.D_CPU: tags.get(contract.TAG_DEVICE_CLASS, "")}
    out = {}
    for version, (m, t) in found.items():
        t = {**common, **t}
        t.setdefault(contract.D_MODEL_VERSION, version)
        out[version] = DeviceReport(device, m, t)
    return out


def report_for(run, version: str) -> DeviceReport | None:
    """The report one device run holds about ``version``, or None."""
    tags = run.data.tags
    return run_reports(run.data.metrics, tags, device_name(tags, run.info.run_id)).get(str(version))
