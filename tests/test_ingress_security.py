"""Watching for attacks: failures counted per client and reason, one audit event and one alert per burst."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ghl_intake import keys
from ghl_intake.signing import GhlSigner
from pipeline.audit import SYSTEM_TENANT
from pipeline.pseudonym import pseudonymize_id
from store.audit import AuditStore
from tests.conftest import make_settings
from tests.ingress_support import ghl_body, ingress, served


def _receiver() -> tuple[Starlette, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        got.append(await request.json())
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/alert", hook, methods=["POST"])]), got


async def _forge(ing: Any, n: int, signer: GhlSigner | None = None) -> None:
    body = ghl_body()
    for _ in range(n):
        r = await ing.client.post("/webhooks/ghl", content=body, headers=(signer or GhlSigner()).headers(body))
        assert r.status_code == 401


async def test_burst_writes_one_audit_event_and_one_alert(real_redis_url: str, signer: GhlSigner,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    receiver, got = _receiver()
    async with served(receiver) as base:
        settings = make_settings(real_redis_url, signer, alert_webhook_url=f"{base}/alert")
        assert settings.failure_burst_threshold == 20 and settings.failure_burst_window_s == 300
        caplog.set_level(logging.WARNING, "ghl_intake")
        async with ingress(settings, client=("198.51.100.77", 5555)) as ing:
            # one instant mid-window: the per-reason counts are kept per 300 s window, and a run
            # that crossed a window boundary would split them over two keys
            frozen = (time.time() // 300) * 300 + 150
            ing.deps.monitor.clock = lambda: frozen  # type: ignore[union-attr]
            await _forge(ing, 19)
            audit = AuditStore(ing.pool, prefix=settings.key_prefix)
            assert await audit.records(SYSTEM_TENANT) == []
            await _forge(ing, 30)  # crosses 20, then goes on: still one event
            await ing.deps.monitor.drain()  # type: ignore[union-attr]
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.02)
            recs = await audit.records(SYSTEM_TENANT)
            assert [(r.stage, r.outcome, r.actor) for r in recs] == [("ingress", "verification_burst", "ingress")]
            pseudo = pseudonymize_id(keys.load(settings).pseudonym_key, SYSTEM_TENANT, "198.51.100.77")
            assert recs[0].detail["client"] == pseudo
            assert recs[0].detail["reason"] == "bad signature"
            assert len(got) == 1
            assert got[0]["event"] == "verification_burst" and got[0]["client"] == pseudo
            assert "address" not in got[0]
            assert all(rep.ok for rep in await audit.verify(SYSTEM_TENANT))
            # the raw address is nowhere in Redis, nor in the logs
            async for key in ing.pool.scan_iter(count=1000):
                assert b"198.51.100.77" not in key
            assert "198.51.100.77" not in caplog.text
            assert pseudo in caplog.text and "bad signature" in caplog.text
            # per-reason counts for the client, in Redis
            reason_keys = [k async for k in ing.pool.scan_iter(match=f"{settings.key_prefix}:sec:reasons:*")]
            assert len(reason_keys) == 1
            pool: Any = ing.pool  # redis-py's async stubs type commands as Awaitable | value
            assert int(await pool.hget(reason_keys[0], "bad signature")) == 49
            text = (await ing.client.get("/metrics")).text
            assert "ghl_intake_ingress_verification_bursts_total 1.0" in text
            assert ('ghl_intake_ingress_verification_failures_total{reason="bad signature",scheme="ghl-ed25519"} 49.0'
                    in text)


async def test_bursts_are_per_client_and_body_never_logged(real_redis_url: str, signer: GhlSigner,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(real_redis_url, signer, failure_burst_threshold=5)
    caplog.set_level(logging.INFO)
    async with ingress(settings, client=("192.0.2.1", 1)) as a, ingress(settings, pool=a.pool,
                                                                         client=("192.0.2.2", 1)) as b:
        secret_marker = b"SECRET-BODY-MARKER-4711"
        body = ghl_body(note=secret_marker.decode())
        for _ in range(4):
            await a.client.post("/webhooks/ghl", content=body, headers={"content-type": "application/json"})
            await b.client.post("/webhooks/ghl", content=body, headers={"content-type": "application/json"})
        audit = AuditStore(a.pool, prefix=settings.key_prefix)
        assert await audit.records(SYSTEM_TENANT) == []  # 4 + 4 from two clients: no burst
        await a.client.post("/webhooks/ghl", content=body, headers={"content-type": "application/json"})
        recs = await audit.records(SYSTEM_TENANT)
        assert len(recs) == 1 and recs[0].detail["reason"] == "missing signature"
        assert secret_marker.decode() not in caplog.text


async def test_raw_ip_logging_is_opt_in(real_redis_url: str, signer: GhlSigner,
                                        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(real_redis_url, signer, log_client_ip=True)
    caplog.set_level(logging.WARNING, "ghl_intake")
    async with ingress(settings, client=("198.51.100.8", 1)) as ing:
        await _forge(ing, 1)
    assert "198.51.100.8" in caplog.text


async def test_stale_replays_count_as_failures(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, failure_burst_threshold=3)
    async with ingress(settings) as ing:
        for _ in range(3):
            body = ghl_body(offset_s=-100 * 3600)
            r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
            assert r.status_code == 401
        recs = await AuditStore(ing.pool, prefix=settings.key_prefix).records(SYSTEM_TENANT)
        assert [r.detail["reason"] for r in recs] == ["stale timestamp"]
        assert await ing.enqueued() == 0


async def test_alert_webhook_down_does_not_break_the_answer(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, failure_burst_threshold=2,
                             alert_webhook_url="http://127.0.0.1:1/alert")
    async with ingress(settings) as ing:
        await _forge(ing, 3)
        await ing.deps.monitor.drain()  # type: ignore[union-attr]
        text = (await ing.client.get("/metrics")).text
        assert 'ghl_intake_ingress_monitor_errors_total{what="alert"} 1.0' in text
