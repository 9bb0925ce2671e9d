"""Demo and test traffic: GHL fixtures as they arrive on the wire, and inbound lead messages."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ghl_intake.settings import REPO_ROOT

FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "ghl"
LEADS_FILE = Path(__file__).resolve().parent / "data" / "lead_messages.json"
DEMO_TENANT = "DemoRealtyLoc0001"


@dataclass
class Webhook:
    name: str
    body: bytes
    shape: str  # "marketplace" or "workflow"


def _wire(obj: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """GHL's docs omit the wire fields; on the wire every marketplace webhook has them."""
    out = dict(obj)
    out.setdefault("webhookId", webhook_id)
    # Sent now: a documented example's old send time would (rightly) fail the ingress replay window.
    out["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


def fixture_webhooks(fixture_dir: Path = FIXTURE_DIR) -> list[Webhook]:
    out = []
    for path in sorted(fixture_dir.glob("*.json")):
        obj = json.loads(path.read_text())
        if path.name.startswith("WorkflowWebhook"):
            out.append(Webhook(path.stem, orjson.dumps(obj), "workflow"))
        else:
            out.append(Webhook(path.stem, orjson.dumps(_wire(obj, str(uuid.uuid4()))), "marketplace"))
    return out


def lead_webhooks(tenant: str = DEMO_TENANT, leads_file: Path = LEADS_FILE) -> list[Webhook]:
    if not leads_file.exists():
        return []
    leads = json.loads(leads_file.read_text())
    out = []
    for i, lead in enumerate(leads):
        channel = lead.get("channel", "SMS")
        body: dict[str, Any] = {
            "type": "InboundMessage",
            "locationId": tenant,
            "contactId": f"demoContact{i:04d}",
            "conversationId": f"demoConv{i:04d}",
            "messageType": channel,
            "direction": "inbound",
            "status": "delivered",
            "contentType": "text/html" if channel == "Email" else "text/plain",
            "body": lead["body"],
            "dateAdded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if channel == "Email":
            contact = lead.get("contact", {})
            body["from"] = contact.get("email", "")
            body["to"] = ["leads@example.org"]
            body["subject"] = lead.get("subject", "Inquiry about a listing")
        out.append(Webhook(f"lead-{i:02d}-{channel}", orjson.dumps(_wire(body, str(uuid.uuid4()))), "marketplace"))
    return out


def lead_pii_values(leads_file: Path = LEADS_FILE) -> list[str]:
    """The personal values inside the demo leads (for leak scans)."""
    values: list[str] = []
    for lead in json.loads(leads_file.read_text()):
        for v in lead.get("contact", {}).values():
            if isinstance(v, str) and len(v) >= 4:
                values.append(v)
        values.extend(lead.get("pii", []))
    return values
