"""/metrics and /health/security: content, no secrets, disabled or on their own port."""

from __future__ import annotations

import asyncio
import base64

import httpx
import orjson
import pytest

from ghl_intake import keys
from ghl_intake.signing import GhlSigner, token_headers
from ingress.app import OpsServer, create_ops_app
from pipeline.audit import SYSTEM_TENANT
from store.audit import AuditStore
from store.dlq import DeadLetterStore
from tests.conftest import make_settings
from tests.ingress_support import ghl_body, ingress
from tests.test_reliability_support import free_port


async def test_metrics_exposes_outcomes_failures_latency_queues_dead_letters(real_redis_url: str,
                                                                            signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        for _ in range(3):
            body = ghl_body()
            assert (await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code \
                == 200
        body = ghl_body()
        await ing.client.post("/webhooks/ghl", content=body, headers={"content-type": "application/json"})
        await ing.client.post("/webhooks/ghl", content=body, headers={"x-ghl-signature": "x"})
        await ing.client.get("/webhooks/ghl")
        await DeadLetterStore(ing.pool, ing.deps.keyring, prefix=settings.key_prefix).write(
            stage="redact", event_id="e1", tenant="LocA0001", reason="permanent", error="boom", job=b"{}")
        r = await ing.client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        t = r.text
        for line in (
            'ghl_intake_ingress_requests_total{endpoint="ghl",outcome="accepted"} 3.0',
            'ghl_intake_ingress_requests_total{endpoint="ghl",outcome="unauthorized"} 1.0',
            'ghl_intake_ingress_requests_total{endpoint="ghl",outcome="unsupported_media_type"} 1.0',
            'ghl_intake_ingress_requests_total{endpoint="other",outcome="method_not_allowed"} 1.0',
            'ghl_intake_ingress_verification_failures_total{reason="missing signature",scheme="ghl-ed25519"} 1.0',
            'ghl_intake_ingress_accepted_total{scheme="ghl-ed25519"} 3.0',
            "ghl_intake_ingress_enqueue_seconds_count 3.0",
            'ghl_intake_queue_depth{stage="dedup"} 3.0',
            'ghl_intake_queue_depth{stage="audit"} 0.0',
            'ghl_intake_dead_letters{stage="redact"} 1.0',
            'ghl_intake_dead_letters{stage="dedup"} 0.0',
            'ghl_intake_ingress_body_timestamp_total{state="ok"} 3.0',
        ):
            assert line in t, line
        assert 'ghl_intake_queue_oldest_age_seconds{stage="dedup"}' in t


async def test_each_app_has_its_own_registry(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as a, ingress(settings, pool=a.pool) as b:
        body = ghl_body()
        await a.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert 'outcome="accepted"} 1.0' in (await a.client.get("/metrics")).text
        assert 'outcome="accepted"}' not in (await b.client.get("/metrics")).text


async def test_health_security_posture_without_secrets(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, alert_webhook_url="https://hooks.example/T0K3N-in-url")
    async with ingress(settings) as ing:
        await ing.tenants.add("LocA0001")
        _, token = await ing.tenants.add_secret("LocA0001", "token")
        _, hsec = await ing.tenants.add_secret("LocA0001", "hmac")
        assert (await ing.client.post("/webhooks/tenants/LocA0001", content=ghl_body(),
                                      headers=token_headers(token))).status_code == 200
        await AuditStore(ing.pool, prefix=settings.key_prefix).append(
            "LocA0001", event_id="e1", stage="persist", outcome="processed")
        await DeadLetterStore(ing.pool, ing.deps.keyring, prefix=settings.key_prefix).write(
            stage="dedup", event_id="e2", tenant="LocA0001", reason="permanent", error="boom", job=b"{}")
        r = await ing.client.get("/health/security")
        assert r.status_code == 200
        doc = r.json()
        assert doc["schemes"]["ghl_ed25519"]["enabled"] is True
        assert len(doc["schemes"]["ghl_ed25519"]["key_fingerprints"]) == 1
        assert doc["schemes"]["ghl_rsa_legacy"] == {"enabled": False, "header": "X-WH-Signature",
                                                    "key_fingerprints": []}
        assert doc["schemes"]["standard_webhooks"]["tolerance_s"] == 300
        assert doc["replay_window"]["covered_by_dedup"] is True
        assert doc["keyring"]["primary"] == "t1"
        assert doc["queues"]["dedup"]["depth"] == 1 and doc["oldest_queued_event_age_s"] >= 0
        assert doc["dead_letter_depth"] == 1
        assert "LocA0001" in doc["audit_last_append"]
        assert doc["attack_monitor"] == {"burst_threshold": 20, "window_s": 300, "alert_webhook": True,
                                         "raw_ip_logging": False}
        raw = r.content
        km = keys.load(settings)
        for secret in (token, hsec, "T0K3N-in-url", settings.pseudonym_key, settings.audit_signing_key,
                       settings.master_keys.split(":", 1)[1], base64.b64encode(km.pseudonym_key).decode()):
            assert secret.encode() not in raw
        assert SYSTEM_TENANT not in doc["audit_last_append"]


async def test_health_security_reports_redis_down(signer: GhlSigner) -> None:
    settings = make_settings("redis://127.0.0.1:1/0", signer)
    async with ingress(settings) as ing:
        r = await ing.client.get("/health/security")
        assert r.status_code == 503 and r.json()["redis"] is False
        r = await ing.client.get("/metrics")
        assert r.status_code == 200 and "ghl_intake_metrics_refresh_errors_total 1.0" in r.text


async def test_ops_endpoints_can_be_disabled(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, metrics_enabled=False, security_health_enabled=False)
    async with ingress(settings) as ing:
        assert (await ing.client.get("/metrics")).status_code == 404
        assert (await ing.client.get("/health/security")).status_code == 404
        assert (await ing.client.get("/healthz")).status_code == 200


async def test_a_taken_ops_port_is_one_clear_error(real_redis_url: str, signer: GhlSigner) -> None:
    import socket

    from ghl_intake.settings import SettingsError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(real_redis_url, signer, ops_port=port, ops_host="127.0.0.1")
        async with ingress(settings) as ing:
            with pytest.raises(SettingsError, match=f"INTAKE_OPS_PORT: cannot listen on 127.0.0.1:{port}"):
                OpsServer.start(ing.app)


async def test_ops_endpoints_on_their_own_port(real_redis_url: str, signer: GhlSigner) -> None:
    port = free_port()
    settings = make_settings(real_redis_url, signer, ops_port=port, ops_host="127.0.0.1")
    async with ingress(settings) as ing:
        assert (await ing.client.get("/metrics")).status_code == 404
        assert (await ing.client.get("/health/security")).status_code == 404
        body = ghl_body()
        assert (await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code == 200
        ops = OpsServer.start(ing.app)
        assert ops is not None
        try:
            for _ in range(3000):  # up to 30 s
                if ops.server.started:
                    break
                await asyncio.sleep(0.01)
            assert ops.server.started, "the ops server did not start"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                t = (await c.get("/metrics")).text
                assert 'ghl_intake_ingress_requests_total{endpoint="ghl",outcome="accepted"} 1.0' in t
                doc = orjson.loads((await c.get("/health/security")).content)
                assert doc["queues"]["dedup"]["depth"] == 1
                assert (await c.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code == 404
        finally:
            await ops.stop()
        # the ops app alone, in process
        ops_app = create_ops_app(ing.deps)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ops_app), base_url="http://ops") as c:
            assert (await c.get("/metrics")).status_code == 200
