"""The main job end to end on real Redis: every GHL fixture through the real ingress and workers."""

from __future__ import annotations

import asyncio
import json
import socket

import orjson
import pytest

from ghl_intake.demo_data import fixture_webhooks, lead_webhooks
from ghl_intake.keys import load as load_keys
from ghl_intake.ops import replay
from ghl_intake.signing import GhlSigner
from pipeline.parse import event_meta
from store.audit import AuditStore
from store.dlq import DeadLetterStore
from tests.conftest import make_settings
from tests.harness import dump_everything, pipeline

pytestmark = pytest.mark.redis

# Personal values inside the fixtures and the demo leads that must never be readable at rest.
FIXTURE_PII = [
    "Dana Whitfield", "dana.whitfield@example.org", "5125550147", "512) 555-0147", "88 Cedar Lane",
    "John Deo", "JohnDeo@gmail.comm", "john.doe+2@example.com", "limof@mailinator.com", "alex@example.com",
    "3235559998", "5864603685", "2389372075506", "919509597501", "3535 1st St N", "Schmidt",
    "2000-01-05",
]


def pii_values() -> list[str]:
    from ghl_intake.demo_data import lead_pii_values

    return FIXTURE_PII + lead_pii_values()


async def test_every_fixture_processed_duplicates_and_no_pii_at_rest(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    hooks = fixture_webhooks() + lead_webhooks()
    tenants = tuple({event_meta(h.body)[0].tenant for h in hooks})
    async with pipeline(settings, signer, tenants=tenants) as p:
        ids = {}
        for h in hooks:
            r = await p.post(h.body)
            assert r.status_code == 200, (h.name, r.text)
            ids[h.name] = r.json()["event_id"]
        await p.quiet()
        for name, event_id in ids.items():
            assert await p.status(event_id) == "processed", name
        # a second send of the same webhook (GHL retry: same webhookId / same workflow body) is a duplicate
        for h in hooks[:3] + [h for h in hooks if h.shape == "workflow"]:
            r = await p.post(h.body)
            assert r.status_code == 200
            await p.quiet()
            assert await p.status(r.json()["event_id"]) == "duplicate", h.name
        outcomes = await p.state.outcomes()
        assert outcomes["processed"] == len(hooks) and outcomes["duplicate"] == 4
        assert outcomes["dead_lettered"] == 0
        # the ready stream has one entry per processed event, redacted
        stream = await p.pool.xrange(settings.key("ready"))
        assert len(stream) == len(hooks)
        # nothing personal anywhere in Redis: keys, values, queues, results, stream, audit
        dump = await dump_everything(p.pool)
        leaked = [v for v in pii_values() if v.encode() in dump or v.lower().encode() in dump]
        assert not leaked, f"PII found at rest: {leaked}"
        # the audit chains verify
        km = load_keys(settings)
        audit = AuditStore(p.pool, prefix=settings.key_prefix, signing_key=km.audit_signing_key)
        reports = await audit.verify()
        assert reports and all(r.ok for r in reports), [r for r in reports if not r.ok]
        assert sum(r.records for r in reports) >= 4 * len(hooks)


async def test_audit_verify_fails_after_one_record_is_altered(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    hooks = fixture_webhooks()[:6]
    async with pipeline(settings, signer, tenants=tuple({event_meta(h.body)[0].tenant for h in hooks})) as p:
        for h in hooks:
            assert (await p.post(h.body)).status_code == 200
        await p.quiet()
        audit = AuditStore(p.pool, prefix=settings.key_prefix)
        assert all(r.ok for r in await audit.verify())
        tenant = event_meta(hooks[0].body)[0].tenant
        key = audit.key("log", tenant)
        line = await p.pool.lindex(key, 1)
        record = orjson.loads(line)
        record["outcome"] = "duplicate" if record["outcome"] != "duplicate" else "processed"
        await p.pool.lset(key, 1, orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        reports = {r.tenant: r for r in await audit.verify(tenant)}
        assert not reports[tenant].ok and reports[tenant].first_bad_seq == 2


async def test_verified_non_json_dead_letters_and_replays_after_fix(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    km = load_keys(settings)
    async with pipeline(settings, signer) as p:
        broken = b'{"type": "InboundMessage", "locationId": "locDLQ1", "body": "hi",'  # cut off in transit
        r = await p.post(broken)
        assert r.status_code == 200  # it verified: accepted, never lost
        event_id = r.json()["event_id"]
        await p.quiet()
        assert await p.status(event_id) == "dead_lettered"
        dlq = DeadLetterStore(p.pool, km.keyring, prefix=settings.key_prefix)
        [entry] = await dlq.list()
        assert entry.stage == "dedup" and entry.reason == "permanent" and "not JSON" in entry.error
        assert entry.event_id == event_id
        # replaying without a fix dead-letters it again, nothing lost
        res = await replay(p.pool, settings, km.keyring, entry.id)
        assert res.replayed
        assert not (await replay(p.pool, settings, km.keyring, entry.id)).replayed  # one replay at a time
        await p.quiet()
        assert (await dlq.get(entry.id)).state == "dead"  # type: ignore[union-attr]
        assert (await dlq.get(entry.id)).attempts == 2  # type: ignore[union-attr]
        # the operator fixes the cause (the complete body) and replays: processed, not a duplicate of itself
        fixed = broken + b' "contactId": "cDLQ1"}'
        res = await replay(p.pool, settings, km.keyring, entry.id, body_override=fixed)
        assert res.replayed, res.message
        await p.quiet()
        assert await p.status(event_id) == "processed"
        outcomes = await p.state.outcomes()
        assert outcomes["dead_lettered"] == 0 and outcomes["processed"] == 1
        audit = AuditStore(p.pool, prefix=settings.key_prefix)
        history = [(rec.stage, rec.outcome) for rec in await audit.history(event_id)]
        assert ("dedup", "dead_lettered") in history and ("persist", "processed") in history


async def test_context_is_encrypted_and_keeps_each_message_once(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    km = load_keys(settings)
    msgs = [orjson.dumps({"type": "InboundMessage", "locationId": "locCtx1", "contactId": "cCtx1",
                          "webhookId": f"wh-{i}", "messageType": "SMS", "direction": "inbound",
                          "body": f"Hi, this is Priya Raman, call me at (512) 555-01{i:02d} about the condo"})
            for i in range(12)]
    async with pipeline(settings, signer, tenants=("locCtx1",)) as p:
        results = await asyncio.gather(*(p.post(m) for m in msgs))
        assert all(r.status_code == 200 for r in results)
        await p.quiet()
        from store.context import ContextStore

        ctx = await ContextStore(p.pool, km.keyring, prefix=settings.key_prefix).get("locCtx1", "cCtx1")
        assert ctx is not None
        assert len(ctx.entries) == 12 and len({e.event_id for e in ctx.entries}) == 12
        text = json.dumps([e.fields for e in ctx.entries])
        assert "Priya" not in text and "555-01" not in text and "<PHONE_NUMBER:" in text
        raw = await p.pool.hget(settings.key("ctx", "locCtx1", "cCtx1"), "blob")
        assert raw and b"condo" not in raw  # ciphertext at rest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_down_at_ingress_answers_429_not_5xx(signer: GhlSigner) -> None:
    import httpx

    from ghl_intake.embedded import build_app, make_pool

    settings = make_settings(f"redis://127.0.0.1:{_closed_port()}/0", signer)
    pool = make_pool(settings)
    app = build_app(settings, pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = fixture_webhooks()[0].body
        r = await client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert (await client.get("/healthz")).status_code == 503
        # a bad signature is still a 401 (verify before anything else)
        r = await client.post("/webhooks/ghl", content=body, headers={"content-type": "application/json",
                                                                       "x-ghl-signature": "AAAA"})
        assert r.status_code == 401
    await pool.aclose()
