"""``edgeq promote``, ``edgeq rollback`` and ``edgeq history``: moving an alias and what moved it."""
from __future__ import annotations

import json
import os

import click

from edge import contract
from edge.limits import parse_p99
from registry_tools import canary, evidence, judge, promotion
from registry_tools import history as alias_history
from registry_tools.commands.base import MlflowClient, ServerCommand
from registry_tools.commands.echo import echo_notes, echo_promotion, echo_votes
from registry_tools.commands.errors import BadInput, Refused
from registry_tools.commands.options import (accept_unsigned_option, deprecated, either, model_arguments, table_width,
                                             wide_option)


@click.command("promote", cls=ServerCommand)
@model_arguments(with_version=True)
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True)
@click.option("--max-accuracy-drop", type=float, default=contract.DEFAULT_MAX_ACCURACY_DROP, show_default=True, help="Refuse versions losing more accuracy points than this; with --from, when given, also devices whose sample accuracy lies more points below the registered one.")
@click.option("--tflite-version", default=None, metavar="X.Y[.Z]",
              help="TensorFlow Lite version the devices run (LiteRT 2.x counts as 2.20); refuse models needing a newer one.")
@click.option("--runtime-version", "old_runtime_version", default=None, hidden=True,
              callback=deprecated("--tflite-version"))
@click.option("--force", is_flag=True, help="Promote despite the gate.")
@click.option("--best", is_flag=True, help="Pick the version fastest on --device-id within the accuracy budget.")
@click.option("--device-id", default=None, help="Device whose measured latency decides --best.")
@click.option("--device", "old_device", default=None, hidden=True, callback=deprecated("--device-id"))
@click.option("--from", "from_alias", default=None, metavar="ALIAS", help="Promote the version behind ALIAS (e.g. canary) on what its devices reported.")
@click.option("--require-devices", type=int, default=None, help="With --from: devices that must have reported it healthy within the limits.")
@click.option("--max-p99-ms", multiple=True, metavar="[DEVICE=]MS", help="With --from: p99 limit; a plain number or all=MS for every device, DEVICE=MS for one (wins over all=). Repeatable.")
@click.option("--max-rss-mb", type=float, default=None, help="With --from: peak RSS limit for every device.")
@click.option("--reason", default="", help="Why, kept in the alias history (edgeq history).")
@click.option("--override-guard", is_flag=True,
              help="Promote a version the guard rolled back: recorded as your override; a new evidence window starts "
                   "and devices that refused the version try it once more.")
@accept_unsigned_option
@click.pass_context
def promote(ctx: click.Context, model: str, version: str | None, alias: str, max_accuracy_drop: float,
            tflite_version: str | None, old_runtime_version: str | None, force: bool, best: bool, device_id: str | None,
            old_device: str | None, from_alias: str | None,
            require_devices: int | None, max_p99_ms: tuple[str, ...], max_rss_mb: float | None, reason: str,
            override_guard: bool = False, accept_unsigned: bool = False) -> None:
    """Point ALIAS (default production) at VERSION, at the best version for a device, or at the canary's version."""
    client: MlflowClient = ctx.obj
    runtime_version = either("--tflite-version", tflite_version, "--runtime-version", old_runtime_version)
    device = either("--device-id", device_id, "--device", old_device)
    if version is None and not best and from_alias is None:
        version = os.environ.get("EDGEQ_MODEL_VERSION") or None
    if from_alias is not None or require_devices is not None or max_p99_ms or max_rss_mb is not None:
        explicit_drop = ctx.get_parameter_source("max_accuracy_drop") != click.core.ParameterSource.DEFAULT
        _check_from(from_alias, alias, version, best)
        limits = canary_limits(require_devices, max_accuracy_drop if explicit_drop else None, max_p99_ms, max_rss_mb)
        _promote_from(client, model, from_alias, alias, require_devices, limits,
                      promotion.Gate(max_accuracy_drop, runtime_version, force), reason, accept_unsigned, override_guard)
        return
    if best == (version is not None):
        raise click.UsageError("give either VERSION or --best --device-id ID")
    if best:
        if not device:
            raise click.UsageError("--best needs --device-id ID")
        choice = promotion.best_for_device(client, model, device, max_accuracy_drop, accept_unsigned)
        click.echo(choice.reason)
        version = choice.row.version
    gate = promotion.Gate(max_accuracy_drop, runtime_version, force)
    result = promotion.promote(client, model, version, alias, gate, reason, override_guard)
    echo_promotion(model, alias, result)


