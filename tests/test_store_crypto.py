"""Envelope encryption: data keys wrapped by master keys, v2 format, AAD binding, cache, destruction."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from store.crypto import FORMAT_V2, EnvelopeCrypto, blob_key_id, contact_scope, tenant_scope
from store.keyring import DecryptError, Keyring


def kr(*ids: str) -> Keyring:
    return Keyring([(i, os.urandom(32)) for i in ids or ("k1",)])


@pytest_asyncio.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    if request.param == "fake":
        r: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        r = Redis.from_url(request.getfixturevalue("real_redis_url"))
    yield r
    await r.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_roundtrip_format_and_wrapped_record(redis: Redis, prefix: str) -> None:
    c = EnvelopeCrypto(redis, kr("k2", "k1"), prefix=prefix)
    blob = await c.seal_for("locA", "c1", "context", b"hello world")
    assert blob[0] == FORMAT_V2 and blob_key_id(blob).startswith("d")
    assert await c.open_for("locA", "c1", "context", blob) == b"hello world"
    rec = await redis.hgetall(c.record_key(contact_scope("locA", "c1")))
    assert rec[b"mk"] == b"k2" and rec[b"id"].decode() == blob_key_id(blob)
    assert c.keyring.key_id_of(rec[b"w"]) == "k2"  # wrapped key record carries the master key id
    assert contact_scope("locA", "c1") in {m.decode() for m in await redis.smembers(c.index_key)}
    # a fresh process (no cache) opens it too
    c2 = EnvelopeCrypto(redis, c.keyring, prefix=prefix)
    assert await c2.open_for("locA", "c1", "context", blob) == b"hello world"
    # per-contact keys differ; tenant key differs from contact keys
    b2 = await c.seal_for("locA", "c2", "context", b"x")
    b3 = await c.seal_for("locA", None, "cred", b"x")
    assert len({blob_key_id(blob), blob_key_id(b2), blob_key_id(b3)}) == 3


async def test_binding_tenant_contact_kind_and_tamper(redis: Redis, prefix: str) -> None:
    c = EnvelopeCrypto(redis, kr(), prefix=prefix)
    blob = await c.seal_for("locA", "c1", "context", b"secret")
    await c.seal_for("locB", "c1", "context", b"other")
    await c.seal_for("locA", "c2", "context", b"other")
    for tenant, contact, kind in (("locB", "c1", "context"), ("locA", "c2", "context"), ("locA", "c1", "dlq")):
        with pytest.raises(DecryptError):
            await c.open_for(tenant, contact, kind, blob)
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(DecryptError):
        await c.open_for("locA", "c1", "context", bytes(bad))
    with pytest.raises(DecryptError):
        await c.open_for("locA", "c1", "context", b"\x01junk")
    # another deployment's master key cannot unwrap the data key
    with pytest.raises(DecryptError):
        await EnvelopeCrypto(redis, kr(), prefix=prefix).open_for("locA", "c1", "context", blob)


async def test_wrapped_record_bound_to_scope(redis: Redis, prefix: str) -> None:
    """Copying contact A's wrapped key record over contact B's does not give B's data A's key."""
    c = EnvelopeCrypto(redis, kr(), prefix=prefix)
    await c.seal_for("locA", "a", "context", b"x")
    await c.seal_for("locA", "b", "context", b"y")
    rec = await redis.hgetall(c.record_key(contact_scope("locA", "a")))
    await redis.hset(c.record_key(contact_scope("locA", "b")), mapping=rec)
    c.forget()
    with pytest.raises(DecryptError):
        await c.seal_for("locA", "b", "context", b"z")


async def test_destroy_makes_data_unreadable(redis: Redis, prefix: str) -> None:
    c = EnvelopeCrypto(redis, kr(), prefix=prefix)
    blob = await c.seal_for("locA", "c1", "context", b"pii")
    other = EnvelopeCrypto(redis, c.keyring, prefix=prefix)
    assert await other.open_for("locA", "c1", "context", blob) == b"pii"  # cached in `other` now
    assert await c.destroy(contact_scope("locA", "c1")) is True
    with pytest.raises(DecryptError):
        await c.open_for("locA", "c1", "context", blob)
    # a new key for the same contact does not open the old blob either
    await c.seal_for("locA", "c1", "context", b"new")
    with pytest.raises(DecryptError):
        await c.open_for("locA", "c1", "context", blob)
    assert await c.destroy(tenant_scope("nobody")) is False


async def test_cache_bound_and_ttl(prefix: str) -> None:
    now = [0.0]
    redis = fakeredis.FakeAsyncRedis()
    c = EnvelopeCrypto(redis, kr(), prefix=prefix, cache_size=3, cache_ttl_s=10, clock=lambda: now[0])
    for i in range(5):
        await c.seal_for("locA", f"c{i}", "context", b"x")
    assert list(c._cache) == [contact_scope("locA", f"c{i}") for i in (2, 3, 4)]
    await c.data_key(contact_scope("locA", "c2"))  # touch: becomes most recent
    assert list(c._cache)[-1] == contact_scope("locA", "c2")
    now[0] = 11.0
    assert c._cached(contact_scope("locA", "c3")) is None  # expired
    assert EnvelopeCrypto(redis, c.keyring, cache_size=0)._cache == {}


async def test_concurrent_first_use_creates_one_key(real_redis_url: str, prefix: str) -> None:
    keyring = kr()
    conns = [Redis.from_url(real_redis_url) for _ in range(8)]
    cryptos = [EnvelopeCrypto(r, keyring, prefix=prefix) for r in conns]
    blobs = await asyncio.gather(*(cr.seal_for("locA", "c1", "context", f"m{i}".encode())
                                   for i, cr in enumerate(cryptos)))
    assert len({blob_key_id(b) for b in blobs}) == 1
    for i, b in enumerate(blobs):
        assert await cryptos[(i + 1) % 8].open_for("locA", "c1", "context", b) == f"m{i}".encode()
    for r in conns:
        await r.aclose()


def test_sync_master_path() -> None:
    c = EnvelopeCrypto(fakeredis.FakeAsyncRedis(), kr("k2", "k1"))
    blob = c.seal(b"envelope body", b"envelope\x1fev1")
    assert c.keyring.key_id_of(blob) == "k2"
    assert c.open(blob, b"envelope\x1fev1") == b"envelope body"
    with pytest.raises(DecryptError):
        c.open(blob, b"envelope\x1fev2")


_KEYRING = kr()
_ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=_ids, contact=_ids, data=st.binary(max_size=2000))
def test_roundtrip_property(tenant: str, contact: str, data: bytes) -> None:
    async def go() -> None:
        c = EnvelopeCrypto(fakeredis.FakeAsyncRedis(), _KEYRING)
        blob = await c.seal_for(tenant, contact, "context", data)
        assert len(blob) == len(data) + 2 + 17 + 12 + 16
        assert await c.open_for(tenant, contact, "context", blob) == data
        with pytest.raises(DecryptError):
            await c.open_for(tenant, contact + "x", "context", blob)

    asyncio.run(go())


async def test_associated_data_alone_binds_tenant_contact_and_kind(redis: Redis, prefix: str) -> None:
    """Under one and the same data key, a blob opens only with the tenant, contact and kind it was sealed for:
    the binding does not rest on the data keys being different."""
    from cryptography.exceptions import InvalidTag

    from store.crypto import NONCE_BYTES, data_aad

    c = EnvelopeCrypto(redis, kr(), prefix=prefix)
    dk = await c.data_key(contact_scope("locA", "c1"))
    assert dk is not None
    blob = EnvelopeCrypto.seal_with(dk, b"secret", data_aad("context", "locA", "c1"))
    n = blob[1]
    nonce, ct = blob[2 + n: 2 + n + NONCE_BYTES], blob[2 + n + NONCE_BYTES:]
    assert dk.aead.decrypt(nonce, ct, data_aad("context", "locA", "c1")) == b"secret"
    for other in (("context", "locB", "c1"), ("context", "locA", "c2"), ("dlq", "locA", "c1"),
                  ("context", "locA", "")):
        with pytest.raises(InvalidTag):
            dk.aead.decrypt(nonce, ct, data_aad(*other))
