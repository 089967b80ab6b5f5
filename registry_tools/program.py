"""What the installed ``edgeq`` is: its version, and whether the registry extra (mlflow, matplotlib) is there."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util

import click

from edge.contract import ExitCode

DISTRIBUTION = "edgeq"
REGISTRY_EXTRA = f'pip install "{DISTRIBUTION}[registry]"'
_REGISTRY_MODULES = ("mlflow", "matplotlib")


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def missing_registry_module() -> str | None:
    """The first module of the [registry] extra that cannot be imported, or None."""
    for name in _REGISTRY_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def require_registry_extra() -> None:
    """Exit with one line (code 2) when ``edgeq`` runs where only the [edge] extra is installed."""
    missing = missing_registry_module()
    if missing:
        click.echo(f"edgeq: the registry tools need {missing}, which is not installed here "
                   f"(the [edge] extra is only the device side): {REGISTRY_EXTRA}", err=True)
        raise SystemExit(int(ExitCode.BAD_CONFIG))
