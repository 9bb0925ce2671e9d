"""GDPR export and erase over data the real pipeline wrote (real Redis, real ingress and workers, CLI)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from redis.asyncio import Redis

from ghl_intake.cli import main
from ghl_intake.keys import load as load_keys
from ghl_intake.settings import Settings
from ghl_intake.signing import GhlSigner
from pipeline.pseudonym import pseudonymize_id
from store.audit import AuditStore
from store.context import ContextStore
from store.crypto import contact_scope
from tests.conftest import make_settings
from tests.harness import pipeline

TENANT = "locGdpr01"


async def post_as_ghl(p: Any, body: bytes) -> int:
    """POST like GHL does: a 429 (Redis busy on a loaded machine) is retried, anything else is final."""
    for _ in range(30):
        status = (await p.post(body)).status_code
        if status != 429:
            return int(status)
        await asyncio.sleep(0.2)
    return 429


def message(contact: str, text: str) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"type": "InboundMessage", "locationId": TENANT, "contactId": contact, "messageType": "SMS",
                         "direction": "inbound", "body": text, "dateAdded": now, "timestamp": now,
                         "webhookId": str(uuid.uuid4())})


def env_of(settings: Settings) -> dict[str, str]:
    return {"REDIS_URL": settings.redis_url, "INTAKE_KEY_PREFIX": settings.key_prefix,
            "INTAKE_MASTER_KEYS": settings.master_keys, "INTAKE_PSEUDONYM_KEY": settings.pseudonym_key,
            "INTAKE_AUDIT_SIGNING_KEY": settings.audit_signing_key}


async def readable_job_text(url: str, keyring: Any) -> str:
    """Everything the master keyring can read out of arq's job and result keys, as one string."""
    from pipeline.models import Envelope, StageJob, unpack
    from pipeline.stages import envelope_aad, stage_aad
    from store.keyring import DecryptError

    r = Redis.from_url(url)
    out: list[str] = []
    try:
        async for key in r.scan_iter(match="arq:*", count=1000):
            if not (key.startswith(b"arq:job:") or key.startswith(b"arq:result:")):
                continue
            value = await r.get(key)
            try:
                d = msgspec.msgpack.decode(value)
                arg = (d.get("a") or [b""])[0]
            except (msgspec.DecodeError, TypeError, AttributeError):
                continue
            if d.get("f") == "dedup":
                env = unpack(arg, Envelope)
                out.append(keyring.open(env.body, envelope_aad(env.event_id)).decode("utf-8", "replace"))
            elif d.get("f") in {"rate", "redact", "persist"}:
                job = unpack(arg, StageJob)
                out.append(job.contact)
                for kind in ("raw", "redacted"):
                    try:
                        out.append(keyring.open(job.data, stage_aad(kind, job.tenant, job.event_id)).decode())
                    except DecryptError:
                        pass
    finally:
        await r.aclose()
    return "\n".join(out)


