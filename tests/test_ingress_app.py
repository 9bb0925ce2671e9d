"""The ingress app on real Redis: every scheme end to end, rotation, tenant isolation, replay window, 429s."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import pytest

from ghl_intake.signing import (
    GhlRsaSigner,
    GhlSigner,
    hmac_headers,
    standard_headers,
    token_headers,
)
from ingress import backpressure
from ingress.schemes import decode_whsec
from tests.conftest import make_settings
from tests.ingress_support import ghl_body, ingress, workflow_body

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "standard-webhooks" / "vectors.json").read_text())


@pytest.fixture(scope="module")
def rsa_signer() -> GhlRsaSigner:
    return GhlRsaSigner()


async def test_ghl_ed25519_accepted_and_enqueued(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert r.status_code == 200, r.text
        assert await ing.enqueued() == 1
        [env] = await ing.envelopes()
        assert env.event_id == r.json()["event_id"]
        assert (env.scheme, env.tenant_hint, env.client) == ("ghl-ed25519", "", "203.0.113.9")
        assert ing.open(env) == body  # the exact raw bytes, sealed
        assert body not in await ing.pool.get(f"arq:job:dedup:{env.event_id}")


async def test_ghl_rejections_enqueue_nothing(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        body = ghl_body()
        cases = [
            ({"content-type": "application/json"}, "missing signature"),
            ({**signer.headers(body), "x-ghl-signature": "not base64!"}, "malformed signature"),
            (GhlSigner().headers(body), "bad signature"),
            (signer.headers(body + b" "), "bad signature"),
        ]
        for headers, reason in cases:
            r = await ing.client.post("/webhooks/ghl", content=body, headers=headers)
            assert (r.status_code, r.json()) == (401, {"error": reason})
        assert await ing.enqueued() == 0


async def test_ghl_key_rotation_accepts_every_configured_key(real_redis_url: str) -> None:
    a, b = GhlSigner(), GhlSigner()
    settings = make_settings(real_redis_url, ghl_ed25519_public_keys=a.public_pem + "\n" + b.public_pem)
    async with ingress(settings) as ing:
        for s in (a, b):
            body = ghl_body()
            assert (await ing.client.post("/webhooks/ghl", content=body, headers=s.headers(body))).status_code == 200
        body = ghl_body()
        assert (await ing.client.post("/webhooks/ghl", content=body,
                                      headers=GhlSigner().headers(body))).status_code == 401
        assert await ing.enqueued() == 2


async def test_legacy_rsa_off_by_default(real_redis_url: str, signer: GhlSigner, rsa_signer: GhlRsaSigner) -> None:
    settings = make_settings(real_redis_url, signer, ghl_rsa_public_keys=rsa_signer.public_pem)
    async with ingress(settings) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=rsa_signer.headers(body))
        assert (r.status_code, r.json()["error"]) == (401, "legacy signature disabled")
        assert await ing.enqueued() == 0


async def test_legacy_rsa_on_and_never_consulted_next_to_ed25519(real_redis_url: str, signer: GhlSigner,
                                                                  rsa_signer: GhlRsaSigner) -> None:
    settings = make_settings(real_redis_url, signer, ghl_legacy_rsa_enabled=True,
                             ghl_rsa_public_keys=rsa_signer.public_pem)
    async with ingress(settings) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=rsa_signer.headers(body))
        assert r.status_code == 200
        [env] = await ing.envelopes()
        assert env.scheme == "ghl-rsa"
        # a present but wrong X-GHL-Signature is final, even next to a valid legacy signature
        body = ghl_body()
        headers = {**rsa_signer.headers(body), "x-ghl-signature": GhlSigner().sign(body)}
        r = await ing.client.post("/webhooks/ghl", content=body, headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "bad signature")
        assert await ing.enqueued() == 1


async def test_legacy_rsa_default_key_is_ghls(real_redis_url: str, signer: GhlSigner) -> None:
    from ingress.verify import fingerprint

    settings = make_settings(real_redis_url, signer, ghl_legacy_rsa_enabled=True)
    async with ingress(settings) as ing:
        assert [fingerprint(k) for k in ing.deps.rsa_keys or []] == [
            "2f62045d413b1b7747e26770ce7f57840cbf86288cd20ceb90d299a62501fd25"]


# ------------------------------------------------------------------------------------------ replay window


async def test_replay_window(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    assert settings.replay_window_s == settings.dedup_ttl_s == 72 * 3600
    async with ingress(settings) as ing:
        async def post(body: bytes) -> tuple[int, str]:
            r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
            return r.status_code, r.json().get("error", "")

        assert await post(ghl_body(offset_s=-70 * 60)) == (200, "")  # GHL retry 70 minutes later
        assert await post(ghl_body(offset_s=-71 * 3600)) == (200, "")
        assert await post(ghl_body(offset_s=-72 * 3600 - 60)) == (401, "stale timestamp")
        assert await post(ghl_body(offset_s=3600)) == (401, "timestamp in the future")
        assert await post(ghl_body(offset_s=60)) == (200, "")  # within the future skew
        no_ts = orjson.dumps({"type": "ContactCreate", "locationId": "LocA0001", "id": "c9"})
        assert await post(no_ts) == (200, "")  # GHL's documented examples carry no timestamp
        assert await post(b"not json at all") == (200, "")  # verified: the pipeline dead-letters it
        assert await ing.enqueued() == 5


async def test_replay_window_can_be_disabled(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, replay_window_s=0)
    async with ingress(settings) as ing:
        body = ghl_body(offset_s=-400 * 86400)
        assert (await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code == 200


def test_replay_window_follows_dedup_ttl_unless_set() -> None:
    from ghl_intake.settings import Settings

    assert Settings.from_env({"INTAKE_DEDUP_TTL_S": "7200"}).replay_window_s == 7200
    assert Settings.from_env({"INTAKE_DEDUP_TTL_S": "7200", "INTAKE_REPLAY_WINDOW_S": "3600"}).replay_window_s == 3600
    assert Settings.from_env({}).replay_window_s == 72 * 3600


# ------------------------------------------------------------------------------------------ tenant endpoints


async def test_tenant_token_hmac_standard(real_redis_url: str) -> None:
    settings = make_settings(real_redis_url)
    async with ingress(settings) as ing:
        await ing.tenants.add("LocA0001")
        _, token = await ing.tenants.add_secret("LocA0001", "token")
        _, hkey = await ing.tenants.add_secret("LocA0001", "hmac")
        _, whsec = await ing.tenants.add_secret("LocA0001", "standard")
        url = "/webhooks/tenants/LocA0001"
        b1, b2, b3 = workflow_body(), workflow_body(), workflow_body()
        sends = [
            (b1, token_headers(token), "tenant-token"),
            (b2, hmac_headers(hkey.encode(), b2), "tenant-hmac"),
            (b3, standard_headers(decode_whsec(whsec), b3), "standard-webhooks"),
        ]
        for body, headers, scheme in sends:
            r = await ing.client.post(url, content=body, headers=headers)
            assert r.status_code == 200, (scheme, r.text)
        envs = sorted(await ing.envelopes(), key=lambda e: e.received_at)
        assert [(e.scheme, e.tenant_hint) for e in envs] == [(s, "LocA0001") for _, _, s in sends]
        assert [ing.open(e) for e in envs] == [b for b, _, _ in sends]


async def test_tenant_rotation_overlap_and_revoke(real_redis_url: str) -> None:
    settings = make_settings(real_redis_url)
    async with ingress(settings) as ing:
        await ing.tenants.add("LocA0001")
        old_id, old = await ing.tenants.add_secret("LocA0001", "token")
        _, new = await ing.tenants.rotate_secret("LocA0001", "token")
        url = "/webhooks/tenants/LocA0001"
        for t in (old, new):
            assert (await ing.client.post(url, content=workflow_body(), headers=token_headers(t))).status_code == 200
        await ing.tenants.revoke_secret("LocA0001", old_id)
        r = await ing.client.post(url, content=workflow_body(), headers=token_headers(old))
        assert (r.status_code, r.json()["error"]) == (401, "bad token")
        assert (await ing.client.post(url, content=workflow_body(), headers=token_headers(new))).status_code == 200
        assert await ing.enqueued() == 3


async def test_secret_of_tenant_a_never_authenticates_tenant_b(real_redis_url: str) -> None:
    settings = make_settings(real_redis_url)
    async with ingress(settings) as ing:
        secrets: dict[str, dict[str, str]] = {}
        for t in ("LocA0001", "LocB0002"):
            await ing.tenants.add(t)
            secrets[t] = {s: (await ing.tenants.add_secret(t, s))[1] for s in ("token", "hmac", "standard")}

        def headers(t: str, scheme: str, body: bytes) -> dict[str, str]:
            sec = secrets[t][scheme]
            if scheme == "token":
                return token_headers(sec)
            if scheme == "hmac":
                return hmac_headers(sec.encode(), body)
            return standard_headers(decode_whsec(sec), body)

        for scheme in ("token", "hmac", "standard"):
            body = workflow_body("LocB0002")
            r = await ing.client.post("/webhooks/tenants/LocB0002", content=body, headers=headers("LocA0001", scheme,
                                                                                                    body))
            assert r.status_code == 401, scheme
            r = await ing.client.post("/webhooks/tenants/LocB0002", content=body, headers=headers("LocB0002", scheme,
                                                                                                    body))
            assert r.status_code == 200, scheme
            # and a tenant's secret does not open the GHL endpoint either
            r = await ing.client.post("/webhooks/ghl", content=body, headers=headers("LocB0002", scheme, body))
            assert r.status_code == 401
        # an unknown tenant answers like a wrong secret
        r = await ing.client.post("/webhooks/tenants/LocZ9999", content=workflow_body(),
                                  headers=token_headers(secrets["LocA0001"]["token"]))
        assert (r.status_code, r.json()["error"]) == (401, "bad token")
        assert {e.tenant_hint for e in await ing.envelopes()} == {"LocB0002"}
        assert await ing.enqueued() == 3


@pytest.mark.parametrize("path", ["/webhooks/tenants/bad.id", "/webhooks/tenants/" + "x" * 65,
                                  "/webhooks/tenants/a%20b", "/webhooks/tenants/"])
async def test_tenant_malformed_location_is_404(real_redis_url: str, path: str) -> None:
    settings = make_settings(real_redis_url)
    async with ingress(settings) as ing:
        r = await ing.client.post(path, content=b"{}", headers=token_headers("x"))
        assert r.status_code == 404
        assert r.json() == {"error": "no such endpoint"}


async def test_standard_webhooks_vectors_through_the_app(real_redis_url: str) -> None:
    """Every verify vector with headers, over HTTP (mixed-case header names included), with ``now`` injected."""
    settings = make_settings(real_redis_url)
    now = [0.0]
    async with ingress(settings, clock=lambda: now[0]) as ing:
        await ing.tenants.add("LocSW0001")
        for secret in {v["secret"] for v in VECTORS["verify_vectors"] if "secret" in v}:
            await ing.tenants.add_secret("LocSW0001", "standard", secret=secret)
        expected_ok = 0
        for vec in VECTORS["verify_vectors"]:
            if "headers" not in vec:
                continue
            now[0] = float(vec["now"])
            r = await ing.client.post("/webhooks/tenants/LocSW0001", content=vec["payload"].encode(),
                                      headers={"content-type": "application/json", **vec["headers"]})
            valid = str(vec["expect"]).startswith("valid")
            assert r.status_code == (200 if valid else 401), (vec["id"], r.text)
            expected_ok += valid
        assert await ing.enqueued() == expected_ok


async def test_tenant_payload_for_another_location_is_dead_lettered(real_redis_url: str, signer: GhlSigner) -> None:
    """The ingress binds the envelope to the URL's tenant; the dedup stage refuses a body naming another one."""
    from ghl_intake import keys
    from ghl_intake.embedded import make_worker
    from store.dlq import DeadLetterStore

    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        await ing.tenants.add("LocA0001")
        _, token = await ing.tenants.add_secret("LocA0001", "token")
        r = await ing.client.post("/webhooks/tenants/LocA0001", content=ghl_body("LocB0002"),
                                  headers=token_headers(token))
        assert r.status_code == 200
        worker = make_worker("dedup", settings, ing.pool, burst=True)  # the real dedup worker, until the queue is empty
        try:
            await asyncio.wait_for(worker.async_run(), 60)
        finally:
            await worker.close()
        dead = await DeadLetterStore(ing.pool, keys.load(settings).keyring, prefix=settings.key_prefix).list()
        assert [d.event_id for d in dead] == [r.json()["event_id"]]
        assert "does not match" in dead[0].error or "does not match" in dead[0].reason


