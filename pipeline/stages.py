"""The five stages as plain async functions: data in, a ``Handoff`` decision out.

Each stage takes its decoded job and a ``Deps`` object (ports to the stores) and returns what
should happen next. The worker shell (``workers/``) applies the hand-off: enqueue the next stage
under a deterministic job id, enqueue audit jobs, record terminal outcomes. Nothing here imports
arq or a Redis client; the tests drive these functions directly with in-memory stores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from pipeline import parse, persist, rate
from pipeline.models import AuditJob, Envelope, StageJob, pack
from pipeline.pseudonym import pseudonymize_id
from pipeline.retry import PermanentError

UNKNOWN_TENANT = "_unknown"


class Sealer(Protocol):
    def seal(self, plaintext: bytes, associated: bytes, key_id: str | None = None) -> bytes: ...
    def open(self, blob: bytes, associated: bytes) -> bytes: ...


class StatePort(Protocol):
    async def claim(self, tenant: str, key: str, event_id: str) -> str | None: ...
    async def tier(self, tenant: str) -> str: ...
    async def count(self, tenant: str, event_id: str, w: rate.Windows) -> int: ...
    async def publish_ready(self, event_id: str, fields: dict[str, bytes | str]) -> bool: ...


class ContextPort(Protocol):
    async def update(self, tenant: str, contact: str, change: Callable[[persist.Context], bool]) -> bool: ...


class RedactorPort(Protocol):
    def redact_event(self, tenant: str, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]: ...


@dataclass
class Deps:
    sealer: Sealer
    pseudonym_key: bytes
    state: StatePort
    contexts: ContextPort | None = None
    redactor: RedactorPort | None = None
    context_max_items: int = 50
    clock: Callable[[], float] = time.time


@dataclass
class Handoff:
    """What the shell must do after a stage ran."""

    next_stage: str | None = None
    job: bytes | None = None
    job_id: str | None = None
    defer_s: float = 0.0
    outcome: str | None = None  # terminal or 'deferred': recorded once per event
    audits: list[AuditJob] = field(default_factory=list)


def envelope_aad(event_id: str) -> bytes:
    return b"envelope\x1f" + event_id.encode()


def stage_aad(kind: str, tenant: str, event_id: str) -> bytes:
    return b"\x1f".join((b"stage", kind.encode(), tenant.encode(), event_id.encode()))


def _contact_pseudonym(deps: Deps, tenant: str, contact: str) -> str:
    return pseudonymize_id(deps.pseudonym_key, tenant, contact) if contact else ""


def _audit(deps: Deps, job: StageJob, stage: str, outcome: str, counts: dict[str, int] | None = None,
           detail: dict[str, str] | None = None) -> AuditJob:
    return AuditJob(tenant=job.tenant, event_id=job.event_id, stage=stage, outcome=outcome,
                    contact=_contact_pseudonym(deps, job.tenant, job.contact), counts=counts or {},
                    detail={"type": job.event_type, **(detail or {})})


def open_envelope(env: Envelope, deps: Deps) -> bytes:
    try:
        return deps.sealer.open(env.body, envelope_aad(env.event_id))
    except Exception as exc:  # DecryptError or a corrupted blob: nothing a retry can fix
        raise PermanentError(f"envelope does not decrypt: {type(exc).__name__}") from None


def open_stage_data(job: StageJob, kind: str, deps: Deps) -> bytes:
    try:
        return deps.sealer.open(job.data, stage_aad(kind, job.tenant, job.event_id))
    except Exception as exc:
        raise PermanentError(f"stage data does not decrypt: {type(exc).__name__}") from None


async def dedup(env: Envelope, deps: Deps) -> Handoff:
    body = open_envelope(env, deps)
    try:
        meta, _obj = parse.event_meta(body, env.tenant_hint)
    except parse.ParseError as exc:
        raise PermanentError(str(exc)) from None
    holder = await deps.state.claim(meta.tenant, meta.dedup_key, env.event_id)
    job = StageJob(event_id=env.event_id, tenant=meta.tenant, contact=meta.contact, event_type=meta.event_type,
                   received_at=env.received_at,
                   data=deps.sealer.seal(body, stage_aad("raw", meta.tenant, env.event_id)))
    if parse.dedup_decision(holder, env.event_id) == "duplicate":
        return Handoff(outcome="duplicate", audits=[_audit(deps, job, "dedup", "duplicate")])
    return Handoff(next_stage="rate", job=pack(job), job_id=f"rate:{env.event_id}",
                   audits=[_audit(deps, job, "dedup", "accepted", detail={"shape": meta.shape})])


async def rate_limit(job: StageJob, deps: Deps) -> Handoff:
    now = deps.clock()
    tier = await deps.state.tier(job.tenant)
    result = await deps.state.count(job.tenant, job.event_id, rate.windows(tier, now))
    decision = rate.decide(result, now)
    if decision.allowed:
        return Handoff(next_stage="redact", job=pack(job), job_id=f"redact:{job.event_id}",
                       audits=[_audit(deps, job, "rate", "counted", detail={"tier": tier})])
    n = job.deferrals + 1
    again = StageJob(event_id=job.event_id, tenant=job.tenant, contact=job.contact, event_type=job.event_type,
                     received_at=job.received_at, data=job.data, deferrals=n)
    return Handoff(next_stage="rate", job=pack(again), job_id=f"rate:{job.event_id}:d{n}",
                   defer_s=decision.defer_s, outcome="deferred",
                   audits=[_audit(deps, job, "rate", "deferred", detail={"tier": tier, "window": decision.window})])


async def redact(job: StageJob, deps: Deps) -> Handoff:
    if deps.redactor is None:
        raise RuntimeError("redact stage has no redactor")
    body = open_stage_data(job, "raw", deps)
    try:
        obj = parse.decode_object(body)
    except parse.ParseError as exc:
        raise PermanentError(str(exc)) from None
    redacted, counts = await asyncio.to_thread(deps.redactor.redact_event, job.tenant, obj)
    data = deps.sealer.seal(orjson.dumps(redacted), stage_aad("redacted", job.tenant, job.event_id))
    out = StageJob(event_id=job.event_id, tenant=job.tenant, contact=job.contact, event_type=job.event_type,
                   received_at=job.received_at, data=data, deferrals=job.deferrals, counts=counts)
    return Handoff(next_stage="persist", job=pack(out), job_id=f"persist:{job.event_id}",
                   audits=[_audit(deps, job, "redact", "redacted", counts=counts)])


async def persist_event(job: StageJob, deps: Deps) -> Handoff:
    redacted_json = open_stage_data(job, "redacted", deps)
    redacted = orjson.loads(redacted_json)
    if job.contact and deps.contexts is not None:
        entry = persist.entry_from_event(job.event_id, job.event_type, job.received_at, redacted, job.counts)
        await deps.contexts.update(job.tenant, job.contact,
                                   lambda ctx: persist.merge(ctx, entry, deps.context_max_items))
    await deps.state.publish_ready(job.event_id, {
        "event_id": job.event_id,
        "tenant": job.tenant,
        "contact": _contact_pseudonym(deps, job.tenant, job.contact),
        "type": job.event_type,
        "received_at": repr(job.received_at),
        "event": redacted_json,
        "counts": orjson.dumps(job.counts),
    })
    return Handoff(outcome="processed", audits=[_audit(deps, job, "persist", "processed", counts=job.counts)])
