"""``edgeq``: the command for whoever decides what ships."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from edge import contract
from edge.limits import parse_p99
from edge.registry_client import AuthError, RegistryError, ServerUnreachable, check_server, redact_uri
from registry_tools import program

# Before anything imports mlflow: an [edge]-only install gets one line naming the extra, not a traceback.
program.require_registry_extra()

# An unreachable server should fail in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from registry_tools import aggregate, canary, evidence, judge, promotion  # noqa: E402
from registry_tools import fleet as fleet_view  # noqa: E402
from registry_tools import history as alias_history  # noqa: E402
from registry_tools.rest_client import ApiError, RestClient  # noqa: E402
from registry_tools.lookup import GateRefused, RegistryToolError  # noqa: E402
from registry_tools.versions import collect, format_table  # noqa: E402

MlflowClient = Any  # what the commands receive: registry_tools.rest_client.RestClient or mlflow's MlflowClient
_NEEDS_MLFLOW = {"webhook"}  # MLflow's webhook API: through mlflow's own client
# MLflow client settings the REST client does not implement: with any of them set, mlflow's own client is used.
_MLFLOW_ONLY_SETTINGS = ("MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_AUTH", "MLFLOW_ENABLE_DB_SDK")

# MLflow error codes that mean the user named something that is not there, or named it badly.
_INPUT_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")


class Raced(click.ClickException):
    """Another move of the alias raced this one: nothing overwritten, one line, exit code 8."""

    exit_code = int(contract.ExitCode.RACED)


class Unreachable(click.ClickException):
    """The server cannot be reached or keeps failing: one line, exit code 3."""

    exit_code = int(contract.ExitCode.UNREACHABLE)


def _mlflow_error(exc: Exception) -> click.ClickException:
    """MlflowException or rest_client.ApiError (both carry ``error_code`` and ``message``) → one line."""
    message, code = getattr(exc, "message", "") or "", getattr(exc, "error_code", "")
    first = f"MLflow: {message.splitlines()[0] if message else code}"
    if code in _INPUT_ERRORS:
        return BadInput(first)
    if "API request to" in first:  # MLflow's client gave up on the connection or on 5xx answers
        return Unreachable(first)
    return click.ClickException(first)


def uses_rest(tracking_uri: str, command: str | None) -> bool:
    """The REST client over plain http(s) — a command starts in a fraction of a second instead of importing
    mlflow (~3 s) — and mlflow's own client for other URIs (file, sqlite, databricks…), the webhook commands and
    client settings only mlflow implements (a client certificate, an auth plugin)."""
    plain_http = tracking_uri.startswith(("http://", "https://")) and redact_uri(tracking_uri) == tracking_uri
    return plain_http and command not in _NEEDS_MLFLOW and not any(os.environ.get(v) for v in _MLFLOW_ONLY_SETTINGS)


def registry_client(tracking_uri: str, command: str | None) -> MlflowClient:
    if uses_rest(tracking_uri, command):
        return RestClient(tracking_uri)
    from mlflow.tracking import MlflowClient as Full

    return Full(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_mlflow_exception(exc: Exception) -> bool:
    exceptions = sys.modules.get("mlflow.exceptions")  # never imported: it cannot be one
    return exceptions is not None and isinstance(exc, exceptions.MlflowException)


class _ServerCommand(click.Command):
    """Checks the server when the command runs: after parsing, so ``edgeq CMD --help`` needs no server."""

    def invoke(self, ctx: click.Context):
        ctx.params = _one_model(ctx.params)  # a usage error is found before the server is asked
        check_server(ctx.find_root().params["tracking_uri"])
        return super().invoke(ctx)


class _Group(click.Group):
    """Expected failures become one line and an exit code from edge.contract.ExitCode."""

    command_class = _ServerCommand

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        with formatter.section("Exit codes"):  # the same list as edgeq-pull --help
            formatter.write_dl([(str(int(code)), meaning) for code, meaning in contract.EXIT_MEANINGS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GateRefused as exc:
            raise Refused(str(exc)) from None
        except promotion.AliasRaced as exc:
            raise Raced(str(exc)) from None
        except (RegistryToolError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        except ServerUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except AuthError as exc:
            raise BadInput(f"MLflow: {exc.detail or exc} — the server refused the credentials or this user's permission; "
                           "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)") from None
        except ApiError as exc:
            raise _mlflow_error(exc) from None
        except RegistryError as exc:  # TLS failure, an oversized answer: one line
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            if _is_mlflow_exception(exc):
                raise _mlflow_error(exc) from None
            raise


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


def model_arguments(with_version: bool = False):
    """MODEL [VERSION] as arguments (short, what the docs show) or as ``--model`` / ``--model-version`` (as in edgeq-pull).

    The command receives ``model`` (and ``version``). A name given both ways, or no model at all, is a
    one-line error, exit 2; $EDGEQ_MODEL fills in a model left out.
    """

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            return f(*args, **_one_model(kwargs))

        params = [click.argument("model_arg", metavar="MODEL", required=False),
                  click.option("--model", "model_opt", metavar="NAME", default=None,
                               help="The registered model, instead of MODEL ($EDGEQ_MODEL).")]
        if with_version:
            params += [click.argument("version_arg", metavar="[VERSION]", required=False),
                       click.option("--model-version", "version_opt", metavar="N", default=None,
                                    help="The model version, instead of VERSION ($EDGEQ_MODEL_VERSION).")]
        for param in reversed(params):
            command = param(command)
        return command

    return decorate


def _one_model(params: dict) -> dict:
    """``model_arguments``' raw values → ``model`` (and ``version``); idempotent."""
    if "model_arg" not in params:
        return params
    params = dict(params)
    arg, opt = params.pop("model_arg"), params.pop("model_opt")
    if arg is not None and opt is not None:
        raise BadInput(f"the model is given twice (MODEL {arg} and --model {opt}): give one of them")
    model = arg if arg is not None else opt if opt is not None else os.environ.get("EDGEQ_MODEL")
    if not model:
        raise BadInput("no model: give MODEL or --model NAME (or set EDGEQ_MODEL)")
    params["model"] = model
    if "version_arg" in params:
        arg, opt = params.pop("version_arg"), params.pop("version_opt")
        if arg is not None and opt is not None:
            raise BadInput(f"the version is given twice (VERSION {arg} and --model-version {opt}): give one of them")
        params["version"] = arg if arg is not None else opt
    return params


