"""Per-contact conversation context: merge one redacted event into the last N entries.

Pure merge; the store does the encrypted compare-and-set around it. Idempotent per event id:
an event already merged (or merged and since trimmed away) is not appended again.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Top-level fields of a redacted event worth keeping in a conversation context.
CONTEXT_FIELDS = (
    "type", "messageType", "direction", "body", "subject", "status", "contentType", "dateAdded",
    "startTime", "endTime", "title", "appointmentStatus", "pipelineStageId", "monetaryValue", "tags",
    "calendar", "customData",
)


class Entry(msgspec.Struct):
    event_id: str
    event_type: str
    received_at: float
    fields: dict[str, Any]
    counts: dict[str, int] = {}


class Context(msgspec.Struct):
    tenant: str
    contact: str
    entries: list[Entry] = []
    seen: list[str] = []  # event ids merged, kept longer than entries so trimmed events stay idempotent


def entry_from_event(event_id: str, event_type: str, received_at: float, redacted: dict[str, Any],
                     counts: dict[str, int]) -> Entry:
    fields = {k: redacted[k] for k in CONTEXT_FIELDS if k in redacted}
    return Entry(event_id=event_id, event_type=event_type, received_at=received_at, fields=fields, counts=dict(counts))


def merge(ctx: Context, entry: Entry, max_items: int) -> bool:
    """Append ``entry`` unless already merged; trim to ``max_items``. True when ``ctx`` changed."""
    if entry.event_id in ctx.seen:
        return False
    ctx.entries.append(entry)
    ctx.entries.sort(key=lambda e: (e.received_at, e.event_id))
    if len(ctx.entries) > max_items:
        del ctx.entries[: len(ctx.entries) - max_items]
    ctx.seen.append(entry.event_id)
    keep_seen = max(4 * max_items, 200)
    if len(ctx.seen) > keep_seen:
        del ctx.seen[: len(ctx.seen) - keep_seen]
    return True


_ctx_dec = msgspec.msgpack.Decoder(Context)
_enc = msgspec.msgpack.Encoder()


def encode_context(ctx: Context) -> bytes:
    return _enc.encode(ctx)


def decode_context(data: bytes) -> Context:
    return _ctx_dec.decode(data)
