"""``edgeq-pull``: the device's command, run from cron or a systemd timer."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from edge import contract
from edge.limits import p99_for, parse_p99
from edge.contract import ExitCode
from edge.device_info import stable_device_id
from edge.gate import GateLimits
from edge.puller import PullConfig, pull
from edge.registry_client import Credentials, Deadline, RegistryClient, check_tracking_uri, tls_verify_from_env
from edge.schedule import CrontabError, cron_line, install_cron_line, run_limit_s, schedule_key, slot_s, systemd_units
from edge.runtime import RUNTIME_PACKAGES
from edge.sandbox import DEFAULT_MAX_RSS_MB
from edge.state import path_component

log = logging.getLogger("edgeq-pull")

_STATE_BASE = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "edgeq"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from edge.doctor import gather

        click.echo(gather().version_line())
        ctx.exit(ExitCode.OK)


def _deprecated(old: str, new: str) -> None:
    """One line on stderr for an old spelling that still works (the wording edgeq uses too)."""
    click.echo(f"edgeq-pull: {old} is deprecated and will be removed in the next release; use {new}", err=True)


def _model_version_from_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None and os.environ.get("EDGEQ_VERSION"):
        _deprecated("EDGEQ_VERSION", "EDGEQ_MODEL_VERSION (--model-version)")
        value = os.environ["EDGEQ_VERSION"]
    return value


def _percent(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Accuracy is percent in both tools; a value up to 1 is the old 0–1 fraction."""
    if value is None or not 0 < value <= 1:
        return value
    percent = round(value * 100, 9)
    if ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT:
        _deprecated(f"EDGEQ_MIN_SAMPLE_ACCURACY={value:g} (a 0–1 fraction)", f"EDGEQ_MIN_SAMPLE_ACCURACY={percent:g} (percent)")
    else:
        _deprecated(f"--min-sample-accuracy {value:g} (a 0–1 fraction)", f"--min-sample-accuracy {percent:g} (percent)")
    return percent


def p99_limit(specs: tuple[str, ...] | list[str], device_id: str) -> float | None:
    """``--max-p99-ms [DEVICE=]MS`` for this device (edge/limits.py, the spelling ``edgeq guard`` and
    ``promote --from`` take too, so one list of limits serves a whole fleet): entries for other devices are
    ignored here, with a notice."""
    parsed = parse_p99(specs)  # ValueError names a bad one
    for spec in specs:
        who = spec.rpartition("=")[0].strip()
        if who and who != contract.ALL_DEVICES and contract.sanitize_device_id(who) != device_id:
            click.echo(f"edgeq-pull: --max-p99-ms {spec} is for device {who}, not this one ({device_id}): ignored", err=True)
    found = p99_for(parsed, device_id)
    return found[0] if found else None


