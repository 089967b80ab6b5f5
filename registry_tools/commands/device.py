"""``edgeq device``: who may speak for the fleet (each device's own key, for the models it may report on)."""
from __future__ import annotations

import json

import click

from registry_tools.commands.base import Group, MlflowClient
from registry_tools.commands.options import model_arguments


@click.group("device", cls=Group)
def device() -> None:
    """Enrol the devices whose signed reports count (each device's own key, for the models it may report on)."""


@device.command("enroll")
@click.argument("device_id")
@click.option("--key", "key_text", required=True, metavar="ed25519:BASE64",
              help="The device's public key, as `edgeq-pull identity` prints it on the device.")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME",
              help="A registered model the device may report on (repeatable).")
@click.pass_obj
def enroll(client: MlflowClient, device_id: str, key_text: str, models: tuple[str, ...]) -> None:
    """Count DEVICE_ID's signed reports on the given models (replaces an earlier enrolment of the device)."""
    from registry_tools import enrolment

    done = enrolment.enroll(client, device_id, key_text, models)
    click.echo(f"enrolled {done.device} for {', '.join(models)} (key {key_text.strip()[:20]}…, by {done.by})")


@device.command("revoke")
@click.argument("device_id")
@click.pass_obj
def revoke(client: MlflowClient, device_id: str) -> None:
    """Stop counting DEVICE_ID's reports, from the next decision on (its record stays, marked revoked)."""
    from registry_tools import enrolment

    done = enrolment.revoke(client, device_id)
    click.echo(f"revoked {done.device} on {done.revoked_at}: its reports no longer count")


@device.command("list")
@click.option("--model", default=None, metavar="NAME", help="Only the devices enrolled for this model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_devices(client: MlflowClient, model: str | None, as_json: bool) -> None:
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


@device.command("accept-unsigned")
@model_arguments()
@click.option("--off", is_flag=True, help="Count only signed reports from enrolled devices again.")
@click.pass_obj
def accept_unsigned(client: MlflowClient, model: str, off: bool) -> None:
    """Count reports without a verified signature for MODEL in every decision (pullers from before signing), until --off."""
    from registry_tools import enrolment

    enrolment.set_accept_unsigned(client, model, not off)
    click.echo(f"{model}: unsigned device reports {'no longer count' if off else 'COUNT in every decision (and every output says so)'}")
