"""Parsing GHL payloads: tolerant of unknown fields and unknown or missing ``type``.

Two shapes reach us: marketplace webhooks (flat camelCase JSON with ``locationId``, mostly a
``webhookId``) and workflow "Webhook" action payloads (snake_case contact fields, ``location``
object, no ``webhookId``). Anything that is a JSON object flows through; what is not an object
is a permanent error (dead-lettered with the reason).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
import orjson

from pipeline.models import EventMeta

ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
VOLATILE_KEYS = frozenset({"timestamp", "webhookId", "triggerData"})


class ParseError(ValueError):
    """The payload verified but is not a usable JSON object."""


class GhlPayload(msgspec.Struct, forbid_unknown_fields=False):
    """The few top-level fields the pipeline routes on; all optional, all other fields ignored."""

    type: str | None = None
    locationId: str | None = None
    companyId: str | None = None
    contactId: str | None = None
    webhookId: str | None = None
    contact_id: str | None = None
    id: str | None = None
    altId: str | None = None
    altType: str | None = None


_decoder = msgspec.json.Decoder(GhlPayload)


def decode_object(body: bytes) -> dict[str, Any]:
    """The payload as a dict; ParseError if it is not a JSON object."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"body is not JSON ({exc.msg} at byte {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ParseError(f"body is JSON {type(obj).__name__}, not an object")
    return obj


def _clean_id(value: Any) -> str:
    if isinstance(value, str) and ID_RE.match(value):
        return value
    return ""


def stable_hash(obj: dict[str, Any]) -> str:
    """Hash of the payload without fields that change between sends of the same event."""
    subset = {k: v for k, v in obj.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def event_meta(body: bytes, tenant_hint: str = "") -> tuple[EventMeta, dict[str, Any]]:
    """Route the payload: tenant, contact, type and dedup key."""
    obj = decode_object(body)
    try:
        head = _decoder.decode(body)
    except msgspec.ValidationError:
        # A routing field of an unexpected type (e.g. "type": 5): fall back to a lenient read.
        head = GhlPayload()
    location = obj.get("location")
    workflow = "contact_id" in obj or ("location" in obj and isinstance(location, dict) and "locationId" not in obj)
    tenant = _clean_id(head.locationId)
    if not tenant and isinstance(location, dict):
        tenant = _clean_id(location.get("id"))
    if not tenant and head.altType == "location":
        tenant = _clean_id(head.altId)
    if not tenant and isinstance(head.type, str) and head.type.startswith("Location"):
        tenant = _clean_id(head.id)
    if not tenant and head.companyId:
        company = _clean_id(head.companyId)
        tenant = f"agency-{company}" if company else ""
    if tenant_hint:
        if tenant and tenant != tenant_hint:
            raise ParseError("payload location does not match the tenant endpoint")
        tenant = tenant_hint
    if not tenant:
        tenant = "_unknown"
    contact = _clean_id(head.contactId) or _clean_id(head.contact_id)
    event_type = head.type if isinstance(head.type, str) and head.type else ("WorkflowWebhook" if workflow else "Unknown")
    event_type = re.sub(r"[^A-Za-z0-9_.\-]", "", event_type)[:64] or "Unknown"
    if event_type.startswith("Contact") and not contact:
        contact = _clean_id(head.id)
    webhook_id = _clean_id(head.webhookId)
    dedup_key = f"w:{webhook_id}" if webhook_id else f"h:{stable_hash(obj)}"
    return (
        EventMeta(
            tenant=tenant,
            contact=contact,
            event_type=event_type,
            dedup_key=dedup_key,
            shape="workflow" if workflow else "marketplace",
        ),
        obj,
    )


def dedup_decision(claimed_by: str | None, event_id: str) -> str:
    """After ``SET NX``: who holds the key decides. The same event re-running is not a duplicate."""
    if claimed_by is None or claimed_by == event_id:
        return "new"
    return "duplicate"
