"""``edgeq-pull``: the device's command, run from cron or a systemd timer."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from pathlib import Path

import click

from edge import contract
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import Credentials, RegistryClient, tls_verify_from_env
from edge.schedule import cron_line, install_cron_line, systemd_units

log = logging.getLogger("edgeq-pull")

_DEFAULT_STATE = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "edgeq"


@click.group(invoke_without_command=True, context_settings={"auto_envvar_prefix": "EDGEQ"})
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", required=True, help="MLflow server, e.g. http://mlflow.lan:5000 ($MLFLOW_TRACKING_URI).")
@click.option("--model", "model", envvar="EDGEQ_MODEL", required=True, help="Registered model name ($EDGEQ_MODEL).")
@click.option("--alias", envvar="EDGEQ_ALIAS", default=contract.DEFAULT_ALIAS, show_default=True, help="Alias to follow.")
@click.option("--version", "version", envvar="EDGEQ_VERSION", default=None, help="Pin a version number instead of an alias.")
@click.option("--device-id", envvar="EDGEQ_DEVICE_ID", default=socket.gethostname, show_default="hostname", help="Name of this device in metric keys.")
@click.option("--state-dir", envvar="EDGEQ_STATE_DIR", type=click.Path(path_type=Path), default=_DEFAULT_STATE, show_default=True)
@click.option("--runs", envvar="EDGEQ_RUNS", type=click.IntRange(1), default=100, show_default=True, help="Timed inferences.")
@click.option("--warmup", envvar="EDGEQ_WARMUP", type=click.IntRange(0), default=10, show_default=True)
@click.option("--threads", envvar="EDGEQ_THREADS", type=click.IntRange(1), default=None, help="Interpreter threads (runtime default if unset).")
@click.option("--runtime", envvar="EDGEQ_RUNTIME", type=click.Choice(["ai-edge-litert", "tflite-runtime"]), default=None, help="Force a runtime.")
@click.option("--lock-wait", envvar="EDGEQ_LOCK_WAIT", type=click.FloatRange(0), default=0.0, help="Seconds to wait for another run's lock.")
@click.option("--credentials-file", envvar="EDGEQ_CREDENTIALS_FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="KEY=VALUE file with MLFLOW_TRACKING_TOKEN or USERNAME/PASSWORD; mode 600.")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str, model: str, alias: str, version: str | None, device_id: str,
         state_dir: Path, runs: int, warmup: int, threads: int | None, runtime: str | None, lock_wait: float,
         credentials_file: Path | None) -> None:
    """Pull the model behind ALIAS, verify, benchmark and report back to its run."""
    ctx.obj = {"argv": _command_line(ctx)}
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s edgeq-pull %(levelname)s %(message)s")
    try:
        creds = Credentials.from_file(credentials_file) if credentials_file else Credentials.from_env()
        client = RegistryClient(tracking_uri, creds, tls_verify_from_env())
    except (ValueError, PermissionError, OSError) as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(Exit.BAD_CONFIG)
    config = PullConfig(model=model, state_dir=state_dir, device_id=device_id, alias=alias, version=version,
                        runs=runs, warmup=warmup, threads=threads, lock_wait_s=lock_wait, runtime=runtime)
    outcome = pull(config, client)
    (log.info if outcome.code in (Exit.OK, Exit.BUSY) else log.error)("%s (exit %d)", outcome.message, outcome.code)
    sys.exit(int(outcome.code))


@main.command()
@click.option("--every", "every_minutes", type=click.IntRange(1), default=15, show_default=True, help="Interval in minutes.")
@click.option("--systemd", is_flag=True, help="Print a systemd service and timer instead of a crontab line.")
@click.option("--install", is_flag=True, help="Add the line to this user's crontab (cron only).")
@click.option("--log-file", default=None, help="Append output here instead of syslog (cron only).")
@click.pass_context
def schedule(ctx: click.Context, every_minutes: int, systemd: bool, install: bool, log_file: str | None) -> None:
    """Print (or install) how to run this exact command on an interval."""
    command = ctx.obj["argv"]
    if systemd:
        for name, text in systemd_units(command, every_minutes).items():
            click.echo(f"# /etc/systemd/system/{name}\n{text}")
        click.echo("# then: sudo systemctl daemon-reload && sudo systemctl enable --now edgeq-pull.timer")
        return
    try:
        line = cron_line(command, every_minutes, log_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(line)
    if install:
        install_cron_line(line)
        click.echo("installed in crontab", err=True)


def _command_line(ctx: click.Context) -> list[str]:
    """The pull command with the options given on the command line or in the environment.

    Credentials are no options, so they never land in a crontab: they stay in the
    environment file or the credentials file.
    """
    exe = shutil.which("edgeq-pull") or os.path.abspath(sys.argv[0])
    argv = [exe]
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    for name, value in ctx.params.items():
        if value is None or ctx.get_parameter_source(name) not in given:
            continue
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv
