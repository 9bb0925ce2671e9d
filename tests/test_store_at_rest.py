"""Issue 8 item 7: after a run over every fixture, the RDB dump of a private Redis and every log line
of the run contain none of the PII values or credentials that were sent.

The private ``redis-server`` runs with ``rdbcompression no`` so the scan of the dump file is
meaningful (LZF would hide plaintext); a plaintext canary key proves the scan sees values.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ghl_intake.demo_data import fixture_webhooks, lead_webhooks
from ghl_intake.keys import envelope_crypto
from ghl_intake.signing import GhlSigner
from pipeline.parse import event_meta
from store.tenants import TenantRegistry
from tests.conftest import make_settings
from tests.harness import pipeline
from tests.test_pipeline_real_redis import pii_values
from tests.test_store_redis_server import PrivateRedis

VOICE_TENANT = "locVoice01"
VOICE_TOKEN = "sk_live_51HvQeXkP9bR2mTq8ZzYwVbN3"


async def post_as_ghl(p: Any, body: bytes) -> int:
    """POST like GHL does: a 429 (Redis busy on a loaded machine) is retried, anything else is final."""
    for _ in range(30):
        status = (await p.post(body)).status_code
        if status != 429:
            return int(status)
        await asyncio.sleep(0.2)
    return 429


def voice_ai_webhook() -> bytes:
    """A voice-AI call payload whose action settings carry a bearer token, as GHL's do."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({
        "type": "VoiceAiCallEnd", "locationId": VOICE_TENANT, "contactId": "voiceContact01", "timestamp": now,
        "webhookId": str(uuid.uuid4()), "callId": "call_01", "agentId": "agent_01",
        "transcript": "bot: hello\nhuman: hi this is Harriet Vossberg, my number is 737-555-0177",
        "executedCallActions": [{"actionType": "TRIGGER_WEBHOOK", "actionParameters": {
            "url": "https://hooks.example.org/in", "headers": {"Authorization": f"Bearer {VOICE_TOKEN}"}}}],
    })


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_rdb_dump_and_logs_hold_no_pii(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    server = PrivateRedis(tmp_path / "redis", compression=False)
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    secrets_sent: list[str] = [VOICE_TOKEN, "Harriet Vossberg", "737-555-0177"]
    try:
        signer = GhlSigner()
        settings = make_settings(server.url, signer)
        hooks = [h.body for h in fixture_webhooks() + lead_webhooks()] + [voice_ai_webhook()]
        tenants = tuple({event_meta(b)[0].tenant for b in hooks})

        async def run() -> None:
            async with pipeline(settings, signer, tenants=tenants) as p:
                reg = TenantRegistry(p.pool, envelope_crypto(settings, p.pool), prefix=settings.key_prefix)
                await reg.add(VOICE_TENANT, tier="enterprise")
                for scheme in ("token", "hmac", "standard"):
                    _, value = await reg.add_secret(VOICE_TENANT, scheme)
                    secrets_sent.append(value)
                    if scheme == "standard":
                        secrets_sent.append(base64.b64decode(value[6:]).hex())
                creds = {"anthropic_api_key": "sk-ant-api03-Zq9vXw2LmN4pR7tY1uI8oPaS",
                         "ghl_api_key": "pit-4b1e9d2c-77aa-4f0e-9c1d-5e6f7a8b9c0d", "ghl_calendar_id": "calAtRest9"}
                await reg.set_credentials(VOICE_TENANT, **creds)
                secrets_sent.extend(creds.values())
                for body in hooks:
                    assert await post_as_ghl(p, body) == 200
                await p.quiet()
                assert (await p.state.outcomes())["processed"] == len(hooks)
                await p.pool.set("canary:plaintext", b"CANARY-Plain-Value-42")

        asyncio.run(run())
        dump = server.save()
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        server.stop()
    out, err = capfd.readouterr()
    logs = "\n".join([*capture.lines, out, err]).encode()
    assert b"CANARY-Plain-Value-42" in dump  # the scan sees stored values
    assert len(capture.lines) > 10  # the run did log
    needles = [*pii_values(), *secrets_sent]
    for where, blob in (("RDB dump", dump), ("logs", logs)):
        low = blob.lower()
        leaked = [v for v in needles if v.encode() in blob or v.lower().encode() in low]
        assert not leaked, f"found in {where}: {leaked}"


async def test_scan_detects_plaintext_in_dump(tmp_path: Path) -> None:
    """Control: the same scan does find a value written in clear (the test above is not vacuous)."""
    server = PrivateRedis(tmp_path / "r", compression=False)
    try:
        r = Redis.from_url(server.url)
        await r.hset("x", "f", "Dana Whitfield dana.whitfield@example.org")
        await r.aclose()
        dump = server.save()
    finally:
        server.stop()
    assert b"dana.whitfield@example.org" in dump
