"""A team server, for real: scripts/server.sh starts PostgreSQL and MLflow with basic-auth,
registry_tools.users creates the pipeline and device users, the pipeline signs what it registers,
and the device user can report but not promote, nor slip a tampered bundle past a trusted key."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from edge import contract
from edge.heartbeat import FLEET_FILE
from edge.registry_client import Credentials, RegistryClient
from edge.signing import SignatureError, keygen, verify_manifest
from edge.state import DeviceState
from tests.conftest import PIPELINE_ARGS, REPO, at_session_end, background_job, background_result, run_tracked
from tests.servers import free_port

MODEL = "edgeq-team-digits"
MALLORY = "mallory"  # a second device account, used as an attacker would
EXPERIMENT = "edgeq-team"
DEVICE_ID = "pi-team"
BIN = Path(sys.executable).parent


def _env(creds: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EDGEQ_"))}
    if creds is not None:
        env.update(l.split("=", 1) for l in creds.read_text().split())
    return {**env, "PYTHONPATH": str(REPO), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **extra}


def _run(cmd: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return run_tracked(cmd, timeout=timeout, cwd=REPO, env=env)


def _lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@dataclass(frozen=True)
class Team:
    uri: str
    dir: Path
    admin: tuple[str, str]
    pipeline: Path  # credentials files
    device: Path
    public_key: Path
    versions: dict[str, str]  # variant -> version
    state: Path  # the device's state after its first pull

    def get(self, path: str, **params: str) -> dict:
        r = requests.get(self.uri + path, params=params, auth=self.admin, timeout=60)
        r.raise_for_status()
        return r.json()

    def alias(self) -> str:
        return self.get("/api/2.0/mlflow/registered-models/alias", name=MODEL, alias=contract.DEFAULT_ALIAS)["model_version"]["version"]

    def device_metrics(self, version: str) -> dict[str, float]:
        """What the device reported about ``version``, on its own run in the fleet experiment (docs/fleet.md)."""
        run_id = json.loads((self.state / FLEET_FILE).read_text(encoding="utf-8"))["run_id"]
        metrics = self.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]["data"].get("metrics", [])
        prefix = contract.version_key(version, "")
        return {m["key"][len(prefix):]: m["value"] for m in metrics if m["key"].startswith(prefix)}

    def pull(self, creds: Path, state: Path, *args: str, device: str = DEVICE_ID) -> subprocess.CompletedProcess:
        return _run([str(BIN / "edgeq-pull"), "--tracking-uri", self.uri, "--model", MODEL, "--device-id", device,
                     "--state-dir", str(state), "--credentials-file", str(creds), "--runs", "10", "--warmup", "1", *args],
                    _env(), timeout=300)

    def edgeq(self, creds: Path, *args: str) -> subprocess.CompletedProcess:
        return _run([str(BIN / "edgeq"), "--tracking-uri", self.uri, *args], _env(creds), timeout=300)


def _download(client: RegistryClient, mv, directory: Path) -> None:
    for name in (*contract.DEVICE_FILES, contract.SIGNATURE_FILE):
        client.download(mv, name, directory / name, 64 << 20)


def _server(command: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(REPO / "scripts" / "server.sh"), command, "--dir", str(root), *args]
    if command == "stop":  # also while the session ends (when run_tracked starts nothing)
        return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    return _run(cmd, _env(), timeout=400)


def _stop(root: Path) -> None:
    if root.is_dir():
        _server("stop", root)
        shutil.rmtree(root, ignore_errors=True)


# The team's server, users, pipeline run (a minute of CPU), promotion and first pull start in the background
# (tests/conftest.py) as soon as collection selects a test of this module; the fixture stops the server.
@background_job("team", priority=-3, needs_server=False)
def _start_team(_, work: Path) -> Team:
    # The cluster's owner (the `postgres` user when this runs as root) must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="edgeq-team-"))
    root.chmod(0o755)
    at_session_end(lambda: _stop(root))  # should the session end before this module's tests
    port = free_port()
    try:
        started = _server("start", root, "--backend", "postgres", "--auth", "--port", str(port), "--workers", "1")
        if started.returncode != 0 and "PostgreSQL is not installed and could not be installed" in started.stderr:
            pytest.skip(started.stderr.strip().splitlines()[-1])
        assert started.returncode == 0, started.stdout + started.stderr + (root / "server.log").read_text()[-3000:]
        uri = f"http://127.0.0.1:{port}"
        setup = _run([sys.executable, "-m", "registry_tools.users", "setup", "--tracking-uri", uri, "--model", MODEL,
                      "--experiment", EXPERIMENT, "--admin-password-file", str(root / "admin.password"),
                      "--credentials-dir", str(root / "credentials"), "--device-user", "device",
                      "--device-user", MALLORY], _env())
        assert setup.returncode == 0, setup.stdout + setup.stderr
        creds = root / "credentials"
        key = root / "keys" / "signing.key"
        keygen(key)

        args = list(PIPELINE_ARGS)
        args[args.index("--registered-model") + 1] = MODEL
        proc = _run([sys.executable, "-m", "steps.pipeline", "--quant", "int8", *args],
                    _env(creds / "pipeline.env", MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=EXPERIMENT,
                         EDGEQ_SIGNING_KEY=str(key)))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        admin = ("admin", (root / "admin.password").read_text().strip())
        found = requests.get(f"{uri}/api/2.0/mlflow/model-versions/search", params={"filter": f"name = '{MODEL}'"},
                             auth=admin, timeout=60).json()["model_versions"]
        versions = {t["value"]: mv["version"] for mv in found for t in mv.get("tags", []) if t["key"] == contract.TAG_VARIANT}

        t = Team(uri, root, admin, creds / "pipeline.env", creds / "device.env", Path(f"{key}.pub"), versions, root / "device")
        promoted = t.edgeq(t.pipeline, "promote", MODEL, versions["int8"])
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        pulled = t.pull(t.device, t.state)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        return t
    except BaseException:
        _stop(root)
        raise


@pytest.fixture(scope="module")
def team(request: pytest.FixtureRequest) -> Team:
    started = background_result(request, "team")
    yield started
    _stop(started.dir)


def test_pipeline_promote_pull_and_report_on_postgresql_with_authentication(team):
    status = _server("status", team.dir)
    assert "backend postgres, auth on" in status.stdout and "PostgreSQL: running" in status.stdout
    mv = team.get("/api/2.0/mlflow/model-versions/get", name=MODEL, version=team.versions["int8"])["model_version"]
    tags = {t["key"]: t["value"] for t in mv["tags"]}
    assert tags[contract.TAG_SIGNING_KEY_FINGERPRINT].startswith("sha256:")
    assert team.alias() == team.versions["int8"]
    assert contract.D_P50 in team.device_metrics(team.versions["int8"])


def test_the_device_files_verify_against_the_trusted_key(team, tmp_path):
    client = RegistryClient(team.uri, Credentials.from_file(team.device))
    mv = client.version(MODEL, team.versions["int8"])
    _download(client, mv, tmp_path)
    assert verify_manifest(tmp_path, team.public_key) == mv.tags[contract.TAG_SIGNING_KEY_FINGERPRINT]


def test_a_wrong_password_is_refused_in_one_line_and_changes_nothing(team, tmp_path):
    before = team.device_metrics(team.versions["int8"])
    wrong = tmp_path / "wrong.env"
    wrong.write_text("MLFLOW_TRACKING_USERNAME=device\nMLFLOW_TRACKING_PASSWORD=not-the-password\n")
    wrong.chmod(0o600)
    pulled = team.pull(wrong, team.state)
    assert pulled.returncode == contract.ExitCode.BAD_CONFIG, pulled.stderr
    assert len(_lines(pulled)) == 1 and "refused the credentials" in pulled.stderr
    assert DeviceState(team.state).current().version == team.versions["int8"]

    wrong.write_text("MLFLOW_TRACKING_USERNAME=pipeline\nMLFLOW_TRACKING_PASSWORD=not-the-password\n")
    promoted = team.edgeq(wrong, "promote", MODEL, team.versions["fp32"], "--force")
    assert promoted.returncode != 0 and len(_lines(promoted)) == 1, promoted.stderr
    assert team.alias() == team.versions["int8"]
    assert team.device_metrics(team.versions["int8"]) == before


def test_users_setup_with_a_wrong_admin_password_is_one_line_and_creates_nothing(team, tmp_path):
    wrong = tmp_path / "admin.password"
    wrong.write_text("not-the-password\n")
    proc = _run([sys.executable, "-m", "registry_tools.users", "setup", "--tracking-uri", team.uri, "--model", "edgeq-other",
                 "--admin-password-file", str(wrong), "--pipeline-user", "pipeline2", "--device-user", "device2",
                 "--credentials-dir", str(tmp_path / "credentials")], _env())
    assert proc.returncode == contract.ExitCode.BAD_CONFIG and len(_lines(proc)) == 1, proc.stdout + proc.stderr
    assert "refused the credentials of 'admin'" in proc.stderr
    assert not (tmp_path / "credentials").exists()
    users = requests.get(f"{team.uri}/api/2.0/mlflow/users/get", params={"username": "pipeline2"}, auth=team.admin, timeout=60)
    assert users.status_code != 200  # no such user


def test_a_device_cannot_move_the_alias(team):
    moved = team.edgeq(team.device, "promote", MODEL, team.versions["fp32"], "--force")
    assert moved.returncode != 0 and len(_lines(moved)) == 1, moved.stdout + moved.stderr
    assert "PERMISSION_DENIED" in moved.stderr or "ermission denied" in moved.stderr
    device = Credentials.from_file(team.device)
    r = requests.post(f"{team.uri}/api/2.0/mlflow/registered-models/alias", auth=(device.username, device.password), timeout=60,
                      json={"name": MODEL, "alias": contract.DEFAULT_ALIAS, "version": team.versions["fp32"]})
    assert r.status_code == 403
    assert team.alias() == team.versions["int8"]


def test_a_tampered_signature_is_refused_and_the_serving_model_stays(team, tmp_path):
    """A compromised server (here: the admin) rewrites a signature; the device files no longer verify."""
    device = Credentials.from_file(team.device)
    fp32 = team.versions["fp32"]
    where = team.get("/api/2.0/mlflow/model-versions/get-download-uri", name=MODEL, version=fp32)["artifact_uri"]
    assert where.startswith("mlflow-artifacts:/")
    url = f"{team.uri}/api/2.0/mlflow-artifacts/artifacts/{where.removeprefix('mlflow-artifacts:/').strip('/')}/{contract.SIGNATURE_FILE}"
    record = requests.get(url, auth=team.admin, timeout=60).json()
    raw = bytearray(base64.b64decode(record["signature"]))
    raw[-1] ^= 1
    record["signature"] = base64.b64encode(bytes(raw)).decode()
    tampered = json.dumps(record)
    # The version's files are its logged model's, which the device user cannot write.
    assert "/models/" in where
    by_device = requests.put(url, data=tampered, auth=(device.username, device.password), timeout=60)
    assert by_device.status_code == 403
    assert requests.put(url, data=tampered, auth=team.admin, timeout=60).status_code == 200

    client = RegistryClient(team.uri, device)
    mv = client.version(MODEL, fp32)
    _download(client, mv, tmp_path)
    with pytest.raises(SignatureError, match="^bad signature"):
        verify_manifest(tmp_path, team.public_key)

    help_text = _run([str(BIN / "edgeq-pull"), "--help"], _env()).stdout
    if "--trust-key" in help_text:  # the puller refuses it too, and keeps serving what it had
        pulled = team.pull(team.device, team.state, "--model-version", fp32, "--trust-key", str(team.public_key))
        assert pulled.returncode == contract.ExitCode.REJECTED, pulled.stderr
        assert "bad signature" in pulled.stderr
        assert DeviceState(team.state).current().version == team.versions["int8"]


def _setup_again(team: Team, *args: str) -> subprocess.CompletedProcess:
    proc = _run([sys.executable, "-m", "registry_tools.users", "setup", "--tracking-uri", team.uri, "--model", MODEL,
                 "--experiment", EXPERIMENT, "--admin-password-file", str(team.dir / "admin.password"),
                 "--credentials-dir", str(team.dir / "credentials"), *args], _env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_device_cannot_write_the_pipelines_runs(team):
    """Devices report to their own fleet runs: their account gets no write on the version's run (whose accuracy every
    device trusts), unless setup is asked to serve pullers from before that layout, and loses it again after."""
    device = Credentials.from_file(team.device)
    run_id = team.get("/api/2.0/mlflow/model-versions/get", name=MODEL, version=team.versions["int8"])["model_version"]["run_id"]

    def write(key: str) -> int:
        body = {"run_id": run_id, "tags": [{"key": key, "value": "written by a device"}]}
        return requests.post(f"{team.uri}/api/2.0/mlflow/runs/log-batch", json=body, timeout=60,
                             auth=(device.username, device.password)).status_code

    fake = {"run_id": run_id, "metrics": [{"key": contract.M_ACCURACY, "value": 1.0, "timestamp": 1, "step": 0}]}
    assert requests.post(f"{team.uri}/api/2.0/mlflow/runs/log-batch", json=fake, timeout=60,
                         auth=(device.username, device.password)).status_code == 403
    assert write("edgeq.test.by-device") == 403
    assert "edgeq.test.by-device" not in {t["key"] for t in team.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]["data"]["tags"]}

    assert "legacy pullers" in _setup_again(team, "--legacy-pullers").stdout
    assert write("edgeq.test.legacy") == 200  # what a puller before the fleet layout needs
    assert "revoked EDIT on every run" in _setup_again(team).stdout
    assert write("edgeq.test.after") == 403
    again = team.pull(team.device, team.state)  # the current puller needs none of it
    assert again.returncode == 0, again.stdout + again.stderr


def _as(creds: Path):
    """requests against the team server as the account in ``creds``: (method, path, json) → response."""
    c = Credentials.from_file(creds)
    return lambda method, uri, path, body: requests.request(method, uri + path, json=body, timeout=60,
                                                           auth=(c.username, c.password))


def _decisions(team: Team) -> tuple[int, str, str, dict]:
    """guard --dry-run's exit and verdict line, aggregate --dry-run's line for int8, and each device's fleet status."""
    guard = team.edgeq(team.pipeline, "guard", MODEL, "--min-devices", "3", "--dry-run")
    verdict = guard.stdout.strip().splitlines()[-1]  # what the guard decided, one line
    agg = team.edgeq(team.pipeline, "aggregate", MODEL, "--dry-run")
    line = next((l for l in agg.stdout.splitlines() if l.startswith(f"v{team.versions['int8']}:")), agg.stdout + agg.stderr)
    fleet = team.edgeq(team.pipeline, "fleet", MODEL, "--json")
    # Runs claiming a device without its signed status are flagged: what the honest runs say is the view.
    rows = json.loads(fleet.stdout)
    status = {r["device"]: (r["running_version"], r["status"]) for r in rows
              if not any(f.startswith(("unsigned", "unverified")) for f in r["flags"])}
    status["flagged"] = sum(1 for r in rows if any(f.startswith(("unsigned", "unverified")) for f in r["flags"]))
    return guard.returncode, verdict.split(": ", 1)[-1], line.split("; ")[0], status


