"""Users for a team server with MLflow's basic-auth app: a pipeline user and least-privilege device users.

    python -m registry_tools.users setup --model edgeq-cats_vs_dogs-efficientnet_b0 --experiment edgeq

Run as the admin (password from ``--admin-password-file``, written by ``scripts/server.sh
start --auth``). Creates what is missing — the experiments, the registered models, the users
with generated passwords, each in a mode-600 ``KEY=VALUE`` credentials file that
``edgeq-pull --credentials-file`` and ``set -a; . pipeline.env`` read — and sets exactly
the grants in ``GRANTS``. Running it again changes nothing that is already right.
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from edge import contract
from edge.registry_client import experiment_id, model_tags
from edge.transport import (AuthError, Credentials, Deadline, NotFound, Refused, RegistryError, ServerUnreachable,
                            Transport, tls_verify_from_env)

# Roles of the grants below; a grant is (role, resource type, which resource, MLflow permission).
PIPELINE_EXPERIMENT = "pipeline experiment"  # where the pipeline's runs live
FLEET_EXPERIMENT = "fleet experiment"  # contract.FLEET_EXPERIMENT: one run per device
MODEL = "registered model"
ENROLMENT = "enrolment register"  # contract.ENROLMENT_MODEL: which device keys count (edgeq device enroll)
ALL_RUNS = "every run"  # the run tier is wildcard-only in MLflow; bounded by the experiments a user can read


@dataclass(frozen=True)
class Grant:
    user_role: str  # "pipeline" or "device"
    resource: str  # one of the roles above
    permission: str
    why: str


GRANTS = (
    Grant("pipeline", PIPELINE_EXPERIMENT, "EDIT", "create runs, log metrics, params, tags, artifacts"),
    Grant("pipeline", MODEL, "EDIT", "register versions, tag them, set aliases (promote, rollback)"),
    Grant("pipeline", FLEET_EXPERIMENT, "READ", "edgeq fleet, edgeq promote --from canary"),
    Grant("pipeline", ENROLMENT, "EDIT", "edgeq device enroll / revoke: whose signed reports count"),
    Grant("device", MODEL, "READ", "resolve the alias, read the version's tags, download its files"),
    Grant("device", PIPELINE_EXPERIMENT, "READ", "read the version's run (registered accuracy); no new runs here"),
    Grant("device", FLEET_EXPERIMENT, "EDIT", "create and update its own fleet run: reports and heartbeats"),
)
# Pullers from before the fleet layout log their reports to the version's run, which needs EDIT on every run: granted
# only with --legacy-pullers, and revoked otherwise (a device account that can write the pipeline's runs can rewrite
# their metrics and tags).
LEGACY_GRANT = Grant("device", ALL_RUNS, "EDIT", "legacy pullers: log reports to the version's run (--legacy-pullers)")
_TIMEOUT_S = 30.0
_TYPES = {PIPELINE_EXPERIMENT: "experiment", FLEET_EXPERIMENT: "experiment", MODEL: "registered_model",
          ENROLMENT: "registered_model", ALL_RUNS: "run"}


class UsersError(click.ClickException):
    """One line: what failed and what to do."""

    exit_code = contract.ExitCode.BAD_CONFIG


class Unreachable(click.ClickException):
    """The server cannot be reached, or failed: one line naming where and how to start it."""

    exit_code = contract.ExitCode.UNREACHABLE


class AdminClient:
    """The handful of MLflow REST calls the setup needs, as the admin, through the device's transport (edge/transport.py)."""

    def __init__(self, uri: str, username: str, password: str):
        try:
            self.http = Transport(uri, Credentials(username=username, password=password), tls_verify_from_env(),
                                  Deadline(None, _TIMEOUT_S), server_options="--auth")
        except ValueError as exc:  # not http(s), or credentials in the URI
            raise UsersError(str(exc)) from None
        self.uri = self.http.base_uri
        self.username = username

    def call(self, method: str, path: str, ok_codes: tuple[str, ...] = (), **kwargs) -> dict:
        """The answer of ``path`` (``{"error_code": …}`` for an error in ``ok_codes``); any other failure is one line."""
        try:
            return self.http.json(method, path, **kwargs)
        except Refused as exc:
            if exc.error_code in ok_codes:
                return {"error_code": exc.error_code}
            raise self._one_line(exc, f"{method} {path}") from None
        except RegistryError as exc:
            raise self._one_line(exc, f"{method} {path}") from None

    def _one_line(self, exc: RegistryError, what: str) -> click.ClickException:
        """The transport's error as the admin reads it: credentials, not an admin, no server, no user management."""
        if isinstance(exc, AuthError):
            if exc.status == 403:
                return UsersError(f"{self.username!r} is not an admin on {self.uri} (HTTP 403)")
            return UsersError(f"{self.uri} refused the credentials of {self.username!r} (HTTP {exc.status}): "
                              "check --admin-password-file")
        if isinstance(exc, ServerUnreachable):
            return Unreachable(str(exc))
        if isinstance(exc, Refused):
            if exc.status == 404 and "/users/" in what:
                return UsersError(f"{self.uri} has no user management: start it with authentication "
                                  "(scripts/server.sh start --auth)")
            return click.ClickException(f"{what} failed: {exc}")
        return UsersError(str(exc))  # TLS verification

    def experiment_id(self, name: str) -> str:
        """Get or create ``name`` (the MLflow UI's training layout)."""
        try:
            return experiment_id(self.http, name)
        except RegistryError as exc:
            raise self._one_line(exc, f"experiment {name!r}") from None

    def ensure_model(self, name: str) -> None:
        self.call("POST", "/api/2.0/mlflow/registered-models/create", ("RESOURCE_ALREADY_EXISTS",), json={"name": name})

    def recorded_fleet_id(self, models: tuple[str, ...]) -> str | None:
        """The fleet experiment id an earlier setup recorded on one of the models (a rename cannot move it)."""
        for name in models:
            try:
                recorded = model_tags(self.http, name).get(contract.TAG_FLEET_EXPERIMENT_ID, "")
            except NotFound:
                continue
            except RegistryError as exc:
                raise self._one_line(exc, f"model {name!r}") from None
            if recorded.isdigit():
                return recorded
        return None

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "/api/2.0/mlflow/registered-models/set-tag", json={"name": name, "key": key, "value": value})

    def user_exists(self, username: str) -> bool:
        return "user" in self.call("GET", "/api/2.0/mlflow/users/get", ("RESOURCE_DOES_NOT_EXIST",), params={"username": username})

    def create_user(self, username: str, password: str) -> None:
        self.call("POST", "/api/2.0/mlflow/users/create", json={"username": username, "password": password})

    def set_password(self, username: str, password: str) -> None:
        self.call("PATCH", "/api/2.0/mlflow/users/update-password", json={"username": username, "password": password})

    def permission(self, username: str, resource_type: str, resource_id: str) -> str:
        params = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        return self.call("GET", "/api/3.0/mlflow/users/permissions/get", params=params)["permission"]

    def revoke(self, username: str, resource_type: str, resource_id: str) -> bool:
        """Remove the grant; False when there was none."""
        body = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        done = self.call("POST", "/api/3.0/mlflow/users/permissions/revoke", ("RESOURCE_DOES_NOT_EXIST",), json=body)
        return not done.get("error_code")

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        body = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        done = self.call("POST", "/api/3.0/mlflow/users/permissions/grant", ("RESOURCE_ALREADY_EXISTS",), json={**body, "permission": permission})
        if done.get("error_code"):  # a grant exists at another level: replace it
            self.call("POST", "/api/3.0/mlflow/users/permissions/revoke", json=body)
            self.call("POST", "/api/3.0/mlflow/users/permissions/grant", json={**body, "permission": permission})


