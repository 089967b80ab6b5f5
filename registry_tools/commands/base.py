"""The click classes of ``edgeq``'s commands: a command that checks the server, a group that lists the exit codes."""
from __future__ import annotations

import click

from edge import contract
from edge.registry_client import check_server
from registry_tools.api import RegistryApi
from registry_tools.commands.options import one_model

MlflowClient = RegistryApi  # what the commands receive: RestClient or mlflow's MlflowClient (registry_tools/api.py)


class ServerCommand(click.Command):
    """Checks the server when the command runs: after parsing, so ``edgeq CMD --help`` needs no server."""

    def invoke(self, ctx: click.Context):
        ctx.params = one_model(ctx.params)  # a usage error is found before the server is asked
        check_server(ctx.find_root().params["tracking_uri"])
        return super().invoke(ctx)


class Group(click.Group):
    """A group whose commands check the server and whose --help lists the exit codes."""

    command_class = ServerCommand

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        with formatter.section("Exit codes"):  # the same list as edgeq-pull --help
            formatter.write_dl([(str(int(code)), meaning) for code, meaning in contract.EXIT_MEANINGS.items()])
