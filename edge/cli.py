"""``edgeq-pull``: the device's command, run from cron or a systemd timer."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import click

from edge import contract
from edge.contract import ExitCode
from edge.device_info import stable_device_id
from edge.gate import GateLimits
from edge.puller import PullConfig, pull
from edge.registry_client import Credentials, Deadline, RegistryClient, check_tracking_uri, tls_verify_from_env
from edge.schedule import cron_line, install_cron_line, schedule_key, systemd_units
from edge.runtime import RUNTIME_PACKAGES
from edge.state import path_component

log = logging.getLogger("edgeq-pull")

_STATE_BASE = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "edgeq"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from edge.doctor import gather

        click.echo(gather().version_line())
        ctx.exit(ExitCode.OK)


def _model_version_from_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None and os.environ.get("EDGEQ_VERSION"):
        click.echo("edgeq-pull: EDGEQ_VERSION is deprecated, use EDGEQ_MODEL_VERSION (--model-version)", err=True)
        value = os.environ["EDGEQ_VERSION"]
    return value


@click.group(invoke_without_command=True, context_settings={"auto_envvar_prefix": "EDGEQ"})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the program's version, its TFLite runtime and NumPy, and exit.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None, help="MLflow server, e.g. http://mlflow.lan:5000 ($MLFLOW_TRACKING_URI). No credentials in it: use --credentials-file.")
@click.option("--model", "model", envvar="EDGEQ_MODEL", default=None, help="Registered model name ($EDGEQ_MODEL).")
@click.option("--alias", envvar="EDGEQ_ALIAS", default=contract.DEFAULT_ALIAS, show_default=True, help="Alias to follow (e.g. canary).")
@click.option("--model-version", "model_version", envvar="EDGEQ_MODEL_VERSION", default=None, callback=_model_version_from_env, help="Pin a model version number instead of following the alias.")
@click.option("--device-id", envvar="EDGEQ_DEVICE_ID", default=None, help="Name of this device in metric keys  [default: edge-<hash of the Pi serial or /etc/machine-id>]")
@click.option("--state-dir", envvar="EDGEQ_STATE_DIR", type=click.Path(path_type=Path), default=None, help=f"Where models, state and the outbox live  [default: {_STATE_BASE}/<model>]")
@click.option("--runs", envvar="EDGEQ_RUNS", type=click.IntRange(1), default=100, show_default=True, help="Timed inferences.")
@click.option("--warmup", envvar="EDGEQ_WARMUP", type=click.IntRange(0), default=10, show_default=True)
@click.option("--threads", envvar="EDGEQ_THREADS", type=click.IntRange(1), default=None, help="Interpreter threads (runtime default if unset).")
@click.option("--runtime", envvar="EDGEQ_RUNTIME", type=click.Choice(RUNTIME_PACKAGES), default=None, help="Force a runtime package.")
@click.option("--lock-wait", envvar="EDGEQ_LOCK_WAIT", type=click.FloatRange(0), default=0.0, help="Seconds to wait for another run's lock.")
@click.option("--deadline", envvar="EDGEQ_DEADLINE", type=click.FloatRange(1), default=900.0, show_default=True, help="Seconds the network part of a run may take in all; then it exits 3.")
@click.option("--credentials-file", envvar="EDGEQ_CREDENTIALS_FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="KEY=VALUE file with MLFLOW_TRACKING_TOKEN or USERNAME/PASSWORD; mode 600.")
@click.option("--trust-key", envvar="EDGEQ_TRUST_KEY", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Ed25519 public key (edgeq keygen): accept only versions whose manifest it signed.")
@click.option("--min-sample-accuracy", envvar="EDGEQ_MIN_SAMPLE_ACCURACY", type=click.FloatRange(0, 1), default=None, help="Health gate: reject below this sample accuracy (on top of the binomial bound).")
@click.option("--max-p99-ms", envvar="EDGEQ_MAX_P99_MS", type=click.FloatRange(0, min_open=True), default=None, help="Health gate: reject a p99 latency above this.")
@click.option("--max-rss-mb", envvar="EDGEQ_MAX_RSS_MB", type=click.FloatRange(0, min_open=True), default=None, help="Health gate: reject a peak RSS above this.")
@click.option("--max-slowdown", envvar="EDGEQ_MAX_SLOWDOWN", type=click.FloatRange(0, min_open=True), default=None, help="Health gate: reject a p50 more than this many times the replaced version's, measured here.")
@click.option("--on-change", envvar="EDGEQ_ON_CHANGE", default=None, help="Shell command run after a new version became current; failing rolls back.")
@click.option("--hook-timeout", envvar="EDGEQ_HOOK_TIMEOUT", type=click.FloatRange(1), default=120.0, show_default=True, help="Seconds the --on-change command may take.")
@click.option("--every", "every_minutes", envvar="EDGEQ_EVERY", type=click.IntRange(1), default=contract.DEFAULT_INTERVAL_MINUTES, show_default=True, help="Minutes between runs (the fleet view calls a device stale after a few missed runs).")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str | None, model: str | None, alias: str, model_version: str | None,
         device_id: str | None, state_dir: Path | None, runs: int, warmup: int, threads: int | None,
         runtime: str | None, lock_wait: float, deadline: float, credentials_file: Path | None, trust_key: Path | None,
         min_sample_accuracy: float | None, max_p99_ms: float | None, max_rss_mb: float | None,
         max_slowdown: float | None, on_change: str | None, hook_timeout: float, every_minutes: int) -> None:
    """Pull the model behind ALIAS, verify, check its health on this device, benchmark and report back to its run."""
    if ctx.invoked_subcommand == "doctor":
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s edgeq-pull %(levelname)s %(message)s")
    problem = _missing(tracking_uri, model)
    try:
        if problem:
            raise ValueError(problem)
        tracking_uri = check_tracking_uri(tracking_uri)
        state_dir = (state_dir or _STATE_BASE / path_component(model)).expanduser().resolve()
        device_id = contract.sanitize_device_id(device_id or stable_device_id())
        if model_version is not None:
            model_version = contract.check_version_number(model_version)
    except ValueError as exc:
        _fail(f"bad configuration: {exc}")
    ctx.obj = {"state_dir": state_dir, "model": model, "alias": alias, "every": every_minutes,
               "argv": _command_line(ctx, tracking_uri, state_dir)}
    if ctx.invoked_subcommand is not None:
        return
    try:
        creds = Credentials.from_file(credentials_file) if credentials_file else Credentials.from_env()
        client = RegistryClient(tracking_uri, creds, tls_verify_from_env(), Deadline(deadline))
        if trust_key:
            from edge.signing import load_public_key

            load_public_key(trust_key)
    except ImportError as exc:
        _fail(f"--trust-key needs the cryptography package ({exc}): pip install \"edgeq[edge]\"")
    except (ValueError, PermissionError, OSError) as exc:
        _fail(f"bad configuration: {exc}")
    config = PullConfig(
        model=model, state_dir=state_dir, device_id=device_id, alias=alias, version=model_version, runs=runs,
        warmup=warmup, threads=threads, lock_wait_s=lock_wait, runtime=runtime,
        gate=GateLimits(min_sample_accuracy, max_p99_ms, max_rss_mb, max_slowdown),
        on_change=on_change, hook_timeout_s=hook_timeout, interval_s=every_minutes * 60,
        trust_key=trust_key.resolve() if trust_key else None,
    )
    outcome = pull(config, client)
    (log.info if outcome.code in (ExitCode.OK, ExitCode.BUSY) else log.error)(
        "%s (device %s, exit %d)", outcome.message, device_id, outcome.code)
    sys.exit(int(outcome.code))


@main.command()
@click.option("--every", "every_minutes", type=click.IntRange(1), default=None, help="Interval in minutes (default: the group's --every, 15).")
@click.option("--systemd", is_flag=True, help="Print a systemd service and timer instead of a crontab line.")
@click.option("--install", is_flag=True, help="Put the line into this user's crontab, replacing only this puller's line (cron only).")
@click.option("--log-file", default=None, help="Append output here instead of syslog (cron only).")
@click.pass_context
def schedule(ctx: click.Context, every_minutes: int | None, systemd: bool, install: bool, log_file: str | None) -> None:
    """Print (or install) how to run this exact command on an interval.

    One line per (model, alias, state dir): installing again replaces that line only.
    """
    every = every_minutes or ctx.obj["every"]
    command = ctx.obj["argv"]
    if "--every" not in command:
        command = command + ["--every", str(every)]
    else:
        command[command.index("--every") + 1] = str(every)
    if systemd:
        for name, text in systemd_units(command, every).items():
            click.echo(f"# /etc/systemd/system/{name}\n{text}")
        click.echo("# then: sudo systemctl daemon-reload && sudo systemctl enable --now edgeq-pull.timer")
        return
    key = schedule_key(ctx.obj["model"], ctx.obj["alias"], str(ctx.obj["state_dir"]))
    try:
        line = cron_line(command, every, key, log_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(line)
    if install:
        install_cron_line(line, key)
        click.echo("installed in crontab", err=True)


def _missing(tracking_uri: str | None, model: str | None) -> str | None:
    if not tracking_uri:
        return "no tracking server: give --tracking-uri or set MLFLOW_TRACKING_URI"
    if not model:
        return "no model: give --model or set EDGEQ_MODEL"
    return None


def _fail(message: str) -> None:
    log.error(message) if logging.getLogger().handlers else click.echo(f"edgeq-pull: {message}", err=True)
    sys.exit(int(ExitCode.BAD_CONFIG))


def _command_line(ctx: click.Context, tracking_uri: str, state_dir: Path) -> list[str]:
    """The pull command with the options given on the command line or in the environment.

    Credentials are no options, so they never land in a crontab: they stay in the
    environment file or the credentials file. The state dir is written resolved, as
    cron starts in the home directory.
    """
    exe = shutil.which("edgeq-pull") or os.path.abspath(sys.argv[0])
    argv = [exe]
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    resolved = {"tracking_uri": tracking_uri, "state_dir": str(state_dir)}
    for name, value in ctx.params.items():
        if name in resolved:
            value = resolved[name]
        elif value is None or ctx.get_parameter_source(name) not in given:
            continue
        option = "--every" if name == "every_minutes" else f"--{name.replace('_', '-')}"
        argv += [option, str(value)]
    return argv


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Show the platform, Python, TFLite runtime and NumPy found here and whether they fit (exit 0, else 2)."""
    from edge.doctor import main as doctor_main

    sys.exit(doctor_main(ctx.parent.params.get("runtime") if ctx.parent else None))
