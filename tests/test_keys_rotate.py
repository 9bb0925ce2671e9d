"""Master key rotation: re-wrap under load on real Redis, resumable, then the old key is removed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import uuid

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from ghl_intake.cli import main
from ghl_intake.keys import generate_env
from pipeline.persist import Entry, merge
from store.context import ContextStore
from store.crypto import EnvelopeCrypto
from store.dlq import DeadLetterStore
from store.keyring import DecryptError, Keyring
from store.tenants import TenantRegistry


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_rotate_under_load_loses_nothing(real_redis_url: str, prefix: str) -> None:
    k1, k2 = ("k1", os.urandom(32)), ("k2", os.urandom(32))
    old = Keyring([k1])
    r = Redis.from_url(real_redis_url)
    expected: dict[str, set[str]] = {}
    store_old = ContextStore(r, old, prefix=prefix)
    for c in range(120):
        await store_old.update("locA", f"c{c}", lambda ctx, c=c: merge(ctx, Entry(f"seed{c}", "T", 0.0, {}), 1000))
        expected[f"c{c}"] = {f"seed{c}"}
    reg_old = TenantRegistry(r, old, prefix=prefix)
    await reg_old.add("locA")
    _, hsecret = await reg_old.add_secret("locA", "hmac")
    await reg_old.set_credentials("locA", ghl_api_key="ghl-key-123")
    dlq_id = await DeadLetterStore(r, old, prefix=prefix).write(stage="redact", event_id="ev1", tenant="locA",
                                                                 reason="permanent", error="x", job=b"job-bytes")

    # every process now runs with k2 primary, k1 still known; writers keep going during the rotation
    new = Keyring([k2, k1])
    stop = asyncio.Event()
    conns = [Redis.from_url(real_redis_url) for _ in range(6)]
    writers = [ContextStore(c, new, prefix=prefix, max_cas_tries=1000) for c in conns]
    written = 0

    async def load(w: int) -> None:
        nonlocal written
        rnd = random.Random(w)
        i = 0
        while not stop.is_set():
            contact = f"c{rnd.randrange(160)}"  # some contacts are new: keys created during rotation
            eid = f"w{w}-{i}"
            await writers[w].update("locA", contact, lambda ctx, eid=eid: merge(ctx, Entry(eid, "T", 1.0, {}), 1000))
            expected.setdefault(contact, set()).add(eid)
            written += 1
            i += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(load(w)) for w in range(len(writers))]
    crypto = EnvelopeCrypto(r, new, prefix=prefix)
    before = await crypto.status()
    assert before["k1"] >= 121 and before["k2"] >= 0
    # interrupted after two batches, then resumed
    first = await crypto.rotate(batch=10, max_batches=2)
    assert not first.resumed and first.rewrapped > 0
    seen: list[tuple[int, int]] = []
    second = await crypto.rotate(batch=10, progress=lambda d, t: seen.append((d, t)))
    assert second.resumed and second.complete and seen
    assert second.dead_letters_resealed == 1
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    assert written > 50
    after = await crypto.status()
    assert after["k1"] == 0 and after["k2"] == len(expected) + 1  # every contact + the tenant key
    assert await crypto.master_blob_counts() == {"k2": 1}

    # the old master key is removed: everything still opens, nothing lost
    only_new = Keyring([k2])
    reader = ContextStore(r, only_new, prefix=prefix)
    for contact, ids in expected.items():
        ctx = await reader.get("locA", contact)
        assert ctx is not None and {e.event_id for e in ctx.entries} == ids, contact
    reg_new = TenantRegistry(r, only_new, prefix=prefix)
    assert (await reg_new.webhook_secrets("locA")).hmac_keys == [hsecret.encode()]
    assert (await reg_new.credentials("locA")) == {"ghl_api_key": "ghl-key-123"}
    assert await DeadLetterStore(r, only_new, prefix=prefix).job(dlq_id) == b"job-bytes"
    # and with only the old key nothing opens any more
    with pytest.raises(DecryptError):
        await ContextStore(r, old, prefix=prefix).get("locA", "c0")
    for c in [r, *conns]:
        await c.aclose()


def test_keys_cli_status_and_rotate(real_redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    env = {**generate_env("k1"), "REDIS_URL": real_redis_url, "INTAKE_KEY_PREFIX": prefix}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    k1 = env["INTAKE_MASTER_KEYS"]
    for i in range(5):
        monkeypatch.setenv("X", f"secret-{i}")
        assert main(["tenants", "add", f"loc{i}", "--hmac"]) == 0
        assert main(["tenants", "set-credentials", f"loc{i}", "--ghl-api-key-env", "X"]) == 0
    capsys.readouterr()
    k2 = f"k2:{base64.b64encode(os.urandom(32)).decode()}"
    monkeypatch.setenv("INTAKE_MASTER_KEYS", f"{k2},{k1}")
    assert main(["keys", "status", "--json"]) == 0
    rows = {r["key_id"]: r for r in json.loads(capsys.readouterr().out)["keys"]}
    assert rows["k1"]["data_keys"] == 5 and rows["k1"]["role"] == "decrypt-only"
    assert rows["k2"]["data_keys"] == 0 and rows["k2"]["role"] == "primary"
    assert main(["keys", "rotate", "--batch", "2"]) == 0
    assert "5 data keys re-wrapped" in capsys.readouterr().out
    monkeypatch.setenv("INTAKE_MASTER_KEYS", k2)  # old key removed
    assert main(["keys", "status", "--json"]) == 0
    rows = {r["key_id"]: r for r in json.loads(capsys.readouterr().out)["keys"]}
    assert rows == {"k2": {"key_id": "k2", "role": "primary", "data_keys": 5, "dead_letters": 0}}
    assert main(["tenants", "show", "loc3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["credentials"] == {"ghl_api_key": "****"}
    sync = SyncRedis.from_url(real_redis_url)
    log = [json.loads(x) for x in sync.lrange(f"{prefix}:audit:log:_system", 0, -1)]
    sync.close()
    rot = [x for x in log if x["outcome"] == "keys_rotate"]
    assert [x["detail"]["phase"] for x in rot] == ["start", "done"]
    assert rot[0]["actor"].startswith("operator:") and rot[0]["stage"] == "operator"
