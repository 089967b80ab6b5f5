"""What a device reported, read back where the device writes it: its own run in the fleet experiment."""
from __future__ import annotations

import json
from pathlib import Path

from edge import contract
from edge.heartbeat import FLEET_FILE
from tests.edge.registry_rest import MlflowRest


def device_run_id(state: Path) -> str:
    """The device's run in the fleet experiment, as the device with state dir ``state`` cached it."""
    return json.loads((Path(state) / FLEET_FILE).read_text(encoding="utf-8"))["run_id"]


def device_report(rest: MlflowRest, state: Path, version: str) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) the device reported about ``version``, names without their ``v<N>.`` prefix; empty when none."""
    if not (Path(state) / FLEET_FILE).is_file():
        return {}, {}
    run_id = device_run_id(state)
    prefix = contract.version_key(version, "")
    strip = lambda d: {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}  # noqa: E731
    return strip(rest.run_metrics(run_id)), strip(rest.run_tags(run_id))