def write_credentials(path: Path, username: str, password: str) -> None:
    """``KEY=VALUE`` with MLflow's variable names, mode 600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"MLFLOW_TRACKING_USERNAME={username}\nMLFLOW_TRACKING_PASSWORD={password}\n")
    os.replace(tmp, path)


def ensure_user(admin: AdminClient, username: str, credentials: Path, reset: bool) -> str:
    """Create ``username`` (or reset its password) and keep the password in ``credentials``; returns what was done."""
    if username == admin.username:
        raise UsersError(f"{username!r} is the admin; give the pipeline and the devices users of their own")
    if not admin.user_exists(username):
        password = secrets.token_urlsafe(24)
        admin.create_user(username, password)
        write_credentials(credentials, username, password)
        return "created"
    if reset or not credentials.exists():
        if not reset:
            raise UsersError(f"user {username!r} exists but {credentials} does not: add --reset-passwords to issue a new password")
        password = secrets.token_urlsafe(24)
        admin.set_password(username, password)
        write_credentials(credentials, username, password)
        return "new password"
    return "kept"


@click.group()
def main() -> None:
    """Users and grants on an MLflow server running the basic-auth app."""


@main.command()
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default="http://127.0.0.1:5000", show_default=True)
@click.option("--admin-user", default="admin", show_default=True)
@click.option("--admin-password-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".edgeq/server/admin.password"), show_default=True, help="Written by scripts/server.sh start --auth.")
@click.option("--model", "models", multiple=True, required=True, help="Registered model the devices pull (repeatable).")
@click.option("--experiment", "experiments", multiple=True, default=(contract.PIPELINE_EXPERIMENT,), show_default=True,
              help="Experiment the pipeline runs in, i.e. MLFLOW_EXPERIMENT_NAME (repeatable).")
@click.option("--fleet-experiment", default=contract.FLEET_EXPERIMENT, show_default=True)
@click.option("--pipeline-user", default="pipeline", show_default=True)
@click.option("--device-user", "device_users", multiple=True, default=("device",), show_default=True,
              help="Device user; repeat for one user per device (each revocable on its own).")
@click.option("--credentials-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".edgeq/server/credentials"), show_default=True, help="Where USER.env files (mode 600) go.")
@click.option("--reset-passwords", is_flag=True, help="Issue new passwords to users that already exist.")
@click.option("--legacy-pullers", is_flag=True,
              help="Also let devices write every run (pullers from before the fleet layout report to the version's "
                   "run); without it, setup revokes that grant. Only while such pullers remain.")
def setup(tracking_uri: str, admin_user: str, admin_password_file: Path, models: tuple[str, ...], experiments: tuple[str, ...],
          fleet_experiment: str, pipeline_user: str, device_users: tuple[str, ...], credentials_dir: Path,
          reset_passwords: bool, legacy_pullers: bool = False) -> None:
    """Create the pipeline and device users and grant each exactly what its job needs."""
    password = os.environ.get("EDGEQ_ADMIN_PASSWORD")
    if not password:
        try:
            password = admin_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsersError(f"cannot read the admin password from {admin_password_file} ({exc.strerror}); "
                             "pass --admin-password-file or set EDGEQ_ADMIN_PASSWORD") from None
    admin = AdminClient(tracking_uri, admin_user, password)
    users = {"pipeline": [pipeline_user], "device": list(device_users)}
    for username in [pipeline_user, *device_users]:
        state = ensure_user(admin, username, credentials_dir / f"{username}.env", reset_passwords)
        click.echo(f"user {username}: {state} ({credentials_dir / f'{username}.env'})")
    resources = {
        PIPELINE_EXPERIMENT: [(name, admin.experiment_id(name)) for name in experiments],
        FLEET_EXPERIMENT: [(fleet_experiment, admin.recorded_fleet_id(models) or admin.experiment_id(fleet_experiment))],
        ALL_RUNS: [("*", "*")],
        MODEL: [],
        ENROLMENT: [(contract.ENROLMENT_MODEL, contract.ENROLMENT_MODEL)],
    }
    fleet_id = resources[FLEET_EXPERIMENT][0][1]
    admin.ensure_model(contract.ENROLMENT_MODEL)
    for name in models:
        admin.ensure_model(name)
        # Readers and devices find the fleet by this id: a device account can rename the experiment, not the id.
        admin.set_model_tag(name, contract.TAG_FLEET_EXPERIMENT_ID, fleet_id)
        resources[MODEL].append((name, name))
    for grant in GRANTS + ((LEGACY_GRANT,) if legacy_pullers else ()):
        for username in users[grant.user_role]:
            for label, resource_id in resources[grant.resource]:
                admin.grant(username, _TYPES[grant.resource], resource_id, grant.permission)
                click.echo(f"  {username:<10} {grant.permission:<5} {grant.resource} {label}: {grant.why}")
    if not legacy_pullers:
        for username in users[LEGACY_GRANT.user_role]:
            if admin.revoke(username, _TYPES[ALL_RUNS], "*"):
                click.echo(f"  {username:<10} revoked EDIT on every run (pullers from before the fleet layout; "
                           "--legacy-pullers keeps it)")
    _check_default_is_closed(admin, device_users[0], [eid for _, eid in resources[PIPELINE_EXPERIMENT] + resources[FLEET_EXPERIMENT]])


def _check_default_is_closed(admin: AdminClient, device: str, granted: list[str]) -> None:
    """A device reaches what it was granted and nothing else only where the default permission is NO_PERMISSIONS."""
    if "0" in granted:
        return
    seen = admin.permission(device, "experiment", "0")
    if seen not in ("NO_PERMISSIONS", "DENY"):
        raise UsersError(
            f"the server gives every user {seen} on experiments nobody granted (default_permission), so a device "
            "reaches them too: set default_permission = NO_PERMISSIONS in the auth config "
            "(scripts/server.sh start --auth does)")


if __name__ == "__main__":
    sys.exit(main())
