"""Retry policy: transient → arq Retry with exponential backoff and jitter, permanent → dead letter at once,
own timeouts shorter than arq's, and (with real worker processes) how fast a SIGKILLed worker's jobs
come back and that SIGTERM releases in-flight jobs instead of stranding them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from arq import Retry
from hypothesis import given
from hypothesis import strategies as st

from ghl_intake.embedded import make_pool
from ghl_intake.keys import generate_env
from pipeline.models import AuditJob, pack
from pipeline.retry import PermanentError, backoff_s
from store.audit import AuditStore
from store.dlq import DeadLetterStore
from tests import test_reliability_support as support
from tests.conftest import make_settings
from workers import base
from workers.stages import build_ctx, worker_kwargs

private_redis_server = support.private_redis_server
rel_redis_url = support.rel_redis_url
ROOT = Path(__file__).resolve().parent.parent


@given(attempt=st.integers(1, 40), base_s=st.floats(0.01, 5.0), seed=st.integers(0, 2**32))
def test_backoff_is_exponential_jittered_and_capped(attempt: int, base_s: float, seed: int) -> None:
    d = backoff_s(attempt, base_s, cap_s=300.0, rng=random.Random(seed))
    high = min(300.0, base_s * 2 ** (attempt - 1))
    assert min(base_s, high) <= d <= high


def test_backoff_spreads_retries() -> None:
    rng = random.Random(1)
    draws = {round(backoff_s(5, 0.5, rng=rng), 3) for _ in range(50)}
    assert len(draws) > 40  # jitter: a burst of failures does not retry in lockstep


def test_worker_timeouts_are_short_and_ordered() -> None:
    s = make_settings()
    for stage in ("dedup", "rate", "persist", "audit", "redact"):
        kw = worker_kwargs(stage, s)
        own = base.stage_timeout_s(s, stage)
        assert kw["job_timeout"] == own + base.ARQ_TIMEOUT_MARGIN_S  # arq's timeout never fires first
        assert kw["functions"][0].timeout_s == kw["job_timeout"]
        assert kw["functions"][0].max_tries == base.ARQ_MAX_TRIES
        assert base.recovery_s(s, stage) == kw["job_timeout"] + 10
        assert kw["job_completion_wait"] == s.shutdown_grace_s and kw["handle_signals"]
    from ghl_intake.settings import Settings

    defaults = Settings()
    assert base.recovery_s(defaults, "dedup") == 17.0 and base.recovery_s(defaults, "redact") == 32.0


async def test_audit_ticks_of_two_deployments_on_one_redis_do_not_collide(rel_redis_url: str) -> None:
    """arq's cron job ids are global to the Redis DB: each deployment's tick has an id of its own."""
    a, b = make_settings(rel_redis_url), make_settings(rel_redis_url)
    [cron_a], [cron_b] = worker_kwargs("audit", a)["cron_jobs"], worker_kwargs("audit", b)["cron_jobs"]
    pool = make_pool(a)
    try:
        slot_ms = int(time.time() // 5 * 5 * 1000) + 5000
        # as arq's scheduler enqueues a unique cron job: id "{name}:{ms of the slot}", on the worker's queue
        first = await pool.enqueue_job(cron_a.name, _job_id=f"{cron_a.name}:{slot_ms}",
                                       _queue_name=base.queue_name(a, "audit"))
        second = await pool.enqueue_job(cron_b.name, _job_id=f"{cron_b.name}:{slot_ms}",
                                        _queue_name=base.queue_name(b, "audit"))
        assert first is not None and second is not None  # B's tick is not taken for A's
        assert await pool.zcard(base.queue_name(b, "audit")) == 1
    finally:
        await pool.aclose()


@pytest.fixture
async def ctx(rel_redis_url: str) -> Any:
    settings = make_settings(rel_redis_url, stage_max_attempts=4, retry_base_s=0.2, stage_timeout_s=0.3)
    pool = make_pool(settings)
    c: dict[str, Any] = {"redis": pool}
    build_ctx(c, settings, "rate")
    yield c
    await pool.aclose()


def _job_payload() -> bytes:
    from pipeline.models import StageJob

    return pack(StageJob(event_id=uuid.uuid4().hex, tenant="locRetry", contact="", event_type="X", received_at=0.0,
                         data=b"sealed"))


async def test_transient_errors_retry_with_growing_backoff_then_dead_letter(ctx: dict[str, Any]) -> None:
    payload = _job_payload()

    async def flaky(job: Any, c: dict[str, Any]) -> Any:
        raise ConnectionError("redis went away")

    defers = []
    for attempt in (1, 2, 3):
        with pytest.raises(Retry) as ei:
            await base.run_stage(dict(ctx, job_try=attempt, job_id="j"), "rate", flaky, payload)
        defers.append(ei.value.defer_score / 1000)  # type: ignore[operator]
        assert 0.2 <= defers[-1] <= 0.2 * 2 ** (attempt - 1) + 1e-6
    assert await base.run_stage(dict(ctx, job_try=4, job_id="j"), "rate", flaky, payload) == "dead_lettered"
    dlq = DeadLetterStore(ctx["redis"], ctx["dlq"].keyring, prefix=ctx["settings"].key_prefix)
    [entry] = await dlq.list()
    assert entry.reason == "retries_exhausted" and entry.error == "ConnectionError" and entry.attempts == 4


async def test_own_timeout_is_transient(ctx: dict[str, Any]) -> None:
    async def slow(job: Any, c: dict[str, Any]) -> Any:
        await asyncio.sleep(60)

    t0 = time.monotonic()
    with pytest.raises(Retry):
        await base.run_stage(dict(ctx, job_try=1, job_id="j"), "rate", slow, _job_payload())
    assert time.monotonic() - t0 < 30  # the stage's own timeout (0.3 s) cut it, not the 60 s sleep


async def test_contention_errors_are_transient(ctx: dict[str, Any]) -> None:
    from store.context import ContextConflict

    async def contended(job: Any, c: dict[str, Any]) -> Any:
        raise ContextConflict("lost the CAS 50 times")

    with pytest.raises(Retry):
        await base.run_stage(dict(ctx, job_try=1, job_id="j"), "rate", contended, _job_payload())


async def test_permanent_errors_dead_letter_at_once(ctx: dict[str, Any]) -> None:
    async def bad(job: Any, c: dict[str, Any]) -> Any:
        raise PermanentError("stage data does not decrypt: InvalidTag")

    assert await base.run_stage(dict(ctx, job_try=1, job_id="j"), "rate", bad, _job_payload()) == "dead_lettered"
    # an undecodable job payload is permanent too
    assert await base.run_stage(dict(ctx, job_try=1, job_id="k"), "rate", bad, b"\xc1garbage") == "dead_lettered"
    # two different undecodable payloads are two entries, not one overwritten
    assert await base.run_stage(dict(ctx, job_try=1, job_id="m"), "rate", bad, b"\xc1other") == "dead_lettered"
    dlq = DeadLetterStore(ctx["redis"], ctx["dlq"].keyring, prefix=ctx["settings"].key_prefix)
    entries = await dlq.list()
    assert {e.reason for e in entries} == {"permanent"} and len(entries) == 3
    assert all(e.attempts == 1 for e in entries)


async def test_unexpected_errors_are_permanent_not_lost(ctx: dict[str, Any]) -> None:
    async def bug(job: Any, c: dict[str, Any]) -> Any:
        raise KeyError("a bug")

    assert await base.run_stage(dict(ctx, job_try=1, job_id="j"), "rate", bug, _job_payload()) == "dead_lettered"


# --- real worker processes ---------------------------------------------------------------------------

def _worker_env(url: str, prefix: str, keys: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(keys)
    env.update({"REDIS_URL": url, "INTAKE_KEY_PREFIX": prefix, "PII_SPACY_MODEL": "none",
                "INTAKE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def _start_worker(stage: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    arq = str(Path(sys.executable).parent / "arq")
    with open(log, "ab") as out:
        return subprocess.Popen([arq, f"workers.{stage}.WorkerSettings"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def _fill_audit_queue(url: str, prefix: str, keys: dict[str, str], n: int) -> tuple[Any, Any, list[str]]:
    settings = make_settings(url)
    settings.key_prefix = prefix
    for name, value in keys.items():
        attr = {v: k for k, v in settings.ENV_NAMES.items()}[name]
        setattr(settings, attr, value)
    pool = make_pool(settings)
    jobs = []
    ids = []
    for i in range(n):
        job = AuditJob(tenant=f"locW{i % 5}", event_id=uuid.uuid4().hex, stage="persist", outcome="processed")
        jobs.append(("audit", pack(job), base.audit_job_id(job), 0.0))
        ids.append(job.event_id)
    for i in range(0, n, 500):
        await base.enqueue_jobs(pool, settings, jobs[i:i + 500])
    return settings, pool, ids


async def _wait_in_progress(pool: Any, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = len(await pool.keys("arq:in-progress:*"))
        if n:
            return n
        await asyncio.sleep(0.001)
    raise AssertionError("worker never started a job")


async def _freeze_with_jobs_in_flight(proc: subprocess.Popen[bytes], pool: Any, tries: int = 200) -> set[bytes]:
    """SIGSTOP the worker at a moment it holds jobs, so what it holds cannot change before the kill.

    Between two batches a fast worker may briefly hold none; it is then let go on for a moment and
    frozen again. Returns the in-progress keys it holds (empty only if it never held any)."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.02)  # let Redis run what the worker had already sent
        held = {k async for k in pool.scan_iter(match="arq:in-progress:*", count=1000)}
        if held:
            return held
        proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.002)
    return set()


