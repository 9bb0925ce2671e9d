"""Operator actions shared by the CLI and the web console/API: dead letters and stats.

Plain async functions over an ``ArqRedis`` pool, the settings and the keyring; nothing here
prints. Actions that reveal or destroy data (``reveal``, ``purge``) append an audit record to
the system chain naming the operator; ``replay`` appends one to the event's tenant chain.

Replay rules: the entry's job is re-enqueued on the queue of the stage that failed under the job
id ``{stage}:{event_id}:r{n}`` (``n`` = replay number), and only then is the entry marked
replayed (compare-and-set on ``n``). A crash between the two leaves the entry ``dead`` and the
job enqueued; replaying again enqueues the same job id, which arq refuses while the job or its
result exists, so two replays of one dead-lettering have one effect. Dedup recognises the
replayed event as the holder of its own key, so it is not taken for a duplicate of itself.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from arq.connections import ArqRedis

from ghl_intake.operator import operator_actor
from ghl_intake.settings import Settings
from pipeline.audit import SYSTEM_TENANT
from pipeline.models import STAGES, AuditJob, Envelope, StageJob, pack, unpack
from pipeline.stages import envelope_aad, stage_aad
from store.dlq import DeadLetter, DeadLetterStore, as_dict
from store.keyring import Keyring
from store.state import PipelineState
from workers.base import enqueue, job_type, queue_name


def _who(actor: str | None) -> tuple[str, dict[str, str]]:
    """The actor of an audit record and where from: given (console/API user), or this process's operator."""
    if actor:
        return actor, {}
    return operator_actor()


