"""Promotion on canary evidence: the judge's window on the canary alias, and whether enough devices in it count.

The judge (registry_tools/judge.py) reads the whole window of the version behind the canary alias — reports by
devices following it, made since it moved there — and gives each device its vote. A device *counts* when its
vote is *for*: an explicit "healthy" within every limit given (a rejection, a report without a health status,
a breached limit or a limited figure the device did not send never counts). The version may move on when at
least ``required`` devices count. Because guard and promote --from share the judge and the window, the
canary's reports never judge production: production's window starts when the version reaches it.
"""
from __future__ import annotations

from dataclasses import dataclass

from registry_tools import evidence, judge
from registry_tools.api import RegistryApi


@dataclass(frozen=True)
class Decision:
    verdict: judge.Verdict
    required: int

    @property
    def version(self) -> str:
        return self.verdict.version

    @property
    def counted(self) -> tuple[judge.Vote, ...]:
        return self.verdict.accepting

    @property
    def not_counted(self) -> tuple[judge.Vote, ...]:
        return self.verdict.against + self.verdict.excluded

    @property
    def capped(self) -> bool:
        return self.verdict.outcome == judge.HOLD and self.verdict.reason.startswith("the read stopped")

    @property
    def approved(self) -> bool:
        return len(self.counted) >= self.required and not self.capped

    def summary(self) -> str:
        """One line for the history and for the refusal message."""
        used = "; ".join(f"{v.device} ({v.why})" for v in self.counted[:20]) or "none"
        if len(self.counted) > 20:
            used += f" (+{len(self.counted) - 20} more)"
        text = (f"{self.verdict.alias} v{self.version}: {len(self.counted)} of {self.required} required devices healthy "
                f"within limits: {used}")
        shown = [v for v in self.not_counted if v.vote == judge.AGAINST][:20]
        if shown:
            text += "; not counted: " + "; ".join(f"{v.device} {v.why}" for v in shown)
        return text


def decide(client: RegistryApi, name: str, alias: str, required: int, limits: judge.Limits,
           trust: evidence.Trust | None = None) -> Decision:
    """The judge's votes on the version behind ``alias`` (the canary), and whether ``required`` of them count."""
    return Decision(judge.evaluate(client, name, alias, limits, trust), required)


def describe(required: int, limits: judge.Limits, alias: str) -> str:
    parts = [f"≥ {required} healthy device{'s' if required != 1 else ''} in the {alias} window"] + limits.describe_device()
    return ", ".join(parts)