async def _wait_drained(pool: Any, settings: Any, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        left = await pool.zcard(base.queue_name(settings, "audit"))
        if left == 0:
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError(f"queue not drained in {timeout_s}s")


async def _wait_gone(pool: Any, settings: Any, job_ids: set[bytes], timeout_s: float) -> None:
    """Until none of ``job_ids`` is on the audit queue any more (each has run to its end)."""
    q = base.queue_name(settings, "audit")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with pool.pipeline(transaction=False) as pipe:
            for j in job_ids:
                pipe.zscore(q, j)
            if all(score is None for score in await pipe.execute()):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"stranded jobs still queued after {timeout_s}s")


async def _records(audit: AuditStore) -> int:
    n = 0
    for t in await audit.tenants():
        n += len(await audit.records(t))
    return n


@pytest.mark.slow
async def test_sigkilled_worker_jobs_come_back_after_in_progress_expiry(rel_redis_url: str, tmp_path: Path) -> None:
    """SIGKILL a worker mid-backlog: its in-flight jobs wait for arq's in-progress key, then run once."""
    keys = generate_env("w1")
    prefix = f"w{uuid.uuid4().hex[:6]}"
    settings, pool, ids = await _fill_audit_queue(rel_redis_url, prefix, keys, 6000)
    env = _worker_env(rel_redis_url, prefix, keys, INTAKE_STAGE_TIMEOUT_S="1", INTAKE_WORKER_CONCURRENCY="20")
    w1 = _start_worker("audit", env, tmp_path / "w1.log")
    try:
        await _wait_in_progress(pool)
        await asyncio.sleep(0.1)
        stranded = await _freeze_with_jobs_in_flight(w1, pool)
        w1.send_signal(signal.SIGKILL)
        w1.wait(10)
        killed_at = time.monotonic()
        assert stranded, "no job was in flight when the worker died"
        w2 = _start_worker("audit", env, tmp_path / "w2.log")
        try:
            # the stranded jobs' own recovery time, not the whole backlog's drain (load-dependent)
            await _wait_gone(pool, settings, {k.removeprefix(b"arq:in-progress:") for k in stranded}, timeout_s=60)
            recovered_in = time.monotonic() - killed_at
            await _wait_drained(pool, settings, timeout_s=120)
        finally:
            w2.send_signal(signal.SIGTERM)
            w2.wait(30)
        settings.stage_timeout_s = 1.0  # what the workers run with
        expected = base.recovery_s(settings, "audit")  # 1 + 2 + 10 = 13 s
        assert expected - 2 <= recovered_in <= expected + 6, recovered_in
        audit = AuditStore(pool, prefix=prefix)
        assert await _records(audit) == len(ids)  # every job ran, none twice
        assert all(r.ok for r in await audit.verify())
    finally:
        if w1.poll() is None:
            w1.kill()
        await pool.aclose()


