"""``edgeq versions`` and ``edgeq compare``: every version of a model, as a table or a plot."""
from __future__ import annotations

import json
from pathlib import Path

import click

from registry_tools import versions as version_rows
from registry_tools.commands.base import MlflowClient, ServerCommand
from registry_tools.commands.options import accept_unsigned_option, model_arguments, table_width, wide_option


@click.command("versions", cls=ServerCommand)
@model_arguments()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--devices", "per_device", is_flag=True,
              help="Also a p50 column per device (read from the device runs, capped; edgeq fleet lists devices).")
@accept_unsigned_option
@wide_option
@click.pass_obj
def versions(client: MlflowClient, model: str, as_json: bool, per_device: bool = False, accept_unsigned: bool = False,
             wide: bool = False) -> None:
    """Every version of MODEL with accuracy, size, host latency, fleet aggregates, aliases."""
    notes: list[str] = []
    rows = version_rows.collect(client, model, devices=per_device, notes=notes, accept_unsigned=accept_unsigned)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        click.echo(version_rows.format_table(rows, notes, width=table_width(wide)))


@click.command("compare", cls=ServerCommand)
@model_arguments()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG path (default MODEL-compare.png).")
@click.pass_obj
def compare(client: MlflowClient, model: str, output: Path | None) -> None:
    """Plot accuracy against latency (host and each device) and mark the Pareto-optimal versions."""
    from registry_tools import compare_plot  # matplotlib: only for this command

    rows = version_rows.collect(client, model, devices=True)  # per-device series come from the device runs
    output = output or Path(f"{model}-compare.png")
    fronts = compare_plot.plot(rows, output, model)
    for series, front in sorted(fronts.items()):
        click.echo(f"Pareto-optimal on {series}: " + ", ".join(f"v{v}" for v in sorted(front, key=int)))
    click.echo(f"wrote {output}")
