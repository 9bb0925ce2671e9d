"""AuditStore against real Redis (own key prefix) and fakeredis: concurrency, idempotency, tampering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from pipeline.audit import (
    Checkpoint,
    build_record,
    decode_record,
    genesis_hash,
    key_id,
    make_checkpoint,
    verify_export_lines,
)
from pipeline.pseudonym import pseudonymize_id
from store.audit import SYSTEM_TENANT, AuditStore, load_signing_key, public_key_pem

REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


async def _real() -> Redis | None:
    r = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await r.ping()
    except Exception:
        await r.aclose()
        return None
    return r


async def _cleanup(r: Redis, prefix: str) -> None:
    keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await r.delete(*keys)


@pytest.fixture(params=["real", "fake"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[Any], str]]:
    """(backend, 9 independent clients on one server, key prefix)."""
    prefix = f"t-audit-{uuid.uuid4().hex[:12]}"
    if request.param == "real":
        first = await _real()
        if first is None:
            pytest.skip("no Redis at 127.0.0.1:6379")
        clients = [first] + [Redis.from_url(REDIS_URL) for _ in range(8)]
        try:
            yield "real", clients, prefix
        finally:
            await _cleanup(first, prefix)
            for c in clients:
                await c.aclose()
    else:
        server = fakeredis.FakeServer()
        clients = [fakeredis.FakeAsyncRedis(server=server) for _ in range(9)]
        yield "fake", clients, prefix
        for c in clients:
            await c.aclose()


def _store(r: Any, prefix: str, **kw: object) -> AuditStore:
    return AuditStore(r, prefix=prefix, **kw)  # type: ignore[arg-type]


async def test_eight_concurrent_writers_one_tenant(env: tuple[str, list[Any], str]) -> None:
    backend, clients, prefix = env
    per_writer = 60 if backend == "real" else 25
    # 8 "processes"; half of them send appends over a dedicated connection
    stores = [_store(c, prefix, signing_key=KEY, checkpoint_every=50, dedicated_connection=i % 2 == 0)
              for i, c in enumerate(clients[1:9])]

    async def writer(w: int, store: AuditStore) -> list[int]:
        seqs = []
        for i in range(per_writer):
            seqs.append(await store.append("loc-A", event_id=f"ev-{w}-{i}", stage="dedup", outcome="processed",
                                           counts={"n": i}))
        return seqs

    results = await asyncio.gather(*(writer(w, s) for w, s in enumerate(stores)))
    total = 8 * per_writer
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(1, total + 1))  # no gap, no duplicate
    for r in results:
        assert r == sorted(r)  # each writer's own appends are in order
    assert sum(s.contention_retries for s in stores) > 0  # they really raced
    reader = _store(clients[0], prefix, signing_key=KEY)
    recs = await reader.records("loc-A")
    assert [r.seq for r in recs] == list(range(1, total + 1))
    assert len({(r.event_id, r.stage, r.outcome) for r in recs}) == total
    for a, b in zip(recs, recs[1:], strict=False):
        assert b.prev == a.hash  # no fork
    [rep] = await reader.verify("loc-A")
    assert rep.ok and rep.records == total and rep.signed, rep
    assert rep.checkpoints == total // 50

    # the same step audited by all 8 at once (a re-run job racing its first run): one record
    again = await asyncio.gather(*(s.append("loc-A", event_id="ev-same", stage="rate", outcome="deferred")
                                   for s in stores))
    assert len(set(again)) == 1 and again[0] == total + 1
    assert await clients[0].llen(f"{prefix}:audit:log:loc-A") == total + 1
    for s in stores:
        await s.aclose()
    assert await stores[0].append("loc-A", event_id="after-close", stage="x", outcome="y") == total + 2


async def test_concurrent_writers_many_tenants(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    stores = [_store(c, prefix) for c in clients[1:9]]

    async def writer(w: int, store: AuditStore) -> None:
        for i in range(40):
            await store.append(f"loc-{i % 5}", event_id=f"e-{w}-{i}", stage="persist", outcome="processed")

    await asyncio.gather(*(writer(w, s) for w, s in enumerate(stores)))
    reader = _store(clients[0], prefix)
    assert await reader.tenants() == [f"loc-{i}" for i in range(5)]
    reports = await reader.verify()
    assert all(r.ok for r in reports) and sum(r.records for r in reports) == 8 * 40
    assert all("unsigned" in r.reason for r in reports)
    assert await reader.checkpoint() == []  # no signing key: no checkpoints
    last = await reader.last_append()
    assert set(last) == {f"loc-{i}" for i in range(5)}


async def test_idempotent_append(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    store = _store(clients[0], prefix)
    s1 = await store.append("loc-B", event_id="e1", stage="dedup", outcome="processed")
    s2 = await store.append("loc-B", event_id="e1", stage="rate", outcome="processed")
    again = await _store(clients[1], prefix).append("loc-B", event_id="e1", stage="dedup", outcome="processed",
                                                    counts={"x": 1})
    assert (s1, s2, again) == (1, 2, 1)
    assert await clients[0].llen(f"{prefix}:audit:log:loc-B") == 2
    # a different outcome of the same step is a new record
    assert await store.append("loc-B", event_id="e1", stage="dedup", outcome="duplicate") == 3


async def test_history_across_stages_and_pseudonymous_contact(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    store = _store(clients[0], prefix)
    contact_id = "ocQHyuzHvysMo5N5VsXc"
    email = "jane.doe@example.com"
    pkey = b"k" * 32
    contact = pseudonymize_id(pkey, "loc-C", contact_id)
    for stage in ("dedup", "rate", "redact", "persist"):
        await store.append("loc-C", event_id="evt-1", stage=stage, outcome="processed", contact=contact,
                           counts={"EMAIL_ADDRESS": 1} if stage == "redact" else None)
    await store.append("loc-C", event_id="evt-2", stage="dedup", outcome="duplicate", contact=contact)
    await store.append(SYSTEM_TENANT, event_id="evt-1", stage="dlq", outcome="replayed", actor="operator:ann@host")
    hist = await store.history("evt-1")
    assert [(r.tenant, r.stage) for r in hist] == [("loc-C", "dedup"), ("loc-C", "rate"), ("loc-C", "redact"),
                                                   ("loc-C", "persist"), (SYSTEM_TENANT, "dlq")]
    assert hist[2].counts == {"EMAIL_ADDRESS": 1} and hist[0].contact == contact
    assert await store.history("nope") == []
    # nothing personal anywhere under the prefix
    c = clients[0]
    for k in [k async for k in c.scan_iter(match=f"{prefix}:*")]:
        t = await c.type(k)
        if t == b"list":
            blob = repr(await c.lrange(k, 0, -1))
        elif t == b"hash":
            blob = repr(await c.hgetall(k))
        elif t == b"set":
            blob = repr(await c.smembers(k))
        else:
            blob = repr(await c.get(k))
        assert contact_id not in blob and email not in blob and contact_id not in k.decode()


async def test_tampered_record_is_named(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    r = clients[0]
    store = _store(r, prefix, signing_key=KEY, checkpoint_every=5)
    for i in range(12):
        await store.append("loc-D", event_id=f"e{i}", stage="persist", outcome="processed")
    key = f"{prefix}:audit:log:loc-D"
    original = await r.lindex(key, 6)
    await r.lset(key, 6, original.replace(b'"outcome":"processed"', b'"outcome":"duplicate"'))
    [rep] = await store.verify("loc-D")
    assert not rep.ok and rep.first_bad_seq == 7 and "changed" in rep.reason
    await r.lset(key, 6, original)
    assert (await store.verify("loc-D"))[0].ok


async def test_deleted_record_is_named(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    r = clients[0]
    store = _store(r, prefix)
    for i in range(10):
        await store.append("loc-E", event_id=f"e{i}", stage="persist", outcome="processed")
    key = f"{prefix}:audit:log:loc-E"
    await r.lrem(key, 1, await r.lindex(key, 3))
    [rep] = await store.verify("loc-E")
    assert not rep.ok and rep.first_bad_seq == 4 and "missing" in rep.reason


async def test_truncated_tail_against_checkpoint(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    r = clients[0]
    store = _store(r, prefix, signing_key=KEY, checkpoint_every=10)
    for i in range(25):
        await store.append("loc-F", event_id=f"e{i}", stage="persist", outcome="processed")
    log, head = f"{prefix}:audit:log:loc-F", f"{prefix}:audit:head:loc-F"
    await r.ltrim(log, 0, 16)  # keep seq 1..17
    [rep] = await store.verify("loc-F")  # head key still says 25
    assert not rep.ok and rep.first_bad_seq == 18
    # the attacker also moves the head back: the signed checkpoint at 20 still catches it
    last = decode_record(await r.lindex(log, -1))
    await r.hset(head, mapping={"seq": "17", "hash": last.hash})
    [rep] = await store.verify("loc-F")
    assert not rep.ok and rep.first_bad_seq == 18 and "truncated" in rep.reason and "20" in rep.reason
    # cut below the checkpoint at 10 too: the first missing seq is named
    await r.ltrim(log, 0, 4)
    await r.hset(head, mapping={"seq": "5", "hash": decode_record(await r.lindex(log, -1)).hash})
    [rep] = await store.verify("loc-F")
    assert not rep.ok and rep.first_bad_seq == 6


async def _rewrite_chain(r: Any, prefix: str, tenant: str) -> list[bytes]:
    """Attacker with Redis write access: replace every record consistently, move the head."""
    log = f"{prefix}:audit:log:{tenant}"
    lines = await r.lrange(log, 0, -1)
    prev = genesis_hash(tenant)
    new = []
    for line in lines:
        rec = decode_record(line)
        nr, nl = build_record(tenant, rec.seq, prev, event_id=rec.event_id, stage=rec.stage, outcome="processed",
                              counts={"rewritten": 1}, ts=rec.ts)
        new.append(nl)
        prev = nr.hash
    await r.delete(log)
    await r.rpush(log, *new)
    await r.hset(f"{prefix}:audit:head:{tenant}", mapping={"seq": str(len(new)), "hash": prev})
    return new


async def test_rewritten_chain_and_forged_head(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    r = clients[0]
    store = _store(r, prefix, signing_key=KEY, checkpoint_every=4)
    for i in range(10):
        await store.append("loc-G", event_id=f"e{i}", stage="redact", outcome="processed")
    new = await _rewrite_chain(r, prefix, "loc-G")
    [rep] = await store.verify("loc-G")
    assert not rep.ok and rep.first_bad_seq == 1 and "rewritten" in rep.reason
    # forge the checkpoints too, with a key the verifier does not trust
    ck = f"{prefix}:audit:ckpt:loc-G"
    await r.delete(ck)
    for seq in (4, 8):
        await r.rpush(ck, make_checkpoint("loc-G", seq, decode_record(new[seq - 1]).hash, OTHER)[1])
    [rep] = await store.verify("loc-G")
    assert not rep.ok and "unknown key" in rep.reason
    # or keep the genuine signatures over forged heads
    await r.delete(ck)
    forged = Checkpoint(tenant="loc-G", seq=8, head=decode_record(new[7]).hash, ts="2026-12-03T00:00:00.000000Z",
                        key=key_id(KEY.public_key()),
                        sig=make_checkpoint("loc-G", 8, "0" * 64, KEY)[0].sig)
    import msgspec

    await r.rpush(ck, msgspec.json.encode(forged))
    [rep] = await store.verify("loc-G")
    assert not rep.ok and "invalid signature" in rep.reason and rep.first_bad_seq == 8


async def test_tick_heartbeat_and_interval(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    r = clients[0]
    store = _store(r, prefix, signing_key=KEY, checkpoint_every=1000, checkpoint_interval_s=60)
    await store.append("loc-H", event_id="e1", stage="dedup", outcome="processed")
    first = await store.tick()
    assert [(c.tenant, c.seq) for c in first] == [("loc-H", 1)]  # never checkpointed: now
    await r.delete(f"{prefix}:audit:tick")
    assert await store.tick() == []  # too soon
    await r.delete(f"{prefix}:audit:tick")
    import time

    later = await store.tick(now=time.time() + 61)  # idle for an interval: heartbeat at the same head
    assert [(c.tenant, c.seq, c.head) for c in later] == [("loc-H", 1, first[0].head)]
    # the tick above holds the tick lock (for about 2 s); stretched, so a stall here cannot free it
    assert await r.pexpire(f"{prefix}:audit:tick", 60_000)
    assert await store.tick(now=time.time() + 200) == []  # lock held by the tick above
    forced = await store.checkpoint("loc-H")
    assert len(forced) == 1
    [rep] = await store.verify("loc-H")
    assert rep.ok and rep.signed and rep.checkpoints == 3


async def test_export_files_verify_with_public_key_only(env: tuple[str, list[Any], str], tmp_path: Path) -> None:
    _, clients, prefix = env
    stores = [_store(c, prefix, signing_key=KEY, export_dir=tmp_path, checkpoint_every=7) for c in clients[1:5]]

    async def writer(w: int, store: AuditStore) -> None:
        for i in range(30):
            await store.append(f"loc-{i % 2}", event_id=f"x-{w}-{i}", stage="persist", outcome="processed")

    await asyncio.gather(*(writer(w, s) for w, s in enumerate(stores)))
    assert not list(tmp_path.glob("audit_*.jsonl"))  # noqa: ASYNC240  (export is off the hot path)
    await stores[0].checkpoint()
    assert await stores[1].tick() == []  # interval not reached: no checkpoint, but the export runs
    assert await stores[2].export_pending() == 0  # nothing new
    files = sorted(tmp_path.glob("audit_*.jsonl"))  # noqa: ASYNC240
    assert files and all(f.name.startswith("audit_2") and len(f.name) == len("audit_20261203.jsonl") for f in files)
    lines = [ln for f in files for ln in f.read_bytes().splitlines()]
    assert len(lines) == 120 + 2 * (60 // 7) + 2  # records, checkpoints every 7 per chain, 2 forced
    from pipeline.audit import public_key_from_pem

    pub = public_key_from_pem(public_key_pem(KEY))  # the auditor has nothing else
    reports = verify_export_lines(lines, [pub])
    assert [r.tenant for r in reports] == ["loc-0", "loc-1"]
    assert all(r.ok and r.signed and r.records == 60 for r in reports), reports
    # the export and Redis agree
    for rep in await stores[0].verify():
        assert rep.ok and rep.records == 60
    # one changed line in the file is found
    text = files[0].read_bytes()
    target = next(ln for ln in text.splitlines() if b'"seq":9,' in ln and b'"type":"rec"' in ln)
    files[0].write_bytes(text.replace(target, target.replace(b"persist", b"persisT")))
    lines = [ln for f in files for ln in f.read_bytes().splitlines()]
    bad = [r for r in verify_export_lines(lines, [pub]) if not r.ok]
    assert len(bad) == 1 and bad[0].first_bad_seq == 9
    # a record removed from the file is found too
    files[0].write_bytes(b"\n".join(ln for ln in text.splitlines() if ln != target) + b"\n")
    lines = [ln for f in files for ln in f.read_bytes().splitlines()]
    bad = [r for r in verify_export_lines(lines, [pub]) if not r.ok]
    assert len(bad) == 1 and bad[0].first_bad_seq == 9 and "missing" in bad[0].reason


def test_load_signing_key() -> None:
    import base64

    from ghl_intake.settings import Settings

    assert load_signing_key(Settings()) is None
    raw = bytes(range(32))
    key = load_signing_key(Settings(audit_signing_key=base64.b64encode(raw).decode()))
    assert key is not None
    assert public_key_pem(key) == public_key_pem(Ed25519PrivateKey.from_private_bytes(raw).public_key())


async def test_rejects_bad_input() -> None:
    store = _store(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), "t")
    with pytest.raises(ValueError):
        await store.append("", event_id="e", stage="s", outcome="o")
    with pytest.raises(TypeError):
        await store.append("t1", event_id="e", stage="s", outcome="o", detail={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        await store.append("t1", event_id="e", stage="s", outcome="o", counts={"n": "1"})  # type: ignore[dict-item]


async def test_export_catch_up_has_no_gaps_and_tolerates_replays(tmp_path: Path) -> None:
    r = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    store = _store(r, "t", signing_key=KEY, export_dir=tmp_path, checkpoint_every=4)
    for i in range(10):
        await store.append("loc-X", event_id=f"e{i}", stage="dedup", outcome="processed")
    assert await store.export_pending() == 10 + 2
    assert await store.export_pending() == 0
    for i in range(10, 13):
        await store.append("loc-X", event_id=f"e{i}", stage="dedup", outcome="processed")
    assert await store.export_pending() == 3 + 1
    # an exporter that died after writing but before moving its cursor: everything again
    await r.delete("t:audit:xcur")
    assert await store.export_pending() == 13 + 3
    lines = [ln for f in sorted(tmp_path.glob("audit_*.jsonl")) for ln in f.read_bytes().splitlines()]  # noqa: ASYNC240
    assert len(lines) == 2 * (13 + 3)
    [rep] = verify_export_lines(lines, [KEY.public_key()])
    assert rep.ok and rep.records == 13 and rep.checkpoints == 3 and rep.signed
    # another exporter holding the lock: this one skips
    await r.set("t:audit:xlock", "someone-else")
    assert await store.export_pending() == 0
    await r.aclose()


async def test_one_process_many_coroutines_take_turns(env: tuple[str, list[Any], str]) -> None:
    _, clients, prefix = env
    store = _store(clients[0], prefix)
    seqs = await asyncio.gather(*(store.append("loc-L", event_id=f"c{i}", stage="audit", outcome="processed")
                                  for i in range(64)))
    assert sorted(seqs) == list(range(1, 65)) and store.contention_retries == 0
    assert (await store.verify("loc-L"))[0].ok
