"""Event models and job payloads (msgspec). No Redis, no arq.

Jobs carry one msgpack-encoded payload; everything personal inside a payload is an AES-GCM blob.
"""

from __future__ import annotations

from typing import Any

import msgspec

STAGES = ("dedup", "rate", "redact", "persist", "audit")
OUTCOMES = ("processed", "duplicate", "deferred", "dead_lettered")


class Envelope(msgspec.Struct, frozen=True):
    """What the ingress stores: the verified request, body encrypted."""

    event_id: str
    received_at: float
    scheme: str  # how it was verified: ghl-ed25519, ghl-rsa, tenant-token, tenant-hmac, standard-webhooks
    client: str
    body: bytes  # sealed raw body, AAD = ("envelope", event_id)
    tenant_hint: str = ""  # tenant from the URL for tenant endpoints


class StageJob(msgspec.Struct, frozen=True):
    """Hand-off between stages after dedup. ``data`` is a sealed blob bound to the event."""

    event_id: str
    tenant: str
    contact: str  # raw contact id ("" when the event has none); never written to logs/audit
    event_type: str
    received_at: float
    data: bytes  # sealed: raw body (rate, redact) or redacted JSON (persist)
    deferrals: int = 0
    counts: dict[str, int] = {}


class AuditJob(msgspec.Struct, frozen=True):
    tenant: str
    event_id: str
    stage: str
    outcome: str
    actor: str = "pipeline"
    contact: str = ""  # pseudonym
    counts: dict[str, int] = {}
    detail: dict[str, str] = {}


class EventMeta(msgspec.Struct, frozen=True):
    """What dedup learns from a parsed payload."""

    tenant: str
    contact: str
    event_type: str
    dedup_key: str
    shape: str  # "marketplace" or "workflow"


_enc = msgspec.msgpack.Encoder()


def pack(obj: Any) -> bytes:
    return _enc.encode(obj)


def unpack(data: bytes, typ: type[Any]) -> Any:
    return msgspec.msgpack.decode(data, type=typ)
