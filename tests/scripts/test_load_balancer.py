"""Past one server: two MLflow servers on one PostgreSQL and one artifact store, behind HAProxy, with pullers and edgeq."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bench.fleet import postgres_cluster, server_statuses
from edge import contract
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from registry_tools.mlflow_server import MlflowServer, free_port
from tests.edge.registry_rest import MlflowRest, register_fixture
from tests.registry_tools.devices import edgeq, enroll

MODEL = "edgeq-behind-lb"
DEVICES = ("pi-lb-1", "pi-lb-2", "pi-lb-3")


def _haproxy() -> str:
    """HAProxy from Debian's packages, installed here when missing (as root with apt-get), like PostgreSQL."""
    found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in (["apt-get", "install", "-y", "-q", "haproxy"], ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "haproxy"]):
            subprocess.run(attempt, env=env, capture_output=True, timeout=600)
        found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if not found:
        pytest.fail("HAProxy is not installed and could not be installed here: run 'sudo apt-get install -y haproxy'")
    return found


class Balancer:
    """HAProxy on loopback, round robin over the servers, each checked on /health every half second."""

    def __init__(self, haproxy: str, root: Path, backends: list[str]):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(f"    server s{i} {b.removeprefix('http://')} check inter 500ms fall 1 rise 1"
                            for i, b in enumerate(backends))
        config = root / "haproxy.cfg"
        config.write_text(
            "global\n    maxconn 256\n\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 120s\n"
            "    timeout server 120s\n    retries 2\n    option redispatch\n    retry-on conn-failure empty-response 503\n\n"
            f"frontend mlflow\n    bind 127.0.0.1:{self.port}\n    default_backend servers\n\n"
            f"backend servers\n    balance roundrobin\n    option httpchk GET /health\n{servers}\n")
        self.log = open(root / "haproxy.log", "wb")
        self.proc = subprocess.Popen([haproxy, "-f", str(config), "-db"], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.uri + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"HAProxy did not answer on {self.uri}: {(root / 'haproxy.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.log.close()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    haproxy = _haproxy()
    root = tmp_path_factory.mktemp("lb")
    with postgres_cluster() as db_uri:
        first = MlflowServer(root / "a", backend_store_uri=db_uri, workers=1).start(300)  # makes the schema
        (root / "b").mkdir()
        (root / "b" / "artifacts").symlink_to(root / "a" / "artifacts")  # one artifact store
        second = MlflowServer(root / "b", backend_store_uri=db_uri, workers=1).start(300)
        balancer = Balancer(haproxy, root, [first.uri, second.uri])
        try:
            yield balancer, first, second
        finally:
            balancer.stop()
            second.stop()
            first.stop()


def test_pullers_and_edgeq_through_a_load_balancer_over_two_servers_on_one_postgresql(two_servers, tmp_path):
    balancer, first, second = two_servers
    lb = type("LB", (), {"uri": balancer.uri})()
    version = register_fixture(MlflowRest(balancer.uri), MODEL, "int8").version
    for device in DEVICES:
        enroll(lb, tmp_path / device, device, MODEL)

    def pull_all() -> list:
        return [pull(PullConfig(model=MODEL, state_dir=tmp_path / d, device_id=d, runs=5, warmup=1, heartbeat_s=0),
                     RegistryClient(balancer.uri)) for d in DEVICES]

    outcomes = pull_all()
    assert [o.code for o in outcomes] == [Exit.OK] * 3, [o.message for o in outcomes]
    served = [len(server_statuses(s)) for s in (first, second)]
    assert min(served) > 20, f"both servers answered: {served}"

    aggregated = edgeq(lb, "aggregate", MODEL)
    assert aggregated.exit_code == 0 and f"v{version}: 3 healthy, 0 rejected, 0 behind" in aggregated.output, \
        aggregated.output
    rows = json.loads(edgeq(lb, "fleet", MODEL, "--json").stdout)
    assert sorted((r["device"], r["running_version"], r["status"]) for r in rows) == \
        [(d, version, "ok") for d in DEVICES]

    # One server goes away: the balancer's health check takes it out, the fleet keeps working.
    first.stop()
    time.sleep(1.5)
    again = pull_all()
    assert [o.code for o in again] == [Exit.OK] * 3, [o.message for o in again]
    table = edgeq(lb, "versions", MODEL).output
    assert any(line.startswith(f"{version} ") and "3/0/0" in line for line in table.splitlines()), table
