"""registry_tools/api.py: mlflow's MlflowClient and RestClient both take every call RegistryApi lists, as it lists it."""
from __future__ import annotations

import inspect

import pytest

from registry_tools.api import RegistryApi
from registry_tools.rest_client import RestClient

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _calls(protocol: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(protocol).items()
            if callable(member) and not name.startswith("_")}


def _takes(method: object, wanted: inspect.Signature) -> list[str]:
    """What ``method`` would refuse of the calls ``wanted`` allows: positions, names, defaults."""
    have = list(inspect.signature(method).parameters.values())[1:]  # without self
    by_name = {p.name: p for p in have}
    problems = []
    for i, p in enumerate(list(wanted.parameters.values())[1:]):
        if p.kind in _POSITIONAL and (i >= len(have) or have[i].name != p.name or have[i].kind not in _POSITIONAL):
            problems.append(f"{p.name} is not parameter {i + 1}")
        elif p.name not in by_name or by_name[p.name].kind == inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f"no keyword {p.name}")
        elif p.default is not inspect.Parameter.empty and by_name[p.name].default is inspect.Parameter.empty:
            problems.append(f"{p.name} has no default")
    required = {p.name for p in have if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    problems += [f"{name} is required" for name in sorted(required - set(wanted.parameters))]
    return problems


def _clients() -> list[type]:
    from mlflow.tracking import MlflowClient

    return [MlflowClient, RestClient]


@pytest.mark.parametrize("client", _clients(), ids=lambda c: c.__module__ + "." + c.__name__)
def test_both_clients_take_every_call_the_commands_make(client):
    refused = {}
    for name, wanted in _calls(RegistryApi).items():
        method = getattr(client, name, None)
        problems = _takes(method, wanted) if method else ["missing"]
        if problems:
            refused[name] = problems
    assert not refused, refused


def test_the_checker_sees_a_signature_that_would_refuse_a_call():
    class LogsOtherwise:  # the device's log_batch: dicts, not MLflow's entities
        def log_batch(self, run_id, metrics, tags, timestamp_ms=None, step=0, params=None): ...

    assert _takes(LogsOtherwise.log_batch, _calls(RegistryApi)["log_batch"])


def test_a_rest_client_is_a_registry_api():
    assert isinstance(RestClient("http://127.0.0.1:5000"), RegistryApi)
