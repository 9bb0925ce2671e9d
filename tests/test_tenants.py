"""Tenant registry: validation, secrets (hashed / sealed), rotation overlap, credentials, isolation."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from ghl_intake.settings import Settings
from store.crypto import EnvelopeCrypto
from store.keyring import DecryptError, Keyring
from store.state import PipelineState
from store.tenants import TenantRegistry


def keyring() -> Keyring:
    return Keyring([("k1", os.urandom(32))])


@pytest_asyncio.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    if request.param == "fake":
        r: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        url = request.getfixturevalue("real_redis_url")
        r = Redis.from_url(url)
    yield r
    await r.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_add_get_list_tier_remove(redis: Redis, prefix: str) -> None:
    reg = TenantRegistry(redis, keyring(), prefix=prefix)
    assert await reg.add("loc_A-1", tier="professional") is True
    assert await reg.add("loc_A-1", tier="professional") is False
    await reg.add("locB")
    t = await reg.get("loc_A-1")
    assert t is not None and t.tier == "professional" and t.created_at > 0 and t.secrets == []
    assert [x.id for x in await reg.list()] == ["locB", "loc_A-1"]
    # PipelineState reads the same tier field
    s = Settings(key_prefix=prefix)
    assert await PipelineState(redis, s).tier("loc_A-1") == "professional"
    await reg.set_tier("loc_A-1", "enterprise")
    assert await PipelineState(redis, s).tier("loc_A-1") == "enterprise"
    with pytest.raises(ValueError):
        await reg.set_tier("loc_A-1", "gold")
    with pytest.raises(KeyError):
        await reg.set_tier("nope", "starter")
    assert await reg.remove("loc_A-1") is True
    assert await reg.get("loc_A-1") is None
    assert await reg.remove("loc_A-1") is False
    assert await reg.get("nope") is None


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "a:b", "x" * 65, "loc id", "é", "a\nb", "a.b"])
async def test_location_id_validated(bad: str) -> None:
    reg = TenantRegistry(fakeredis.FakeAsyncRedis(), keyring())
    with pytest.raises(ValueError):
        await reg.add(bad)
    assert await reg.get(bad) is None
    assert not await reg.webhook_secrets(bad)


async def test_secrets_stored_hashed_or_sealed_never_plain(redis: Redis, prefix: str) -> None:
    reg = TenantRegistry(redis, keyring(), prefix=prefix)
    await reg.add("locA")
    tid, token = await reg.add_secret("locA", "token")
    hid, hsecret = await reg.add_secret("locA", "hmac")
    sid, ssecret = await reg.add_secret("locA", "standard")
    assert ssecret.startswith("whsec_") and len(base64.b64decode(ssecret[6:])) == 32
    ws = await reg.webhook_secrets("locA")
    assert ws.token_hashes == [hashlib.sha256(token.encode()).digest()]
    assert ws.hmac_keys == [hsecret.encode()]
    assert ws.standard_keys == [base64.b64decode(ssecret[6:])]
    t = await reg.get("locA")
    assert t is not None and {s.id for s in t.secrets} == {tid, hid, sid}
    assert {s.scheme for s in t.secrets} == {"token", "hmac", "standard"}
    # nothing in Redis holds a secret value (or its base64 / key bytes)
    needles = [token.encode(), hsecret.encode(), ssecret.encode(), base64.b64decode(ssecret[6:])]
    async for k in redis.scan_iter(match=f"{prefix}:*"):
        typ = (await redis.type(k)).decode()
        vals = []
        if typ == "hash":
            vals = [*(await redis.hgetall(k)).values(), *(await redis.hgetall(k)).keys()]
        elif typ == "string":
            vals = [await redis.get(k)]
        elif typ == "set":
            vals = list(await redis.smembers(k))
        for v in vals:
            for n in needles:
                assert n not in v


async def test_given_secret_and_bad_inputs(redis: Redis, prefix: str) -> None:
    reg = TenantRegistry(redis, keyring(), prefix=prefix)
    await reg.add("locA")
    _, v = await reg.add_secret("locA", "hmac", "my-shared-secret")
    assert v == "my-shared-secret"
    std = "whsec_" + base64.b64encode(b"k" * 24).decode()
    await reg.add_secret("locA", "standard", std)
    ws = await reg.webhook_secrets("locA")
    assert ws.hmac_keys == [b"my-shared-secret"] and ws.standard_keys == [b"k" * 24]
    # the Standard Webhooks test vectors' secret, with and without base64 padding
    vector = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    await reg.add_secret("locA", "standard", vector)
    await reg.add_secret("locA", "standard", vector.rstrip("=")[:-2] + vector[-2:])
    keys = (await reg.webhook_secrets("locA")).standard_keys
    assert keys.count(base64.b64decode(vector[6:])) == 2
    with pytest.raises(ValueError):
        await reg.add_secret("locA", "standard", "whsec_not base64!")
    with pytest.raises(ValueError):
        await reg.add_secret("locA", "rsa")
    with pytest.raises(KeyError):
        await reg.add_secret("unknown", "token")
    assert not await reg.webhook_secrets("unknown")


async def test_rotation_overlap_then_revoke(redis: Redis, prefix: str) -> None:
    reg = TenantRegistry(redis, keyring(), prefix=prefix)
    await reg.add("locA")
    old_id, old = await reg.add_secret("locA", "hmac")
    new_id, new = await reg.rotate_secret("locA", "hmac")
    assert old_id != new_id and old != new
    assert sorted((await reg.webhook_secrets("locA")).hmac_keys) == sorted([old.encode(), new.encode()])
    assert await reg.revoke_secret("locA", old_id) is True
    assert await reg.revoke_secret("locA", old_id) is False
    assert (await reg.webhook_secrets("locA")).hmac_keys == [new.encode()]


async def test_secret_blob_bound_to_tenant(redis: Redis, prefix: str) -> None:
    kr = keyring()
    reg = TenantRegistry(redis, kr, prefix=prefix)
    await reg.add("locA")
    await reg.add("locB")
    sid, _ = await reg.add_secret("locA", "hmac")
    await reg.add_secret("locB", "hmac")
    blob = await redis.hget(reg.key("locA", "secrets"), sid)
    await redis.hset(reg.key("locB", "secrets"), sid, blob)  # attacker copies A's secret record to B
    with pytest.raises(DecryptError):
        await reg.webhook_secrets("locB")
    # the registry with a different master key cannot read anything
    other = TenantRegistry(redis, keyring(), prefix=prefix)
    with pytest.raises(DecryptError):
        await other.webhook_secrets("locA")


async def test_credentials_roundtrip_sealed(redis: Redis, prefix: str) -> None:
    crypto = EnvelopeCrypto(redis, keyring(), prefix=prefix)
    reg = TenantRegistry(redis, crypto, prefix=prefix)
    await reg.add("locA")
    await reg.set_credentials("locA", anthropic_api_key="sk-ant-api03-SECRET", ghl_calendar_id="cal123")
    assert await reg.credentials("locA") == {"anthropic_api_key": "sk-ant-api03-SECRET", "ghl_calendar_id": "cal123"}
    raw = await redis.hgetall(reg.key("locA", "creds"))
    assert all(b"SECRET" not in v and b"cal123" not in v for v in raw.values())
    await reg.set_credentials("locA", ghl_calendar_id="", ghl_api_key="ghl-xyz")
    assert await reg.credentials("locA") == {"anthropic_api_key": "sk-ant-api03-SECRET", "ghl_api_key": "ghl-xyz"}
    t = await reg.get("locA")
    assert t is not None and t.credentials == {"anthropic_api_key", "ghl_api_key"}
    # a fresh process (empty data-key cache) reads them too
    reg2 = TenantRegistry(redis, crypto.keyring, prefix=prefix)
    assert (await reg2.credentials("locA"))["ghl_api_key"] == "ghl-xyz"
    await reg.remove("locA")
    assert await reg.credentials("locA") == {}