def accept_unsigned_option(f):
    """``--accept-unsigned``: the same words wherever device evidence is read."""
    return click.option("--accept-unsigned", is_flag=True, envvar="EDGEQ_ACCEPT_UNSIGNED",
                        help="Also count device reports without a verified signature (fleets not enrolled, pullers "
                             "from before signing); every output then says it did ($EDGEQ_ACCEPT_UNSIGNED).")(f)


def _echo_notes(notes: list[str] | tuple[str, ...]) -> None:
    for note in notes:
        click.echo(f"  note: {note}")


@click.group(cls=_Group)
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default="http://127.0.0.1:5000", show_default=True,
              help="MLflow server ($MLFLOW_TRACKING_URI).")
@click.version_option(program.version(), "--version", prog_name="edgeq", message="%(prog)s %(version)s",
                      help="Print the program's version and exit.")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str) -> None:
    """List, compare, promote and roll back edgeq model versions.

    Every command that takes MODEL [VERSION] also takes --model NAME [--model-version N], as edgeq-pull does.
    """
    ctx.obj = registry_client(tracking_uri, ctx.invoked_subcommand)


@main.command()
@model_arguments()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--devices", "per_device", is_flag=True,
              help="Also a p50 column per device (read from the device runs, capped; edgeq fleet lists devices).")
@accept_unsigned_option
@click.pass_obj
def versions(client: MlflowClient, model: str, as_json: bool, per_device: bool = False, accept_unsigned: bool = False) -> None:
    """Every version of MODEL with accuracy, size, host latency, fleet aggregates, aliases."""
    notes: list[str] = []
    rows = collect(client, model, devices=per_device, notes=notes, accept_unsigned=accept_unsigned)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        click.echo(format_table(rows, notes))


@main.command()
@model_arguments()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG path (default MODEL-compare.png).")
@click.pass_obj
def compare(client: MlflowClient, model: str, output: Path | None) -> None:
    """Plot accuracy against latency (host and each device) and mark the Pareto-optimal versions."""
    from registry_tools import compare_plot  # matplotlib: only for this command

    rows = collect(client, model, devices=True)  # per-device series come from the device runs
    output = output or Path(f"{model}-compare.png")
    fronts = compare_plot.plot(rows, output, model)
    for series, front in sorted(fronts.items()):
        click.echo(f"Pareto-optimal on {series}: " + ", ".join(f"v{v}" for v in sorted(front, key=int)))
    click.echo(f"wrote {output}")


@main.command()
@model_arguments(with_version=True)
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
    runtime_version = _either("--tflite-version", tflite_version, "--runtime-version", old_runtime_version)
    device = _either("--device-id", device_id, "--device", old_device)
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
    _echo_promotion(model, alias, result)