@pytest.mark.slow
async def test_sigterm_finishes_or_releases_in_flight_jobs(rel_redis_url: str, tmp_path: Path) -> None:
    keys = generate_env("w1")
    prefix = f"w{uuid.uuid4().hex[:6]}"
    settings, pool, ids = await _fill_audit_queue(rel_redis_url, prefix, keys, 3000)
    env = _worker_env(rel_redis_url, prefix, keys, INTAKE_STAGE_TIMEOUT_S="1", INTAKE_SHUTDOWN_GRACE_S="3")
    w1 = _start_worker("audit", env, tmp_path / "w1.log")
    try:
        await _wait_in_progress(pool)
        await asyncio.sleep(0.3)
        w1.send_signal(signal.SIGTERM)
        assert w1.wait(15) == 0
        stopped_at = time.monotonic()
        left = [k async for k in pool.scan_iter(match="arq:in-progress:*", count=1000)]
        assert left == [], "SIGTERM left jobs marked in progress"
        remaining = await pool.zcard(base.queue_name(settings, "audit"))
        w2 = _start_worker("audit", env, tmp_path / "w2.log")
        try:
            # nothing waits for an in-progress expiry (``left == []`` above): the queue's head, the
            # jobs w1 had in hand, runs as soon as w2 polls, well before the 13 s recovery time
            head = set(await pool.zrange(base.queue_name(settings, "audit"), 0, 19))
            await _wait_gone(pool, settings, head, timeout_s=60)
            settings.stage_timeout_s = 1.0
            assert remaining == 0 or time.monotonic() - stopped_at < base.recovery_s(settings, "audit")
            await _wait_drained(pool, settings, timeout_s=120)
        finally:
            w2.send_signal(signal.SIGTERM)
            w2.wait(30)
        audit = AuditStore(pool, prefix=prefix)
        assert await _records(audit) == len(ids)
    finally:
        if w1.poll() is None:
            w1.kill()
        await pool.aclose()


