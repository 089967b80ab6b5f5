"""``edgeq``: the command for whoever decides what ships."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge import contract
from edge.registry_client import ServerUnreachable, check_server

# An unreachable server should fail in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from registry_tools import compare_plot, promotion  # noqa: E402
from registry_tools.versions import RegistryToolError, collect, format_table  # noqa: E402


class _Group(click.Group):
    """Turns the expected failures into one line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (RegistryToolError, ServerUnreachable, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except MlflowException as exc:
            raise click.ClickException(f"MLflow: {exc.message.splitlines()[0]}") from None


@click.group(cls=_Group)
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default="http://127.0.0.1:5000", show_default=True)
@click.pass_context
def main(ctx: click.Context, tracking_uri: str) -> None:
    """List, compare, promote and roll back edgeq model versions."""
    check_server(tracking_uri)
    ctx.obj = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def versions(client: MlflowClient, model: str, as_json: bool) -> None:
    """Every version of MODEL with accuracy, size, host and device latency, aliases."""
    rows = collect(client, model)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        click.echo(format_table(rows))


@main.command()
@click.argument("model")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG path (default MODEL-compare.png).")
@click.pass_obj
def compare(client: MlflowClient, model: str, output: Path | None) -> None:
    """Plot accuracy against latency (host and each device) and mark the Pareto-optimal versions."""
    rows = collect(client, model)
    output = output or Path(f"{model}-compare.png")
    fronts = compare_plot.plot(rows, output, model)
    for series, front in sorted(fronts.items()):
        click.echo(f"Pareto-optimal on {series}: " + ", ".join(f"v{v}" for v in sorted(front, key=int)))
    click.echo(f"wrote {output}")


@main.command()
@click.argument("model")
@click.argument("version", required=False)
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True)
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True, help="Refuse versions losing more accuracy points than this.")
@click.option("--runtime-version", default=None, help="TFLite runtime version of the devices; refuse models needing a newer one.")
@click.option("--force", is_flag=True, help="Promote despite the gate.")
@click.option("--best", is_flag=True, help="Pick the version fastest on --device within the accuracy budget.")
@click.option("--device", default=None, help="Device id whose measured latency decides --best.")
@click.pass_obj
def promote(client: MlflowClient, model: str, version: str | None, alias: str, max_accuracy_drop: float,
            runtime_version: str | None, force: bool, best: bool, device: str | None) -> None:
    """Point ALIAS (default production) at VERSION, or at the best version for a device."""
    if best == (version is not None):
        raise click.UsageError("give either VERSION or --best --device ID")
    if best:
        if not device:
            raise click.UsageError("--best needs --device ID")
        choice = promotion.best_for_device(client, model, device, max_accuracy_drop)
        click.echo(choice.reason)
        version = choice.row.version
    gate = promotion.Gate(max_accuracy_drop, runtime_version, force)
    result = promotion.promote(client, model, version, alias, gate)
    stage = " (stage Production set too)" if result.stage_set else ""
    click.echo(f"{model}: {alias} → v{result.version}{stage}; was {('v' + result.previous) if result.previous else 'unset'}")


@main.command()
@click.argument("model")
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True)
@click.pass_obj
def rollback(client: MlflowClient, model: str, alias: str) -> None:
    """Move ALIAS back to the version it pointed to before."""
    result = promotion.rollback(client, model, alias)
    click.echo(f"{model}: {alias} rolled back from v{result.previous} to v{result.version}")
