"""Context store: per-contact data keys, concurrent CAS writers on real Redis, erasure races, bounds."""

from __future__ import annotations

import asyncio
import os
import uuid

import fakeredis
import pytest
from redis.asyncio import Redis

from pipeline.persist import Entry, merge
from store.context import ContextStore
from store.crypto import EnvelopeCrypto, blob_key_id, contact_scope
from store.keyring import DecryptError, Keyring


def entry(i: int | str) -> Entry:
    return Entry(event_id=f"e{i}", event_type="InboundMessage", received_at=float(str(i).__hash__() % 1000),
                 fields={"body": f"<PERSON:{i}>"})


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_many_concurrent_writers_one_contact_lose_nothing(real_redis_url: str, prefix: str) -> None:
    keyring = Keyring([("k1", os.urandom(32))])
    writers, per_writer = 12, 20
    conns = [Redis.from_url(real_redis_url) for _ in range(writers)]
    stores = [ContextStore(r, keyring, prefix=prefix, max_cas_tries=500) for r in conns]

    async def write(w: int) -> None:
        for j in range(per_writer):
            await stores[w].update("locA", "c1", lambda ctx, e=entry(f"{w}-{j}"): merge(ctx, e, 10_000))  # noqa: B008

    await asyncio.gather(*(write(w) for w in range(writers)))
    ctx = await stores[0].get("locA", "c1")
    assert ctx is not None
    assert sorted(e.event_id for e in ctx.entries) == sorted(f"e{w}-{j}" for w in range(writers)
                                                             for j in range(per_writer))
    assert sum(s.cas_conflicts for s in stores) > 0  # there was real contention
    raw = await conns[0].hget(stores[0].key("locA", "c1"), "v")
    assert int(raw) == writers * per_writer  # one version per successful write, no lost update
    # re-running every event (arq at-least-once) changes nothing
    assert not await stores[1].update("locA", "c1", lambda ctx: merge(ctx, entry("0-0"), 10_000))
    for r in conns:
        await r.aclose()


async def test_context_bounded_and_sealed_per_contact(real_redis_url: str, prefix: str) -> None:
    r = Redis.from_url(real_redis_url)
    store = ContextStore(r, Keyring([("k1", os.urandom(32))]), prefix=prefix, ttl_s=3600)
    for i in range(30):
        await store.update("locA", "c1", lambda ctx, i=i: merge(ctx, Entry(f"e{i}", "T", float(i), {}), 5))
    ctx = await store.get("locA", "c1")
    assert ctx is not None and [e.event_id for e in ctx.entries] == [f"e{i}" for i in range(25, 30)]
    blob = await r.hget(store.key("locA", "c1"), "blob")
    rec = await r.hget(store.crypto.record_key(contact_scope("locA", "c1")), "id")
    assert blob_key_id(blob) == rec.decode()
    assert 0 < await r.ttl(store.key("locA", "c1")) <= 3600
    assert 3600 < await r.ttl(store.crypto.record_key(contact_scope("locA", "c1"))) <= 3600 + 86400
    # blob copied to another contact does not open there
    await store.update("locA", "c2", lambda ctx: merge(ctx, entry(1), 5))
    await r.hset(store.key("locA", "c2"), "blob", blob)
    with pytest.raises(DecryptError):
        await store.get("locA", "c2")
    assert await store.get("locA", "nobody") is None
    await r.aclose()


async def test_writer_with_stale_cached_key_cannot_write_after_destroy(prefix: str) -> None:
    r = fakeredis.FakeAsyncRedis()
    keyring = Keyring([("k1", os.urandom(32))])
    worker = ContextStore(r, keyring, prefix=prefix)
    await worker.update("locA", "c1", lambda ctx: merge(ctx, entry(1), 50))
    old_key = (await worker.crypto.data_key(contact_scope("locA", "c1")))
    assert old_key is not None
    # erasure from another process: destroy key and data; the worker still has the key cached
    eraser = EnvelopeCrypto(r, keyring, prefix=prefix)
    await eraser.destroy(contact_scope("locA", "c1"))
    await r.delete(worker.key("locA", "c1"))
    await worker.update("locA", "c1", lambda ctx: merge(ctx, entry(2), 50))
    ctx = await ContextStore(r, keyring, prefix=prefix).get("locA", "c1")
    assert ctx is not None and [e.event_id for e in ctx.entries] == ["e2"]  # old data gone, new data readable
    new_key = await eraser.data_key(contact_scope("locA", "c1"), create=False)
    assert new_key is not None and new_key.key_id != old_key.key_id
    assert worker.cas_conflicts == 1
