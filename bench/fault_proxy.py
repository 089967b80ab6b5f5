"""A loopback HTTP proxy in front of the test's MLflow server that injects faults.

Rules match a request by method and a substring of its path and query, and replace
the server's answer: an error status, a huge body, a body cut short, a slow drip, or
a rewritten JSON answer. Every rule fires a bounded number of times; every answer is
bounded in size and time. Everything else is forwarded unchanged.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests

_CHUNK = b"\0" * (1 << 20)
_DECLARED = 8000  # what cut and drip answers announce: below any model's size cap, so only the body misbehaves


@dataclass
class Rule:
    match: str  # substring of "METHOD /path?query"
    action: str  # status | huge | cut | drip | rewrite | lie | corrupt
    status: int = 500
    size: int = 0  # bytes, for huge
    seconds: float = 0.0  # for drip: how long to keep dripping at most
    rewrite: Callable[[dict], dict] | None = None
    body: bytes = b"{}"  # for lie: the 200 answer given instead of forwarding
    error_body: bytes | None = None  # for status: the error answer's body (default: MLflow-shaped JSON)
    times: int = 1_000_000
    fired: int = 0


@dataclass
class FaultProxy:
    upstream: str
    port: int = 0  # 0: any free one; a closed proxy's port opens it again where its clients expect it
    rules: list[Rule] = field(default_factory=list)
    requests_seen: list[str] = field(default_factory=list)

    def __post_init__(self):
        proxy = self
        self._connections: set[socket.socket] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                proxy._connections.add(self.connection)

            def finish(self):
                proxy._connections.discard(self.connection)
                super().finish()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = f"{self.command} {self.path}"
                proxy.requests_seen.append(key)
                rule = proxy._rule_for(key)
                try:
                    if rule is None or rule.action in ("rewrite", "corrupt"):
                        self._forward(body, rule)
                    else:
                        getattr(self, "_" + rule.action)(rule)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def _forward(self, body: bytes, rule: Rule | None):
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                r = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=60)
                content = r.content
                if rule is not None and rule.rewrite is not None and r.ok:
                    content = json.dumps(rule.rewrite(r.json())).encode()
                if rule is not None and rule.action == "corrupt" and r.ok and content:
                    # A different byte each time, as a flaky link would: the n-th firing flips byte n.
                    at = (rule.fired - 1) % len(content)
                    content = content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1:]
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _status(self, rule: Rule):
                payload = rule.error_body if rule.error_body is not None else json.dumps(
                    {"error_code": "INJECTED", "message": f"injected HTTP {rule.status}"}).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _lie(self, rule: Rule):
                """200 with a body of the rule's choosing, the request never forwarded (a captive portal, a bad proxy)."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(rule.body)))
                self.end_headers()
                self.wfile.write(rule.body)

            def _huge(self, rule: Rule):
                # No Content-Length: the client can only find out by reading.
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = 0
                while sent < rule.size:
                    piece = _CHUNK[: min(len(_CHUNK), rule.size - sent)]
                    self.wfile.write(piece)
                    sent += len(piece)
                self.close_connection = True

            def _announce(self):
                """Headers of a 200 answer announcing _DECLARED bytes that will not all come."""
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(_DECLARED))
                self.end_headers()
                self.close_connection = True

            def _cut(self, rule: Rule):
                self._announce()
                self.wfile.write(_CHUNK[: _DECLARED // 2])
                self.wfile.flush()

            def _drip(self, rule: Rule):
                self._announce()
                end = time.monotonic() + rule.seconds
                while time.monotonic() < end:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.5)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _rule_for(self, key: str) -> Rule | None:
        for rule in self.rules:
            if rule.match in key and rule.fired < rule.times:
                rule.fired += 1
                return rule
        return None

    def add(self, match: str, action: str, **kw) -> Rule:
        rule = Rule(match, action, **kw)
        self.rules.append(rule)
        return rule

    def count(self, match: str) -> int:
        return sum(match in key for key in self.requests_seen)

    def close(self) -> None:
        """Stop listening and drop the open (keep-alive) connections too, as a server that goes down does."""
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
