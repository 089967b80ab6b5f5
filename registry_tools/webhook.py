"""``edgeq webhook``: receive MLflow's registry webhooks (alias events, HMAC-signed) and record outside moves at once.

MLflow ≥ 3.3 with a SQL backend posts ``model_version_alias.created`` / ``.deleted`` to a
registered URL, signed ``v1,base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>"))``.
The receiver checks the signature and the timestamp, waits (edgeq moves an alias first and
records it right after: up to PATIENCE × SETTLE_S), then asks the history to notice what it cannot explain
(``history.notice``): a move made in the MLflow UI or with a plain client is recorded
within seconds, stamped "noticed by MLflow webhook".
"""
from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlflow.tracking import MlflowClient

from registry_tools import history as alias_history

log = logging.getLogger("edgeq.webhook")

EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
MAX_SKEW_S = 300  # older (or later) deliveries are refused: a replayed request is useless after this
MAX_BODY_BYTES = 64 << 10
SETTLE_S = 2.0
PATIENCE = 5  # settle periods an unexplained move is given before it is recorded as made outside edgeq
_SEEN = 1000  # delivery ids remembered against replays within MAX_SKEW_S


class BadDelivery(ValueError):
    """A request that is not a fresh, correctly signed MLflow webhook delivery."""


@dataclass(frozen=True)
class AliasChange:
    model: str
    alias: str
    version: str | None  # None when deleted
    action: str  # "created" or "deleted"
    at: str  # MLflow's timestamp of the delivery


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """What MLflow puts in X-MLflow-Signature."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> dict:
    """The delivery's JSON when signed with ``secret`` within MAX_SKEW_S of ``now``; else BadDelivery."""
    delivery, stamp, signature = (headers.get(h, "") for h in (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (delivery and stamp and signature):
        raise BadDelivery("missing MLflow webhook headers (delivery id, timestamp, signature)")
    if not hmac.compare_digest(sign(secret, delivery, stamp, body), signature):
        raise BadDelivery("signature does not match: wrong secret, or the body was changed")
    try:
        skew = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        raise BadDelivery(f"timestamp {stamp!r} is not a Unix time") from None
    if skew > MAX_SKEW_S:
        raise BadDelivery(f"timestamp {skew:.0f} s away from now (limit {MAX_SKEW_S} s): a replay, or a wrong clock")
    try:
        return json.loads(body)
    except ValueError:
        raise BadDelivery("body is not JSON") from None


def alias_change(payload: dict) -> AliasChange | None:
    """The alias event in a delivery, or None for any other event."""
    if payload.get("entity") != "model_version_alias":
        return None
    data = payload.get("data") or {}
    if not data.get("name") or not data.get("alias"):
        return None
    version = data.get("version")
    return AliasChange(str(data["name"]), str(data["alias"]), str(version) if version is not None else None,
                       str(payload.get("action", "")), str(payload.get("timestamp", "")))


class Receiver:
    """Verifies deliveries and records unexplained alias moves, one model at a time, on a worker thread."""

    def __init__(self, client: MlflowClient, secret: str, settle_s: float = SETTLE_S):
        if not secret:
            raise ValueError("the webhook secret is empty: set it (the same one given to edgeq webhook register)")
        self.client, self.secret, self.settle_s = client, secret, settle_s
        self._queue: queue.Queue[tuple[float, AliasChange] | None] = queue.Queue(maxsize=1000)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.recorded: list[alias_history.Event] = []
        self.handled = 0  # alias changes processed (recorded or explained)
        self._worker = threading.Thread(target=self._work, name="edgeq-webhook", daemon=True)
        self._worker.start()

    def accept(self, headers: dict[str, str], body: bytes) -> AliasChange | None:
        """Check one delivery (BadDelivery when it is not one) and queue its alias change."""
        payload = verify(self.secret, headers, body)
        with self._lock:
            delivery = headers[DELIVERY_HEADER]
            if delivery in self._seen:
                return None  # MLflow retried a delivery we already have
            self._seen[delivery] = None
            while len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
        change = alias_change(payload)
        if change is not None:
            self._queue.put_nowait((time.monotonic() + self.settle_s, change))
        return change

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            due, change = item
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                found = []
                if self._still_unexplained(change):
                    found = alias_history.notice(self.client, change.model,
                                                 f"MLflow webhook ({change.alias} {change.action} at {change.at})")
                self.recorded += found
            except Exception as exc:  # noqa: BLE001 - one failing model must not stop the receiver
                log.warning("could not record %s@%s: %s", change.model, change.alias, exc)
            self.handled += 1

    def _still_unexplained(self, change: AliasChange) -> bool:
        """Whether the history still cannot explain the alias after up to PATIENCE settle periods: edgeq records its
        own move a moment after making it, longer on a busy server."""
        for attempt in range(PATIENCE):
            if not any(e.alias == change.alias for e in alias_history.pending(self.client, change.model)):
                return False
            if attempt < PATIENCE - 1:
                time.sleep(self.settle_s)
        return True

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=self.settle_s + 30)


def server(receiver: Receiver, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server (not started) answering POSTs: 200 accepted, 401 not a valid delivery, 413 too large."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self._answer(413, "too large")
            body = self.rfile.read(length)
            try:
                change = receiver.accept({k: v for k, v in self.headers.items()}, body)
            except BadDelivery as exc:
                log.warning("refused a delivery from %s: %s", self.client_address[0], exc)
                return self._answer(401, str(exc))
            self._answer(200, "queued" if change else "ignored")

        def _answer(self, code: int, text: str) -> None:
            data = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:
            log.info("%s " + fmt, self.client_address[0], *args)

    return ThreadingHTTPServer((host, port), Handler)


def register(client: MlflowClient, url: str, secret: str, name: str = "edgeq-alias-history") -> tuple[str, bool]:
    """Ask MLflow to post alias events to ``url`` signed with ``secret``: (webhook id, created now?)."""
    for hook in client.list_webhooks(max_results=1000):
        if hook.url == url:
            client.update_webhook(hook.webhook_id, events=list(EVENTS), secret=secret, status="ACTIVE")
            return hook.webhook_id, False
    hook = client.create_webhook(name, url, list(EVENTS), description="edgeq: alias moves into the alias history",
                                 secret=secret)
    return hook.webhook_id, True
