"""edge/transport.py, the one transport of every REST client: errors mapped, caps kept, and hints that name the URI's own server."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge import clock
from edge.registry_client import RegistryClient
from edge.transport import (AuthError, Deadline, NotFound, Refused, ServerUnreachable, Transport, check_server,
                            start_hint)
from tests.conftest import REPO
from tests.servers import free_port

_API = "/api/2.0/mlflow/"


def test_a_server_that_is_down_is_named_by_its_own_port_with_the_command_to_start_it():
    port = free_port()
    with pytest.raises(ServerUnreachable) as down:
        check_server(f"http://127.0.0.1:{port}", timeout_s=2)
    assert f"127.0.0.1:{port}" in str(down.value) and f"scripts/server.sh start --port {port}" in str(down.value)
    assert "5000" not in str(down.value).replace(str(port), "")


def test_the_device_names_the_port_it_could_not_reach():
    port = free_port()
    with pytest.raises(ServerUnreachable) as down:
        RegistryClient(f"http://127.0.0.1:{port}", deadline=Deadline(5)).version_by_alias("m", "production")
    assert f"--port {port}" in str(down.value) and "--port 5000" not in str(down.value)


@pytest.mark.parametrize("uri, says", [
    ("http://127.0.0.1:8080", "scripts/server.sh start --port 8080)"),
    ("http://[::1]:5001", "scripts/server.sh start --host ::1 --port 5001)"),
    ("http://mlflow.lan:5050", "start it on mlflow.lan (there: scripts/server.sh start --host 0.0.0.0 --port 5050 "
                               "--allowed-hosts mlflow.lan,mlflow.lan:5050)"),
    ("http://10.0.0.7", "start it on 10.0.0.7 (there: scripts/server.sh start --host 0.0.0.0 --port 80)"),
    ("https://mlflow.example", "the TLS front that answers on mlflow.example:443"),
])
def test_the_start_hint_follows_the_uri(uri, says):
    assert says in start_hint(uri)
    assert "5000" not in start_hint(uri)


def test_the_hint_carries_the_options_the_client_needs():
    assert "scripts/server.sh start --auth --port 5002" in start_hint("http://localhost:5002", "--auth")


def test_errors_are_mapped_and_carry_mlflows_code(server):
    http = Transport(server.uri)
    with pytest.raises(NotFound) as missing:
        http.json("GET", _API + "registered-models/get", params={"name": "edgeq-transport-no-such-model"})
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST" and missing.value.status == 404
    with pytest.raises(Refused) as bad:
        http.json("POST", _API + "runs/search", json={"experiment_ids": ["0"], "filter": "this is not a filter"})
    assert not isinstance(bad.value, NotFound) and bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_credentials_refused_name_the_fix_the_client_gives(proxy):
    proxy.add("/", "status", status=401)
    with pytest.raises(AuthError) as refused:
        Transport(proxy.uri, credentials_hint="check --admin-password-file").json("GET", _API + "experiments/search")
    assert refused.value.status == 401 and str(refused.value).endswith("check --admin-password-file")


def test_an_answer_over_the_cap_is_not_read(server):
    with pytest.raises(ServerUnreachable, match="more than 16 bytes"):
        Transport(server.uri, json_cap_bytes=16).json("POST", _API + "experiments/search", json={"max_results": 10})


def test_every_answer_sets_the_clock(server, monkeypatch):
    monkeypatch.setattr(clock.CLOCK, "skew_s", None)
    Transport(server.uri).json("POST", _API + "experiments/search", json={"max_results": 1})
    assert clock.CLOCK.skew_s is not None and abs(clock.CLOCK.skew_s) < 60


def test_uris_with_credentials_are_refused_before_any_request():
    with pytest.raises(ValueError, match="carries credentials"):
        Transport("https://pi:secret@mlflow.lan")


def test_the_transport_and_the_device_client_need_neither_tensorflow_nor_mlflow():
    code = ("import sys, edge.transport, edge.registry_client, tests.edge.registry_rest; "
            "print(sorted(m for m in ('tensorflow', 'mlflow', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