@main.command()
@model_arguments()
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
    _echo_notes([verdict.window.describe(), *verdict.notes])  # never a silent cap, never a silent unsigned vote
    _echo_votes([("counted", v) for v in decision.counted] + [("not counted", v) for v in decision.not_counted], 11,
                f"no device has reported on v{verdict.version} yet")
    counted = f"{len(decision.counted)} device(s) count, {required} required"
    if decision.capped:
        counted += f" ({verdict.reason})"
    if not decision.approved and not gate.force:
        raise Refused(f"refused: {counted}; nothing changed (wait for more canary devices, or --force)")
    click.echo(f"{counted}{'' if decision.approved else ' — promoting anyway (--force)'}")
    why = "; ".join(part for part in (reason, decision.summary()) if part)
    result = promotion.promote(client, model, verdict.version, alias, gate, why, override_guard)
    _echo_promotion(model, alias, result)


_SHOWN = 20  # devices listed per kind of vote without --explain


def _echo_votes(lines: list[tuple[str, judge.Vote]], label_width: int, none_yet: str, show_all: bool = False) -> None:
    """One line per device (at most _SHOWN per label unless ``show_all``): label, device, why."""
    shown: list[tuple[str, str, str]] = []
    hidden: dict[str, int] = {}
    for label, v in lines:
        if show_all or sum(1 for s in shown if s[0] == label) < _SHOWN:
            shown.append((label, v.device, v.why))
        else:
            hidden[label] = hidden.get(label, 0) + 1
    _echo_devices(shown, label_width, none_yet)
    for label, n in hidden.items():
        click.echo(f"  … and {n} more {label} (--explain lists every device)")


def _echo_devices(lines: list[tuple[str, str, str]], label_width: int, none_yet: str) -> None:
    """One line per device: its verdict's label, the device, why — or ``none_yet`` when no device reported."""
    width = max((len(device) for _, device, _ in lines), default=0)
    for label, device, why in lines:
        click.echo(f"  {label:<{label_width}}  {device:<{width}}  {why}")
    if not lines:
        click.echo(f"  {none_yet}")


def _echo_promotion(model: str, alias: str, result: promotion.Promotion) -> None:
    stage = " (stage Production set too)" if result.stage_set else ""
    click.echo(f"{model}: {alias} → v{result.version}{stage}; was {('v' + result.previous) if result.previous else 'unset'}")


@main.command("history")
@model_arguments()
@click.option("--alias", default=None, help="Only the changes of this alias.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history_command(client: MlflowClient, model: str, alias: str | None, as_json: bool) -> None:
    """Every promotion and rollback of MODEL, and every alias move made outside edgeq ("outside edgeq"):
    when, who, which alias, from which version to which, why, forced."""
    events = alias_history.read(client, model, alias)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in reversed(events)], indent=2, ensure_ascii=False))
    else:
        click.echo(alias_history.format_table(events))


@main.command("fleet")
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
@click.pass_obj
def fleet_command(client: MlflowClient, model: str, as_json: bool, stale_after: float, running_version: str | None = None,
                  last_status: str | None = None, only_device: str | None = None, limit: int = fleet_view.DEFAULT_LIMIT,
                  max_clock_skew: float = contract.CLOCK_SKEW_LIMIT_S, accept_unsigned: bool = False) -> None:
    """Every device running MODEL: alias, version, last seen, p50/p99, sample accuracy, clock, status."""
    query = fleet_view.Query(running_version, last_status, only_device, limit)
    found = fleet_view.read(client, model, stale_after, query, max_skew_s=max_clock_skew, accept_unsigned=accept_unsigned)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in found.rows], indent=2))
        for note in found.notes():
            click.echo(note, err=True)
    else:
        click.echo(fleet_view.format_table(found.rows, notes=found.notes()))


@main.command("aggregate")
@model_arguments()
@click.option("--max-devices", type=click.IntRange(min=1), default=aggregate.DEFAULT_MAX_DEVICES, show_default=True,
              help="Read at most this many device runs in one pass; past it nothing is written and the command says so.")
@click.option("--full", is_flag=True, help="Recompute every version from all device runs, not only what changed since "
              "the last pass (a first pass is full by itself).")
@click.option("--every", "every_minutes", type=click.FloatRange(min=0, min_open=True),
              default=contract.DEFAULT_AGGREGATE_EVERY_MINUTES, show_default=True,
              help="Minutes between passes on this timer: `edgeq versions` marks the aggregates stale past it.")