class _Group(click.Group):
    """``--help`` ends with the exit codes, from edge.contract (the same list as ``edgeq --help``)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        with formatter.section("Exit codes"):
            formatter.write_dl([(str(int(code)), meaning) for code, meaning in contract.EXIT_MEANINGS.items()])


@click.group(cls=_Group, invoke_without_command=True, context_settings={"auto_envvar_prefix": "EDGEQ"})
# Not from the environment: auto_envvar_prefix would read EDGEQ_VERSION, the old name of EDGEQ_MODEL_VERSION.
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, allow_from_autoenv=False,
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
@click.option("--min-sample-accuracy", envvar="EDGEQ_MIN_SAMPLE_ACCURACY", type=click.FloatRange(0, 100), default=None, metavar="PERCENT", callback=_percent, help="Health gate: reject a sample accuracy below this many percent (on top of the binomial bound); 0–100.")
@click.option("--max-p99-ms", envvar="EDGEQ_MAX_P99_MS", multiple=True, metavar="[DEVICE=]MS", help="Health gate: reject a p99 latency above MS. A plain number or all=MS: every device; DEVICE=MS: only the device of that id (wins over all=). Repeatable; entries for other devices are ignored, so a fleet can share one list.")
@click.option("--max-rss-mb", envvar="EDGEQ_MAX_RSS_MB", type=click.FloatRange(0, min_open=True), default=DEFAULT_MAX_RSS_MB, show_default=True, help="Hard memory limit of the child process that loads and benchmarks a candidate; a higher peak is a refusal.")
@click.option("--check-timeout", envvar="EDGEQ_CHECK_TIMEOUT", type=click.FloatRange(1), default=300.0, show_default=True, help="Seconds a candidate's load, sample check and benchmark may take in all, in a child process; then it is refused.")
@click.option("--max-slowdown", envvar="EDGEQ_MAX_SLOWDOWN", type=click.FloatRange(0, min_open=True), default=None, help="Health gate: reject a p50 more than this many times the replaced version's, measured here.")
@click.option("--on-change", envvar="EDGEQ_ON_CHANGE", default=None, help="Shell command run after a new version became current; failing rolls back.")
@click.option("--hook-timeout", envvar="EDGEQ_HOOK_TIMEOUT", type=click.FloatRange(1), default=120.0, show_default=True, help="Seconds the --on-change command may take.")
@click.option("--every", "every_minutes", envvar="EDGEQ_EVERY", type=click.IntRange(1), default=contract.DEFAULT_INTERVAL_MINUTES, show_default=True, help="Minutes between runs (the fleet view calls a device stale after a few missed runs).")
@click.option("--heartbeat-every", "heartbeat_minutes", envvar="EDGEQ_HEARTBEAT_EVERY", type=click.IntRange(0), default=contract.DEFAULT_HEARTBEAT_MINUTES, show_default=True, help="Minutes between heartbeats (runs/update, the fleet's last seen) while nothing changes; a run in between sends only its resolve. A change always reports at once. 0: every run.")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str | None, model: str | None, alias: str, model_version: str | None,
         device_id: str | None, state_dir: Path | None, runs: int, warmup: int, threads: int | None,
         runtime: str | None, lock_wait: float, deadline: float, credentials_file: Path | None, trust_key: Path | None,
         min_sample_accuracy: float | None, max_p99_ms: tuple[str, ...], max_rss_mb: float, check_timeout: float,
         max_slowdown: float | None, on_change: str | None, hook_timeout: float, every_minutes: int,
         heartbeat_minutes: int) -> None:
    """Pull the model behind ALIAS, verify, check its health on this device, benchmark and report back to its run."""
    if ctx.invoked_subcommand is not None:
        return  # a subcommand checks what it needs itself, after its own --help: `schedule --help` needs no server
    logging.basicConfig(level=logging.INFO, format="%(asctime)s edgeq-pull %(levelname)s %(message)s")
    checked = _checked(ctx)
    device_id = checked.device_id
    try:
        creds = Credentials.from_file(credentials_file) if credentials_file else Credentials.from_env()
        client = RegistryClient(checked.tracking_uri, creds, tls_verify_from_env(), Deadline(deadline))
        if trust_key:
            from edge.signing import load_public_key

            load_public_key(trust_key)
    except ImportError as exc:
        _fail(f"--trust-key needs the cryptography package ({exc}): pip install \"edgeq[edge]\"")
    except (ValueError, PermissionError, OSError) as exc:
        _fail(f"bad configuration: {exc}")
    config = PullConfig(
        model=model, state_dir=checked.state_dir, device_id=device_id, alias=alias, version=checked.model_version,
        runs=runs, warmup=warmup, threads=threads, lock_wait_s=lock_wait, runtime=runtime,
        # Percent at the command line, a fraction inside (edge.gate).
        gate=GateLimits(None if min_sample_accuracy is None else min_sample_accuracy / 100, checked.max_p99_ms,
                        max_rss_mb, max_slowdown),
        on_change=on_change, hook_timeout_s=hook_timeout, interval_s=every_minutes * 60,
        heartbeat_s=heartbeat_minutes * 60,
        trust_key=trust_key.resolve() if trust_key else None, check_timeout_s=check_timeout,
        run_limit_s=run_limit_s(deadline, check_timeout, hook_timeout),
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
    """Print (or install) how to run this exact command on an interval, in this device's own slot of it.

    The slot is a hash of the device id: a fleet spreads over the interval instead of firing in the same second,
    and a device keeps its slot. One line per (model, alias, state dir): installing again replaces that line only.
    """
    if systemd and (install or log_file):
        _fail(f"{'--install' if install else '--log-file'} is for cron: with --systemd, save the printed units under "
              "/etc/systemd/system/ as root and run the systemctl line they end with (journald keeps the output)")
    group = ctx.parent
    checked = _checked(group)
    every = every_minutes or group.params["every_minutes"]
    command = _command_line(group, checked.tracking_uri, checked.state_dir)
    if "--every" not in command:
        command = command + ["--every", str(every)]
    else:
        command[command.index("--every") + 1] = str(every)
    p = group.params
    limit = run_limit_s(p["deadline"], p["check_timeout"], p["hook_timeout"])
    try:
        offset = slot_s(checked.device_id, every)
        units = systemd_units(command, every, limit_s=limit, offset_s=offset) if systemd else {}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if systemd:
        for name, text in units.items():
            click.echo(f"# /etc/systemd/system/{name}\n{text}")
        click.echo("# then: sudo systemctl daemon-reload && sudo systemctl enable --now edgeq-pull.timer")
        return
    key = schedule_key(group.params["model"], group.params["alias"], str(checked.state_dir))
    try:
        line = cron_line(command, every, key, log_file, limit, offset)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if install:
        try:
            install_cron_line(line, key)
        except CrontabError as exc:
            _exit(ExitCode.BAD_CONFIG, str(exc))
    click.echo(line)
    if install:
        click.echo("installed in crontab", err=True)


@dataclass(frozen=True)
class _Checked:
    """The group's options that need checking or resolving, checked."""

    tracking_uri: str
    state_dir: Path
    device_id: str
    model_version: str | None
    max_p99_ms: float | None  # this device's limit