# ------------------------------------------------------------------------------------------ 429s


async def test_redis_down_is_429_with_retry_after(signer: GhlSigner) -> None:
    settings = make_settings("redis://127.0.0.1:1/0", signer, retry_after_s=42)
    async with ingress(settings) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert r.status_code == 429 and r.headers["retry-after"] == "42"
        r = await ing.client.post("/webhooks/tenants/LocA0001", content=body, headers=token_headers("t"))
        assert r.status_code == 429 and r.headers["retry-after"] == "42"
        # failed verification with Redis down: still a 401, the monitor's failure is swallowed
        r = await ing.client.post("/webhooks/ghl", content=body, headers=GhlSigner().headers(body))
        assert r.status_code == 401


async def test_backpressure_reason_is_429(real_redis_url: str, signer: GhlSigner,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(deps: object) -> str:
        return "queue too deep, retry later"

    monkeypatch.setattr(backpressure, "check", full)
    settings = make_settings(real_redis_url, signer, retry_after_s=7)
    async with ingress(settings) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert (r.status_code, r.headers["retry-after"], r.json()["error"]) == (429, "7", "queue too deep, retry later")
        assert await ing.enqueued() == 0
        text = (await ing.client.get("/metrics")).text
        assert 'ghl_intake_ingress_requests_total{endpoint="ghl",outcome="throttled"} 1.0' in text


async def test_clock_is_only_for_checks(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings, clock=lambda: time.time() + 73 * 3600) as ing:
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert (r.status_code, r.json()["error"]) == (401, "stale timestamp")


# ------------------------------------------------------------------------------------------ batched enqueue


async def test_concurrent_requests_are_batched_and_each_is_in_redis(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        bodies = [ghl_body() for _ in range(60)]
        rs = await asyncio.gather(*(ing.client.post("/webhooks/ghl", content=b, headers=signer.headers(b))
                                    for b in bodies))
        assert [r.status_code for r in rs] == [200] * 60
        ids = {r.json()["event_id"] for r in rs}
        envs = await ing.envelopes()
        assert {e.event_id for e in envs} == ids
        assert sorted(ing.open(e) for e in envs) == sorted(bodies)
        # arq sees ordinary jobs: function, msgpack args, enqueue time, expiry
        job = (await ing.pool.queued_jobs(queue_name=settings.key("q", "dedup")))[0]
        assert job.function == "dedup" and job.enqueue_time is not None
        assert 0 < await ing.pool.pttl(f"arq:job:{job.job_id}") <= ing.pool.expires_extra_ms


async def test_enqueue_survives_a_script_flush(fake_pool: object, signer: GhlSigner) -> None:
    from arq.connections import ArqRedis

    pool = fake_pool
    assert isinstance(pool, ArqRedis)
    settings = make_settings("", signer)
    async with ingress(settings, pool=pool) as ing:
        for _ in range(2):
            await pool.script_flush()
            body = ghl_body()
            assert (await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code \
                == 200
        assert await ing.enqueued() == 2
        # an existing job id is not enqueued twice (arq's rule)
        from ingress.app import enqueue_envelope

        env = (await ing.envelopes())[0]
        await enqueue_envelope(ing.deps, env)
        assert await ing.enqueued() == 2


async def test_internal_error_is_429_never_500(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, retry_after_s=9)
    async with ingress(settings, ed25519_keys=[None]) as ing:  # a broken key list: verify raises
        body = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert (r.status_code, r.headers["retry-after"], r.json()["error"]) == (429, "9", "internal error, retry later")
        assert 'outcome="error"} 1.0' in (await ing.client.get("/metrics")).text
        assert await ing.enqueued() == 0
