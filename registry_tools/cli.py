"""``edgeq``: the command for whoever decides what ships (the root group; the commands live in registry_tools.commands)."""
from __future__ import annotations

import os
import sys

import click

from edge.registry_client import AuthError, RegistryError, ServerUnreachable, redact_uri
from registry_tools import program

# Before anything imports mlflow: an [edge]-only install gets one line naming the extra, not a traceback.
program.require_registry_extra()

# An unreachable server should fail in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from registry_tools import promotion  # noqa: E402
from registry_tools.commands import device, fleet, guard, keygen, promote, rollout, versions, webhook  # noqa: E402
from registry_tools.commands.base import Group, MlflowClient  # noqa: E402
from registry_tools.commands.errors import BadInput, Raced, Refused, Unreachable  # noqa: E402
from registry_tools.lookup import GateRefused, RegistryToolError  # noqa: E402
from registry_tools.rest_client import ApiError, RestClient  # noqa: E402

_NEEDS_MLFLOW = {"webhook"}  # MLflow's webhook API: through mlflow's own client
# MLflow client settings the REST client does not implement: with any of them set, mlflow's own client is used.
_MLFLOW_ONLY_SETTINGS = ("MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_AUTH", "MLFLOW_ENABLE_DB_SDK")

# MLflow error codes that mean the user named something that is not there, or named it badly.
_INPUT_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")


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


class _Group(Group):
    """Expected failures become one line and an exit code from edge.contract.ExitCode."""

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


main.add_command(versions.versions)
main.add_command(versions.compare)
main.add_command(promote.promote)
main.add_command(promote.rollback)
main.add_command(promote.history)
main.add_command(fleet.fleet)
main.add_command(fleet.aggregate)
main.add_command(guard.guard)
main.add_command(rollout.rollout)
main.add_command(keygen.keygen)
main.add_command(webhook.webhook)
main.add_command(device.device)
