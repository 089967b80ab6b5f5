"""The state of a staged rollout as the registry keeps it: its plan, its stage, whether it runs, and its end.

One module that both the rollout (registry_tools/rollout.py) and every other move of an alias
(registry_tools/promotion.py) read, so that a promote or rollback ends a running rollout cleanly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools import judge
from registry_tools.lookup import RegistryToolError, model_version, registered_model

RUNNING, PAUSED, COMPLETE, ROLLED_BACK, REPLACED = "running", "paused", "complete", "rolled back", "replaced"
ENDED = (COMPLETE, ROLLED_BACK, REPLACED)


@dataclass(frozen=True)
class Plan:
    """How a rollout proceeds: the shares in percent (the last is 100) and what each stage must show."""

    steps: tuple[float, ...] = contract.DEFAULT_ROLLOUT_STEPS
    min_stage_s: float = contract.DEFAULT_ROLLOUT_MIN_STAGE_S
    limits: judge.Limits = field(default_factory=judge.Limits)

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"--steps must be increasing percentages above 0 and at most 100, got "
                             f"{','.join(f'{s:g}' for s in steps) or 'none'}")
        if steps[-1] != 100:
            raise ValueError(f"--steps must end at 100 (every device), got {','.join(f'{s:g}' for s in steps)}")
        if len(steps) < 2:
            raise ValueError("--steps needs a stage below 100 before 100; to give a version to every device at once "
                             "use edgeq promote")
        if self.min_stage_s < 0:
            raise ValueError(f"--min-stage-time must be 0 or more, got {self.min_stage_s:g} s")


def parse_steps(text: str) -> tuple[float, ...]:
    """``5,25,100`` → (5.0, 25.0, 100.0); ValueError naming the bad part."""
    try:
        return tuple(float(part.strip().rstrip("%")) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--steps takes percentages separated by commas, e.g. 5,25,100; got {text!r}") from None


@dataclass(frozen=True)
class Rollout:
    """The rollout behind one alias, as the registered model's state tag keeps it."""

    alias: str
    version: str
    fallback: str
    plan: Plan
    stage: int  # index into plan.steps
    stage_since: str  # ISO 8601, UTC
    status: str  # RUNNING, PAUSED or one of ENDED
    started_by: str
    started_at: str
    note: str = ""  # who paused it, how it ended

    @property
    def share(self) -> float:
        return self.plan.steps[self.stage]

    @property
    def stage_since_ms(self) -> int:
        return judge.to_ms(self.stage_since) or 0

    def describe_stage(self) -> str:
        return f"stage {self.stage + 1} of {len(self.plan.steps)} ({self.share:g} %)"

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def decode(text: str) -> Rollout:
    """The state tag's value; RegistryToolError when someone edited it into something else."""
    try:
        data = json.loads(text)
        plan = data.pop("plan")
        limits = dict(plan.get("limits") or {})
        limits["max_p99_ms"] = tuple(tuple(pair) for pair in limits.get("max_p99_ms") or ())
        made = Rollout(plan=Plan(tuple(float(s) for s in plan["steps"]), float(plan["min_stage_s"]),
                                 judge.Limits(**limits)), **data)
        contract.check_version_number(made.version), contract.check_version_number(made.fallback)
        if not 0 <= made.stage < len(made.plan.steps) or judge.to_ms(made.stage_since) is None:
            raise ValueError("stage out of range")
        return made
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegistryToolError(f"the rollout state tag is unreadable ({type(exc).__name__}: {exc}); start the rollout "
                                "again (edgeq rollout start) or promote a version (edgeq promote)") from None


def read(client: RegistryApi, name: str, alias: str) -> Rollout | None:
    raw = (registered_model(client, name).tags or {}).get(contract.rollout_state_tag(alias))
    return decode(raw) if raw else None


def save(client: RegistryApi, name: str, rollout: Rollout) -> None:
    client.set_registered_model_tag(name, contract.rollout_state_tag(rollout.alias), rollout.encode())


def running_behind(client: RegistryApi, name: str, alias: str, moving_to: str) -> Rollout | None:
    """The rollout a move of ``alias`` to ``moving_to`` (a promote, a rollback) would replace, or None."""
    rollout = read_quietly(client, name, alias)
    if rollout is None or rollout.status in ENDED or rollout.version == str(moving_to):
        return None
    return rollout


def replaced_words(rollout: Rollout) -> str:
    """What the history says of a rollout a promote or rollback replaced."""
    return f"replaces the staged rollout of v{rollout.version} at {rollout.share:g} % (edgeq rollout)"


def end_replaced(client: RegistryApi, name: str, rollout: Rollout, moved_to: str, how: str) -> Rollout:
    """After someone else moved the alias: the rollout ends, its version's share goes; the ended rollout."""
    ended = replace(rollout, status=REPLACED, note=f"{rollout.alias} moved to v{moved_to} ({how}) at "
                                                   f"{rollout.describe_stage()}")
    save(client, name, ended)
    if contract.rollout_tag(rollout.alias) in (model_version(client, name, rollout.version).tags or {}):
        client.delete_model_version_tag(name, rollout.version, contract.rollout_tag(rollout.alias))
    return ended


def read_quietly(client: RegistryApi, name: str, alias: str) -> Rollout | None:
    try:
        return read(client, name, alias)
    except RegistryToolError:
        return None