@dataclass
class Filters:
    stage: str | None = None
    tenant: str | None = None
    reason: str | None = None
    since: float | None = None  # unix seconds; entries updated at or after
    state: str | None = "dead"  # None: every state

    def describe(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


@dataclass
class ReplayResult:
    dlq_id: str
    replayed: bool
    stage: str = ""
    event_id: str = ""
    message: str = ""
    job_id: str = ""
    replayable: bool = False  # a dry run found an entry it would replay


@dataclass
class ReplayReport:
    total: int = 0
    replayed: int = 0
    skipped: int = 0
    dry_run: bool = False
    results: list[ReplayResult] = field(default_factory=list)


def _dlq(pool: ArqRedis, settings: Settings, keyring: Keyring) -> DeadLetterStore:
    return DeadLetterStore(pool, keyring, prefix=settings.key_prefix)


def _audit_store(pool: ArqRedis, settings: Settings) -> Any:
    from store.audit import AuditStore

    return AuditStore(pool, prefix=settings.key_prefix)


async def list_dead_letters(pool: ArqRedis, settings: Settings, keyring: Keyring, filters: Filters | None = None,
                            *, limit: int = 1000) -> list[DeadLetter]:
    f = filters or Filters()
    return await _dlq(pool, settings, keyring).list(state=f.state, stage=f.stage, tenant=f.tenant, reason=f.reason,
                                                     since=f.since, limit=limit)


def _blob_info(blob: bytes) -> dict[str, Any]:
    return {"sealed_bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()[:16]}


async def show(pool: ArqRedis, settings: Settings, keyring: Keyring, dlq_id: str,
               pseudonym_key: bytes | None = None) -> dict[str, Any] | None:
    """The entry and its job without any personal data: ids, type, sizes, counts; blobs stay sealed."""
    dlq = _dlq(pool, settings, keyring)
    entry = await dlq.get(dlq_id)
    if entry is None:
        return None
    out: dict[str, Any] = {"entry": as_dict(entry)}
    try:
        job = unpack(await dlq.job(dlq_id), job_type(entry.stage))
    except Exception as exc:
        out["job"] = {"error": f"job does not open: {type(exc).__name__}"}
        return out
    if isinstance(job, Envelope):
        out["job"] = {"kind": "envelope", "event_id": job.event_id, "received_at": job.received_at,
                      "scheme": job.scheme, "tenant_hint": job.tenant_hint, "body": _blob_info(job.body)}
    elif isinstance(job, StageJob):
        contact = ""
        if job.contact and pseudonym_key:
            from pipeline.pseudonym import pseudonymize_id

            contact = pseudonymize_id(pseudonym_key, job.tenant, job.contact)
        out["job"] = {"kind": "stage", "event_id": job.event_id, "tenant": job.tenant, "event_type": job.event_type,
                      "contact": contact or ("<set>" if job.contact else ""), "received_at": job.received_at,
                      "deferrals": job.deferrals, "counts": dict(job.counts), "data": _blob_info(job.data)}
    elif isinstance(job, AuditJob):
        out["job"] = {"kind": "audit", "event_id": job.event_id, "tenant": job.tenant, "stage": job.stage,
                      "outcome": job.outcome, "contact": job.contact, "counts": dict(job.counts),
                      "detail": dict(job.detail)}
    return out


def _open_job(entry: DeadLetter, job: Any, keyring: Keyring) -> bytes | None:
    if isinstance(job, Envelope):
        return keyring.open(job.body, envelope_aad(job.event_id))
    if isinstance(job, StageJob):
        kind = "redacted" if entry.stage == "persist" else "raw"
        return keyring.open(job.data, stage_aad(kind, job.tenant, job.event_id))
    return None


async def reveal(pool: ArqRedis, settings: Settings, keyring: Keyring, dlq_id: str, *,
                 actor: str | None = None) -> dict[str, Any] | None:
    """Decrypt the entry's payload. Audited on the system chain before anything is returned."""
    dlq = _dlq(pool, settings, keyring)
    entry = await dlq.get(dlq_id)
    if entry is None:
        return None
    who, where = _who(actor)
    await _audit_store(pool, settings).append(
        SYSTEM_TENANT, event_id=uuid.uuid4().hex, stage="operator", outcome="dlq_reveal",
        actor=who, detail={**where, "dlq_id": dlq_id, "stage": entry.stage, "tenant": entry.tenant})
    job = unpack(await dlq.job(dlq_id), job_type(entry.stage))
    plain = _open_job(entry, job, keyring)
    out: dict[str, Any] = {"entry": as_dict(entry)}
    if plain is None:
        out["payload"] = orjson.loads(orjson.dumps(job, default=lambda o: o.hex() if isinstance(o, bytes) else str(o)))
    else:
        try:
            out["payload"] = orjson.loads(plain)
        except orjson.JSONDecodeError:
            out["payload_text"] = plain.decode("utf-8", "replace")
    if isinstance(job, StageJob):
        out["contact"] = job.contact
    return out


async def replay(pool: ArqRedis, settings: Settings, keyring: Keyring, dlq_id: str, *,
                 body_override: bytes | None = None, actor: str | None = None, dry_run: bool = False) -> ReplayResult:
    """Re-enqueue a dead letter at the stage that failed; once per dead-lettering.

    ``body_override`` (dedup-stage entries only) replaces the stored body with an operator's
    corrected copy, sealed under the same event id; the replay audit record says so.
    """
    dlq = _dlq(pool, settings, keyring)
    entry = await dlq.get(dlq_id)
    if entry is None:
        return ReplayResult(dlq_id, False, message="no such dead letter")
    if body_override is not None and entry.stage != "dedup":
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id,
                            "a corrected body can only replace a dedup-stage entry")
    if entry.state != "dead":
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id, f"not replayable (state {entry.state})")
    n = entry.replays + 1
    job_id = f"{entry.stage}:{entry.event_id}:r{n}"
    if dry_run:
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id, f"would enqueue {job_id}", job_id,
                            replayable=True)
    payload = await dlq.job(dlq_id)
    if body_override is not None:
        env = unpack(payload, Envelope)
        payload = pack(Envelope(event_id=env.event_id, received_at=env.received_at, scheme=env.scheme + "+corrected",
                                client=env.client, body=keyring.seal(body_override, envelope_aad(env.event_id)),
                                tenant_hint=env.tenant_hint))
    await enqueue(pool, settings, entry.stage, payload, job_id)
    if not await dlq.claim_replay(dlq_id, n):
        return ReplayResult(dlq_id, False, entry.stage, entry.event_id, "already replayed", job_id)
    who, where = _who(actor)
    detail = {**where, "dlq_id": dlq_id, "stage": entry.stage, "replay": str(n)}
    if body_override is not None:
        detail["body"] = "corrected"
    chain, record_id = entry.tenant, entry.event_id
    if entry.stage == "audit":  # the tenant's chain is what failed to take this record: note it on the system chain
        chain, record_id, detail["tenant"] = SYSTEM_TENANT, f"{entry.event_id}:{dlq_id}", entry.tenant
    await _audit_store(pool, settings).append(
        chain, event_id=record_id, stage="operator", outcome=f"dlq_replay_{n}", actor=who, detail=detail)
    return ReplayResult(dlq_id, True, entry.stage, entry.event_id, f"replay #{n} enqueued", job_id)


