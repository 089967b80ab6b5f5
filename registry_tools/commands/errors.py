"""The one-line errors of ``edgeq`` and their exit codes (edge.contract.ExitCode)."""
from __future__ import annotations

import click

from edge import contract


class BadInput(click.ClickException):
    """One line, exit code 2."""

    exit_code = int(contract.ExitCode.BAD_CONFIG)


class Refused(click.ClickException):
    """A check said no: one line, exit code 4."""

    exit_code = int(contract.ExitCode.REJECTED)


class Raced(click.ClickException):
    """Another move of the alias raced this one: nothing overwritten, one line, exit code 8."""

    exit_code = int(contract.ExitCode.RACED)


class Unreachable(click.ClickException):
    """The server cannot be reached or keeps failing: one line, exit code 3."""

    exit_code = int(contract.ExitCode.UNREACHABLE)
