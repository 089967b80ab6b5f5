"""The registry's answers every command starts from — a model, a version, all versions — and the errors they raise."""
from __future__ import annotations

from registry_tools.api import RegistryApi
from registry_tools.rest_client import error_code


class RegistryToolError(Exception):
    """A one-line problem with the user's input (unknown model, version, alias, device…): exit code 2."""


class GateRefused(RegistryToolError):
    """A check refused the promotion (accuracy, runtime, not a .tflite, no version within budget): exit code 4."""


def registered_model(client: RegistryApi, name: str):
    try:
        return client.get_registered_model(name)
    except Exception as exc:  # MlflowException or rest_client.ApiError
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryToolError(f"unknown model {name!r}: see the registered models in the MLflow UI") from None
        raise


def model_version(client: RegistryApi, name: str, version: str):
    try:
        return client.get_model_version(name, str(version))
    except Exception as exc:  # MlflowException or rest_client.ApiError
        if error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryToolError(f"model {name!r} has no version {version!r}") from None
        raise


def all_versions(client: RegistryApi, name: str) -> list:
    """Every version of ``name``, page by page."""
    out, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out