async def test_redaction_failure_is_retried_then_dead_lettered_never_passed_on(rel_redis_url: str) -> None:
    """A recognizer error inside the real redact stage: Retry with backoff, then one dead letter, no hand-off."""
    from pipeline.models import StageJob
    from pipeline.redact import Redactor
    from pipeline.stages import stage_aad
    from tests.test_redact import BrokenRecognizer
    from workers.stages import _redact

    settings = make_settings(rel_redis_url, stage_max_attempts=3, retry_base_s=0.2)
    pool = make_pool(settings)
    c: dict[str, Any] = {"redis": pool}
    try:
        build_ctx(c, settings, "rate")
        c["deps"].redactor = Redactor(pseudonym_key=b"k" * 32, spacy_model=None, extra_recognizers=[BrokenRecognizer()])
        ev = uuid.uuid4().hex
        body = b'{"type": "InboundMessage", "locationId": "locR", "body": "call Dana at 512-555-0142"}'
        data = c["deps"].sealer.seal(body, stage_aad("raw", "locR", ev))
        payload = pack(StageJob(event_id=ev, tenant="locR", contact="c1", event_type="InboundMessage",
                                received_at=time.time(), data=data))

        async def redact(job: Any, ctx: dict[str, Any]) -> Any:
            return await _redact(job, ctx)

        for attempt in (1, 2):
            with pytest.raises(Retry):
                await base.run_stage(dict(c, job_try=attempt, job_id="j"), "redact", redact, payload)
        assert await base.run_stage(dict(c, job_try=3, job_id="j"), "redact", redact, payload) == "dead_lettered"
        dlq = DeadLetterStore(pool, c["dlq"].keyring, prefix=settings.key_prefix)
        [entry] = await dlq.list()
        assert entry.stage == "redact" and entry.reason == "retries_exhausted" and entry.attempts == 3
        assert await pool.zcard(base.queue_name(settings, "persist")) == 0  # nothing went on unredacted
        # a field over the cap can never pass: dead-lettered at once
        c["deps"].redactor = Redactor(pseudonym_key=b"k" * 32, spacy_model=None, max_field_chars=10)
        ev2 = uuid.uuid4().hex
        payload2 = pack(StageJob(event_id=ev2, tenant="locR", contact="c1", event_type="InboundMessage",
                                 received_at=time.time(), data=c["deps"].sealer.seal(body, stage_aad("raw", "locR", ev2))))
        assert await base.run_stage(dict(c, job_try=1, job_id="k"), "redact", redact, payload2) == "dead_lettered"
        assert {e.reason for e in await dlq.list()} == {"retries_exhausted", "permanent"}
    finally:
        await pool.aclose()


async def test_embedded_stop_cuts_no_worker_off_and_leaves_no_task_behind(rel_redis_url: str) -> None:
    """Stopping the embedded runner with jobs in flight: arq's close() closes its worker's pool, so
    each worker has its own (closing one cut another's connection mid-job); and a poll loop whose
    cancel was swallowed started jobs after close() had listed them, which then failed on the closed
    pool ("Task exception was never retrieved"). Neither may happen, and the caller's pool stays open."""
    import gc

    from ghl_intake.embedded import StageRunner

    keys = generate_env("w1")
    prefix = f"w{uuid.uuid4().hex[:6]}"
    settings, pool, ids = await _fill_audit_queue(rel_redis_url, prefix, keys, 4000)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    runner = StageRunner(settings, pool, ("dedup", "rate", "audit"))  # dedup and rate close first
    assert len({id(w.pool) for w in runner.workers} | {id(pool)}) == 4
    try:
        runner.start()
        await _wait_in_progress(pool)
        await asyncio.sleep(0.05)
        await runner.stop()  # raised ConnectionError ("Connection closed by server") from an audit job
        assert all(t.done() for t in runner.tasks)
        assert all(t.done() for w in runner.workers for t in w.tasks.values())  # no job left running
        del runner
        gc.collect()
        await asyncio.sleep(0)
        assert [c.get("message") for c in unhandled] == [], unhandled
        assert await pool.ping()  # the caller's pool was not closed under it
        pool2 = make_pool(settings)
        try:
            left = await pool2.zcard(base.queue_name(settings, "audit"))
            audit = AuditStore(pool2, prefix=prefix)
            done = await _records(audit)
            # every job ran once or is back on the queue (a job cancelled after its append is
            # queued again; its re-run appends nothing); none ran twice
            assert done <= len(ids) and done + left >= len(ids), (done, left)
        finally:
            await pool2.aclose()
    finally:
        loop.set_exception_handler(previous)
        await pool.aclose()