def test_export_then_erase(real_redis_url: str, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    signer = GhlSigner()
    settings = make_settings(real_redis_url, signer, stage_max_attempts=1)
    km = load_keys(settings)
    texts = ["Hi, I'm Marisol Quintero, is 14 Larkspur Ct still for sale?", "my cell is 737-555-0163",
             "Saturday 10am works"]
    broken = b'{"type":"InboundMessage","locationId":"' + TENANT.encode() + b'","contactId":"cGone0001","body":"x"'

    async def run() -> None:
        async with pipeline(settings, signer, tenants=(TENANT,)) as p:
            for t in texts:
                assert await post_as_ghl(p, message("cGone0001", t)) == 200
            assert await post_as_ghl(p, message("cStays02", "I'm Bob Keep, 512-555-0100")) == 200
            assert await post_as_ghl(p, broken) == 200  # verifies, does not parse: dead letter
            await p.quiet()

    asyncio.run(run())
    for k, v in env_of(settings).items():
        monkeypatch.setenv(k, v)

    assert main(["gdpr", "export", "--tenant", TENANT, "--contact", "cGone0001", "--requested-by", "DSR-1042"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["fields"]["body"] for e in data["context"]["entries"]] and len(data["context"]["entries"]) == 3
    assert "Marisol" not in json.dumps(data["context"])  # context holds redacted text only
    assert len(data["event_ids"]) == 4 and len(data["dead_letters"]) == 1
    assert data["dead_letters"][0]["body"] == broken.decode()
    assert {r["stage"] for r in data["audit_records"]} >= {"dedup", "rate", "redact", "persist"}
    assert len(data["ready_events"]) == 3

    # arq keeps finished jobs' arguments (sealed under the master key) in its results for hours
    assert "737-555-0163" in asyncio.run(readable_job_text(real_redis_url, km.keyring))

    assert main(["gdpr", "erase", "--tenant", TENANT, "--contact", "cGone0001"]) == 2  # needs --yes
    assert main(["gdpr", "erase", "--tenant", TENANT, "--contact", "cGone0001", "--yes",
                 "--requested-by", "DSR-1042"]) == 0
    erased = json.loads(capsys.readouterr().out)["erased"]
    jobs = erased.pop("jobs")
    assert erased == {"data_key": 1, "context": 1, "dead_letters": 1, "dedup_keys": 3, "ready_events": 3,
                      "events": 4}
    assert jobs >= 3 * 4  # each message's dedup, rate, redact and persist results at least
    left_text = asyncio.run(readable_job_text(real_redis_url, km.keyring))
    for value in ("Marisol", "Quintero", "737-555-0163", "Larkspur", "cGone0001"):
        assert value not in left_text, value
    assert "512-555-0100" in left_text  # the other contact's jobs are untouched

    async def check() -> None:
        r = Redis.from_url(real_redis_url)
        pfx = settings.key_prefix
        pseudo = pseudonymize_id(km.pseudonym_key, TENANT, "cGone0001")
        assert not await r.exists(f"{pfx}:dk:{contact_scope(TENANT, 'cGone0001')}")
        assert await ContextStore(r, km.keyring, prefix=pfx).get(TENANT, "cGone0001") is None
        assert await ContextStore(r, km.keyring, prefix=pfx).get(TENANT, "cStays02") is not None
        assert await r.zcard(f"{pfx}:dlq:idx") == 0
        left: list[Any] = []
        async for key in r.scan_iter(match=f"{pfx}:dedup:{TENANT}:*"):
            left.append(key)
        assert len(left) == 1  # cStays02's
        ready = await r.xrange(f"{pfx}:ready")
        assert len(ready) == 1 and ready[0][1][b"contact"] != pseudo.encode()
        # the audit chain still verifies and records both requests, with who asked and no contact id
        audit = AuditStore(r, prefix=pfx, signing_key=km.audit_signing_key)
        assert all(rep.ok for rep in await audit.verify())
        ops = [orjson.loads(x) for x in await r.lrange(f"{pfx}:audit:log:{TENANT}", 0, -1)]
        ops = [x for x in ops if x["stage"] == "operator"]
        assert [x["outcome"] for x in ops] == ["gdpr_export", "gdpr_erase"]
        for x in ops:
            assert x["actor"].startswith("operator:") and x["detail"]["requested_by"] == "DSR-1042"
            assert x["contact"] == pseudo and "cGone0001" not in orjson.dumps(x).decode()
        assert ops[1]["counts"]["context"] == 1
        await r.aclose()

    asyncio.run(check())
    # a second export finds nothing left but the audit trail
    assert main(["gdpr", "export", "--tenant", TENANT, "--contact", "cGone0001"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["context"] is None and after["dead_letters"] == [] and after["ready_events"] == []
    assert main(["gdpr", "export", "--tenant", "../x", "--contact", "c"]) == 2
