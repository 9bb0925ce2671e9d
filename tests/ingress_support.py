"""Helpers for the ingress tests: the real app on a pool (real Redis or fakeredis), a client, queue reads."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
from arq.connections import ArqRedis

from ghl_intake.embedded import ingress_deps, make_pool
from ghl_intake.settings import Settings
from ingress.app import IngressDeps, create_app
from pipeline.models import Envelope, unpack
from pipeline.stages import envelope_aad
from store.tenants import TenantRegistry
from tests.test_reliability_support import free_port

CLIENT = ("203.0.113.9", 40000)


def now_iso(offset_s: float = 0.0) -> str:
    when = dt.datetime.fromtimestamp(time.time() + offset_s, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ghl_body(location: str = "LocA0001", *, offset_s: float = 0.0, **extra: Any) -> bytes:
    obj = {"type": "ContactCreate", "locationId": location, "id": "cont0001", "webhookId": str(uuid.uuid4()),
           "timestamp": now_iso(offset_s), **extra}
    return orjson.dumps(obj)


def workflow_body(location: str = "LocA0001") -> bytes:
    return orjson.dumps({"contact_id": "cont0002", "first_name": "Ann", "location": {"id": location},
                         "customData": {"n": uuid.uuid4().hex}})


@dataclass
class Ingress:
    settings: Settings
    pool: ArqRedis
    deps: IngressDeps
    app: Any
    client: httpx.AsyncClient
    tenants: TenantRegistry

    async def enqueued(self) -> int:
        return int(await self.pool.zcard(self.settings.key("q", "dedup")))

    async def envelopes(self) -> list[Envelope]:
        out = []
        for job in await self.pool.queued_jobs(queue_name=self.settings.key("q", "dedup")):
            out.append(unpack(job.args[0], Envelope))
        return out

    def open(self, env: Envelope) -> bytes:
        return self.deps.keyring.open(env.body, envelope_aad(env.event_id))


@contextlib.asynccontextmanager
async def ingress(settings: Settings, *, pool: ArqRedis | None = None, client: tuple[str, int] = CLIENT,
                  clock: Callable[[], float] | None = None, **deps_kw: Any) -> AsyncIterator[Ingress]:
    own = pool is None
    pool = pool or make_pool(settings)
    deps = ingress_deps(settings, pool)
    for k, v in deps_kw.items():
        setattr(deps, k, v)
    if clock is not None:
        deps.clock = clock
    app = create_app(deps)
    transport = httpx.ASGITransport(app=app, client=client)
    http = httpx.AsyncClient(transport=transport, base_url="http://ingress.test")
    try:
        yield Ingress(settings, pool, deps, app, http, TenantRegistry(pool, deps.keyring, prefix=settings.key_prefix))
    finally:
        await http.aclose()
        if deps.monitor is not None:
            await deps.monitor.drain()
        if own:
            await pool.aclose()


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    for _ in range(3000):  # up to 30 s (a loaded machine)
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, f"uvicorn on port {port} did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
