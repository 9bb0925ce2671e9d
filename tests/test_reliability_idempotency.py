"""Every stage run twice, and interrupted at its side-effect points, against real Redis: one effect.

The worker glue (``workers.base.run_stage`` with the real stores from ``build_ctx``) is driven
directly, as arq would call it, so the tests can run a job again after any line: after the stage
ran but before its hand-off, halfway through the hand-off, after the hand-off but before arq
recorded the job as done, and after arq forgot the job (result expired) so the next stage's job is
enqueued again.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix

from ghl_intake.embedded import make_pool
from ghl_intake.keys import load as load_keys
from pipeline.models import AuditJob, Envelope, StageJob, pack
from pipeline.stages import envelope_aad
from store.audit import AuditStore
from store.context import ContextStore
from store.dlq import DeadLetterStore
from tests import test_reliability_support as support
from tests.conftest import make_settings
from workers import base
from workers.stages import STAGE_FNS, build_ctx

TENANT = "locIdem1"
CONTACT = "contactIdem1"


def body(webhook_id: str | None = None, text: str = "Hi, call me back on 415-555-0134 please") -> bytes:
    wid = webhook_id or uuid.uuid4().hex
    return msgspec.json.encode({"type": "InboundMessage", "locationId": TENANT, "contactId": CONTACT,
                                "webhookId": wid, "messageType": "SMS", "direction": "inbound", "body": text,
                                "timestamp": "2026-01-01T00:00:00Z"})


class Rig:
    def __init__(self, settings: Any, pool: ArqRedis) -> None:
        self.settings = settings
        self.pool: Any = pool
        self.km = load_keys(settings)
        self.ctxs: dict[str, dict[str, Any]] = {}

    def ctx(self, stage: str) -> dict[str, Any]:
        if stage not in self.ctxs:
            c: dict[str, Any] = {"redis": self.pool}
            build_ctx(c, self.settings, stage)
            self.ctxs[stage] = c
        return self.ctxs[stage]

    def envelope(self, raw: bytes) -> tuple[str, bytes]:
        event_id = uuid.uuid4().hex
        env = Envelope(event_id=event_id, received_at=time.time(), scheme="ghl-ed25519", client="test",
                       body=self.km.keyring.seal(raw, envelope_aad(event_id)))
        return event_id, pack(env)

    async def run(self, stage: str, payload: bytes, job_id: str, job_try: int = 1, fn: Any = None) -> str:
        ctx = dict(self.ctx(stage), job_id=job_id, job_try=job_try)
        return await base.run_stage(ctx, stage, fn or STAGE_FNS[stage], payload)

    async def queue(self, stage: str) -> list[str]:
        return [m.decode() for m in await self.pool.zrange(base.queue_name(self.settings, stage), 0, -1)]

    async def job(self, job_id: str) -> bytes:
        raw = await self.pool.get(job_key_prefix + job_id)
        assert raw is not None, f"no job {job_id}"
        return bytes(base.job_deserializer(raw)["a"][0])

    async def finish(self, stage: str, job_id: str) -> None:
        """What arq does when a job completes: drop it from the queue, keep a result."""
        await self.pool.zrem(base.queue_name(self.settings, stage), job_id)
        await self.pool.delete(job_key_prefix + job_id)
        await self.pool.set(result_key_prefix + job_id, b"done", ex=60)

    async def forget(self, job_id: str) -> None:
        """arq forgot the job (result expired, or Redis lost it): its id can be enqueued again."""
        await self.pool.delete(job_key_prefix + job_id, result_key_prefix + job_id)

    async def audit_all(self) -> None:
        """Run every queued audit job twice."""
        for job_id in await self.queue("audit"):
            payload = await self.job(job_id)
            await self.run("audit", payload, job_id)
            await self.run("audit", payload, job_id)
            await self.finish("audit", job_id)


private_redis_server = support.private_redis_server
rel_redis_url = support.rel_redis_url


@pytest.fixture
async def rig(rel_redis_url: str) -> Any:
    settings = make_settings(rel_redis_url, pii_spacy_model="none", worker_concurrency=4)
    pool: Any = make_pool(settings)
    await pool.hset(settings.key("tenant", TENANT), mapping={"tier": "enterprise"})
    rig = Rig(settings, pool)
    yield rig
    for c in rig.ctxs.values():
        if "audit" in c:  # the audit store holds a connection of its own
            await c["audit"].aclose()
    await pool.aclose()


class Killed(BaseException):
    """Stands in for SIGKILL at a chosen line: not an ``Exception``, so run_stage does not handle it."""


def crash_after(fn: Any) -> Any:
    """The stage's own side effects happen, then the process 'dies' before the hand-off."""

    async def wrapped(job: Any, ctx: dict[str, Any]) -> Any:
        await fn(job, ctx)
        raise Killed

    return wrapped


