"""Options shared by ``edgeq`` commands: MODEL [VERSION], --accept-unsigned, the judge's limits, --wide, old names."""
from __future__ import annotations

import functools
import os
import shutil
import sys

import click

from edge import contract
from edge.limits import parse_p99
from registry_tools import judge
from registry_tools.commands.errors import BadInput


def deprecated(new: str):
    """Callback of an old option name kept for one release: it still works, with a warning."""

    def warn(ctx: click.Context, param: click.Parameter, value):
        if value is not None:
            click.echo(f"edgeq: {param.opts[0]} is deprecated and will be removed in the next release; use {new}", err=True)
        return value

    return warn


def either(new_name: str, new, old_name: str, old):
    """The value of an option given under its new name or its old one; both, and different: bad input."""
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
            return f(*args, **one_model(kwargs))

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


def one_model(params: dict) -> dict:
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


def judge_limit_options(f):
    """The judge's limits as options (``edgeq guard``'s words); ``judge_limits(**those values)`` makes the Limits.

    The command receives ``min_devices``, ``max_rejected_fraction``, ``margin``, ``max_accuracy_drop``,
    ``max_p99_ms``, ``max_rss_mb`` and ``max_slowdown``.
    """
    options = [
        click.option("--min-devices", type=int, default=contract.DEFAULT_GUARD_MIN_DEVICES, show_default=True,
                     help="Devices that must have voted in the window (healthy or rejected) before the guard acts; fewer: hold."),
        click.option("--max-rejected-fraction", type=float, default=contract.DEFAULT_GUARD_MAX_REJECTED_FRACTION,
                     show_default=True, help="Move the alias back when more than this share (plus --margin) of the voting devices is against the version."),
        click.option("--margin", type=float, default=contract.DEFAULT_GUARD_MARGIN, show_default=True,
                     help="A share against above --max-rejected-fraction by at most this much is mixed evidence: hold."),
        click.option("--max-accuracy-drop", type=float, default=None,
                     help="A device whose sample accuracy lies more points below the registered one is against the version."),
        click.option("--max-p99-ms", multiple=True, metavar="[DEVICE=]MS",
                     help="A device whose p99 is above this is against the version (DEVICE=MS, all=MS or MS; repeatable); "
                          "throttled measurements are not judged on latency."),
        click.option("--max-rss-mb", type=float, default=None, help="A device whose peak RSS is above this is against the version."),
        click.option("--max-slowdown", type=float, default=None,
                     help="Roll back when the median over devices of p50 on the version / p50 on the replaced version (same "
                          "device, unthrottled, at least --min-devices pairs) is above this (plus 5 %)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def judge_limits(*, min_devices: int, max_rejected_fraction: float, margin: float, max_accuracy_drop: float | None,
                 max_p99_ms: tuple[str, ...], max_rss_mb: float | None, max_slowdown: float | None) -> judge.Limits:
    """The values of ``judge_limit_options`` → judge.Limits; a bad one raises ValueError with one line naming the
    option (the root group makes it exit 2)."""
    return judge.Limits(min_devices, max_rejected_fraction, margin, max_accuracy_drop, parse_p99(max_p99_ms),
                        max_rss_mb, max_slowdown)


def wide_option(f):
    """``--wide``: tables keep every column whole instead of fitting the terminal."""
    return click.option("--wide", is_flag=True, help="Do not cut columns to the terminal width.")(f)


def table_width(wide: bool) -> int | None:
    """The width a table is fitted to: the terminal's columns; None (every column whole) with --wide, or when the
    output goes to a pipe or a file and $COLUMNS does not ask for a width (a script reading it gets every column)."""
    if wide or not (sys.stdout.isatty() or os.environ.get("COLUMNS")):
        return None
    return shutil.get_terminal_size().columns