async def replay_all(pool: ArqRedis, settings: Settings, keyring: Keyring, filters: Filters | None = None, *,
                     dry_run: bool = False, actor: str | None = None,
                     progress: Callable[[int, int, ReplayResult], None] | None = None) -> ReplayReport:
    """Replay every dead entry matching ``filters``; ``progress(done, total, result)`` after each."""
    f = filters or Filters()
    f.state = "dead"
    entries = await list_dead_letters(pool, settings, keyring, f, limit=10**9)
    report = ReplayReport(total=len(entries), dry_run=dry_run)
    for i, e in enumerate(entries, 1):  # without an actor, each replay records this process's operator
        res = await replay(pool, settings, keyring, e.id, actor=actor, dry_run=dry_run)
        report.results.append(res)
        report.replayed += res.replayed
        report.skipped += not res.replayed
        if progress:
            progress(i, len(entries), res)
    return report


async def purge(pool: ArqRedis, settings: Settings, keyring: Keyring, filters: Filters | None = None, *,
                actor: str | None = None) -> int:
    """Delete matching entries (default: every state); one audit record on the system chain names them."""
    f = filters or Filters(state=None)
    dlq = _dlq(pool, settings, keyring)
    entries = await dlq.list(state=f.state, stage=f.stage, tenant=f.tenant, reason=f.reason, since=f.since,
                             limit=10**9)
    if not entries:
        return 0
    ids = [e.id for e in entries]
    detail = {"count": str(len(ids)), "filters": orjson.dumps(f.describe()).decode(),
              "ids": ",".join(ids[:50]) + (",…" if len(ids) > 50 else ""),
              "ids_sha256": hashlib.sha256(",".join(ids).encode()).hexdigest()[:32]}
    who, where = _who(actor)
    await _audit_store(pool, settings).append(
        SYSTEM_TENANT, event_id=uuid.uuid4().hex, stage="operator", outcome="dlq_purge", actor=who,
        detail={**where, **detail})
    n = 0
    for dlq_id in ids:
        n += await dlq.purge(dlq_id)
    return n


async def backpressure_counts(pool: ArqRedis, settings: Settings) -> dict[str, int]:
    r: Any = pool
    raw = await r.hgetall(settings.key("backpressure"))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


async def stats(pool: ArqRedis, settings: Settings, keyring: Keyring | None = None) -> dict[str, Any]:
    """Queue depths (due and deferred), outcome counts, dead letters and 429s answered by backpressure."""
    r: Any = pool
    now_ms = int(time.time() * 1000)
    async with r.pipeline(transaction=False) as pipe:
        for s in STAGES:
            pipe.zcard(queue_name(settings, s))
            pipe.zcount(queue_name(settings, s), "-inf", now_ms)
        raw = await pipe.execute()
    queues = {s: int(raw[2 * i]) for i, s in enumerate(STAGES)}
    due = {s: int(raw[2 * i + 1]) for i, s in enumerate(STAGES)}
    # the audit worker's scheduled cron job (checkpoint heartbeat) sits in its queue: not work waiting
    async for _member, score in r.zscan_iter(queue_name(settings, "audit"), match="cron_*", count=100):
        queues["audit"] -= 1
        due["audit"] -= score <= now_ms
    outcomes = await PipelineState(pool, settings).outcomes()
    out: dict[str, Any] = {"queues": queues, "due": due, "outcomes": outcomes,
                           "backpressure": await backpressure_counts(pool, settings)}
    if keyring is not None:
        dlq = _dlq(pool, settings, keyring)
        counts = await dlq.counts()
        out["dead_letters"] = {"dead": sum(counts["by_stage"].values()), **counts}
    return out


async def pending(pool: ArqRedis, settings: Settings) -> dict[str, int]:
    """Stage jobs queued (due or deferred) or in progress, per stage; cron jobs (``audit_tick``) excluded."""
    r: Any = pool
    out: dict[str, int] = {}
    for s in STAGES:
        n = 0
        async for _member in r.zscan_iter(queue_name(settings, s), match=f"{s}:*", count=1000):
            n += 1
        async for _key in r.scan_iter(match=f"arq:in-progress:{s}:*", count=1000):
            n += 1
        out[s] = n
    return out


async def wait_quiet(pool: ArqRedis, settings: Settings, *, timeout_s: float = 120.0, settle_s: float = 0.5,
                     poll_s: float = 0.1) -> bool:
    """Wait until no stage job is queued or in progress (cron jobs ignored); False on timeout."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if sum((await pending(pool, settings)).values()) == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle_s:
                return True
        else:
            quiet_since = None
        await asyncio.sleep(poll_s)
    return False