async def _assert_single_effect(rig: Rig, event_id: str) -> None:
    s = rig.settings
    state = rig.ctx("dedup")["state"]
    assert await state.status(event_id) == "processed"
    outcomes = await state.outcomes()
    assert outcomes["processed"] == 1 and outcomes["duplicate"] == 0 and outcomes["dead_lettered"] == 0
    for window in ("m", "h"):  # every window key (the test may cross a minute boundary)
        total = 0
        async for key in rig.pool.scan_iter(match=s.key("rate", TENANT, window, "*")):
            total += int(await rig.pool.get(key))
        assert total == 1, f"usage ({window}) counted {total} times"
    contexts = ContextStore(rig.pool, rig.km.keyring, prefix=s.key_prefix)
    ctx = await contexts.get(TENANT, CONTACT)
    assert ctx is not None and [e.event_id for e in ctx.entries] == [event_id]
    assert await rig.pool.xlen(s.key("ready")) == 1
    await rig.audit_all()
    audit = AuditStore(rig.pool, prefix=s.key_prefix)
    steps = [(r.stage, r.outcome) for r in await audit.history(event_id)]
    assert sorted(steps) == sorted([("dedup", "accepted"), ("rate", "counted"), ("redact", "redacted"),
                                    ("persist", "processed")]), steps
    assert all(r.ok for r in await audit.verify())


async def test_each_stage_run_twice_has_one_effect(rig: Rig) -> None:
    event_id, payload = rig.envelope(body())
    steps = [("dedup", f"dedup:{event_id}"), ("rate", f"rate:{event_id}"), ("redact", f"redact:{event_id}"),
             ("persist", f"persist:{event_id}")]
    nxt = payload
    for i, (stage, job_id) in enumerate(steps):
        assert await rig.run(stage, nxt, job_id) == "ok"
        assert await rig.run(stage, nxt, job_id, job_try=2) == "ok"  # at-least-once: the same job again
        await rig.finish(stage, job_id)
        if i + 1 < len(steps):
            next_stage, next_id = steps[i + 1]
            assert await rig.queue(next_stage) == [next_id], "hand-off enqueued twice"
            nxt = await rig.job(next_id)
    # one audit job per event (the outcome's); the steps before it wait in the event's audit buffer
    assert await rig.queue("audit") == [f"audit:{event_id}:persist:processed"]
    assert len(await rig.pool.hkeys(base.audit_buffer_key(rig.settings, event_id))) == 3
    await _assert_single_effect(rig, event_id)


