"""Wiring for one process: the arq pool, the ingress app and stage workers, on real or fake Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import RedisError

from ghl_intake import keys
from ghl_intake.runtime import fake_server
from ghl_intake.settings import DEFAULT_GHL_ED25519_PEM, Settings
from ingress.app import IngressDeps, create_app
from ingress.verify import load_ed25519_keys
from pipeline.models import STAGES
from workers.base import job_deserializer, job_serializer
from workers.stages import worker_kwargs

log = logging.getLogger("ghl_intake.embedded")


def _quiet_arq_redis_info() -> None:
    """arq logs ``INFO`` at worker start; fakeredis has no INFO command, so skip that log line."""
    import arq.worker

    async def _no_info(redis: Any, log_func: Any) -> None:
        log_func("redis: in-memory fakeredis")

    arq.worker.log_redis_info = _no_info  # type: ignore[assignment]


def make_pool(settings: Settings) -> ArqRedis:
    """An ``ArqRedis`` on ``REDIS_URL``, or on the process's in-memory fakeredis server."""
    if settings.redis_url:
        from redis.asyncio import ConnectionPool

        cp = ConnectionPool.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3,
                                     max_connections=200)
        return ArqRedis(connection_pool=cp, job_serializer=job_serializer, job_deserializer=job_deserializer)
    import fakeredis

    _quiet_arq_redis_info()
    fake = fakeredis.FakeAsyncRedis(server=fake_server())
    return ArqRedis(connection_pool=fake.connection_pool, job_serializer=job_serializer,
                    job_deserializer=job_deserializer)


def ingress_deps(settings: Settings, pool: ArqRedis) -> IngressDeps:
    km = keys.load(settings)
    ed_keys = load_ed25519_keys(settings.ghl_ed25519_public_keys, DEFAULT_GHL_ED25519_PEM)
    return IngressDeps(settings=settings, pool=pool, keyring=km.keyring, ed25519_keys=ed_keys)


def build_app(settings: Settings, pool: ArqRedis) -> Any:
    return create_app(ingress_deps(settings, pool))


def own_pool(pool: ArqRedis) -> ArqRedis:
    """A new ``ArqRedis`` with its own connection pool to the same server (or fakeredis server).

    arq's ``Worker.close()`` closes its pool's connections, including ones another worker is
    using at that moment; a worker on its own pool can only cut off itself.
    """
    cp = pool.connection_pool
    fresh = type(cp)(connection_class=cp.connection_class, max_connections=cp.max_connections,
                     **cp.connection_kwargs)
    return ArqRedis(connection_pool=fresh, job_serializer=pool.job_serializer,
                    job_deserializer=pool.job_deserializer, default_queue_name=pool.default_queue_name,
                    expires_extra_ms=pool.expires_extra_ms)


def make_worker(stage: str, settings: Settings, pool: ArqRedis, *, burst: bool = False) -> Worker:
    """An arq worker for ``stage`` on its own pool (see ``own_pool``); ``pool`` stays the caller's."""
    kw = worker_kwargs(stage, settings)
    kw.pop("redis_settings", None)
    kw["handle_signals"] = False
    kw["poll_delay"] = 0.05
    return Worker(redis_pool=own_pool(pool), burst=burst, **kw)


class StageRunner:
    """Runs every stage worker as a task of this event loop."""

    def __init__(self, settings: Settings, pool: ArqRedis, stages: tuple[str, ...] = STAGES) -> None:
        self.workers = [make_worker(s, settings, pool) for s in stages]
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(w.async_run()) for w in self.workers]

    async def stop(self) -> None:
        """Close every worker (arq's ``close()`` cancels its in-flight jobs, which go back on their
        queue, waits for them, then closes that worker's own pool). If Redis goes away meanwhile,
        a job can be cut off mid-finish; it keeps arq's in-progress key and runs again once that
        expires (every effect is idempotent), so this is logged, not raised, and the other
        workers are still closed.

        Each worker's poll loop is stopped first, and for good: on Python 3.11 a cancel that lands
        as a Redis reply arrives can be swallowed (``asyncio.wait_for``), and a loop that goes on
        would start jobs after ``close()`` took its list of them, on a pool about to close."""
        for w in self.workers:
            w.allow_pick_jobs = False
        for t in self.tasks:
            while not t.done():
                t.cancel()
                await asyncio.wait([t], timeout=0.1)
        for w in self.workers:
            try:
                await w.close()
            except (RedisError, asyncio.CancelledError) as exc:
                task = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                    raise  # we are being cancelled ourselves
                log.warning("stopping the %s worker: a job was cut off (%s); it runs again later",
                            w.queue_name, type(exc).__name__)
                if w.on_shutdown:  # close() stopped before it: release what the stage holds
                    with contextlib.suppress(RedisError, OSError):
                        await w.on_shutdown(w.ctx)
        await asyncio.gather(*self.tasks, return_exceptions=True)  # retrieve how each loop ended


async def wait_quiet(pool: ArqRedis, settings: Settings, *, timeout_s: float = 120.0, settle_s: float = 0.5) -> bool:
    """Wait until no stage job is queued or in progress (cron jobs ignored); False on timeout."""
    from ghl_intake.ops import wait_quiet as quiet

    return await quiet(pool, settings, timeout_s=timeout_s, settle_s=settle_s, poll_s=0.05)
