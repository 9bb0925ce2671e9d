"""GDPR export and erasure of one contact of one tenant.

What is held about a contact, and where:

- conversation context ``{prefix}:ctx:{tenant}:{contact}``, sealed under the contact's data key
  ``{prefix}:dk:c:{tenant}:{contact}`` (``store.crypto``);
- audit records whose ``contact`` is the contact's pseudonym (keyed HMAC; no personal values);
  their event ids name every event of the contact that went through the pipeline;
- dead letters whose sealed job names the contact (or, for unparseable bodies, contains its id);
- dedup keys ``{prefix}:dedup:{tenant}:*`` claimed by one of those events;
- entries of the ready stream ``{prefix}:ready`` (redacted events) carrying its pseudonym;
- arq job and result keys of its events (``arq:job:*``, ``arq:result:*``: arq keeps a finished job's
  arguments in its result for hours). Their payloads are sealed under the master key, not the
  contact's data key, so destroying the data key does not make them unreadable: they are deleted,
  and queued jobs of the contact (an event still waiting in a stage queue, or deferred by the rate
  stage) are taken off their queues. Such an event ends there, with no outcome: erasure wins.

Erasure destroys the contact's data key (so every copy of its context, including copies in
backups, is unreadable once the master keys live at backup time are retired), deletes the context,
its dead letters, dedup keys and ready-stream entries, and appends an audit record with the
pseudonym and counts only. Audit records are kept: they hold no personal data and the chain must
still verify.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from redis.asyncio import Redis

from pipeline.models import Envelope, EventMeta, StageJob, unpack
from pipeline.parse import ParseError, event_meta
from pipeline.pseudonym import pseudonymize_id
from pipeline.stages import envelope_aad
from store.context import ContextStore
from store.crypto import EnvelopeCrypto, contact_scope
from store.keyring import DecryptError

MIN_RAW_MATCH = 8  # shortest contact id matched inside an unparseable dead-lettered body (GHL ids: 20)


def _s(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class Holdings:
    tenant: str
    pseudonym: str
    context: dict[str, Any] | None = None
    context_error: str = ""
    audit_records: list[dict[str, Any]] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    dedup_keys: list[str] = field(default_factory=list)
    ready_ids: list[str] = field(default_factory=list)
    ready_events: list[dict[str, Any]] = field(default_factory=list)
    job_keys: list[str] = field(default_factory=list)  # arq job/result keys of the contact's events
    job_ids: list[str] = field(default_factory=list)  # their arq job ids (queue members)


class Gdpr:
    def __init__(self, redis: Redis, crypto: EnvelopeCrypto, *, pseudonym_key: bytes, prefix: str = "intake") -> None:
        self.r = redis
        self._r: Any = redis
        self.crypto = crypto
        self.pseudonym_key = pseudonym_key
        self.prefix = prefix
        self.contexts = ContextStore(redis, crypto, prefix=prefix)

    def k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _open_envelope(self, env: Envelope) -> tuple[bytes, EventMeta | None]:
        """An envelope's body, decrypted, and where it routes (None when the body does not parse)."""
        body = self.crypto.keyring.open(env.body, envelope_aad(env.event_id))
        try:
            return body, event_meta(body, env.tenant_hint)[0]
        except ParseError:
            return body, None

    async def _dead_letters(self, tenant: str, contact: str) -> list[dict[str, Any]]:
        from store.dlq import DeadLetterStore

        dlq = DeadLetterStore(self.r, self.crypto.keyring, prefix=self.prefix)
        out = []
        for entry in await dlq.list(state=None, limit=10**9):
            if entry.tenant not in {tenant, "_unknown"}:
                continue
            try:
                payload = await dlq.job(entry.id)
            except (DecryptError, KeyError):
                continue
            named = False
            body: bytes | None = None
            try:
                if entry.stage == "dedup":
                    body, meta = self._open_envelope(unpack(payload, Envelope))
                    if meta is not None:
                        named = meta.tenant == tenant and meta.contact == contact
                    else:  # cannot route it: match on the raw bytes (ids long enough to be unique)
                        named = len(contact) >= MIN_RAW_MATCH and contact.encode() in body
                elif entry.stage != "audit":
                    job = unpack(payload, StageJob)
                    named = job.tenant == tenant and job.contact == contact
            except (DecryptError, msgspec.DecodeError, ValueError):
                continue
            if named:
                d = dict(entry.__dict__)
                if body is not None:
                    d["body"] = body.decode("utf-8", "replace")
                out.append(d)
        return out

    def _job_names(self, tenant: str, contact: str, value: bytes, event_ids: set[str]) -> bool:
        """Does this arq job (or result) belong to one of the contact's events, or name the contact?"""
        try:
            d = msgspec.msgpack.decode(value)
            fn, args = d.get("f"), d.get("a") or []
            if not isinstance(fn, str) or not args or not isinstance(args[0], bytes):
                return False
            if fn == "dedup":
                env = unpack(args[0], Envelope)
                if env.event_id in event_ids:
                    return True
                _, meta = self._open_envelope(env)
                return meta is not None and meta.tenant == tenant and meta.contact == contact
            if fn in {"rate", "redact", "persist"}:
                job = unpack(args[0], StageJob)
                return job.event_id in event_ids or (job.tenant == tenant and job.contact == contact)
        except (DecryptError, msgspec.DecodeError, msgspec.ValidationError, ValueError, AttributeError):
            return False
        return False  # audit jobs carry pseudonyms and counts only

    async def _jobs(self, h: Holdings, tenant: str, contact: str) -> None:
        """arq job and result keys of the contact's events (one SCAN pass; erasure is rare)."""
        from arq.constants import job_key_prefix, result_key_prefix

        for prefix in (job_key_prefix, result_key_prefix):
            async for raw in self._r.scan_iter(match=prefix + "*", count=1000):
                key = _s(raw)
                job_id = key[len(prefix):]
                parts = job_id.split(":")
                if len(parts) >= 2 and parts[0] == "audit":
                    if parts[1] in h.event_ids:  # no personal data, but nothing of the event is kept
                        h.job_keys.append(key)
                        h.job_ids.append(job_id)
                    continue
                value = await self._r.get(raw)
                if value is not None and self._job_names(tenant, contact, value, h.event_ids):
                    h.job_keys.append(key)
                    h.job_ids.append(job_id)
                    if len(parts) >= 2:
                        h.event_ids.add(parts[1])

    async def find(self, tenant: str, contact: str, *, decrypt: bool = True) -> Holdings:
        pseudo = pseudonymize_id(self.pseudonym_key, tenant, contact)
        h = Holdings(tenant=tenant, pseudonym=pseudo)
        if decrypt:
            try:
                ctx = await self.contexts.get(tenant, contact)
                h.context = msgspec.to_builtins(ctx) if ctx is not None else None
            except DecryptError as exc:
                h.context_error = str(exc)
        for line in await self._r.lrange(self.k("audit", "log", tenant), 0, -1):
            rec = orjson.loads(line)
            if rec.get("contact") == pseudo:
                h.audit_records.append(rec)
                if rec.get("stage") != "operator":
                    h.event_ids.add(rec["event_id"])
        h.dead_letters = await self._dead_letters(tenant, contact)
        h.event_ids.update(d["event_id"] for d in h.dead_letters)
        await self._jobs(h, tenant, contact)
        if h.event_ids:
            async for key in self._r.scan_iter(match=self.k("dedup", tenant, "*"), count=1000):
                if _s(await self._r.get(key)) in h.event_ids:
                    h.dedup_keys.append(_s(key))
        for sid, fields in await self._r.xrange(self.k("ready")):
            f = {_s(a): b for a, b in fields.items()}
            if _s(f.get("tenant")) == tenant and _s(f.get("contact")) == pseudo:
                h.ready_ids.append(_s(sid))
                h.ready_events.append({"event_id": _s(f.get("event_id")), "type": _s(f.get("type")),
                                       "event": orjson.loads(f["event"]) if f.get("event") else None})
        return h

    async def export(self, tenant: str, contact: str) -> dict[str, Any]:
        """Everything held about the contact, decrypted, as a JSON-ready dict."""
        h = await self.find(tenant, contact)
        return {
            "tenant": tenant, "contact": contact, "pseudonym": h.pseudonym, "exported_at": time.time(),
            "context": h.context, "context_error": h.context_error or None,
            "audit_records": h.audit_records, "dead_letters": h.dead_letters,
            "ready_events": h.ready_events, "event_ids": sorted(h.event_ids),
        }

    async def erase(self, tenant: str, contact: str) -> dict[str, int]:
        """Destroy the contact's data key and data; returns counts of what was removed."""
        h = await self.find(tenant, contact, decrypt=False)
        scope = contact_scope(tenant, contact)
        self.crypto.forget(scope)
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self.crypto.record_key(scope))
        pipe.srem(self.crypto.index_key, scope)
        pipe.delete(self.contexts.key(tenant, contact))
        for d in h.dead_letters:
            pipe.delete(self.k("dlq", d["id"]))
            pipe.zrem(self.k("dlq", "idx"), d["id"])
        if h.dedup_keys:
            pipe.delete(*h.dedup_keys)
        if h.ready_ids:
            pipe.xdel(self.k("ready"), *h.ready_ids)
        if h.job_keys:
            pipe.delete(*h.job_keys)
        if h.job_ids:
            from pipeline.models import STAGES

            for stage in STAGES:
                pipe.zrem(self.k("q", stage), *set(h.job_ids))
        res = await pipe.execute()
        return {"data_key": int(res[0]), "context": int(res[2]), "dead_letters": len(h.dead_letters),
                "dedup_keys": len(h.dedup_keys), "ready_events": len(h.ready_ids),
                "events": len(h.event_ids), "jobs": len(h.job_keys)}