def test_one_device_account_cannot_change_a_decision(team, tmp_path):
    """Every forgery a device account can make through MLflow, replayed on the team server: guard, aggregate and the
    fleet view decide the same before and after; only the attacker's own enrolled device has its one vote."""
    from edge import evidence, identity

    int8 = team.versions["int8"]
    honest = ("pi-h1", "pi-h2", "pi-h3")
    since_tag = contract.alias_since_tag(contract.DEFAULT_ALIAS)
    for device in honest:
        key = identity.load_or_create(tmp_path / device).public_text()
        enrolled = team.edgeq(team.pipeline, "device", "enroll", device, "--key", key, "--model", MODEL)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        pulled = team.pull(team.device, tmp_path / device, device=device)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    mallory_creds = team.dir / "credentials" / f"{MALLORY}.env"
    mallory_key = identity.load_or_create(tmp_path / "pi-mallory")
    assert team.edgeq(team.pipeline, "device", "enroll", "pi-mallory", "--key", mallory_key.public_text(),
                      "--model", MODEL).returncode == 0
    before = _decisions(team)
    assert before[0] == 0 and all(before[3][d] == (int8, "ok") for d in honest), before

    as_mallory = _as(mallory_creds)
    fleet_id = team.get("/api/2.0/mlflow/registered-models/get", name=MODEL)["registered_model"]
    fleet_id = {t["key"]: t["value"] for t in fleet_id["tags"]}[contract.TAG_FLEET_EXPERIMENT_ID]
    runs = requests.post(team.uri + "/api/2.0/mlflow/runs/search", json={"experiment_ids": [fleet_id]}, auth=team.admin,
                         timeout=60).json()["runs"]
    h1 = next(r["info"]["run_id"] for r in runs if {t["key"]: t["value"] for t in r["data"]["tags"]}.get(contract.TAG_DEVICE_ID) == "pi-h1")

    # 1. flip an honest device's verdict and last status in its own run, delete what else it said
    flipped = as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/log-batch", {"run_id": h1, "tags": [
        {"key": contract.version_key(int8, contract.D_STATUS), "value": contract.STATUS_REJECTED},
        {"key": contract.TAG_LAST_STATUS, "value": contract.STATUS_REJECTED},
        {"key": contract.TAG_RUNNING_VERSION, "value": team.versions["fp32"]}]})
    assert flipped.status_code == 200, flipped.text  # MLflow allows it: EDIT on the experiment is EDIT on its runs
    assert as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/delete-tag",
                      {"run_id": h1, "key": contract.TAG_HOSTNAME}).status_code == 200
    # ... and its params, which MLflow does not let anyone change
    blocked = as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/log-batch", {"run_id": h1, "params": [
        {"key": contract.version_key(int8, contract.D_EVIDENCE), "value": "0"}]})
    assert blocked.status_code == 400, blocked.text

    # 2. runs claiming other devices, signed with the attacker's key, and unsigned ones; 3. another model
    version_tags = {t["key"]: t["value"] for t in
                    team.get("/api/2.0/mlflow/model-versions/get", name=MODEL, version=int8)["model_version"]["tags"]}
    since = version_tags.get(since_tag, "")

    def forged_run(claimed: str, model: str = MODEL, verdict: str = contract.STATUS_REJECTED) -> None:
        # In the window (now, the alias's move): only the signature can keep these out.
        payload = evidence.Payload(evidence.KIND_REPORT, claimed, model, 10**15, int(time.time() * 1000), int8, "0" * 64,
                                   contract.DEFAULT_ALIAS, since, verdict, "forged", "no", {contract.D_P50: 1.0})
        value = evidence.encode(payload, mallory_key.sign)
        run = as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/create", {"experiment_id": fleet_id}).json()
        run_id = run["run"]["info"]["run_id"]
        tags = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_DEVICE_ID: claimed, contract.TAG_MODEL: MODEL,
                contract.version_key(int8, contract.D_STATUS): verdict, contract.TAG_RUNNING_VERSION: int8,
                contract.TAG_LAST_STATUS: verdict}
        params = {contract.P_DEVICE_ID: claimed, contract.P_MODEL: MODEL, evidence.param_key(value): value,
                  contract.version_key(int8, contract.D_EVIDENCE): contract.EVIDENCE_MARK}
        done = as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/log-batch", {
            "run_id": run_id, "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "params": [{"key": k, "value": v} for k, v in params.items()]})
        assert done.status_code == 200, done.text

    for claimed in ("pi-h2", "pi-h3", "pi-x1", "pi-x2"):
        forged_run(claimed)
    forged_run("pi-mallory", model="edgeq-other-model")  # its own key, a model it is not enrolled for
    # 4. rename the fleet experiment, and a new "edgeq-fleet" full of rejections
    renamed = as_mallory("POST", team.uri, "/api/2.0/mlflow/experiments/update",
                         {"experiment_id": fleet_id, "new_name": "edgeq-fleet-renamed-by-mallory"})
    assert renamed.status_code == 200, renamed.text
    decoy = as_mallory("POST", team.uri, "/api/2.0/mlflow/experiments/create", {"name": contract.FLEET_EXPERIMENT})
    assert decoy.status_code == 200, decoy.text  # MLflow lets any account create experiments; nothing reads it by name

    after = _decisions(team)
    assert after[:3] == before[:3], (before, after)  # the verdict, and healthy / rejected / behind
    assert all(after[3][d] == (int8, "ok") for d in honest), after
    assert after[3]["flagged"] >= before[3]["flagged"] + 5, (before, after)  # the forged runs, shown as such
    # The attacker's own enrolled device has one vote, and only that.
    own = evidence.Payload(evidence.KIND_REPORT, "pi-mallory", MODEL, identity.next_seq(tmp_path / "pi-mallory"),
                           int(time.time() * 1000), int8, "0" * 64, contract.DEFAULT_ALIAS, since, contract.STATUS_REJECTED,
                           "its own vote", "no", {})
    forged_run_id = as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/create", {"experiment_id": fleet_id}).json()["run"]["info"]["run_id"]
    value = evidence.encode(own, mallory_key.sign)
    assert as_mallory("POST", team.uri, "/api/2.0/mlflow/runs/log-batch", {"run_id": forged_run_id, "params": [
        {"key": contract.P_MODEL, "value": MODEL}, {"key": evidence.param_key(value), "value": value},
        {"key": contract.version_key(int8, contract.D_EVIDENCE), "value": "1"}]}).status_code == 200
    guard = team.edgeq(team.pipeline, "guard", MODEL, "--min-devices", "3", "--dry-run")
    assert guard.returncode == 0 and "1 of 4 against" in guard.stdout, guard.stdout + guard.stderr
    assert "unverified report(s) not counted" in guard.stdout, guard.stdout