@click.option("--dry-run", is_flag=True, help="Print the aggregates without writing them (nor the watermark).")
@accept_unsigned_option
@click.pass_obj
def aggregate_command(client: MlflowClient, model: str, max_devices: int, full: bool, every_minutes: float,
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


@main.command("keygen", cls=click.Command)  # no server needed
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen_command(path: Path) -> None:
    """Write a new Ed25519 signing key pair: PATH (private, mode 600, for the pipeline's --signing-key)
    and PATH.pub (for the devices' --trust-key)."""
    from edge import signing

    fingerprint = signing.keygen(path)  # SigningKeyError is a ValueError: bad input
    click.echo(f"wrote {path} (private: keep it with the pipeline, never on a device) and {path}.pub (for the devices)")
    click.echo(f"fingerprint {fingerprint}")


# --- edgeq guard -------------------------------------------------------------------------------------------------
@main.command("guard")
@model_arguments()
@click.option("--alias", default=contract.DEFAULT_ALIAS, show_default=True, help="The alias to guard.")
@click.option("--min-devices", type=int, default=contract.DEFAULT_GUARD_MIN_DEVICES, show_default=True,
              help="Devices that must have voted in the window (healthy or rejected) before the guard acts; fewer: hold.")
@click.option("--max-rejected-fraction", type=float, default=contract.DEFAULT_GUARD_MAX_REJECTED_FRACTION,
              show_default=True, help="Move the alias back when more than this share (plus --margin) of the voting devices is against the version.")
@click.option("--margin", type=float, default=contract.DEFAULT_GUARD_MARGIN, show_default=True,
              help="A share against above --max-rejected-fraction by at most this much is mixed evidence: hold.")
@click.option("--max-accuracy-drop", type=float, default=None,
              help="A device whose sample accuracy lies more points below the registered one is against the version.")
@click.option("--max-p99-ms", multiple=True, metavar="[DEVICE=]MS",
              help="A device whose p99 is above this is against the version (DEVICE=MS, all=MS or MS; repeatable); "
                   "throttled measurements are not judged on latency.")
@click.option("--max-rss-mb", type=float, default=None, help="A device whose peak RSS is above this is against the version.")
@click.option("--max-slowdown", type=float, default=None,
              help="Roll back when the median over devices of p50 on the version / p50 on the replaced version (same "
                   "device, unthrottled, at least --min-devices pairs) is above this (plus 5 %).")
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
def guard_command(client: MlflowClient, model: str, alias: str, min_devices: int, max_rejected_fraction: float,
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

    limits = judge.Limits(min_devices, max_rejected_fraction, margin, max_accuracy_drop, parse_p99(max_p99_ms),
                          max_rss_mb, max_slowdown)  # ValueError: bad input
    policy = guard_mod.Policy(consecutive, fresh_reports, cooldown_s)
    outcome = guard_mod.guard(client, model, alias, limits, policy, dry_run, accept_unsigned)
    for event in outcome.noticed:
        click.echo(f"{model}: noticed {event.alias} moved outside edgeq: {event.reason}")
    verdict = outcome.verdict
    if explain:
        click.echo(judge.table(verdict))
    else:
        replaced = f" (replaced v{verdict.replaced})" if verdict.replaced else ""
        click.echo(f"{model}: {alias} is at v{verdict.version}{replaced}; guard needs {limits.describe()}")
        _echo_notes([verdict.window.describe(), *verdict.notes])
        _echo_votes([("against", v) for v in verdict.against] + [("accepts", v) for v in verdict.accepting], 7,
                    f"no device voted on v{verdict.version} in the window yet")
        if verdict.excluded:
            click.echo(f"  ({len(verdict.excluded)} report(s) outside the window or without a vote: --explain lists them)")
    _echo_notes(outcome.notes)
    click.echo(f"{model}: {outcome.message}")
    if outcome.exit_code != contract.ExitCode.OK:
        raise SystemExit(int(outcome.exit_code))


# --- edgeq webhook (MLflow registry webhooks → the alias history) ------------------------------------------
@main.group("webhook", cls=click.Group)
def webhook_group() -> None:
    """Record alias moves made outside edgeq as they happen, from MLflow's registry webhooks (MLflow ≥ 3.3, SQL backend)."""


def _secret(env: str) -> str:
    value = os.environ.get(env, "")
    if not value:
        raise BadInput(f"${env} is empty: put the webhook secret there (never on the command line), e.g. export {env}=$(openssl rand -hex 32)")
    return value


@webhook_group.command("register", cls=_ServerCommand)
@click.argument("url")
@click.option("--secret-env", default="EDGEQ_WEBHOOK_SECRET", show_default=True, help="Environment variable holding the HMAC secret.")
@click.pass_obj
def webhook_register(client: MlflowClient, url: str, secret_env: str) -> None:
    """Ask the MLflow server to post alias events to URL (where `edgeq webhook serve` listens), signed with the secret."""
    from registry_tools import webhook

    hook_id, created = webhook.register(client, url, _secret(secret_env))
    click.echo(f"{'created' if created else 'updated'} webhook {hook_id}: {', '.join(webhook.EVENTS)} → {url}")


@webhook_group.command("serve", cls=_ServerCommand)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--secret-env", default="EDGEQ_WEBHOOK_SECRET", show_default=True, help="Environment variable holding the HMAC secret.")
@click.pass_obj
def webhook_serve(client: MlflowClient, host: str, port: int, secret_env: str) -> None:
    """Receive MLflow's signed alias events and record moves the history cannot explain (runs until stopped)."""
    import logging

    from registry_tools import webhook

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    httpd = webhook.server(webhook.Receiver(client, _secret(secret_env)), host, port)
    click.echo(f"edgeq webhook: listening on http://{host}:{port}/ for {', '.join(webhook.EVENTS)}")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


# --- edgeq device: who may speak for the fleet ---------------------------------------------------------------------------
@main.group("device", cls=_Group)
def device_group() -> None:
    """Enrol the devices whose signed reports count (each device's own key, for the models it may report on)."""


@device_group.command("enroll")
@click.argument("device_id")
@click.option("--key", "key_text", required=True, metavar="ed25519:BASE64",
              help="The device's public key, as `edgeq-pull identity` prints it on the device.")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME",
              help="A registered model the device may report on (repeatable).")
@click.pass_obj
def device_enroll(client: MlflowClient, device_id: str, key_text: str, models: tuple[str, ...]) -> None:
    """Count DEVICE_ID's signed reports on the given models (replaces an earlier enrolment of the device)."""
    from registry_tools import enrolment

    done = enrolment.enroll(client, device_id, key_text, models)
    click.echo(f"enrolled {done.device} for {', '.join(models)} (key {key_text.strip()[:20]}…, by {done.by})")


@device_group.command("revoke")
@click.argument("device_id")
@click.pass_obj
def device_revoke(client: MlflowClient, device_id: str) -> None:
    """Stop counting DEVICE_ID's reports, from the next decision on (its record stays, marked revoked)."""
    from registry_tools import enrolment

    done = enrolment.revoke(client, device_id)
    click.echo(f"revoked {done.device} on {done.revoked_at}: its reports no longer count")


@device_group.command("list")
@click.option("--model", default=None, metavar="NAME", help="Only the devices enrolled for this model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def device_list(client: MlflowClient, model: str | None, as_json: bool) -> None:
    """Every enrolled device: its key, its models, when and by whom, revoked or not."""
    from registry_tools import enrolment
    from registry_tools.table import render

    model_filter = model
    found = [e for e in enrolment.read(client).devices.values() if model is None or model in e.models]
    if as_json:
        click.echo(json.dumps([{"device": e.device, "keys": e.keys, "models": list(e.models), "enrolled_at": e.enrolled_at,
                                "by": e.by, "revoked_at": e.revoked_at or None} for e in found], indent=2))
        return
    if not found:
        click.echo("no device enrolled (on the device: edgeq-pull identity; then: edgeq device enroll ID --key … --model …)")
        return
    def when(iso: str) -> str:  # to the minute, UTC: the table fits 100 columns
        return iso[:16].replace("T", " ") or "—"

    rows = [[e.device, model, key[:12] + "…", when(e.enrolled_at), e.by, when(e.revoked_at)]
            for e in found for model, key in sorted(e.keys.items()) if model_filter in (None, model)]
    click.echo("\n".join(render(["device", "model", "key", "enrolled", "by", "revoked"], rows)))


@device_group.command("accept-unsigned")
@model_arguments()
@click.option("--off", is_flag=True, help="Count only signed reports from enrolled devices again.")
@click.pass_obj
def device_accept_unsigned(client: MlflowClient, model: str, off: bool) -> None:
    """Count reports without a verified signature for MODEL in every decision (pullers from before signing), until --off."""
    from registry_tools import enrolment

    enrolment.set_accept_unsigned(client, model, not off)
    click.echo(f"{model}: unsigned device reports {'no longer count' if off else 'COUNT in every decision (and every output says so)'}")
