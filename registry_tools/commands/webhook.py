"""``edgeq webhook``: record alias moves made outside edgeq as they happen, from MLflow's registry webhooks."""
from __future__ import annotations

import os

import click

from registry_tools.commands.base import MlflowClient, ServerCommand
from registry_tools.commands.errors import BadInput


@click.group("webhook", cls=click.Group)
def webhook() -> None:
    """Record alias moves made outside edgeq as they happen, from MLflow's registry webhooks (MLflow ≥ 3.3, SQL backend)."""


def _secret(env: str) -> str:
    value = os.environ.get(env, "")
    if not value:
        raise BadInput(f"${env} is empty: put the webhook secret there (never on the command line), e.g. export {env}=$(openssl rand -hex 32)")
    return value


@webhook.command("register", cls=ServerCommand)
@click.argument("url")
@click.option("--secret-env", default="EDGEQ_WEBHOOK_SECRET", show_default=True, help="Environment variable holding the HMAC secret.")
@click.pass_obj
def register(client: MlflowClient, url: str, secret_env: str) -> None:
    """Ask the MLflow server to post alias events to URL (where `edgeq webhook serve` listens), signed with the secret."""
    from registry_tools import webhook as hooks

    hook_id, created = hooks.register(client, url, _secret(secret_env))
    click.echo(f"{'created' if created else 'updated'} webhook {hook_id}: {', '.join(hooks.EVENTS)} → {url}")


@webhook.command("serve", cls=ServerCommand)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--secret-env", default="EDGEQ_WEBHOOK_SECRET", show_default=True, help="Environment variable holding the HMAC secret.")
@click.pass_obj
def serve(client: MlflowClient, host: str, port: int, secret_env: str) -> None:
    """Receive MLflow's signed alias events and record moves the history cannot explain (runs until stopped)."""
    import logging

    from registry_tools import webhook as hooks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    httpd = hooks.server(hooks.Receiver(client, _secret(secret_env)), host, port)
    click.echo(f"edgeq webhook: listening on http://{host}:{port}/ for {', '.join(hooks.EVENTS)}")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
