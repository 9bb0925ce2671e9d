"""The imperative shell shared by every stage worker: decode, run the stage, apply the hand-off.

Retry policy (arq only retries ``Retry``; other exceptions and arq's own timeout end the job):
- the stage runs under our own timeout (``INTAKE_STAGE_TIMEOUT_S``, ``INTAKE_REDACT_TIMEOUT_S``
  for redact), shorter than arq's (ours + ``ARQ_TIMEOUT_MARGIN_S``), so a slow call becomes a
  transient error we handle instead of an arq failure that would end the job;
- transient errors (Redis connection/timeout/OOM/read-only, our own timeouts, CAS contention)
  raise ``Retry`` with exponential backoff and full jitter until ``INTAKE_STAGE_MAX_ATTEMPTS``,
  then the job is dead-lettered (reason ``retries_exhausted``);
- permanent errors (undecryptable, unparseable, invalid tenant, undecodable job) are
  dead-lettered at once (reason ``permanent``);
- arq's own ``max_tries`` is set far above ours, so a worker killed mid-job (which bumps the try
  count without running our code) never makes arq drop the job silently;
- a SIGKILLed worker's job is picked up again once arq's in-progress key expires: arq timeout + 10 s
  = stage timeout + ``ARQ_TIMEOUT_MARGIN_S`` + 10 s (17 s for dedup/rate/persist/audit, 32 s for
  redact at the defaults);
- SIGTERM stops taking jobs, waits ``INTAKE_SHUTDOWN_GRACE_S`` for in-flight ones, then cancels
  the rest, which arq puts back on the queue (``retry_jobs``): nothing in flight is lost.

Hand-offs are written with one Lua script per stage run (``enqueue_jobs``): the same
"create unless the job or its result exists" rule as arq's ``enqueue_job`` and the same job
encoding (``arq.jobs.serialize_job``), in one round trip instead of six commands per job. Job ids
are deterministic per event and step, so a re-run enqueues nothing new while arq keeps the job or
its result (``KEEP_RESULT_S``); every stage is idempotent per event beyond that anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import msgspec
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.worker import func

from ghl_intake.settings import Settings
from pipeline.models import AuditJob, Envelope, StageJob, pack, unpack
from pipeline.retry import PermanentError, backoff_s, is_transient
from pipeline.stages import UNKNOWN_TENANT, Deps, Handoff
from store.dlq import DeadLetterStore

log = logging.getLogger("ghl_intake.worker")

ARQ_MAX_TRIES = 10_000
ARQ_TIMEOUT_MARGIN_S = 2.0
KEEP_RESULT_S = 6 * 3600

StageFn = Callable[[Any, Deps], Awaitable[Handoff]]

# Errors of our own stores that mean "try again later", not "this event is bad".
_TRANSIENT_NAMES = {"ContextConflict", "AuditContentionError"}

# KEYS: per job (job key, result key, queue), then the event's audit buffer when ARGV[1] > 0.
# ARGV[1]=number of buffered audit records, ARGV[2]=buffer ttl, then per job (job id, payload,
# score ms, expiry ms), then per buffered record (field, packed AuditJob).
# arq's enqueue rule: a job id that has a job or a result is not enqueued again.
_ENQUEUE_LUA = """
local nbuf = tonumber(ARGV[1])
local njobs = (#KEYS - (nbuf > 0 and 1 or 0)) / 3
local n = 0
for i = 0, njobs - 1 do
  local jk, rk, q = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  if redis.call('EXISTS', jk, rk) == 0 then
    redis.call('PSETEX', jk, ARGV[i * 4 + 6], ARGV[i * 4 + 4])
    redis.call('ZADD', q, ARGV[i * 4 + 5], ARGV[i * 4 + 3])
    n = n + 1
  end
end
if nbuf > 0 then
  local bk = KEYS[#KEYS]
  local base = 2 + njobs * 4
  for j = 0, nbuf - 1 do
    redis.call('HSET', bk, ARGV[base + j * 2 + 1], ARGV[base + j * 2 + 2])
  end
  redis.call('EXPIRE', bk, tonumber(ARGV[2]))
end
return n
"""

# Audit records of the steps before an event's outcome (dedup accepted, rate counted, redact
# redacted) wait in a per-event buffer written with the next stage's job (same Lua call); the audit
# job of the outcome (processed, duplicate, deferred, dead_lettered) appends them, then its own.
# One audit job per event instead of one per step: the audit stage was the bottleneck.
AUDIT_STEP_ORDER = {"dedup": 0, "rate": 1, "redact": 2, "persist": 3, "operator": 4}


def audit_buffer_key(settings: Settings, event_id: str) -> str:
    return settings.key("auditbuf", event_id)


def queue_name(settings: Settings, stage: str) -> str:
    return settings.key("q", stage)


def job_serializer(obj: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(obj)


def job_deserializer(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.msgpack.decode(data)
    return out


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis_url or "redis://127.0.0.1:6379/0")


def stage_timeout_s(settings: Settings, stage: str) -> float:
    return settings.redact_timeout_s if stage == "redact" else settings.stage_timeout_s


def arq_timeout_s(settings: Settings, stage: str) -> float:
    return stage_timeout_s(settings, stage) + ARQ_TIMEOUT_MARGIN_S


def recovery_s(settings: Settings, stage: str) -> float:
    """How long a SIGKILLed worker's job waits before another worker takes it (arq in-progress expiry)."""
    return arq_timeout_s(settings, stage) + 10.0


def job_type(stage: str) -> type[Any]:
    return {"dedup": Envelope, "audit": AuditJob}.get(stage, StageJob)


def is_transient_error(exc: BaseException) -> bool:
    return is_transient(exc) or type(exc).__name__ in _TRANSIENT_NAMES


def _ids(stage: str, job: Any) -> tuple[str, str]:
    if isinstance(job, Envelope):
        return job.event_id, job.tenant_hint or UNKNOWN_TENANT
    return job.event_id, job.tenant


def _enqueue_script(redis: ArqRedis) -> Any:
    script = getattr(redis, "_intake_enqueue_script", None)
    if script is None:
        script = redis.register_script(_ENQUEUE_LUA)
        redis._intake_enqueue_script = script  # type: ignore[attr-defined]
    return script


async def enqueue_jobs(redis: ArqRedis, settings: Settings, jobs: Sequence[tuple[str, bytes, str, float]],
                       buffered: Sequence[AuditJob] = ()) -> int:
    """Enqueue ``(stage, payload, job_id, defer_s)`` jobs and buffer audit records, in one round trip.

    Returns how many jobs were new."""
    if not jobs and not buffered:
        return 0
    now_ms = int(time.time() * 1000)
    keys: list[str] = []
    args: list[Any] = [len(buffered), settings.event_ttl_s]
    for stage, payload, job_id, defer_s in jobs:
        defer_ms = int(max(0.0, defer_s) * 1000)
        data = serialize_job(stage, (payload,), {}, None, now_ms, serializer=job_serializer)
        keys += [job_key_prefix + job_id, result_key_prefix + job_id, queue_name(settings, stage)]
        args += [job_id, data, now_ms + defer_ms, defer_ms + expires_extra_ms]
    if buffered:
        keys.append(audit_buffer_key(settings, buffered[0].event_id))
        for a in buffered:
            args += [f"{a.stage}:{a.outcome}", pack(a)]
    return int(await _enqueue_script(redis)(keys=keys, args=args))


async def enqueue(redis: ArqRedis, settings: Settings, stage: str, payload: bytes, job_id: str,
                  defer_s: float = 0.0) -> bool:
    return await enqueue_jobs(redis, settings, [(stage, payload, job_id, defer_s)]) == 1


def audit_job_id(a: AuditJob) -> str:
    return f"audit:{a.event_id}:{a.stage}:{a.outcome}"


async def apply_handoff(ctx: dict[str, Any], stage: str, event_id: str, h: Handoff) -> None:
    settings: Settings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    jobs: list[tuple[str, bytes, str, float]] = []
    buffered: list[AuditJob] = []
    if h.outcome:  # the event's outcome (or a deferral): its audit job flushes the buffer
        jobs += [("audit", pack(a), audit_job_id(a), 0.0) for a in h.audits]
    else:
        buffered = [a for a in h.audits if a.event_id == event_id]
        jobs += [("audit", pack(a), audit_job_id(a), 0.0) for a in h.audits if a.event_id != event_id]
    if h.next_stage and h.job is not None and h.job_id:
        jobs.append((h.next_stage, h.job, h.job_id, h.defer_s))
    await enqueue_jobs(redis, settings, jobs, buffered)
    if h.outcome:
        await ctx["state"].outcome(event_id, h.outcome)


async def dead_letter(ctx: dict[str, Any], stage: str, payload: bytes, exc: BaseException, reason: str,
                      attempts: int = 1) -> str:
    """Write the job to the dead-letter store, audit it, record the outcome. Idempotent per (event, stage)."""
    settings: Settings = ctx["settings"]
    dlq: DeadLetterStore = ctx["dlq"]
    try:
        job = unpack(payload, job_type(stage))
        event_id, tenant = _ids(stage, job)
    except (msgspec.DecodeError, msgspec.ValidationError):  # one entry per distinct payload, never merged
        event_id, tenant = "undecodable-" + hashlib.sha256(payload).hexdigest()[:24], UNKNOWN_TENANT
    error = f"{type(exc).__name__}: {exc}" if isinstance(exc, PermanentError) else type(exc).__name__
    dlq_id = await dlq.write(stage=stage, event_id=event_id, tenant=tenant, reason=reason, error=error,
                             job=payload, attempts=attempts, run_id=str(ctx.get("job_id") or f"{stage}:{event_id}"))
    if stage != "audit":  # an audit job that fails is kept for replay; the event's own outcome stands
        audit = AuditJob(tenant=tenant, event_id=event_id, stage=stage, outcome="dead_lettered",
                         detail={"reason": reason, "error": type(exc).__name__, "dlq_id": dlq_id})
        await enqueue_jobs(ctx["redis"], settings, [("audit", pack(audit), audit_job_id(audit), 0.0)])
        await ctx["state"].outcome(event_id, "dead_lettered")
    log.warning("dead-lettered stage=%s event=%s reason=%s error=%s", stage, event_id, reason, type(exc).__name__)
    return dlq_id


async def run_stage(ctx: dict[str, Any], stage: str, fn: Callable[[Any, dict[str, Any]], Awaitable[Handoff | None]],
                    payload: bytes) -> str:
    settings: Settings = ctx["settings"]
    attempt = int(ctx.get("job_try", 1))
    timeout = stage_timeout_s(settings, stage)
    try:
        try:
            job = unpack(payload, job_type(stage))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PermanentError(f"job payload does not decode: {exc}") from None
        handoff = await asyncio.wait_for(fn(job, ctx), timeout=timeout)
        if handoff is not None:
            event_id, _tenant = _ids(stage, job)
            await asyncio.wait_for(apply_handoff(ctx, stage, event_id, handoff), timeout=timeout)
        return "ok"
    except Retry:
        raise
    except Exception as exc:
        transient = is_transient_error(exc)
        if transient and attempt < settings.stage_max_attempts:
            delay = backoff_s(attempt, settings.retry_base_s)
            log.info("transient %s in %s (try %d), retrying in %.2fs", type(exc).__name__, stage, attempt, delay)
            raise Retry(defer=delay) from None
        reason = "retries_exhausted" if transient else "permanent"
        try:
            await dead_letter(ctx, stage, payload, exc, reason, attempts=attempt)
        except Exception as dl_exc:  # cannot even dead-letter (Redis down): keep the job alive
            if is_transient_error(dl_exc):
                raise Retry(defer=backoff_s(min(attempt, 6), settings.retry_base_s)) from None
            raise
        return "dead_lettered"


def worker_settings(stage: str, handler: Callable[..., Awaitable[str]], startup: Callable[[dict[str, Any]], Awaitable[None]],
                    shutdown: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                    settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (also used to build the ``WorkerSettings`` classes)."""
    s = settings or Settings.from_env()
    timeout = arq_timeout_s(s, stage)
    return {
        "functions": [func(cast(Any, handler), name=stage, max_tries=ARQ_MAX_TRIES, timeout=timeout)],
        "queue_name": queue_name(s, stage),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "max_jobs": s.worker_concurrency,
        "poll_delay": s.poll_delay_s,
        "keep_result": KEEP_RESULT_S,
        "job_timeout": timeout,
        "max_tries": ARQ_MAX_TRIES,
        "retry_jobs": True,
        "handle_signals": True,
        "job_completion_wait": max(1, int(s.shutdown_grace_s)),
        "health_check_interval": 30,
        "redis_settings": redis_settings(s),
    }
