"""``edgeq keygen``: a signing key pair for the pipeline and its devices."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("keygen", cls=click.Command)  # no server needed
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen(path: Path) -> None:
    """Write a new Ed25519 signing key pair: PATH (private, mode 600, for the pipeline's --signing-key)
    and PATH.pub (for the devices' --trust-key)."""
    from edge import signing

    fingerprint = signing.keygen(path)  # SigningKeyError is a ValueError: bad input
    click.echo(f"wrote {path} (private: keep it with the pipeline, never on a device) and {path}.pub (for the devices)")
    click.echo(f"fingerprint {fingerprint}")