async def test_rerun_after_arq_forgot_the_job_still_one_effect(rig: Rig) -> None:
    """Past arq's job-id uniqueness (result expired): the next stage runs twice, effects stay single."""
    event_id, payload = rig.envelope(body())
    steps = [("dedup", f"dedup:{event_id}"), ("rate", f"rate:{event_id}"), ("redact", f"redact:{event_id}"),
             ("persist", f"persist:{event_id}")]
    nxt = payload
    for i, (stage, job_id) in enumerate(steps):
        await rig.run(stage, nxt, job_id)
        await rig.finish(stage, job_id)
        if i + 1 < len(steps):
            next_stage, next_id = steps[i + 1]
            following = await rig.job(next_id)
            # the next job ran and was forgotten; this stage runs again and enqueues it a second time
            await rig.forget(next_id)
            await rig.pool.zrem(base.queue_name(rig.settings, next_stage), next_id)
            await rig.run(stage, nxt, job_id, job_try=2)
            assert await rig.queue(next_stage) == [next_id]
            nxt = following
    # persist's job is run a second time as well, as if enqueued again
    await rig.run("persist", nxt, f"persist:{event_id}", job_try=3)
    await _assert_single_effect(rig, event_id)


@pytest.mark.parametrize("stage", ["dedup", "rate", "redact", "persist"])
async def test_killed_after_stage_side_effects_before_handoff(rig: Rig, stage: str) -> None:
    event_id, payload = rig.envelope(body())
    order = ["dedup", "rate", "redact", "persist"]
    nxt = payload
    for st in order:
        job_id = f"{st}:{event_id}"
        if st == stage:
            with pytest.raises(Killed):
                await rig.run(st, nxt, job_id, fn=crash_after(STAGE_FNS[st]))
            if st != "persist":
                assert await rig.queue(order[order.index(st) + 1]) == []  # died before the hand-off
        await rig.run(st, nxt, job_id, job_try=2)  # arq re-runs it after the in-progress key expires
        await rig.finish(st, job_id)
        if st != "persist":
            nxt = await rig.job(f"{order[order.index(st) + 1]}:{event_id}")
    await _assert_single_effect(rig, event_id)


@pytest.mark.parametrize("stage", ["dedup", "rate", "redact", "persist"])
async def test_handoff_fails_halfway_then_rerun(rig: Rig, stage: str) -> None:
    """The hand-off's Redis calls fail one by one (audit+next enqueued, outcome not): Retry, then one effect."""
    event_id, payload = rig.envelope(body())
    order = ["dedup", "rate", "redact", "persist"]
    nxt = payload
    for st in order:
        job_id = f"{st}:{event_id}"
        if st == stage:
            ctx = rig.ctx(st)
            real_outcome = ctx["state"].outcome
            real_enqueue = base.enqueue_jobs
            calls = {"n": 0}

            async def enqueue_then_die(redis: Any, settings: Any, jobs: Any, buffered: Any = (),
                                       _real: Any = real_enqueue, _calls: dict[str, int] = calls) -> int:
                _calls["n"] += 1
                await _real(redis, settings, jobs, buffered)
                raise ConnectionError("connection lost before the reply")  # the write happened

            async def failing_outcome(event_id: str, outcome: str) -> bool:
                raise ConnectionError("Redis went away after the enqueue")

            ctx["state"].outcome = failing_outcome
            base.enqueue_jobs = enqueue_then_die  # type: ignore[assignment]
            try:
                with pytest.raises(Retry):
                    await rig.run(st, nxt, job_id)
            finally:
                base.enqueue_jobs = real_enqueue  # type: ignore[assignment]
            assert calls["n"] == 1
            if st == "persist":  # the hand-off got as far as the outcome, which failed
                base.enqueue_jobs = real_enqueue  # type: ignore[assignment]
                with pytest.raises(Retry):
                    await rig.run(st, nxt, job_id, job_try=2)
            ctx["state"].outcome = real_outcome
        await rig.run(st, nxt, job_id, job_try=3)
        await rig.finish(st, job_id)
        if st != "persist":
            following = f"{order[order.index(st) + 1]}:{event_id}"
            assert await rig.queue(order[order.index(st) + 1]) == [following]
            nxt = await rig.job(following)
    await _assert_single_effect(rig, event_id)


