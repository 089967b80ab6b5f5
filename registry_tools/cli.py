"""``edgeq``: the command for whoever decides what ships."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge import contract
from edge.registry_client import ServerUnreachable, check_server
from registry_tools import program

# Before anything imports mlflow: an [edge]-only install gets one line naming the extra, not a traceback.
program.require_registry_extra()

# An unreachable server should fail in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from registry_tools import canary, evidence, promotion  # noqa: E402
from registry_tools import fleet as fleet_view  # noqa: E402
from registry_tools import history as alias_history  # noqa: E402
from registry_tools.versions import GateRefused, RegistryToolError, collect, format_table  # noqa: E402

# MLflow error codes that mean the user named something that is not there, or named it badly.
_INPUT_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")


class Unreachable(click.ClickException):
    """The server cannot be reached or keeps failing: one line, exit code 3."""

    exit_code = int(contract.ExitCode.UNREACHABLE)


def _mlflow_error(exc: MlflowException) -> click.ClickException:
    first = f"MLflow: {exc.message.splitlines()[0] if exc.message else exc.error_code}"
    if exc.error_code in _INPUT_ERRORS:
        return BadInput(first)
    if "API request to" in first:  # MLflow's client gave up on the connection or on 5xx answers
        return Unreachable(first)
    return click.ClickException(first)


class _ServerCommand(click.Command):
    """Checks the server when the command runs: after parsing, so ``edgeq CMD --help`` needs no server."""

    def invoke(self, ctx: click.Context):
        check_server(ctx.find_root().params["tracking_uri"])
        return super().invoke(ctx)


class _Group(click.Group):
    """Expected failures become one line and an exit code from edge.contract.ExitCode."""

    command_class = _ServerCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GateRefused as exc:
            raise Refused(str(exc)) from None
        except (RegistryToolError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        except ServerUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except MlflowException as exc:
            raise _mlflow_error(exc) from None


def _deprecated(new: str):
    """Callback of an old option name kept for one release: it still works, with a warning."""

    def warn(ctx: click.Context, param: click.Parameter, value):
        if value is not None:
            click.echo(f"edgeq: {param.opts[0]} is deprecated and will be removed in the next release; use {new}", err=True)
        return value

    return warn


def _either(new_name: str, new, old_name: str, old):
    if new is not None and old is not None and new != old:
        raise BadInput(f"{new_name} {new} and {old_name} {old} disagree: give {new_name} only")
    return new if new is not None else old


@click.group(cls=_Group)
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default="http://127.0.0.1:5000", show_default=True)
@click.version_option(program.version(), "--version", prog_name="edgeq", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str) -> None:
    """List, compare, promote and roll back edgeq model versions.

    Exit codes: 0 ok, 1 unexpected, 2 bad input (unknown model, version, alias or device; bad option),
    3 server unreachable, 4 refused by a check (promotion gate, canary evidence).
    """
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
    from registry_tools import compare_plot  # matplotlib: only for this command

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
@click.option("--max-accuracy-drop", type=float, default=contract.DEFAULT_MAX_ACCURACY_DROP, show_default=True, help="Refuse versions losing more accuracy points than this; with --from, when given, also devices whose sample accuracy lies more points below the registered one.")
@click.option("--tflite-version", default=None, metavar="X.Y[.Z]",
              help="TensorFlow Lite version the devices run (LiteRT 2.x counts as 2.20); refuse models needing a newer one.")
@click.option("--runtime-version", "old_runtime_version", default=None, hidden=True,
              callback=_deprecated("--tflite-version"))
@click.option("--force", is_flag=True, help="Promote despite the gate.")
@click.option("--best", is_flag=True, help="Pick the version fastest on --device-id within the accuracy budget.")
@click.option("--device-id", default=None, help="Device whose measured latency decides --best.")
@click.option("--device", "old_device", default=None, hidden=True, callback=_deprecated("--device-id"))
@click.option("--from", "from_alias", default=None, metavar="ALIAS", help="Promote the version behind ALIAS (e.g. canary) on what its devices reported.")
@click.option("--require-devices", type=int, default=None, help="With --from: devices that must have reported it healthy within the limits.")
@click.option("--max-p99-ms", multiple=True, metavar="DEVICE_OR_ALL=MS", help="With --from: p99 limit for one device or 'all' (repeatable).")
@click.option("--max-rss-mb", type=float, default=None, help="With --from: peak RSS limit for every device.")
@click.option("--reason", default="", help="Why, kept in the alias history (edgeq history).")
@click.pass_context
def promote(ctx: click.Context, model: str, version: str | None, alias: str, max_accuracy_drop: float,
            tflite_version: str | None, old_runtime_version: str | None, force: bool, best: bool, device_id: str | None,
            old_device: str | None, from_alias: str | None,
            require_devices: int | None, max_p99_ms: tuple[str, ...], max_rss_mb: float | None, reason: str) -> None:
    """Point ALIAS (default production) at VERSION, at the best version for a device, or at the canary's version."""
    client: MlflowClient = ctx.obj
    runtime_version = _either("--tflite-version", tflite_version, "--runtime-version", old_runtime_version)
    device = _either("--device-id", device_id, "--device", old_device)
    if from_alias is not None or require_devices is not None or max_p99_ms or max_rss_mb is not None:
        explicit_drop = ctx.get_parameter_source("max_accuracy_drop") != click.core.ParameterSource.DEFAULT
        _check_from(from_alias, alias, version, best)
        limits = canary_limits(require_devices, max_accuracy_drop if explicit_drop else None, max_p99_ms, max_rss_mb)
        _promote_from(client, model, from_alias, alias, limits, promotion.Gate(max_accuracy_drop, runtime_version, force), reason)
        return
    if best == (version is not None):
        raise click.UsageError("give either VERSION or --best --device-id ID")
    if best:
        if not device:
            raise click.UsageError("--best needs --device-id ID")
        choice = promotion.best_for_device(client, model, device, max_accuracy_drop)
        click.echo(choice.reason)
        version = choice.row.version
    gate = promotion.Gate(max_accuracy_drop, runtime_version, force)
    result = promotion.promote(client, model, version, alias, gate, reason)
    _echo_promotion(model, alias, result)


