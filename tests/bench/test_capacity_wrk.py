"""bench/capacity_wrk.py: wrk replays the quiet-run mix (the alias, every 5th request an update of one of the first N runs)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from bench.capacity_wrk import run_wrk


def test_wrk_sends_the_quiet_mix_over_the_first_ids(tmp_path):
    seen: list[tuple[str, str, dict]] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: dict) -> None:
            data = json.dumps({}).encode()
            seen.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._answer({})

        def do_POST(self) -> None:  # noqa: N802
            self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ids = tmp_path / "run_ids.txt"
    ids.write_text("".join(f"run{i}\n" for i in range(10)))
    try:
        got = run_wrk(f"http://127.0.0.1:{httpd.server_port}", "fleet-model", 3, ids, connections=2, seconds=1)
    finally:
        httpd.shutdown()
    assert got.requests > 20 and got.errors == 0 and 0 < got.p50_s <= got.p99_s and got.cpu_s >= 0
    aliases = [p for m, p, _ in seen if m == "GET"]
    updates = [b for m, p, b in seen if m == "POST" and p == "/api/2.0/mlflow/runs/update"]
    assert len(aliases) + len(updates) == len(seen)
    assert parse_qs(urlparse(aliases[0]).query) == {"name": ["fleet-model"], "alias": ["production"]}
    assert abs(len(updates) / len(seen) - 0.2) < 0.05  # 1.25 requests per run: 1 in 5 is the heartbeat
    assert {u["run_id"] for u in updates} <= {"run0", "run1", "run2"} and all(u["status"] == "FINISHED" for u in updates)