@click.command("rollback", cls=ServerCommand)
@model_arguments()
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True)
@click.option("--reason", default="", help="Why, kept in the alias history (edgeq history).")
@click.pass_obj
def rollback(client: MlflowClient, model: str, alias: str, reason: str) -> None:
    """Move ALIAS back to the version it pointed to before."""
    result = promotion.rollback(client, model, alias, reason)
    click.echo(f"{model}: {alias} rolled back from v{result.previous} to v{result.version}")


@click.command("history", cls=ServerCommand)
@model_arguments()
@click.option("--alias", default=None, help="Only the changes of this alias.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@wide_option
@click.pass_obj
def history(client: MlflowClient, model: str, alias: str | None, as_json: bool, wide: bool = False) -> None:
    """Every promotion and rollback of MODEL, and every alias move made outside edgeq ("outside edgeq"):
    when, who, which alias, from which version to which, why, forced."""
    events = alias_history.read(client, model, alias)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in reversed(events)], indent=2, ensure_ascii=False))
    elif not events and alias is not None:
        click.echo(_no_changes_of(alias, sorted({e.alias for e in alias_history.read(client, model)})))
    else:
        click.echo(alias_history.format_table(events, width=table_width(wide)))


def _no_changes_of(alias: str, others: list[str]) -> str:
    if not others:
        return f"no changes of alias {alias} recorded by edgeq yet (nor of any other alias)"
    return f"no changes of alias {alias} recorded by edgeq yet; aliases with changes: {', '.join(others)}"


def canary_limits(require_devices: int | None, max_accuracy_drop: float | None, max_p99_ms: tuple[str, ...],
                  max_rss_mb: float | None) -> judge.Limits:
    if require_devices is None or require_devices < 1:
        raise BadInput("--from needs --require-devices N (N ≥ 1): how many devices must have reported the version healthy")
    # A bad limit raises ValueError: the group makes it BadInput.
    return judge.Limits(min_devices=require_devices, max_accuracy_drop=max_accuracy_drop,
                        max_p99_ms=parse_p99(max_p99_ms), max_rss_mb=max_rss_mb)


def _check_from(from_alias: str | None, alias: str, version: str | None, best: bool) -> None:
    if from_alias is None:
        raise BadInput("--require-devices, --max-p99-ms and --max-rss-mb go with --from ALIAS, e.g. --from canary")
    if version is not None or best:
        raise BadInput("--from takes the version behind the alias: drop VERSION / --best")
    if from_alias == alias:
        raise BadInput(f"--from {from_alias} and --alias {alias} are the same alias; promote to another one, e.g. --alias {contract.DEFAULT_ALIAS}")


def _promote_from(client: MlflowClient, model: str, from_alias: str, alias: str, required: int, limits: judge.Limits,
                  gate: promotion.Gate, reason: str, accept_unsigned: bool = False, override_guard: bool = False) -> None:
    """``promote --from canary``: the canary's version moves on when enough devices in its window reported it healthy."""
    trust = evidence.trust_for(client, model, accept_unsigned)
    decision = canary.decide(client, model, from_alias, required, limits, trust)  # unknown alias: bad input
    verdict = decision.verdict
    click.echo(f"{model}: {from_alias} is at v{verdict.version}; {alias} needs {canary.describe(required, limits, from_alias)}")
    echo_notes([verdict.window.describe(), *verdict.notes])  # never a silent cap, never a silent unsigned vote
    echo_votes([("counted", v) for v in decision.counted] + [("not counted", v) for v in decision.not_counted], 11,
               f"no device has reported on v{verdict.version} yet")
    counted = f"{len(decision.counted)} device(s) count, {required} required"
    if decision.capped:
        counted += f" ({verdict.reason})"
    if not decision.approved and not gate.force:
        raise Refused(f"refused: {counted}; nothing changed (wait for more canary devices, or --force)")
    click.echo(f"{counted}{'' if decision.approved else ' — promoting anyway (--force)'}")
    why = "; ".join(part for part in (reason, decision.summary()) if part)
    result = promotion.promote(client, model, verdict.version, alias, gate, why, override_guard)
    echo_promotion(model, alias, result)
