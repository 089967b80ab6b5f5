"""Edge fixtures without TensorFlow: checked-in bundles registered on the session's real MLflow server over REST."""
from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Callable

import pytest

from edge import contract
from edge.registry_client import RegistryClient
from tests.edge.fault_proxy import FaultProxy
from tests.edge.registry_rest import MlflowRest, Registered, fixture_bundle, fixture_variants, register_fixture
from tests.servers import MlflowServer

_names = itertools.count(1)
_SESSION = uuid.uuid4().hex[:6]

Register = Callable[..., Registered]


@pytest.fixture(scope="session")
def edge_bundles() -> dict[str, Path]:
    """variant -> the checked-in bundle directory (read-only: copy with registry_rest.copy_bundle to change one)."""
    return {variant: fixture_bundle(variant) for variant in fixture_variants()}


@pytest.fixture()
def rest(server: MlflowServer) -> MlflowRest:
    """REST access to the session's server: register, read run metrics/tags and version tags, aliases."""
    return MlflowRest(server.uri)


@pytest.fixture()
def fresh_model() -> str:
    """A registered-model name no other test uses (nothing is registered until a test registers under it)."""
    return f"edgeq-edge-test-{_SESSION}-{next(_names)}"


@pytest.fixture()
def register(rest: MlflowRest) -> Register:
    """``register(name, variant, alias="production", bundle=None, tags=None, metrics=None) -> Registered``.

    Registers the checked-in bundle of ``variant`` (or ``bundle``) as a new version of
    ``name`` in a run of its own holding the fixture's metrics, with the fixture's
    version tags; ``tags``/``metrics`` override single keys; ``alias=None`` sets none.
    """

    def _register(name: str, variant: str, alias: str | None = contract.DEFAULT_ALIAS, bundle: Path | None = None,
                  tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None) -> Registered:
        return register_fixture(rest, name, variant, alias=alias, bundle=bundle, tags=tags, metrics=metrics)

    return _register


@pytest.fixture()
def registry(server: MlflowServer) -> RegistryClient:
    """The device's own REST client, on the session's server."""
    return RegistryClient(server.uri)


@pytest.fixture()
def proxy(server: MlflowServer):
    """A loopback proxy in front of the session's server that injects faults (tests/edge/fault_proxy.py)."""
    p = FaultProxy(server.uri)
    yield p
    p.close()