@main.command()
@click.argument("model")
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True)
@click.option("--reason", default="", help="Why, kept in the alias history (edgeq history).")
@click.pass_obj
def rollback(client: MlflowClient, model: str, alias: str, reason: str) -> None:
    """Move ALIAS back to the version it pointed to before."""
    result = promotion.rollback(client, model, alias, reason)
    click.echo(f"{model}: {alias} rolled back from v{result.previous} to v{result.version}")


class BadInput(click.ClickException):
    """One line, exit code 2."""

    exit_code = int(contract.ExitCode.BAD_CONFIG)


class Refused(click.ClickException):
    """A check said no: one line, exit code 4."""

    exit_code = int(contract.ExitCode.REJECTED)


def canary_limits(require_devices: int | None, max_accuracy_drop: float | None, max_p99_ms: tuple[str, ...],
                  max_rss_mb: float | None) -> canary.Limits:
    if require_devices is None or require_devices < 1:
        raise BadInput("--from needs --require-devices N (N ≥ 1): how many devices must have reported the version healthy")
    if max_rss_mb is not None and not max_rss_mb > 0:
        raise BadInput(f"--max-rss-mb must be above 0, got {max_rss_mb:g}")
    if max_accuracy_drop is not None and max_accuracy_drop < 0:
        raise BadInput(f"--max-accuracy-drop must be 0 or more points, got {max_accuracy_drop:g}")
    # A bad --max-p99-ms raises ValueError: the group makes it BadInput.
    return canary.Limits(require_devices, max_accuracy_drop, canary.parse_p99_limits(max_p99_ms), max_rss_mb)


def _check_from(from_alias: str | None, alias: str, version: str | None, best: bool) -> None:
    if from_alias is None:
        raise BadInput("--require-devices, --max-p99-ms and --max-rss-mb go with --from ALIAS, e.g. --from canary")
    if version is not None or best:
        raise BadInput("--from takes the version behind the alias: drop VERSION / --best")
    if from_alias == alias:
        raise BadInput(f"--from {from_alias} and --alias {alias} are the same alias; promote to another one, e.g. --alias {contract.DEFAULT_ALIAS}")


def _promote_from(client: MlflowClient, model: str, from_alias: str, alias: str, limits: canary.Limits,
                  gate: promotion.Gate, reason: str) -> None:
    """``promote --from canary``: the canary's version moves on when enough devices reported it healthy."""
    found = evidence.for_alias(client, model, from_alias)  # unknown model or alias: RegistryToolError, bad input
    decision = canary.decide(found.version, found.reports, limits, found.registered_accuracy)
    click.echo(f"{model}: {from_alias} is at v{found.version}; {alias} needs {limits.describe()}")
    width = max((len(v.device) for v in decision.verdicts), default=0)
    for verdict in decision.verdicts:
        click.echo(f"  {'counted' if verdict.counted else 'not counted':<11}  {verdict.device:<{width}}  {verdict.why}")
    if not decision.verdicts:
        click.echo(f"  no device has reported on v{found.version}'s run yet")
    counted = f"{len(decision.counted)} device(s) count, {limits.required} required"
    if not decision.approved and not gate.force:
        raise Refused(f"refused: {counted}; nothing changed (wait for more canary devices, or --force)")
    click.echo(f"{counted}{'' if decision.approved else ' — promoting anyway (--force)'}")
    why = "; ".join(part for part in (reason, decision.summary()) if part)
    result = promotion.promote(client, model, found.version, alias, gate, why)
    _echo_promotion(model, alias, result)


def _echo_promotion(model: str, alias: str, result: promotion.Promotion) -> None:
    stage = " (stage Production set too)" if result.stage_set else ""
    click.echo(f"{model}: {alias} → v{result.version}{stage}; was {('v' + result.previous) if result.previous else 'unset'}")


@main.command("history")
@click.argument("model")
@click.option("--alias", default=None, help="Only the changes of this alias.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history_command(client: MlflowClient, model: str, alias: str | None, as_json: bool) -> None:
    """Every promotion and rollback of MODEL: when, who, which alias, from which version to which, why, forced."""
    events = alias_history.read(client, model, alias)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in reversed(events)], indent=2, ensure_ascii=False))
    else:
        click.echo(alias_history.format_table(events))


@main.command("fleet")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Call a device stale when it has not been seen for this many of its run intervals.")
@click.pass_obj
def fleet_command(client: MlflowClient, model: str, as_json: bool, stale_after: float) -> None:
    """Every device running MODEL: alias, version, last seen, p50/p99, sample accuracy, status."""
    rows = fleet_view.collect(client, model, stale_after)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        click.echo(fleet_view.format_table(rows))


@main.command("keygen", cls=click.Command)  # no server needed
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen_command(path: Path) -> None:
    """Write a new Ed25519 signing key pair: PATH (private, mode 600, for the pipeline's --signing-key)
    and PATH.pub (for the devices' --trust-key)."""
    from edge import signing

    fingerprint = signing.keygen(path)  # SigningKeyError is a ValueError: bad input
    click.echo(f"wrote {path} (private: keep it with the pipeline, never on a device) and {path}.pub (for the devices)")
    click.echo(f"fingerprint {fingerprint}")
