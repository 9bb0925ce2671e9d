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

import orjson

from pipeline.models import EventMeta

ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
VOLATILE_KEYS = frozenset({"timestamp", "webhookId", "triggerData"})
MAX_DEPTH = 64  # GHL payloads nest a handful of levels; deeper is refused (and orjson stops at 255)

# The event names GHL documents (its webhook reference; one fixture each in tests/fixtures/ghl/). The
# routing copy of ``type`` goes into audit records, which crypto-erasure cannot reach, so only these
# names are kept; any other value (a new event, a wrong ``type``, or text a sender put there) is
# "Unknown" there. The event itself, ``type`` field included, flows on and is redacted like the rest.
KNOWN_EVENT_TYPES = frozenset("""
AppInstall AppUninstall INSTALL UNINSTALL PLAN_CHANGE PlanChange
AppointmentCreate AppointmentDelete AppointmentUpdate AssociationCreate AssociationDelete AssociationUpdate
CampaignStatusUpdate ContactCreate ContactDelete ContactDndUpdate ContactTagUpdate ContactUpdate
ConversationUnreadUpdate InboundMessage OutboundMessage ProviderOutboundMessage
InvoiceCreate InvoiceDelete InvoicePartiallyPaid InvoicePaid InvoiceSent InvoiceUpdate InvoiceVoid
LocationCreate LocationUpdate NoteCreate NoteDelete NoteUpdate ObjectSchemaCreate ObjectSchemaUpdate
OpportunityAssignedToUpdate OpportunityCreate OpportunityDelete OpportunityMonetaryValueUpdate
OpportunityStageUpdate OpportunityStatusUpdate OpportunityUpdate OrderStatusUpdate
PriceCreate PriceDelete PriceUpdate ProductCreate ProductDelete ProductUpdate
RecordCreate RecordDelete RecordUpdate RelationCreate RelationDelete
TaskComplete TaskCreate TaskDelete UserCreate
""".split())


class ParseError(ValueError):
    """The payload verified but is not a usable JSON object."""


def _too_deep(obj: Any, limit: int) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def decode_object(body: bytes) -> dict[str, Any]:
    """The payload as a dict; ParseError if it is not a JSON object or nests deeper than MAX_DEPTH."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "recursion" in exc.msg.lower() or "depth" in exc.msg.lower():
            raise ParseError(f"body nests deeper than {MAX_DEPTH} levels") from None
        raise ParseError(f"body is not JSON ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:
        raise ParseError(f"body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(obj, dict):
        raise ParseError(f"body is JSON {type(obj).__name__}, not an object")
    if _too_deep(obj, MAX_DEPTH):
        raise ParseError(f"body nests deeper than {MAX_DEPTH} levels")
    return obj


def _clean_id(value: Any) -> str:
    if isinstance(value, str) and ID_RE.match(value):
        return value
    return ""


def _str(obj: dict[str, Any], key: str) -> str | None:
    """A top-level routing field when it is a string; any other type counts as absent (field by field)."""
    value = obj.get(key)
    return value if isinstance(value, str) else None


def stable_hash(obj: dict[str, Any]) -> str:
    """Hash of the payload without fields that change between sends of the same event."""
    subset = {k: v for k, v in obj.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def event_type_of(raw_type: Any, workflow: bool) -> str:
    """The routing label: a GHL event name, ``WorkflowWebhook``, or ``Unknown`` (never free text)."""
    if isinstance(raw_type, str) and raw_type in KNOWN_EVENT_TYPES:
        return raw_type
    if raw_type is None and workflow:
        return "WorkflowWebhook"
    return "Unknown"


def event_meta(body: bytes, tenant_hint: str = "") -> tuple[EventMeta, dict[str, Any]]:
    """Route the payload: tenant, contact, type and dedup key."""
    obj = decode_object(body)
    raw_type = obj.get("type")
    location = obj.get("location")
    workflow = "contact_id" in obj or ("location" in obj and isinstance(location, dict) and "locationId" not in obj)
    tenant = _clean_id(_str(obj, "locationId"))
    if not tenant and isinstance(location, dict):
        tenant = _clean_id(location.get("id"))
    if not tenant and _str(obj, "altType") == "location":
        tenant = _clean_id(_str(obj, "altId"))
    if not tenant and isinstance(raw_type, str) and raw_type.startswith("Location"):
        tenant = _clean_id(_str(obj, "id"))
    if not tenant:
        company = _clean_id(_str(obj, "companyId"))
        tenant = f"agency-{company}" if company else ""
    if tenant_hint:
        if tenant and tenant != tenant_hint:
            raise ParseError("payload location does not match the tenant endpoint")
        tenant = tenant_hint
    if not tenant:
        tenant = "_unknown"
    contact = _clean_id(_str(obj, "contactId")) or _clean_id(_str(obj, "contact_id"))
    event_type = event_type_of(raw_type, workflow)
    if isinstance(raw_type, str) and raw_type.startswith("Contact") and not contact:
        contact = _clean_id(_str(obj, "id"))
    webhook_id = _clean_id(_str(obj, "webhookId"))
    # a webhookId is unique per GHL location; without a location we can trust, the whole payload
    # (which carries whatever location value it had) keys it, so two such events never collide
    dedup_key = f"w:{webhook_id}" if webhook_id and tenant != "_unknown" else f"h:{stable_hash(obj)}"
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
