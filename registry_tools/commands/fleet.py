"""``edgeq fleet`` and ``edgeq aggregate``: the devices running a model, and the aggregates written from them."""
from __future__ import annotations

import json

import click

from edge import contract
from registry_tools import aggregate as aggregate_mod
from registry_tools import evidence
from registry_tools import fleet as fleet_view
from registry_tools.commands.base import MlflowClient, ServerCommand
from registry_tools.commands.errors import Refused
from registry_tools.commands.options import accept_unsigned_option, model_arguments, table_width, wide_option


@click.command("fleet", cls=ServerCommand)
@model_arguments()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Call a device stale when it has not been seen for this many of its run intervals.")
@click.option("--running", "running_version", default=None, metavar="VERSION",
              help="Only devices running this version (filtered on the server).")
@click.option("--last-status", "last_status", default=None, metavar="STATUS",
              help="Only devices whose last run ended so: healthy, rejected, 'exit 3'… (filtered on the server).")
@click.option("--device-id", "only_device", default=None, help="Only this device.")
@click.option("--limit", type=click.IntRange(min=1), default=fleet_view.DEFAULT_LIMIT, show_default=True,
              help="List at most this many devices (the output says when more exist).")
@click.option("--max-clock-skew", type=click.FloatRange(min=0), default=contract.CLOCK_SKEW_LIMIT_S, show_default=True,
              metavar="SECONDS", help="Flag a device whose clock is further off the server's than this.")
@accept_unsigned_option
@wide_option
@click.pass_obj
def fleet(client: MlflowClient, model: str, as_json: bool, stale_after: float, running_version: str | None = None,
          last_status: str | None = None, only_device: str | None = None, limit: int = fleet_view.DEFAULT_LIMIT,
          max_clock_skew: float = contract.CLOCK_SKEW_LIMIT_S, accept_unsigned: bool = False, wide: bool = False) -> None:
    """Every device running MODEL: alias, version, last seen, p50/p99, sample accuracy, clock, status."""
    query = fleet_view.Query(running_version, last_status, only_device, limit)
    found = fleet_view.read(client, model, stale_after, query, max_skew_s=max_clock_skew, accept_unsigned=accept_unsigned)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in found.rows], indent=2))
        for note in found.notes():
            click.echo(note, err=True)
    else:
        click.echo(fleet_view.format_table(found.rows, notes=found.notes(), width=table_width(wide)))


@click.command("aggregate", cls=ServerCommand)
@model_arguments()
@click.option("--max-devices", type=click.IntRange(min=1), default=aggregate_mod.DEFAULT_MAX_DEVICES, show_default=True,
              help="Read at most this many device runs in one pass; past it nothing is written and the command says so.")
@click.option("--full", is_flag=True, help="Recompute every version from all device runs, not only what changed since "
              "the last pass (a first pass is full by itself).")
@click.option("--every", "every_minutes", type=click.FloatRange(min=0, min_open=True),
              default=contract.DEFAULT_AGGREGATE_EVERY_MINUTES, show_default=True,
              help="Minutes between passes on this timer: `edgeq versions` marks the aggregates stale past it.")
@click.option("--dry-run", is_flag=True, help="Print the aggregates without writing them (nor the watermark).")
@accept_unsigned_option
@click.pass_obj
def aggregate(client: MlflowClient, model: str, max_devices: int, full: bool, every_minutes: float,
              dry_run: bool, accept_unsigned: bool = False) -> None:
    """Write the fleet aggregates (devices healthy/rejected/behind, latency, sample accuracy) of the versions whose
    evidence changed since the last pass, on their runs and logged models. Meant for a timer beside the server:
    reads only device runs whose end time moved (the watermark is a tag on the model), a page at a time."""
    from registry_tools import aggregate_pass
    from registry_tools.lookup import all_versions, registered_model
    from registry_tools.runs import runs_by_id

    rm = registered_model(client, model)
    found = all_versions(client, model)
    result = aggregate_pass.run(client, model, found, runs_by_id(client, [mv.run_id for mv in found]),
                                {a: str(v) for a, v in (rm.aliases or {}).items()},
                                evidence.trust_for(client, model, accept_unsigned), dict(rm.tags or {}),
                                write=not dry_run, full=full, every_s=every_minutes * 60, limit=max_devices)
    if result.truncated:
        raise Refused(f"aggregates not written: more than {max_devices} device runs to read in one pass (--max-devices)")
    for note in result.trust_notes:
        click.echo(f"note: {note}")
    for version, agg in sorted(result.aggregates.items(), key=lambda kv: int(kv[0]), reverse=True):
        click.echo(f"v{version}: {agg.summary()}" + (" (written)" if version in result.written else ""))
    what = ("full pass" if result.full else f"{result.changed_runs} device run(s) changed since the last pass")
    click.echo(f"{model}: {what}, {result.runs_read} run(s) read, {len(result.aggregates)} version(s) recomputed, "
               f"{len(result.written)} version(s) updated" + (" (dry run: nothing written)" if dry_run else ""))
