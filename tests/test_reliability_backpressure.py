"""Backpressure at the ingress on real Redis: deep queue, old queue, Redis out of memory, Redis
read-only → 429 + Retry-After, counted; deferred jobs do not count; the check is cached."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from redis import Redis as SyncRedis

from ghl_intake import ops
from ghl_intake.embedded import build_app, make_pool
from ghl_intake.signing import GhlSigner
from ingress import backpressure
from tests import test_reliability_support as support
from tests.conftest import make_settings
from workers import base

private_redis_server = support.private_redis_server
rel_redis_url = support.rel_redis_url


def body() -> bytes:
    return msgspec.json.encode({"type": "ContactCreate", "locationId": "locBp", "id": "c1",
                                "webhookId": uuid.uuid4().hex})


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    backpressure.reset()
    backpressure.COUNTS.clear()


class Ingress:
    def __init__(self, settings: Any, pool: Any, client: httpx.AsyncClient, signer: GhlSigner) -> None:
        self.settings, self.pool, self.client, self.signer = settings, pool, client, signer

    async def post(self) -> httpx.Response:
        raw = body()
        return await self.client.post("/webhooks/ghl", content=raw, headers=self.signer.headers(raw))


async def ingress(url: str, signer: GhlSigner, **overrides: Any) -> AsyncIterator[Ingress]:
    settings = make_settings(url, signer, bp_cache_s=0.2, **overrides)
    pool = make_pool(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(settings, pool)), base_url="http://t")
    try:
        yield Ingress(settings, pool, client, signer)
    finally:
        await client.aclose()
        await pool.aclose()


@pytest.fixture
async def ing(rel_redis_url: str, signer: GhlSigner) -> AsyncIterator[Ingress]:
    async for i in ingress(rel_redis_url, signer, bp_max_queue=5, bp_max_age_s=30.0):
        yield i


def assert_429(r: httpx.Response, words: str) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) > 0
    assert words in r.json()["error"], r.json()


async def test_deep_queue_answers_429_and_counts(ing: Ingress) -> None:
    assert (await ing.post()).status_code == 200
    jobs = [("redact", b"x", f"redact:{uuid.uuid4().hex}", 0.0) for _ in range(6)]
    await base.enqueue_jobs(ing.pool, ing.settings, jobs)
    await asyncio.sleep(0.25)  # past the cached reading
    assert_429(await ing.post(), "redact queue 6 deep")
    assert_429(await ing.post(), "busy")
    counts = await ops.backpressure_counts(ing.pool, ing.settings)
    assert counts["queue_depth"] == 2 and backpressure.COUNTS["queue_depth"] == 2
    stats = await ops.stats(ing.pool, ing.settings)
    assert stats["backpressure"]["queue_depth"] == 2 and stats["due"]["redact"] == 6
    # the pipeline catches up: accepted again
    await ing.pool.delete(base.queue_name(ing.settings, "redact"))
    await asyncio.sleep(0.25)
    assert (await ing.post()).status_code == 200


async def test_deferred_jobs_do_not_count(ing: Ingress) -> None:
    """An over-budget tenant's deferred events wait in the queue without throttling everyone."""
    jobs = [("rate", b"x", f"rate:{uuid.uuid4().hex}:d1", 90.0) for _ in range(50)]
    await base.enqueue_jobs(ing.pool, ing.settings, jobs)
    assert (await ing.post()).status_code == 200


async def test_old_queue_answers_429(ing: Ingress) -> None:
    q = base.queue_name(ing.settings, "persist")
    await ing.pool.zadd(q, {f"persist:{uuid.uuid4().hex}": int((time.time() - 45) * 1000)})
    assert_429(await ing.post(), "persist queue 45 s behind")
    assert backpressure.COUNTS == {"queue_age": 1}


async def test_check_is_cached(ing: Ingress) -> None:
    ing.settings.bp_cache_s = 60.0  # a pause of the test process must not end the reading's life
    r: Any = SyncRedis.from_url(ing.settings.redis_url)
    before = r.info("commandstats").get("cmdstat_zcount", {}).get("calls", 0)
    for _ in range(40):
        assert await backpressure.check(ing) is None
    after = r.info("commandstats").get("cmdstat_zcount", {}).get("calls", 0)
    r.close()
    assert after - before == 5  # one reading (one ZCOUNT per stage) for 40 checks


@pytest.mark.slow
async def test_redis_out_of_memory_answers_429(tmp_path: Any, signer: GhlSigner) -> None:
    if not support.have_redis_server():
        pytest.skip("no redis-server binary")
    server = support.RedisServer(tmp_path, extra=("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")).start()
    try:
        async for i in ingress(server.url, signer):
            assert (await i.post()).status_code == 200
            r = SyncRedis.from_url(server.url)
            with pytest.raises(Exception, match="maxmemory"):
                for n in range(10_000):
                    r.set(f"ballast:{n}", b"x" * 10_000)
            r.close()
            await asyncio.sleep(0.25)
            assert_429(await i.post(), "storage full")
            # even with the check not looking at memory, the enqueue's OOM answer is a 429
            i.settings.bp_max_memory_ratio = 10.0
            backpressure.reset()
            r = SyncRedis.from_url(server.url)
            r.config_set("maxmemory", "1mb")  # now below what is used: every write is refused
            r.close()
            resp = await i.post()
            assert resp.status_code == 429 and "retry-after" in resp.headers
            assert backpressure.COUNTS.get("memory") == 1
    finally:
        server.cleanup()


@pytest.mark.slow
async def test_redis_read_only_answers_429(tmp_path: Any, signer: GhlSigner) -> None:
    if not support.have_redis_server():
        pytest.skip("no redis-server binary")
    primary = support.RedisServer(tmp_path / "a")
    replica = support.RedisServer(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    primary.start()
    replica.start()
    try:
        async for i in ingress(replica.url, signer):
            assert (await i.post()).status_code == 200
            r = SyncRedis.from_url(replica.url)
            r.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))  # a failover left us on a replica
            await asyncio.sleep(0.25)
            assert_429(await i.post(), "read-only")
            assert backpressure.COUNTS.get("read_only") == 1
            r.execute_command("REPLICAOF", "NO", "ONE")
            r.close()
            await asyncio.sleep(0.25)
            assert (await i.post()).status_code == 200
    finally:
        primary.cleanup()
        replica.cleanup()


async def test_redis_unreachable_answers_429(signer: GhlSigner) -> None:
    port = support.free_port()
    async for i in ingress(f"redis://127.0.0.1:{port}/0", signer):
        assert_429(await i.post(), "retry later")
