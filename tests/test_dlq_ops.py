"""Dead-letter operations end to end on real Redis: list/show/reveal/replay/purge, the CLI, and
dead letters surviving worker and Redis restarts (private redis-server with AOF)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from copy import copy
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ghl_intake import ops
from ghl_intake.embedded import StageRunner, build_app, make_pool
from ghl_intake.keys import load as load_keys
from ghl_intake.ops import wait_quiet
from ghl_intake.signing import GhlSigner
from pipeline.audit import SYSTEM_TENANT
from store.audit import AuditStore
from store.dlq import DeadLetterStore
from store.state import PipelineState
from tests import test_reliability_support as support
from tests.conftest import make_settings

private_redis_server = support.private_redis_server
rel_redis_url = support.rel_redis_url
ROOT = Path(__file__).resolve().parent.parent
TENANT = "locDlqOps"

SECRET = "Zelda Quimby-Harrow"  # a PII value that must never show up outside --reveal


def body(n: int, contact: str = "cDlq1") -> bytes:
    return msgspec.json.encode({"type": "InboundMessage", "locationId": TENANT, "contactId": contact,
                                "webhookId": uuid.uuid4().hex, "messageType": "SMS", "direction": "inbound",
                                "body": f"This is {SECRET}, message {n}, call 415-555-01{n:02d}"})


@contextlib.asynccontextmanager
async def running(settings: Any, signer: GhlSigner, stages: tuple[str, ...] = ("dedup", "rate", "redact", "persist",
                                                                                "audit"),
                  extra: tuple[tuple[Any, tuple[str, ...]], ...] = ()) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    pool: Any = make_pool(settings)
    await pool.hset(settings.key("tenant", TENANT), mapping={"tier": "enterprise"})
    runners = [StageRunner(settings, pool, stages)] + [StageRunner(s, pool, st) for s, st in extra]
    for r in runners:
        r.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(settings, pool)), base_url="http://t")
    try:
        yield pool, client
    finally:
        await client.aclose()
        for r in runners:
            await r.stop()
        await pool.aclose()


def settings_for(url: str, signer: GhlSigner) -> Any:
    return make_settings(url, signer, pii_spacy_model="none", stage_max_attempts=2)


def without_key(settings: Any) -> Any:
    """The same deployment, but a worker whose keyring lacks the key the data was sealed with."""
    bad = copy(settings)
    bad.master_keys = "k9:" + base64.b64encode(os.urandom(32)).decode()
    return bad


async def post(client: httpx.AsyncClient, signer: GhlSigner, raw: bytes) -> str:
    r = await client.post("/webhooks/ghl", content=raw, headers=signer.headers(raw))
    assert r.status_code == 200, r.text
    return str(r.json()["event_id"])


async def test_replay_reenters_at_failed_stage_once_and_is_not_a_duplicate(rel_redis_url: str, signer: GhlSigner) -> None:
    settings = settings_for(rel_redis_url, signer)
    bad = without_key(settings)  # the redact worker got a rotated keyring that lost the old key
    good = ("dedup", "rate", "persist", "audit")
    async with running(settings, signer, good, extra=((bad, ("redact",)),)) as (pool, client):
        event_id = await post(client, signer, body(1))
        assert await wait_quiet(pool, settings, timeout_s=60)
        state = PipelineState(pool, settings)
        assert await state.status(event_id) == "dead_lettered"
        [entry] = await ops.list_dead_letters(pool, settings, load_keys(bad).keyring)
        assert entry.stage == "redact" and entry.reason == "permanent" and "does not decrypt" in entry.error
    # the operator fixes the cause (the old key goes back into the keyring) and replays, three times at once
    settings = copy(settings)
    settings.master_keys = f"{bad.master_keys},{settings.master_keys}"
    km = load_keys(settings)
    async with running(settings, signer) as (pool, client):
        results = await asyncio.gather(*(ops.replay(pool, settings, km.keyring, entry.id, actor="op@test")
                                         for _ in range(3)))
        assert sum(r.replayed for r in results) == 1, [r.message for r in results]
        assert {r.job_id for r in results} == {f"redact:{event_id}:r1"}
        assert await wait_quiet(pool, settings, timeout_s=60)
        again = await ops.replay(pool, settings, km.keyring, entry.id)
        assert not again.replayed and "replayed" in again.message
        assert await wait_quiet(pool, settings, timeout_s=60)
        state = PipelineState(pool, settings)
        assert await state.status(event_id) == "processed"
        outcomes = await state.outcomes()
        assert outcomes["processed"] == 1 and outcomes["dead_lettered"] == 0 and outcomes["duplicate"] == 0
        assert await pool.xlen(settings.key("ready")) == 1
        audit = AuditStore(pool, prefix=settings.key_prefix)
        steps = [(r.stage, r.outcome) for r in await audit.history(event_id)]
        for step in [("dedup", "accepted"), ("rate", "counted"), ("redact", "dead_lettered"),
                     ("operator", "dlq_replay_1"), ("redact", "redacted"), ("persist", "processed")]:
            assert steps.count(step) == 1, (step, steps)
        assert ("dedup", "duplicate") not in steps
        assert all(r.ok for r in await audit.verify())
        assert (await DeadLetterStore(pool, km.keyring, prefix=settings.key_prefix).get(entry.id)).state == "replayed"  # type: ignore[union-attr]


async def test_list_filters_show_reveal_purge(rel_redis_url: str, signer: GhlSigner) -> None:
    settings = settings_for(rel_redis_url, signer)
    km = load_keys(settings)
    async with running(settings, signer, ("dedup", "rate", "persist", "audit"),
                       extra=((without_key(settings), ("redact",)),)) as (pool, client):
        ev_redact = await post(client, signer, body(2))
        ev_json = await post(client, signer, b'{"type": "InboundMessage", "locationId": "locOther", "body": "' +
                             SECRET.encode() + b'"')
        assert await wait_quiet(pool, settings, timeout_s=60)
        t_mid = time.time()
        every = await ops.list_dead_letters(pool, settings, km.keyring)
        assert {e.event_id for e in every} == {ev_redact, ev_json}
        assert [e.event_id for e in await ops.list_dead_letters(pool, settings, km.keyring,
                                                                ops.Filters(stage="dedup"))] == [ev_json]
        assert [e.event_id for e in await ops.list_dead_letters(pool, settings, km.keyring,
                                                                ops.Filters(tenant=TENANT))] == [ev_redact]
        assert len(await ops.list_dead_letters(pool, settings, km.keyring, ops.Filters(reason="permanent"))) == 2
        assert len(await ops.list_dead_letters(pool, settings, km.keyring, ops.Filters(reason="PermanentError"))) == 2
        assert await ops.list_dead_letters(pool, settings, km.keyring, ops.Filters(reason="retries_exhausted")) == []
        assert await ops.list_dead_letters(pool, settings, km.keyring, ops.Filters(since=t_mid + 1)) == []
        # show: redacted view, no PII
        for e in every:
            view = await ops.show(pool, settings, km.keyring, e.id, km.pseudonym_key)
            assert view is not None and SECRET not in json.dumps(view, default=str)
            assert "cDlq1" not in json.dumps(view, default=str)
        # reveal: decrypted, and audited on the system chain with the operator's name
        [e_json] = [e for e in every if e.event_id == ev_json]
        shown = await ops.reveal(pool, settings, km.keyring, e_json.id, actor="alice@host")
        assert shown is not None and SECRET in shown["payload_text"]
        audit = AuditStore(pool, prefix=settings.key_prefix)
        sys_recs = await audit.records(SYSTEM_TENANT)
        assert [(r.outcome, r.actor, r.detail.get("dlq_id")) for r in sys_recs] == [("dlq_reveal", "alice@host", e_json.id)]
        # replay --all --dry-run changes nothing
        report = await ops.replay_all(pool, settings, km.keyring, dry_run=True)
        assert report.total == 2 and report.replayed == 0
        assert len(await ops.list_dead_letters(pool, settings, km.keyring)) == 2
        # purge by filter, audited
        assert await ops.purge(pool, settings, km.keyring, ops.Filters(stage="dedup", state=None), actor="bob@host") == 1
        assert [e.event_id for e in await ops.list_dead_letters(pool, settings, km.keyring)] == [ev_redact]
        sys_recs = await audit.records(SYSTEM_TENANT)
        assert sys_recs[-1].outcome == "dlq_purge" and sys_recs[-1].actor == "bob@host"
        assert sys_recs[-1].detail["count"] == "1" and e_json.id in sys_recs[-1].detail["ids"]
        stats = await ops.stats(pool, settings, km.keyring)
        assert stats["dead_letters"]["dead"] == 1 and stats["dead_letters"]["by_stage"] == {"redact": 1}
        assert all(r.ok for r in await audit.verify())


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "ghl-intake")
    return subprocess.run([exe, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
async def test_cli_and_dead_letters_survive_worker_and_redis_restart(tmp_path: Path, signer: GhlSigner) -> None:
    if not support.have_redis_server():
        pytest.skip("no redis-server binary")
    server = support.RedisServer(tmp_path / "redis", aof=True)
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        settings = settings_for(server.url, signer)
        km = load_keys(settings)
        async with running(settings, signer) as (pool, client):
            ids = [await post(client, signer, b'{"type": "X", "locationId": "locAof", "n": ' + str(i).encode())
                   for i in range(3)]
            assert await wait_quiet(pool, settings, timeout_s=60)
            assert len(await ops.list_dead_letters(pool, settings, km.keyring)) == 3
        # workers gone; Redis killed hard and restarted from its AOF
        server.restart(kill=True)
        env = dict(os.environ, REDIS_URL=server.url, INTAKE_KEY_PREFIX=settings.key_prefix,
                   INTAKE_MASTER_KEYS=settings.master_keys, INTAKE_PSEUDONYM_KEY=settings.pseudonym_key,
                   INTAKE_AUDIT_SIGNING_KEY=settings.audit_signing_key, INTAKE_LOG_LEVEL="WARNING",
                   COLUMNS="200")
        listed = _cli(env, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        entries = json.loads(listed.stdout)
        assert sorted(e["event_id"] for e in entries) == sorted(ids)
        assert all(e["stage"] == "dedup" and e["reason"] == "permanent" for e in entries)
        table = _cli(env, "dlq", "list", "--stage", "dedup", "--since", "1h")
        assert table.returncode == 0 and entries[0]["id"] in table.stdout
        shown = _cli(env, "dlq", "show", entries[0]["id"])
        assert shown.returncode == 0 and '"sealed_bytes"' in shown.stdout and '"n":' not in shown.stdout
        revealed = _cli(env, "dlq", "show", entries[0]["id"], "--reveal")
        assert revealed.returncode == 0 and "locAof" in revealed.stdout and "audit trail" in revealed.stderr
        dry = _cli(env, "dlq", "replay", "--all", "--dry-run")
        assert dry.returncode == 0 and "would replay 3 of 3" in dry.stdout
        # replay everything after the restart with fresh workers: still not JSON, so dead again (not lost)
        done = _cli(env, "dlq", "replay", "--all")
        assert done.returncode == 0 and "replayed 3 of 3" in done.stdout, done.stdout + done.stderr
        async with running(settings, signer) as (pool, _client):
            assert await wait_quiet(pool, settings, timeout_s=60)
            again = await ops.list_dead_letters(pool, settings, km.keyring)
            assert len(again) == 3 and all(e.replays == 1 and e.attempts == 2 for e in again)
        no = _cli(env, "dlq", "purge")
        assert no.returncode == 2
        purged = _cli(env, "dlq", "purge", "--yes")
        assert purged.returncode == 0 and "purged 3" in purged.stdout
        server.restart(kill=True)
        async with running(settings, signer) as (pool, _client):
            assert await ops.list_dead_letters(pool, settings, km.keyring) == []
            audit = AuditStore(pool, prefix=settings.key_prefix)
            outs = [r.outcome for r in await audit.records(SYSTEM_TENANT)]
            assert outs == ["dlq_reveal", "dlq_purge"]
            assert all(r.ok for r in await audit.verify())
    finally:
        server.cleanup()


def test_since_parsing() -> None:
    from ghl_intake.commands.dlq import parse_since
    from ghl_intake.settings import SettingsError

    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("1700000000", now) == 1_700_000_000.0
    assert parse_since("2026-01-01T00:00:00Z", now) == 1767225600.0
    assert parse_since(None, now) is None
    with pytest.raises(SettingsError):
        parse_since("yesterday", now)


async def test_operator_records_say_from_where_and_audit_stage_replays_are_audited(
        rel_redis_url: str, signer: GhlSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI-side dead-letter actions name the operator, host, pid and SSH address; an audit-stage replay
    (whose tenant chain is what failed) is recorded on the system chain."""
    from pipeline.models import AuditJob, pack

    monkeypatch.setenv("SSH_CLIENT", "198.51.100.23 52044 22")
    settings = settings_for(rel_redis_url, signer)
    km = load_keys(settings)
    pool: Any = make_pool(settings)
    try:
        dlq = DeadLetterStore(pool, km.keyring, prefix=settings.key_prefix)
        ev = uuid.uuid4().hex
        job = pack(AuditJob(tenant=TENANT, event_id=ev, stage="persist", outcome="processed"))
        dlq_id = await dlq.write(stage="audit", event_id=ev, tenant=TENANT, reason="retries_exhausted",
                                 error="AuditContentionError", job=job)
        assert (await ops.replay(pool, settings, km.keyring, dlq_id)).replayed
        assert await ops.reveal(pool, settings, km.keyring, dlq_id) is not None
        assert await ops.purge(pool, settings, km.keyring, ops.Filters(state=None)) == 1
        recs = await AuditStore(pool, prefix=settings.key_prefix).records(SYSTEM_TENANT)
        assert [r.outcome for r in recs] == ["dlq_replay_1", "dlq_reveal", "dlq_purge"]
        for r in recs:
            assert r.actor.startswith("operator:")
            assert r.detail["remote"] == "198.51.100.23" and r.detail["pid"] == str(os.getpid()) and r.detail["host"]
        assert recs[0].detail["tenant"] == TENANT and recs[0].detail["dlq_id"] == dlq_id
    finally:
        await pool.aclose()