async def test_duplicate_rerun_counts_once(rig: Rig) -> None:
    wid = uuid.uuid4().hex
    first, p1 = rig.envelope(body(wid))
    second, p2 = rig.envelope(body(wid))  # GHL's retry of the same webhook
    await rig.run("dedup", p1, f"dedup:{first}")
    for t in (1, 2, 3):
        await rig.run("dedup", p2, f"dedup:{second}", job_try=t)
    state = rig.ctx("dedup")["state"]
    assert await state.status(second) == "duplicate"
    assert (await state.outcomes())["duplicate"] == 1
    # the first event re-running is not a duplicate of itself
    await rig.run("dedup", p1, f"dedup:{first}", job_try=2)
    assert await state.status(first) is None
    assert (await state.outcomes())["duplicate"] == 1
    await rig.audit_all()
    audit = AuditStore(rig.pool, prefix=rig.settings.key_prefix)
    assert [(r.stage, r.outcome) for r in await audit.history(second)] == [("dedup", "duplicate")]


async def test_deferral_job_id_is_stable_on_rerun(rig: Rig) -> None:
    event_id, payload = rig.envelope(body())
    await rig.pool.hset(rig.settings.key("tenant", TENANT), mapping={"tier": "starter"})
    await rig.run("dedup", payload, f"dedup:{event_id}")
    rate_job = await rig.job(f"rate:{event_id}")
    minute = int(time.time() // 60)
    full = [rig.settings.key("rate", TENANT, "m", str(m)) for m in (minute, minute + 1)]
    for key in full:  # this minute and the next are full, so crossing a minute boundary changes nothing
        await rig.pool.set(key, 60, ex=180)
    for t in (1, 2, 3):
        await rig.run("rate", rate_job, f"rate:{event_id}", job_try=t)
    deferred = [j for j in await rig.queue("rate") if j.startswith(f"rate:{event_id}:d")]
    assert deferred == [f"rate:{event_id}:d1"]
    assert await rig.queue("redact") == []
    state = rig.ctx("rate")["state"]
    assert (await state.outcomes())["deferred"] == 1
    assert await state.usage(TENANT) == (60, 0)  # nothing counted while deferred
    d1 = await rig.job(f"rate:{event_id}:d1")
    assert msgspec.msgpack.decode(d1, type=StageJob).deferrals == 1
    # window frees: the deferred job runs (twice); counted once, one redact job
    await rig.pool.delete(*full)
    for t in (1, 2):
        await rig.run("rate", d1, f"rate:{event_id}:d1", job_try=t)
    assert await rig.queue("redact") == [f"redact:{event_id}"]
    assert (await state.usage(TENANT))[0] == 1


async def test_dead_letter_rerun_is_one_entry_one_outcome_one_audit(rig: Rig) -> None:
    event_id, payload = rig.envelope(b'{"type": "InboundMessage", "locationId": "locIdem1", "body": "cut')
    for t in (1, 2):
        assert await rig.run("dedup", payload, f"dedup:{event_id}", job_try=t) == "dead_lettered"
    dlq = DeadLetterStore(rig.pool, rig.km.keyring, prefix=rig.settings.key_prefix)
    [entry] = await dlq.list()
    assert entry.attempts == 2 and entry.reason == "permanent" and entry.stage == "dedup"
    state = rig.ctx("dedup")["state"]
    assert (await state.outcomes())["dead_lettered"] == 1
    assert len(await rig.queue("audit")) == 1
    # the same run dead-lettering twice (killed after writing) does not count its tries twice
    await rig.run("dedup", payload, f"dedup:{event_id}", job_try=2)
    assert (await dlq.get(entry.id)).attempts == 2  # type: ignore[union-attr]


async def test_audit_job_twice_one_record(rig: Rig) -> None:
    job = AuditJob(tenant=TENANT, event_id=uuid.uuid4().hex, stage="redact", outcome="redacted", counts={"PHONE": 1})
    for t in (1, 2, 3):
        await rig.run("audit", pack(job), base.audit_job_id(job), job_try=t)
    audit = AuditStore(rig.pool, prefix=rig.settings.key_prefix)
    assert len(await audit.history(job.event_id)) == 1
