"""The imperative shell shared by every stage worker: decode, run the stage, apply the hand-off.

Retry policy (arq only retries ``Retry``; other exceptions and arq's own timeout end the job):
- the stage runs under our own timeout (``INTAKE_STAGE_TIMEOUT_S``), shorter than arq's, so a
  slow call becomes a transient error we handle instead of an arq failure that loses the job;
- transient errors raise ``Retry`` with exponential backoff and jitter until
  ``INTAKE_STAGE_MAX_ATTEMPTS``, then the job is dead-lettered;
- permanent errors are dead-lettered at once;
- arq's own ``max_tries`` is set far above ours, so a worker killed mid-job (which bumps the try
  count without running our code) never makes arq drop the job silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.worker import func

from ghl_intake.settings import Settings
from pipeline.models import AuditJob, Envelope, StageJob, pack, unpack
from pipeline.retry import PermanentError, backoff_s, is_transient
from pipeline.stages import UNKNOWN_TENANT, Deps, Handoff
from store.dlq import DeadLetterStore

log = logging.getLogger("ghl_intake.worker")

ARQ_MAX_TRIES = 10_000
KEEP_RESULT_S = 6 * 3600

StageFn = Callable[[Any, Deps], Awaitable[Handoff]]


def queue_name(settings: Settings, stage: str) -> str:
    return settings.key("q", stage)


def job_serializer(obj: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(obj)


def job_deserializer(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.msgpack.decode(data)
    return out


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis_url or "redis://127.0.0.1:6379/0")


def job_type(stage: str) -> type[Any]:
    return {"dedup": Envelope, "audit": AuditJob}.get(stage, StageJob)


def _ids(stage: str, job: Any) -> tuple[str, str]:
    if isinstance(job, Envelope):
        return job.event_id, job.tenant_hint or UNKNOWN_TENANT
    return job.event_id, job.tenant


async def enqueue(redis: ArqRedis, settings: Settings, stage: str, payload: bytes, job_id: str,
                  defer_s: float = 0.0) -> bool:
    job = await redis.enqueue_job(stage, payload, _job_id=job_id, _queue_name=queue_name(settings, stage),
                                  _defer_by=defer_s if defer_s > 0 else None)
    return job is not None


async def apply_handoff(ctx: dict[str, Any], stage: str, event_id: str, h: Handoff) -> None:
    settings: Settings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    for a in h.audits:
        await enqueue(redis, settings, "audit", pack(a), f"audit:{a.event_id}:{a.stage}:{a.outcome}")
    if h.next_stage and h.job is not None and h.job_id:
        await enqueue(redis, settings, h.next_stage, h.job, h.job_id, h.defer_s)
    if h.outcome:
        await ctx["state"].outcome(event_id, h.outcome)


async def dead_letter(ctx: dict[str, Any], stage: str, payload: bytes, exc: BaseException, reason: str) -> str:
    settings: Settings = ctx["settings"]
    dlq: DeadLetterStore = ctx["dlq"]
    try:
        job = unpack(payload, job_type(stage))
        event_id, tenant = _ids(stage, job)
    except msgspec.DecodeError:
        event_id, tenant = "undecodable", UNKNOWN_TENANT
    error = f"{type(exc).__name__}: {exc}" if isinstance(exc, PermanentError) else type(exc).__name__
    dlq_id = await dlq.write(stage=stage, event_id=event_id, tenant=tenant, reason=reason, error=error,
                             job=payload, attempts=1)
    audit = AuditJob(tenant=tenant, event_id=event_id, stage=stage, outcome="dead_lettered",
                     detail={"reason": reason, "error": type(exc).__name__, "dlq_id": dlq_id})
    if stage != "audit":
        await enqueue(ctx["redis"], settings, "audit", pack(audit), f"audit:{event_id}:{stage}:dead_lettered")
    await ctx["state"].outcome(event_id, "dead_lettered")
    log.warning("dead-lettered stage=%s event=%s reason=%s error=%s", stage, event_id, reason, type(exc).__name__)
    return dlq_id


async def run_stage(ctx: dict[str, Any], stage: str, fn: Callable[[Any, dict[str, Any]], Awaitable[Handoff | None]],
                    payload: bytes) -> str:
    settings: Settings = ctx["settings"]
    attempt = int(ctx.get("job_try", 1))
    try:
        try:
            job = unpack(payload, job_type(stage))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PermanentError(f"job payload does not decode: {exc}") from None
        handoff = await asyncio.wait_for(fn(job, ctx), timeout=settings.stage_timeout_s)
        if handoff is not None:
            event_id, _tenant = _ids(stage, job)
            await asyncio.wait_for(apply_handoff(ctx, stage, event_id, handoff), timeout=settings.stage_timeout_s)
        return "ok"
    except Retry:
        raise
    except Exception as exc:
        if is_transient(exc) and attempt < settings.stage_max_attempts:
            delay = backoff_s(attempt, settings.retry_base_s)
            log.info("transient %s in %s (try %d), retrying in %.1fs", type(exc).__name__, stage, attempt, delay)
            raise Retry(defer=delay) from None
        reason = "retries_exhausted" if is_transient(exc) else "permanent"
        try:
            await dead_letter(ctx, stage, payload, exc, reason)
        except Exception as dl_exc:  # cannot even dead-letter (Redis down): keep the job alive
            if is_transient(dl_exc):
                raise Retry(defer=backoff_s(attempt, settings.retry_base_s)) from None
            raise
        return "dead_lettered"


def worker_settings(stage: str, handler: Callable[..., Awaitable[str]], startup: Callable[[dict[str, Any]], Awaitable[None]],
                    shutdown: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                    settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (also used to build the ``WorkerSettings`` classes)."""
    s = settings or Settings.from_env()
    return {
        "functions": [func(handler, name=stage, max_tries=ARQ_MAX_TRIES, timeout=s.stage_timeout_s + 10)],
        "queue_name": queue_name(s, stage),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "max_jobs": s.worker_concurrency,
        "keep_result": KEEP_RESULT_S,
        "job_timeout": s.stage_timeout_s + 10,
        "max_tries": ARQ_MAX_TRIES,
        "retry_jobs": True,
        "handle_signals": True,
        "job_completion_wait": s.stage_timeout_s + 5,
        "health_check_interval": 30,
        "redis_settings": redis_settings(s),
    }
