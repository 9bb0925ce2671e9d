"""Backpressure: when the pipeline cannot keep up, the ingress answers 429 + Retry-After.

GHL retries a 429 (six tries, about ten minutes apart) and loses the event on anything else, so
refusing early is how an overloaded pipeline stays lossless. ``check(deps)`` returns a short
reason to refuse, or ``None`` to accept, when:

- any stage queue holds more than ``INTAKE_BP_MAX_QUEUE`` *due* jobs (jobs deferred to the
  future, such as an over-budget tenant's, do not count),
- the oldest due job on any stage queue has waited longer than ``INTAKE_BP_MAX_AGE_S``,
- Redis uses at least ``INTAKE_BP_MAX_MEMORY_RATIO`` of its ``maxmemory``, or answers OOM,
- Redis is a read-only replica (after a failover, or ``REPLICAOF``), or answers READONLY,
- Redis does not answer at all.

One reading costs one pipelined round trip (two commands per stage, ``INFO memory``, ``ROLE``)
and is reused for ``INTAKE_BP_CACHE_S`` (default 0.5 s), so the check is cheap at any request
rate. Each refusal is counted in this process (``COUNTS``) and, best effort, in the Redis hash
``{prefix}:backpressure`` that ``ghl-intake stats`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline.models import STAGES

log = logging.getLogger("ghl_intake.ingress")

READ_TIMEOUT_S = 2.0

# refusals by kind in this process: queue_depth, queue_age, memory, read_only, unreachable
COUNTS: dict[str, int] = {}


@dataclass
class Reading:
    at: float
    reason: str | None
    kind: str = ""


_cache: dict[tuple[int, int], Reading] = {}
_locks: dict[tuple[int, int], asyncio.Lock] = {}


async def read(pool: Any, settings: Any, now: float | None = None) -> tuple[str | None, str]:
    """One fresh reading from Redis: ``(reason, kind)``; ``(None, "")`` when all is well."""
    now_ms = int((time.time() if now is None else now) * 1000)
    try:
        async with pool.pipeline(transaction=False) as pipe:
            for stage in STAGES:
                q = settings.key("q", stage)
                pipe.zcount(q, "-inf", now_ms)
                pipe.zrangebyscore(q, "-inf", now_ms, start=0, num=1, withscores=True)
            pipe.info("memory")
            pipe.execute_command("ROLE")
            res = await asyncio.wait_for(pipe.execute(raise_on_error=False), timeout=READ_TIMEOUT_S)
    except Exception as exc:  # connection refused, timeout: nothing can be enqueued either
        return f"queue unavailable ({type(exc).__name__}), retry later", "unreachable"
    for i, stage in enumerate(STAGES):
        depth, oldest = res[2 * i], res[2 * i + 1]
        if isinstance(depth, int) and depth > settings.bp_max_queue:
            return f"pipeline busy ({stage} queue {depth} deep), retry later", "queue_depth"
        if isinstance(oldest, list) and oldest:
            age = (now_ms - float(oldest[0][1])) / 1000.0
            if age > settings.bp_max_age_s:
                return f"pipeline busy ({stage} queue {int(age)} s behind), retry later", "queue_age"
    mem, role = res[-2], res[-1]
    if isinstance(mem, dict):
        used, limit = int(mem.get("used_memory", 0)), int(mem.get("maxmemory", 0))
        if limit > 0 and used >= settings.bp_max_memory_ratio * limit:
            return "queue storage full, retry later", "memory"
    if isinstance(role, list) and role:
        name = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
        if name in {"slave", "replica"}:
            return "queue storage read-only, retry later", "read_only"
    return None, ""


async def _count(pool: Any, settings: Any, kind: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1
    with contextlib.suppress(Exception):  # OOM / read-only / down: the in-process count stands
        await asyncio.wait_for(pool.hincrby(settings.key("backpressure"), kind, 1), timeout=0.5)


async def check(deps: Any) -> str | None:
    """A reason to answer 429 (queue too deep or too old, Redis full, read-only or down), else None."""
    settings, pool = deps.settings, deps.pool
    key = (id(pool), id(asyncio.get_running_loop()))
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is None or now - cached.at >= settings.bp_cache_s:
        lock = _locks.setdefault(key, asyncio.Lock())
        async with lock:  # one reading at a time; waiters reuse it
            cached = _cache.get(key)
            if cached is None or time.monotonic() - cached.at >= settings.bp_cache_s:
                reason, kind = await read(pool, settings)
                cached = _cache[key] = Reading(time.monotonic(), reason, kind)
                if reason:
                    log.warning("backpressure: %s", reason)
    if cached.reason:
        await _count(pool, settings, cached.kind)
    return cached.reason


def reset() -> None:
    """Forget cached readings (tests)."""
    _cache.clear()
    _locks.clear()
