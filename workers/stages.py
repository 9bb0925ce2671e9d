"""arq glue for every stage: startup (stores from settings), one handler per stage, worker kwargs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from arq.cron import cron

from ghl_intake import keys
from ghl_intake.settings import Settings, SettingsError
from pipeline import stages
from pipeline.models import AuditJob, unpack
from pipeline.stages import Deps, Handoff
from store.audit import AuditStore
from store.context import ContextStore
from store.dlq import DeadLetterStore
from store.state import PipelineState
from workers.base import AUDIT_STEP_ORDER, audit_buffer_key, run_stage, worker_settings

log = logging.getLogger("ghl_intake.worker")


def build_ctx(ctx: dict[str, Any], settings: Settings, stage: str) -> None:
    """Fill an arq ctx with the stores this stage needs (ctx['redis'] is arq's pool)."""
    km = keys.load(settings)
    redis = ctx["redis"]
    state = PipelineState(redis, settings)
    ctx["settings"] = settings
    ctx["state"] = state
    ctx["dlq"] = DeadLetterStore(redis, km.keyring, prefix=settings.key_prefix)
    redactor = None
    if stage == "redact":
        from pipeline.redact import Redactor  # only this worker loads Presidio/spaCy

        model = settings.pii_spacy_model if settings.pii_spacy_model.lower() not in {"", "none"} else None
        redactor = Redactor(pseudonym_key=km.pseudonym_key, spacy_model=model,
                            max_field_chars=settings.pii_max_field_chars,
                            max_event_chars=settings.pii_max_event_chars)
    contexts = None
    if stage == "persist":
        contexts = ContextStore(redis, keys.envelope_crypto(settings, redis, km.keyring), prefix=settings.key_prefix,
                                ttl_s=settings.context_ttl_s)
    if stage == "audit":
        export = Path(settings.audit_export_dir) if settings.audit_export_dir else None
        ctx["audit"] = AuditStore(redis, prefix=settings.key_prefix, signing_key=km.audit_signing_key,
                                  export_dir=export, checkpoint_every=settings.audit_checkpoint_every,
                                  checkpoint_interval_s=settings.audit_checkpoint_interval_s,
                                  dedicated_connection=True)
    ctx["deps"] = Deps(sealer=km.keyring, pseudonym_key=km.pseudonym_key, state=state, contexts=contexts,
                       redactor=redactor, context_max_items=settings.context_max_items)


async def _dedup(job: Any, ctx: dict[str, Any]) -> Handoff:
    return await stages.dedup(job, ctx["deps"])


async def _rate(job: Any, ctx: dict[str, Any]) -> Handoff:
    return await stages.rate_limit(job, ctx["deps"])


async def _redact(job: Any, ctx: dict[str, Any]) -> Handoff:
    return await stages.redact(job, ctx["deps"])


async def _persist(job: Any, ctx: dict[str, Any]) -> Handoff:
    return await stages.persist_event(job, ctx["deps"])


async def _audit(job: AuditJob, ctx: dict[str, Any]) -> None:
    """Append the event's buffered step records (see ``workers.base.AUDIT_STEP_ORDER``), then this one.

    Appends are idempotent per (event, stage, outcome), so a re-run, or two audit jobs of one event
    draining the same buffer, write each record once.
    """
    redis = ctx["redis"]
    buf_key = audit_buffer_key(ctx["settings"], job.event_id)
    raw = await redis.hgetall(buf_key)
    steps = sorted((unpack(v, AuditJob) for v in raw.values()),
                   key=lambda a: (AUDIT_STEP_ORDER.get(a.stage, 9), a.outcome))
    for rec in [*steps, job]:
        await ctx["audit"].append(rec.tenant, event_id=rec.event_id, stage=rec.stage, outcome=rec.outcome,
                                  actor=rec.actor, contact=rec.contact or None, counts=dict(rec.counts),
                                  detail=dict(rec.detail))
    if raw:
        await redis.hdel(buf_key, *raw.keys())


STAGE_FNS: dict[str, Callable[[Any, dict[str, Any]], Awaitable[Handoff | None]]] = {
    "dedup": _dedup, "rate": _rate, "redact": _redact, "persist": _persist, "audit": _audit,
}


CRON_AUDIT_TICK = "cron_audit_tick"


def worker_kwargs(stage: str, settings: Settings | None = None) -> dict[str, Any]:
    """Everything ``arq.Worker`` needs for one stage; settings from the environment when not given."""
    fixed = settings

    async def startup(ctx: dict[str, Any]) -> None:
        try:
            s = fixed or Settings.from_env()
            build_ctx(ctx, s, stage)
        except SettingsError as exc:  # missing or malformed keys: one clear line, no traceback
            raise SystemExit(f"ghl-intake {stage} worker: refusing to start: {exc}") from None
        log.info("stage %s ready on queue %s", stage, s.key("q", stage))

    async def handler(ctx: dict[str, Any], payload: bytes) -> str:
        return await run_stage(ctx, stage, STAGE_FNS[stage], payload)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "audit" in ctx:
            await ctx["audit"].aclose()

    handler.__qualname__ = handler.__name__ = stage
    s = settings or Settings.from_env()
    kw = worker_settings(stage, handler, startup, shutdown, settings=s)
    if stage == "audit":
        # signed checkpoints on time and when idle, and the JSONL export, every 5 s
        # timeout = the stage's: arq's in-progress expiry (how long a SIGKILLed worker's jobs wait
        # before another worker takes them) is the longest function timeout of the worker + 10 s
        # arq's job ids are global to the Redis DB: the deployment's prefix in the name keeps the
        # ticks of two deployments sharing one Redis (or the demo beside a deployment) apart
        kw["cron_jobs"] = [cron(audit_tick, name=f"{CRON_AUDIT_TICK}_{s.key_prefix}", second=set(range(0, 60, 5)),
                                run_at_startup=True, timeout=kw["job_timeout"], keep_result=0, unique=True)]
    return kw


async def audit_tick(ctx: dict[str, Any]) -> int:
    """Cron: checkpoints (every N records / M seconds / heartbeat) and the export catch-up."""
    return len(await ctx["audit"].tick())


def settings_class(stage: str) -> type:
    """A ``WorkerSettings`` class for ``arq workers.<stage>.WorkerSettings``."""
    kwargs = worker_kwargs(stage)
    return type("WorkerSettings", (), {k: staticmethod(v) if callable(v) and k.startswith("on_") else v
                                       for k, v in kwargs.items()})
