"""``edgeq webhook`` end to end on loopback: MLflow's signed alias events reach the receiver, outside moves are recorded."""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools import history, webhook
from tests.registry_tools.devices import edgeq, new_model, tiny_version
from tests.servers import MlflowServer, free_port

SECRET = "test-secret-" + "ab" * 16


@pytest.fixture(scope="module")
def hook_server():
    """A server of its own: MLflow delivers webhooks to loopback over http only when told so."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    patch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    root = Path(tempfile.mkdtemp(prefix="edgeq-webhook-"))
    srv = MlflowServer(root).launch()
    patch.undo()
    yield srv.wait_ready()
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def _wait(predicate, timeout_s: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_an_alias_moved_with_a_plain_client_is_recorded_from_the_webhook(hook_server, monkeypatch):
    client = MlflowClient(hook_server.uri, registry_uri=hook_server.uri)
    receiver = webhook.Receiver(client, SECRET, settle_s=1.0)
    port = free_port()
    httpd = webhook.server(receiver, "127.0.0.1", port)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    try:
        monkeypatch.setenv("EDGEQ_WEBHOOK_SECRET", SECRET)
        first = edgeq(hook_server, "webhook", "register", url)
        assert first.exit_code == 0 and first.output.startswith("created webhook"), first.output
        assert edgeq(hook_server, "webhook", "register", url).output.startswith("updated webhook"), "idempotent"

        model = new_model(client, "edgeq-webhook")
        v1, _ = tiny_version(client, model)
        v2, _ = tiny_version(client, model)
        assert edgeq(hook_server, "promote", model, v1).exit_code == 0
        assert _wait(lambda: receiver.handled >= 1), "MLflow delivered the alias event of edgeq's own promotion"
        assert receiver.recorded == [], "a move edgeq made and recorded is not an outside move"

        client.set_registered_model_alias(model, contract.DEFAULT_ALIAS, v2)  # a plain client, outside edgeq
        assert _wait(lambda: receiver.handled >= 2)
        events = history.read(client, model)
        last = events[-1]
        assert (last.kind, last.alias, last.from_version, last.to_version) == (contract.HISTORY_OUTSIDE, "production", v1, v2)
        assert last.at and "noticed by MLflow webhook (production created at" in last.reason
        shown = json.loads(edgeq(hook_server, "history", model, "--json").stdout)[0]
        assert (shown["kind"], shown["to_version"]) == (contract.HISTORY_OUTSIDE, v2) and shown["at"]

        # Only signed, fresh deliveries count.
        body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "x",
                           "data": {"name": model, "alias": "production", "version": v1}}).encode()
        now = str(int(time.time()))
        forged = {webhook.DELIVERY_HEADER: "d-1", webhook.TIMESTAMP_HEADER: now,
                  webhook.SIGNATURE_HEADER: webhook.sign("wrong secret", "d-1", now, body)}
        assert requests.post(url, data=body, headers=forged, timeout=10).status_code == 401
        old = str(int(time.time()) - 3600)
        stale = {webhook.DELIVERY_HEADER: "d-2", webhook.TIMESTAMP_HEADER: old,
                 webhook.SIGNATURE_HEADER: webhook.sign(SECRET, "d-2", old, body)}
        assert requests.post(url, data=body, headers=stale, timeout=10).status_code == 401
        assert receiver.handled == 2 and len(history.read(client, model)) == len(events)
    finally:
        httpd.shutdown()
        httpd.server_close()
        receiver.close()


def test_verify_and_parse_without_a_server():
    body = json.dumps({"entity": "model_version_alias", "action": "deleted", "timestamp": "t",
                       "data": {"name": "m", "alias": "canary"}}).encode()
    headers = {webhook.DELIVERY_HEADER: "id", webhook.TIMESTAMP_HEADER: "1000", webhook.SIGNATURE_HEADER: webhook.sign("s", "id", "1000", body)}
    change = webhook.alias_change(webhook.verify("s", headers, body, now=1100))
    assert change == webhook.AliasChange("m", "canary", None, "deleted", "t")
    with pytest.raises(webhook.BadDelivery, match="timestamp"):
        webhook.verify("s", headers, body, now=1000 + webhook.MAX_SKEW_S + 1)
    with pytest.raises(webhook.BadDelivery, match="signature"):
        webhook.verify("s", headers, body + b" ", now=1100)
    with pytest.raises(webhook.BadDelivery, match="missing"):
        webhook.verify("s", {}, body)
    assert webhook.alias_change({"entity": "model_version", "action": "created", "data": {"name": "m"}}) is None
