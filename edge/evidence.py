"""Signed device evidence: the canonical payload a device signs and a reader verifies, one format for both sides.

A report (a device's verdict and figures on one version) or a status (what the device runs)
is a JSON payload signed with the device's Ed25519 key (edge/identity.py). It travels as one
write-once MLflow *param* on the device's fleet run, ``edgeq.ev.<digest>`` = ``<signature>.<payload>``:
params cannot be changed or deleted through MLflow's API (not even by an account with EDIT on
the experiment), and the key is a digest of the value, so nobody can take it first. The signature
covers the exact payload bytes; nothing in a run's tags or metrics is believed by a decision.

Readers (registry_tools/evidence.py) verify a value with the public key enrolled for the device
the payload names; a value that does not parse, names a device nobody enrolled or fails the
signature is shown as unverified and never votes.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
KIND_REPORT, KIND_STATUS = "report", "status"
PARAM_PREFIX = "edgeq.ev."
MAX_VALUE_CHARS = 5800  # MLflow truncates param values past 6000 characters: a cut value would never verify
MAX_REASON_CHARS = 1000
PUBLIC_KEY_PREFIX = "ed25519:"


class EvidenceError(ValueError):
    """A value that is not signed evidence, or does not verify: it is shown, never counted."""


@dataclass(frozen=True)
class Payload:
    """What one device states, signed as a whole. ``at`` is the server's time (edge/clock.py) in ms."""

    kind: str
    device: str
    model: str
    seq: int
    at: int
    version: str = ""  # report: the version judged; status: the version running ("" when none)
    sha256: str = ""  # the bundle's digest (report: the one judged; status: the one running)
    alias: str = ""  # the alias the device follows ("" when pinned to a version)
    alias_since: str = ""  # when that alias moved to the version, as the version said (a report's window)
    verdict: str = ""  # report: contract.STATUS_HEALTHY / STATUS_REJECTED; status: the last run's status
    reason: str = ""
    throttled: str = ""  # contract.THROTTLED_* of the measurement
    figures: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        body: dict[str, Any] = {"f": FORMAT, "kind": self.kind, "device": self.device, "model": self.model,
                                "seq": int(self.seq), "at": int(self.at), "version": self.version, "sha256": self.sha256,
                                "alias": self.alias, "alias_since": self.alias_since, "verdict": self.verdict,
                                "reason": self.reason[:MAX_REASON_CHARS], "throttled": self.throttled,
                                "figures": {k: float(v) for k, v in sorted(self.figures.items())}}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Payload":
        try:
            body = json.loads(text)
        except ValueError:
            raise EvidenceError("the payload is not JSON") from None
        if not isinstance(body, dict) or body.get("f") != FORMAT:
            raise EvidenceError(f"not edgeq evidence format {FORMAT}")
        strings = ("kind", "device", "model", "version", "sha256", "alias", "alias_since", "verdict", "reason", "throttled")
        if not all(isinstance(body.get(k), str) for k in strings):
            raise EvidenceError("a field of the payload is not text")
        seq, at, figures = body.get("seq"), body.get("at"), body.get("figures")
        if not (type(seq) is int and type(at) is int and seq >= 0 and at >= 0):
            raise EvidenceError("seq and at must be whole numbers")
        if not isinstance(figures, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in figures.values()):
            raise EvidenceError("figures must map names to numbers")
        if body["kind"] not in (KIND_REPORT, KIND_STATUS):
            raise EvidenceError(f"unknown kind {body['kind'][:20]!r}")
        return cls(body["kind"], body["device"], body["model"], seq, at, body["version"], body["sha256"],
                   body["alias"], body["alias_since"], body["verdict"], body["reason"], body["throttled"],
                   {str(k): float(v) for k, v in figures.items()})


def encode(payload: Payload, sign: Any) -> str:
    """``<base64url signature>.<payload JSON>``; ``sign(bytes) -> bytes`` is the device key's signer."""
    text = payload.to_json()
    value = base64.urlsafe_b64encode(sign(text.encode("ascii"))).decode("ascii") + "." + text
    if len(value) > MAX_VALUE_CHARS:
        raise EvidenceError(f"signed evidence is {len(value)} characters, more than a param holds ({MAX_VALUE_CHARS})")
    return value


def param_key(value: str) -> str:
    """Where ``value`` goes on the device's run: its own digest, so nobody can occupy the key beforehand."""
    return PARAM_PREFIX + hashlib.sha256(value.encode("utf-8")).hexdigest()[:24]


def split(value: str) -> tuple[bytes, str]:
    """(signature, payload text) of an encoded value; EvidenceError when it has not that shape."""
    head, sep, text = value.partition(".")
    if not sep or not text:
        raise EvidenceError("not <signature>.<payload>")
    try:
        signature = base64.urlsafe_b64decode(head.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise EvidenceError("the signature is not base64") from None
    if len(signature) != 64:
        raise EvidenceError("the signature is not an Ed25519 signature")
    return signature, text


def public_key_text(raw: bytes) -> str:
    """``ed25519:<base64>`` of a raw 32-byte public key: what a device prints and an operator enrols."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def public_key_raw(text: str) -> bytes:
    """Inverse of `public_key_text`; EvidenceError names what is wrong."""
    text = text.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise EvidenceError(f"a device key looks like {PUBLIC_KEY_PREFIX}<base64> (edgeq-pull identity prints it)")
    try:
        raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError("the device key is not valid base64") from None
    if len(raw) != 32:
        raise EvidenceError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return raw


def verify(value: str, public_key: bytes | Any, payload: Payload | None = None) -> Payload:
    """The payload of ``value`` when the key (raw bytes, or a loaded Ed25519PublicKey) signed it; EvidenceError
    otherwise. ``payload``: what `claimed` already parsed from the same value, so it is not parsed twice."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature, text = split(value)
    key = Ed25519PublicKey.from_public_bytes(public_key) if isinstance(public_key, bytes) else public_key
    try:
        key.verify(signature, text.encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        raise EvidenceError("bad signature: the enrolled key of the device it names did not sign it") from None
    return payload if payload is not None else Payload.from_json(text)


def claimed(value: str) -> Payload:
    """The payload as written, NOT verified: only to find whose key to verify it with, or to show it."""
    return Payload.from_json(split(value)[1])
