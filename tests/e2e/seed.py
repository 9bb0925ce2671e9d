"""Seeding shared by the console tests and the browser tests: users, audit records, dead letters.

Everything goes through the real stores (real Redis, real argon2, real AES-GCM); nothing is mocked.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from ghl_intake import keys
from ghl_intake.settings import Settings
from pipeline.models import Envelope, pack
from pipeline.stages import envelope_aad
from store.audit import AuditStore, load_signing_key
from store.dlq import DeadLetterStore
from store.users import UserStore

PASSWORD = "correct horse battery staple"
TENANT_A = "locAlpha01"
TENANT_B = "locBravo02"


@dataclass
class Seeded:
    dlq_a: str  # dead letter of tenant A
    dlq_b: str  # dead letter of tenant B
    tokens: dict[str, str]


async def seed_users(redis: Redis, settings: Settings) -> dict[str, str]:
    users = UserStore(redis, prefix=settings.key_prefix)
    await users.add("root", "admin", ("*",), PASSWORD)
    await users.add("opa", "operator", (TENANT_A,), PASSWORD)
    await users.add("ana", "analyst", (TENANT_A,), PASSWORD)
    await users.add("opall", "operator", ("*",), PASSWORD)
    return {n: await users.new_token(n) for n in ("root", "opa", "ana", "opall")}


async def seed_events(redis: Redis, settings: Settings) -> None:
    """Audit records of stage outcomes for both tenants (the chart buckets them by hour)."""
    store = AuditStore(redis, prefix=settings.key_prefix, signing_key=load_signing_key(settings))
    for tenant, n_processed, n_dup, n_dead in ((TENANT_A, 12, 3, 1), (TENANT_B, 7, 1, 1)):
        for _ in range(n_processed):
            ev = uuid.uuid4().hex
            await store.append(tenant, event_id=ev, stage="dedup", outcome="passed")
            await store.append(tenant, event_id=ev, stage="persist", outcome="processed", counts={"PERSON": 1})
        for _ in range(n_dup):
            await store.append(tenant, event_id=uuid.uuid4().hex, stage="dedup", outcome="duplicate")
        for _ in range(n_dead):
            await store.append(tenant, event_id=uuid.uuid4().hex, stage="redact", outcome="dead_lettered")


async def seed_dead_letter(redis: Redis, settings: Settings, tenant: str) -> str:
    """A dedup-stage dead letter holding a real sealed envelope, as the worker writes it."""
    km = keys.load(settings)
    event_id = uuid.uuid4().hex
    body = b'{"type": "ContactCreate", "locationId": "%s", "webhookId": "%s"}' % (tenant.encode(), event_id.encode())
    env = Envelope(event_id=event_id, received_at=time.time(), scheme="ghl-ed25519", client="127.0.0.1",
                   body=km.keyring.seal(body, envelope_aad(event_id)), tenant_hint=tenant)
    dlq = DeadLetterStore(redis, km.keyring, prefix=settings.key_prefix)
    return await dlq.write(stage="dedup", event_id=event_id, tenant=tenant, reason="permanent",
                           error="ParseError: test fixture", job=pack(env))


async def seed_all(redis: Redis, settings: Settings) -> Seeded:
    tokens = await seed_users(redis, settings)
    await seed_events(redis, settings)
    a = await seed_dead_letter(redis, settings, TENANT_A)
    b = await seed_dead_letter(redis, settings, TENANT_B)
    return Seeded(dlq_a=a, dlq_b=b, tokens=tokens)



async def seed_history(redis: Redis, settings: Settings, tenant: str, *, hours: int = 24, seed: int = 7) -> None:
    """Stage outcomes spread over the last ``hours`` hours, for a dashboard worth a screenshot.

    Records go through the real ``AuditStore.append`` (so the chain verifies); only the timestamp
    that ``build_record`` would take from the clock is set to the past hour being filled.
    """
    import random

    import pipeline.audit as pa

    rnd = random.Random(seed)
    store = AuditStore(redis, prefix=settings.key_prefix, signing_key=load_signing_key(settings))
    real = pa.iso_now
    now = time.time()
    try:
        for h in range(hours, 0, -1):
            base = now - h * 3600
            for _ in range(rnd.randint(2, 9) + (6 if 9 <= (h % 24) <= 14 else 0)):
                t = base + rnd.uniform(0, 3599)
                pa.iso_now = lambda now=None, t=t: real(t)  # type: ignore[misc]
                outcome = rnd.choices(["processed", "duplicate", "deferred", "dead_lettered"], [20, 3, 2, 1])[0]
                await store.append(tenant, event_id=uuid.uuid4().hex, stage="pipeline", outcome=outcome)
    finally:
        pa.iso_now = real  # type: ignore[misc]
