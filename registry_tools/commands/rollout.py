"""``edgeq rollout``: give a version to a growing share of an alias's devices, judged at every stage."""
from __future__ import annotations

import json
import re
import time

import click

from edge import contract
from registry_tools import judge, promotion
from registry_tools import rollout as staged
from registry_tools.commands.base import Group, MlflowClient
from registry_tools.commands.echo import echo_notes, echo_votes
from registry_tools.commands.errors import BadInput
from registry_tools.commands.options import (accept_unsigned_option, judge_limit_options, judge_limits,
                                              model_arguments, table_width)

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``2h``, ``1d`` → seconds; BadInput naming the forms."""
    found = _DURATION.match(text)
    if not found:
        raise BadInput(f"--min-stage-time takes seconds or a number with s, m, h or d (e.g. 30m, 2h); got {text!r}")
    return float(found[1]) * _UNITS[found[2]]


def alias_option(f):
    return click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True,
                        help="The alias whose devices take the version in stages.")(f)


@click.group("rollout", cls=Group)
def rollout() -> None:
    """Staged rollout: the version behind an alias reaches a growing share of its devices (e.g. 5 %, 25 %, 100 %);
    the judge of the guard decides each stage on what the devices of that stage reported. docs/rollout.md."""


@rollout.command("start")
@model_arguments(with_version=True)
@alias_option
@click.option("--steps", default=",".join(f"{s:g}" for s in contract.DEFAULT_ROLLOUT_STEPS), show_default=True,
              metavar="P1,P2,...,100", help="The shares of the alias's devices, in percent, stage by stage; ends at 100.")
@click.option("--min-stage-time", default=f"{contract.DEFAULT_ROLLOUT_MIN_STAGE_S / 60:g}m", show_default=True,
              metavar="DURATION", help="A stage lasts at least this long before it may advance (30s, 15m, 2h, 1d).")
@judge_limit_options
@click.option("--force", is_flag=True, help="Start despite the accuracy gate (the version's drop against its baseline).")
@click.option("--reason", default="", help="Why, kept in the alias history (edgeq history).")
@click.option("--dry-run", is_flag=True, help="Say what would start; write nothing.")
@click.pass_obj
def start(client: MlflowClient, model: str, version: str | None, alias: str, steps: str, min_stage_time: str,
          min_devices: int, max_rejected_fraction: float, margin: float, max_accuracy_drop: float | None,
          max_p99_ms: tuple[str, ...], max_rss_mb: float | None, max_slowdown: float | None, force: bool, reason: str,
          dry_run: bool) -> None:
    """Point ALIAS at VERSION for the first share of its devices; the others keep the version ALIAS points at now.

    The limits are the guard's (edgeq guard --help) and stay with the rollout: each `edgeq rollout step` judges the
    stage with them. --max-accuracy-drop, when given, is also the gate on the version's own drop (default 1 point).
    Exit 0 started; 4 refused by the gate; 8 the alias moved meanwhile; 2 bad input.
    """
    if not version:
        raise BadInput("give the VERSION to roll out: edgeq rollout start MODEL VERSION")
    limits = judge_limits(min_devices=min_devices, max_rejected_fraction=max_rejected_fraction, margin=margin,
                          max_accuracy_drop=max_accuracy_drop, max_p99_ms=max_p99_ms, max_rss_mb=max_rss_mb,
                          max_slowdown=max_slowdown)
    plan = staged.Plan(staged.parse_steps(steps), parse_duration(min_stage_time), limits)
    gate = promotion.Gate(contract.DEFAULT_MAX_ACCURACY_DROP if max_accuracy_drop is None else max_accuracy_drop,
                          force=force)
    started, why = staged.start(client, model, version, alias, plan, gate, reason, dry_run)
    if dry_run:
        click.echo(f"{model}: {why}")
        return
    click.echo(f"{model}: {alias} → v{started.version} for {started.share:g} % of its devices; the others keep "
               f"v{started.fallback}")
    click.echo(f"  {why}")
    click.echo(f"  next: edgeq rollout step {model} --alias {alias}  (on a timer, or --watch SECONDS); it judges with "
               f"{limits.describe()}")


@rollout.command("step")
@model_arguments()
@alias_option
@click.option("--explain", is_flag=True, help="Print every device of the stage: vote, figures, why excluded.")
@click.option("--dry-run", is_flag=True, help="Print what the step would do; move and record nothing.")
@click.option("--watch", "watch_s", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Step again every SECONDS until the rollout ends (complete, rolled back, replaced).")
@accept_unsigned_option
@click.pass_obj
def step(client: MlflowClient, model: str, alias: str, explain: bool, dry_run: bool, watch_s: float | None,
         accept_unsigned: bool = False) -> None:
    """Judge the current stage: advance one step, hold, or roll the whole alias back to the fallback.

    Exit 0 advanced, complete, paused or nothing to do; 7 hold (too few devices in the stage, mixed evidence, the
    stage younger than --min-stage-time); 4 rolled back (or would be, with --dry-run); 8 someone moved the alias
    meanwhile; 2 bad input; 3 server unreachable. With --watch, the exit of the last step.
    """
    while True:
        result = staged.step(client, model, alias, accept_unsigned, dry_run)
        _echo_step(model, result, explain)
        if watch_s is None or result.ended or result.raced or dry_run:
            break
        time.sleep(watch_s)
    if result.exit_code != contract.ExitCode.OK:
        raise SystemExit(int(result.exit_code))


def _echo_step(model: str, result: staged.Step, explain: bool) -> None:
    verdict = result.verdict
    if verdict is not None and explain:
        click.echo(judge.table(verdict, table_width(wide=False)))
    elif verdict is not None:
        echo_votes([("against", v) for v in verdict.against] + [("accepts", v) for v in verdict.accepting], 7,
                   f"no device of this stage has reported on v{verdict.version} yet")
        echo_notes(verdict.notes)
    click.echo(f"{model}: {result.message}")


@rollout.command("status")
@model_arguments()
@alias_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@accept_unsigned_option
@click.pass_obj
def status(client: MlflowClient, model: str, alias: str, as_json: bool, accept_unsigned: bool = False) -> None:
    """The rollout behind ALIAS: its stage, share, fallback, limits, and the votes of the devices in the stage."""
    current, verdict = staged.status(client, model, alias, accept_unsigned)
    if as_json:
        click.echo(json.dumps(_as_json(current, verdict), indent=2))
        return
    if current is None:
        click.echo(f"{model}: no staged rollout behind {alias} (edgeq rollout start {model} VERSION --alias {alias})")
        return
    steps = " → ".join(f"{s:g} %" for s in current.plan.steps)
    click.echo(f"{model}: {alias} v{current.version}, {current.status}, {current.describe_stage()} since "
               f"{current.stage_since}; the others keep v{current.fallback}")
    click.echo(f"  steps {steps}; each stage at least {staged.duration(current.plan.min_stage_s)}; "
               f"started by {current.started_by} at {current.started_at}" + (f"; {current.note}" if current.note else ""))
    click.echo(f"  judged with {current.plan.limits.describe()}")
    if verdict is not None:
        click.echo(f"  the judge now: {verdict.outcome} — {verdict.reason}")
        click.echo(judge.table(verdict, table_width(wide=False)))


def _as_json(current: staged.Rollout | None, verdict: judge.Verdict | None) -> dict:
    if current is None:
        return {"rollout": None}
    out = json.loads(current.encode())
    out["share"] = current.share
    if verdict is not None:
        out["verdict"] = {"outcome": verdict.outcome, "reason": verdict.reason,
                          "devices": [{"device": v.device, "vote": v.vote, "why": v.why} for v in verdict.votes]}
    return out


@rollout.command("pause")
@model_arguments()
@alias_option
@click.option("--reason", default="", help="Why, kept in the alias history.")
@click.pass_obj
def pause(client: MlflowClient, model: str, alias: str, reason: str) -> None:
    """Stop advancing: devices keep what they run, the share stays; edgeq rollout resume goes on."""
    paused = staged.pause(client, model, alias, reason)
    click.echo(f"{model}: the rollout of v{paused.version} behind {alias} is paused at {paused.describe_stage()}")


@rollout.command("resume")
@model_arguments()
@alias_option
@click.option("--reason", default="", help="Why, kept in the alias history.")
@click.pass_obj
def resume(client: MlflowClient, model: str, alias: str, reason: str) -> None:
    """Go on with a paused rollout: the next `edgeq rollout step` judges the stage again."""
    resumed = staged.resume(client, model, alias, reason)
    click.echo(f"{model}: the rollout of v{resumed.version} behind {alias} goes on at {resumed.describe_stage()}")
