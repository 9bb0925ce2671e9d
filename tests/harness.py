"""An in-process pipeline for integration tests: the real ingress app and real arq workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from arq.connections import ArqRedis

from ghl_intake.embedded import StageRunner, build_app, make_pool, wait_quiet
from ghl_intake.settings import Settings
from ghl_intake.signing import GhlSigner
from store.state import PipelineState


@dataclass
class Pipeline:
    settings: Settings
    pool: ArqRedis
    client: httpx.AsyncClient
    signer: GhlSigner
    state: PipelineState
    runner: StageRunner

    async def post(self, body: bytes, headers: dict[str, str] | None = None, path: str = "/webhooks/ghl") -> httpx.Response:
        return await self.client.post(path, content=body, headers=headers if headers is not None else self.signer.headers(body))

    async def quiet(self, timeout_s: float = 120.0) -> None:
        assert await wait_quiet(self.pool, self.settings, timeout_s=timeout_s), "pipeline did not go quiet"

    async def status(self, event_id: str) -> str | None:
        return await self.state.status(event_id)


@contextlib.asynccontextmanager
async def pipeline(settings: Settings, signer: GhlSigner, *, tier: str | None = "enterprise",
                   tenants: tuple[str, ...] = ()) -> AsyncIterator[Pipeline]:
    pool = make_pool(settings)
    for t in tenants:
        if tier:
            await pool.hset(settings.key("tenant", t), mapping={"tier": tier})
    runner = StageRunner(settings, pool)
    runner.start()
    transport = httpx.ASGITransport(app=build_app(settings, pool), client=("203.0.113.7", 40000))
    client = httpx.AsyncClient(transport=transport, base_url="http://ingress.test")
    try:
        yield Pipeline(settings, pool, client, signer, PipelineState(pool, settings), runner)
    finally:
        await client.aclose()
        await runner.stop()
        await pool.aclose()


async def dump_everything(pool: Any) -> bytes:
    """Every key and every value in the Redis DB, concatenated (for leak scans)."""
    out: list[bytes] = []
    async for key in pool.scan_iter(count=1000):
        out.append(key)
        kind = (await pool.type(key)).decode()
        if kind == "none":  # expired between SCAN and TYPE (arq's cron job keys come and go)
            continue
        if kind == "string":
            out.append(await pool.get(key) or b"")
        elif kind == "hash":
            for k, v in (await pool.hgetall(key)).items():
                out += [k, v]
        elif kind == "list":
            out += await pool.lrange(key, 0, -1)
        elif kind == "set":
            out += list(await pool.smembers(key))
        elif kind == "zset":
            out += [m for m, _ in await pool.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _id, fields in await pool.xrange(key):
                for k, v in fields.items():
                    out += [k, v]
        else:
            raise AssertionError(f"unexpected key type {kind} for {key!r}")
    return b"\n".join(out)
