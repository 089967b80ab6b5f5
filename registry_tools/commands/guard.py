"""``edgeq guard``: keep the version behind an alias, hold, or move the alias back, on the devices' evidence."""
from __future__ import annotations

import click

from edge import contract
from registry_tools import judge
from registry_tools.commands.base import MlflowClient, ServerCommand
from registry_tools.commands.echo import echo_notes, echo_votes
from registry_tools.commands.options import (accept_unsigned_option, judge_limit_options, judge_limits,
                                              model_arguments, table_width)


@click.command("guard", cls=ServerCommand)
@model_arguments()
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True, help="The alias to guard.")
@judge_limit_options
@click.option("--consecutive", type=int, default=contract.DEFAULT_GUARD_CONSECUTIVE, show_default=True,
              help="Evaluations in a row a breach must persist over before the guard rolls back.")
@click.option("--fresh-reports", type=int, default=contract.DEFAULT_GUARD_MIN_DEVICES, show_default=True,
              help="...unless at least this many reports against are newer than the previous evaluation.")
@click.option("--cooldown", "cooldown_s", type=float, default=contract.DEFAULT_GUARD_COOLDOWN_S, show_default=True,
              metavar="SECONDS", help="After a rollback, do not judge the alias again for this long.")
@click.option("--explain", is_flag=True, help="Print every device: report age, alias, vote, figures against the limits, why excluded.")
@click.option("--dry-run", is_flag=True, help="Print the verdict; move and record nothing.")
@accept_unsigned_option
@click.pass_obj
def guard(client: MlflowClient, model: str, alias: str, min_devices: int, max_rejected_fraction: float,
          margin: float, max_accuracy_drop: float | None, max_p99_ms: tuple[str, ...], max_rss_mb: float | None,
          max_slowdown: float | None, consecutive: int, fresh_reports: int, cooldown_s: float, explain: bool,
          dry_run: bool, accept_unsigned: bool = False) -> None:
    """Judge the version behind ALIAS on the devices' evidence in its window: keep it, hold, or move ALIAS back to
    the version it replaced.

    Exit 0: the version stays; 7: hold (too few devices in the window, mixed evidence, a breach not yet persistent,
    the cooldown) — nothing moved; 4: the evidence breaches the limits (the alias was moved back, or with --dry-run
    would be, or cannot be: see the message); 8: someone else moved the alias meanwhile (nothing overwritten);
    2 bad input; 3 server unreachable. Rules and a timer: docs/guard.md.
    """
    from registry_tools import guard as guard_mod

    limits = judge_limits(min_devices=min_devices, max_rejected_fraction=max_rejected_fraction, margin=margin,
                          max_accuracy_drop=max_accuracy_drop, max_p99_ms=max_p99_ms, max_rss_mb=max_rss_mb,
                          max_slowdown=max_slowdown)  # ValueError: bad input
    policy = guard_mod.Policy(consecutive, fresh_reports, cooldown_s)
    outcome = guard_mod.guard(client, model, alias, limits, policy, dry_run, accept_unsigned)
    for event in outcome.noticed:
        click.echo(f"{model}: noticed {event.alias} moved outside edgeq: {event.reason}")
    verdict = outcome.verdict
    if explain:
        click.echo(judge.table(verdict, table_width(wide=False)))
    else:
        replaced = f" (replaced v{verdict.replaced})" if verdict.replaced else ""
        click.echo(f"{model}: {alias} is at v{verdict.version}{replaced}; guard needs {limits.describe()}")
        echo_notes([verdict.window.describe(), *verdict.notes])
        echo_votes([("against", v) for v in verdict.against] + [("accepts", v) for v in verdict.accepting], 7,
                   f"no device voted on v{verdict.version} in the window yet")
        if verdict.excluded:
            click.echo(f"  ({len(verdict.excluded)} report(s) outside the window or without a vote: --explain lists them)")
    echo_notes(outcome.notes)
    click.echo(f"{model}: {outcome.message}")
    if outcome.exit_code != contract.ExitCode.OK:
        raise SystemExit(int(outcome.exit_code))
