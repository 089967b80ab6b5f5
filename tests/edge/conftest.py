"""Edge fixtures: the light REST client the device uses."""
from __future__ import annotations

import pytest

from edge.registry_client import RegistryClient


@pytest.fixture()
def registry(pipeline) -> RegistryClient:
    return RegistryClient(pipeline.uri)
