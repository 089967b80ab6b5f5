"""The hostile bundles (models that crash the runtime, hang or need 1 GB; a sample inflating to 1 GB) and their tags."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge import contract
from tests.edge.registry_rest import FIXTURES, MlflowRest, Registered, register_fixture

HOSTILE = FIXTURES / "hostile"


def _registry() -> dict[str, Any]:
    return json.loads((HOSTILE / "registry.json").read_text(encoding="utf-8"))


def hostile_kinds() -> tuple[str, ...]:
    return tuple(sorted(_registry()["kinds"]))


def _kind(kind: str) -> dict[str, Any]:
    kinds = _registry()["kinds"]
    if kind not in kinds:
        raise KeyError(f"no hostile bundle {kind!r} (have {', '.join(sorted(kinds))}): "
                       "run scripts/make_hostile_fixtures.py")
    return kinds[kind]


def hostile_bundle(kind: str) -> Path:
    """The checked-in bundle of ``kind`` ("crash", "hang", "oom", "bomb"); read-only: copy it to change it."""
    _kind(kind)
    path = HOSTILE / kind
    if not (path / contract.MODEL_FILE).is_file():
        raise FileNotFoundError(f"no hostile bundle in {path}: run scripts/make_hostile_fixtures.py")
    return path


def hostile_tags(kind: str) -> dict[str, str]:
    """The version tags the pipeline would register for the bundle of ``kind`` (its own sha256, size, ops)."""
    return dict(_kind(kind)["tags"])


def hostile_metrics(kind: str) -> dict[str, float]:
    """Run metrics to register ``kind`` with: the fp32 fixture's, with this model's size."""
    return {k: float(v) for k, v in _kind(kind)["metrics"].items()}


def register_hostile(rest: MlflowRest, name: str, kind: str, alias: str | None = contract.DEFAULT_ALIAS,
                     tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None) -> Registered:
    """Register the hostile bundle of ``kind`` as a new version of ``name`` (``tags``/``metrics`` override keys)."""
    variant = _registry()["source_variant"]
    return register_fixture(rest, name, variant, alias=alias, bundle=hostile_bundle(kind),
                            tags={**hostile_tags(kind), **(tags or {})},
                            metrics={**hostile_metrics(kind), **(metrics or {})})