def _checked(group: click.Context) -> _Checked:
    """Check the group's options when a command needs them (not before a subcommand's --help); exit 2 on the first bad one."""
    p = group.params
    try:
        problem = _missing(p["tracking_uri"], p["model"])
        if problem:
            raise ValueError(problem)
        state_dir = (p["state_dir"] or _STATE_BASE / path_component(p["model"])).expanduser().resolve()
        device_id = contract.sanitize_device_id(p["device_id"] or stable_device_id())
        version = None if p["model_version"] is None else contract.check_version_number(p["model_version"])
        return _Checked(check_tracking_uri(p["tracking_uri"]), state_dir, device_id, version,
                        p99_limit(p["max_p99_ms"], device_id))
    except ValueError as exc:
        _fail(f"bad configuration: {exc}")
        raise  # _fail exits; this keeps type checkers content


def _exit(code: ExitCode, message: str) -> None:
    click.echo(f"edgeq-pull: {message}", err=True)
    sys.exit(int(code))


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
    for param in ctx.command.params:
        name, value = param.name, ctx.params.get(param.name)
        if name in resolved:
            value = resolved[name]
        elif value is None or value == () or (ctx.get_parameter_source(name) not in given and value == param.default):
            continue  # a value a callback supplied (e.g. from EDGEQ_VERSION) is kept: cron may not have that variable
        for one in value if isinstance(value, tuple) else (value,):  # a repeatable option: once per value
            argv += [param.opts[0], str(one)]
    return argv


@main.command()
@click.pass_context
def identity(ctx: click.Context) -> None:
    """Print this device's public key (made when missing) and the operator's command that enrols it.

    The key is the state directory's (--state-dir, else the --model's default): it signs every report and status.
    """
    from edge import signing
    from edge.lock import LockBusy, exclusive_lock
    from edge.puller import NoSigning, StorageError, device_key, storage_message
    from edge.state import DeviceState

    p = ctx.parent.params
    if not p["model"]:
        _fail("bad configuration: no model: give --model or set EDGEQ_MODEL")
    try:
        state_dir = (p["state_dir"] or _STATE_BASE / path_component(p["model"])).expanduser().resolve()
        device_id = contract.sanitize_device_id(p["device_id"] or stable_device_id())
    except ValueError as exc:
        _fail(f"bad configuration: {exc}")
    key, problem = None, None
    try:
        with exclusive_lock(DeviceState(state_dir).lock_path, p["lock_wait"]):  # a running pull may be making the key
            try:
                key = device_key(state_dir)
            except (StorageError, NoSigning) as exc:  # caught inside: the lock is released as after any clean run
                problem = exc
    except LockBusy as exc:
        _exit(ExitCode.BUSY, f"{exc}; try again when it is done (or give --lock-wait)")
    except OSError as exc:  # the state dir itself cannot be made or locked
        _exit(ExitCode.STORAGE, storage_message(state_dir, exc))
    if problem is not None:
        _exit(ExitCode.BAD_CONFIG if isinstance(problem, NoSigning) else ExitCode.STORAGE, str(problem))
    public = key.public_text()
    rows = [("device", device_id), ("public key", public), ("fingerprint", signing.fingerprint(key.private)),
            ("key file", f"{key.path}" + (" (made now)" if key.created else ""))]
    for name, value in rows:
        click.echo(f"{name:<12} {value}")
    click.echo(f"enrol it (the operator, with edgeq):\n  edgeq device enroll {device_id} --key {public} --model {p['model']}")


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Show the platform, Python, TFLite runtime and NumPy found here and whether they fit (exit 0, else 2)."""
    from edge.doctor import main as doctor_main

    sys.exit(doctor_main(ctx.parent.params.get("runtime") if ctx.parent else None))
