"""Which device keys the operator vouches for, and for which models: the enrolment register, kept in the registry.

The register is the registered model ``edgeq-devices`` (contract.ENROLMENT_MODEL): each device's
record — its public key for each model it may speak about, when and by whom it was enrolled, and
when it was revoked — sits in one of ``contract.ENROLMENT_BUCKETS`` tags picked by a hash of its id. Only accounts with EDIT on that entry (the operator, the pipeline user)
can change it; device accounts get no grant on it. Each model the fleet pulls records the
fleet experiment's id (contract.TAG_FLEET_EXPERIMENT_ID), so neither the readers nor the devices
find it by a name that anyone with EDIT on the experiment can change. A revocation counts from
the next read: every decision reads the register afresh.
"""
from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge import contract, evidence
from registry_tools.api import RegistryApi
from registry_tools.rest_client import error_code
from registry_tools.lookup import RegistryToolError, registered_model

_DESCRIPTION = ("edgeq's device enrolment register: one tag per device (its Ed25519 public key and the models it may "
                "report on). Written by `edgeq device enroll / revoke`; devices must not be granted EDIT here.")


@dataclass(frozen=True)
class Enrolment:
    """One device: the public key it signs with for each model it may speak about (a device pulling two models from
    two state directories has a key in each), when and by whom, and when it was revoked."""

    device: str
    keys: dict[str, str]  # model → ed25519:<base64>
    enrolled_at: str
    by: str
    revoked_at: str = ""

    @property
    def active(self) -> bool:
        return not self.revoked_at

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self.keys))

    def record(self) -> dict:
        return {"keys": dict(sorted(self.keys.items())), "enrolled_at": self.enrolled_at, "by": self.by,
                "revoked_at": self.revoked_at}

    @classmethod
    def from_record(cls, device: str, body: Any) -> "Enrolment | None":
        try:
            keys = {str(m): str(k) for m, k in body["keys"].items()}
            return cls(device, keys, str(body.get("enrolled_at", "")), str(body.get("by", "")),
                       str(body.get("revoked_at") or ""))
        except (KeyError, TypeError, AttributeError):
            return None


class Register:
    """The register as read: bucket tags kept as text and parsed only when a device in them is looked up, so a
    decision about a few hundred devices does not parse a fleet's worth of enrolments."""

    def __init__(self, buckets: dict[str, str]):
        self.buckets = buckets  # bucket tag → JSON {device: record}
        self._parsed: dict[str, dict] = {}
        self._keys: dict[tuple[str, str], Any] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Register) and self.buckets == other.buckets

    __hash__ = None  # mutable caches inside; compared by content

    def _bucket(self, device: str) -> dict:
        tag = contract.enrolment_bucket_tag(device)
        if tag not in self._parsed:
            try:
                body = json.loads(self.buckets.get(tag, "{}"))
            except ValueError:
                body = {}
            self._parsed[tag] = body if isinstance(body, dict) else {}
        return self._parsed[tag]

    def get(self, device: str) -> Enrolment | None:
        return Enrolment.from_record(device, self._bucket(device).get(device))

    @property
    def devices(self) -> dict[str, Enrolment]:
        """Every enrolment, parsed (edgeq device list)."""
        found = {}
        for text in self.buckets.values():
            try:
                body = json.loads(text)
            except ValueError:
                continue
            for device, record in (body.items() if isinstance(body, dict) else ()):
                enrolment = Enrolment.from_record(device, record)
                if enrolment is not None:
                    found[device] = enrolment
        return dict(sorted(found.items()))

    def key_for(self, device: str, model: str) -> tuple[Any, str]:
        """(the loaded public key, "") when ``device`` may speak about ``model``; else (None, why not)."""
        found = self.get(device)
        if found is None:
            return None, f"device {device!r} is not enrolled"
        if not found.active:
            return None, f"device {device!r} was revoked on {found.revoked_at}"
        if model not in found.keys:
            return None, f"device {device!r} is not enrolled for {model!r}"
        if (device, model) not in self._keys:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            try:
                self._keys[device, model] = Ed25519PublicKey.from_public_bytes(evidence.public_key_raw(found.keys[model]))
            except (evidence.EvidenceError, ValueError) as exc:
                return None, f"device {device!r} has an unusable enrolled key ({exc})"
        return self._keys[device, model], ""


def who() -> str:
    """The person (or account) an enrolment is recorded for."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(client: RegistryApi) -> Register:
    """Every enrolment (an empty register when none was ever made): one request, however many devices."""
    try:
        tags = client.get_registered_model(contract.ENROLMENT_MODEL).tags or {}
    except Exception as exc:  # MlflowException or rest_client.ApiError
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return Register({})
        raise
    return Register({k: v for k, v in tags.items() if k.startswith(contract.ENROLMENT_BUCKET_PREFIX)})


def bucket_tags(register: Register, enrolments: list[Enrolment]) -> dict[str, str]:
    """The bucket tags that hold ``enrolments`` merged into what ``register`` holds (a bulk enrolment in one write
    per bucket)."""
    changed: dict[str, dict] = {}
    for enrolment in enrolments:
        tag = contract.enrolment_bucket_tag(enrolment.device)
        bucket = changed.setdefault(tag, dict(register._bucket(enrolment.device)))
        bucket[enrolment.device] = enrolment.record()
    return {tag: json.dumps(bucket, sort_keys=True) for tag, bucket in changed.items()}


def _write(client: RegistryApi, enrolment: Enrolment) -> None:
    """Put one device's record into its bucket; read back, and written again when another enrolment of the same
    bucket landed in between (two operators at once), so neither is lost."""
    tag = contract.enrolment_bucket_tag(enrolment.device)
    for _ in range(5):
        bucket = dict(read(client)._bucket(enrolment.device))
        bucket[enrolment.device] = enrolment.record()
        client.set_registered_model_tag(contract.ENROLMENT_MODEL, tag, json.dumps(bucket, sort_keys=True))
        if read(client)._bucket(enrolment.device).get(enrolment.device) == enrolment.record():
            return
    raise RegistryToolError(f"the enrolment of {enrolment.device!r} kept being overwritten by concurrent enrolments; "
                            "run the command again")


def _ensure_register(client: RegistryApi) -> None:
    try:
        client.get_registered_model(contract.ENROLMENT_MODEL)
    except Exception as exc:
        if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(contract.ENROLMENT_MODEL, description=_DESCRIPTION)
        except Exception as again:
            if error_code(again) != "RESOURCE_ALREADY_EXISTS":
                raise


def fleet_experiment_id(client: RegistryApi, model: str) -> str | None:
    """The fleet experiment's id recorded on ``model`` at setup, or None when nobody recorded one."""
    value = (registered_model(client, model).tags or {}).get(contract.TAG_FLEET_EXPERIMENT_ID, "")
    return value if value.isdigit() else None


def record_fleet_experiment(client: RegistryApi, model: str) -> str:
    """Record on ``model`` the id of the fleet experiment (created when missing); the id already recorded wins."""
    recorded = fleet_experiment_id(client, model)
    if recorded:
        return recorded
    found = client.get_experiment_by_name(contract.FLEET_EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(
        contract.FLEET_EXPERIMENT, tags={contract.TAG_EXPERIMENT_KIND: contract.EXPERIMENT_KIND_TRAINING})
    client.set_registered_model_tag(model, contract.TAG_FLEET_EXPERIMENT_ID, str(experiment_id))
    return str(experiment_id)


def enroll(client: RegistryApi, device: str, key: str, models: list[str] | tuple[str, ...]) -> Enrolment:
    """Vouch for ``key`` as ``device``'s for ``models`` (its keys for other models stay; a revoked device starts over)."""
    device = contract.sanitize_device_id(device)
    try:
        evidence.public_key_raw(key)
    except evidence.EvidenceError as exc:
        raise RegistryToolError(f"--key: {exc}") from None
    if not models:
        raise RegistryToolError("give the models the device may report on: --model NAME (repeatable)")
    for model in models:
        record_fleet_experiment(client, model)  # unknown model: RegistryToolError
    _ensure_register(client)
    earlier = read(client).get(device)
    keys = dict(earlier.keys) if earlier is not None and earlier.active else {}  # its keys for other models stay
    keys.update({model: key.strip() for model in models})
    enrolment = Enrolment(device, keys, _now(), who())
    _write(client, enrolment)
    for model in models:  # from now on, signed evidence is what counts for the model
        client.set_registered_model_tag(model, contract.TAG_DEVICES_ENROLLED, "true")
    return enrolment


def revoke(client: RegistryApi, device: str) -> Enrolment:
    """Stop counting ``device``'s evidence from the next read on; the record stays, marked revoked."""
    device = contract.sanitize_device_id(device)
    found = read(client).get(device)
    if found is None:
        raise RegistryToolError(f"device {device!r} is not enrolled (edgeq device list shows who is)")
    if not found.active:
        return found
    revoked = Enrolment(found.device, found.keys, found.enrolled_at, found.by, _now())
    _write(client, revoked)
    return revoked


def set_accept_unsigned(client: RegistryApi, model: str, accept: bool) -> None:
    registered_model(client, model)  # unknown model: RegistryToolError
    if accept:
        client.set_registered_model_tag(model, contract.TAG_ACCEPT_UNSIGNED, "true")
    else:
        try:
            client.delete_registered_model_tag(model, contract.TAG_ACCEPT_UNSIGNED)
        except Exception as exc:
            if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
