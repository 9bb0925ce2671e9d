"""The console and its API against real Redis (real argon2, real sessions, real stores).

Each role and tenant check is exercised, including ids typed into URLs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from console.app import create_console_app, make_deps
from console.auth import ConsoleDeps
from ghl_intake import keys
from store.audit import SYSTEM_TENANT
from store.dlq import DeadLetterStore
from tests.conftest import make_settings
from tests.e2e.seed import PASSWORD, TENANT_A, TENANT_B, Seeded, seed_all

BASE = "http://console.test"


@dataclass
class Env:
    app: Any
    deps: ConsoleDeps
    redis: Redis
    seeded: Seeded

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)


@pytest_asyncio.fixture
async def env(real_redis_url: str) -> AsyncIterator[Env]:
    settings = make_settings(real_redis_url, login_max_failures=3, login_lockout_s=60)
    redis = Redis.from_url(real_redis_url)
    km = keys.load(settings)
    deps = make_deps(settings, redis, km.keyring, km.pseudonym_key)
    seeded = await seed_all(redis, settings)
    yield Env(create_console_app(deps), deps, redis, seeded)
    await redis.aclose()


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field"
    return m.group(1)


async def login(c: httpx.AsyncClient, name: str, password: str = PASSWORD, nxt: str = "") -> httpx.Response:
    page = await c.get("/console/login")
    assert page.status_code == 200
    return await c.post("/console/login", data={"username": name, "password": password, "csrf": _csrf(page.text),
                                                "next": nxt})


def bearer(env: Env, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.seeded.tokens[name]}"}


async def system_records(env: Env) -> list[Any]:
    return await env.deps.audit.records(SYSTEM_TENANT)


# ------------------------------------------------------------------------------------------- authentication


async def test_pages_need_login(env: Env) -> None:
    async with env.client() as c:
        for path in ("/console/", "/console/dead-letters", "/console/audit", "/console/security",
                     f"/console/dead-letters/{env.seeded.dlq_a}"):
            r = await c.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/console/login?next=")
        r = await c.post(f"/console/dead-letters/{env.seeded.dlq_a}/replay", data={"csrf": "x"})
        assert r.status_code == 401


async def test_login_sets_hardened_cookie_and_logout_ends_session(env: Env) -> None:
    async with env.client() as c:
        r = await login(c, "opa", nxt="/console/dead-letters")
        assert r.status_code == 303 and r.headers["location"] == "/console/dead-letters"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("gi_session="))
        low = cookie.lower()
        assert "httponly" in low and "samesite=lax" in low and "path=/console" in low
        assert "secure" not in low  # plain http and INTAKE_COOKIE_SECURE=auto
        sid_signed = cookie.split(";", 1)[0].split("=", 1)[1]
        home = await c.get("/console/")
        assert home.status_code == 200 and "opa" in home.text
        assert home.headers["x-frame-options"] == "DENY" and "default-src 'none'" in home.headers[
            "content-security-policy"]
        # the cookie is signed: a tampered value is no session
        c.cookies.set("gi_session", sid_signed[:-2] + "xx", domain="console.test", path="/console")
        assert (await c.get("/console/")).status_code == 303
        c.cookies.set("gi_session", sid_signed, domain="console.test", path="/console")
        out = await c.post("/console/logout", data={"csrf": _csrf(home.text)})
        assert out.status_code == 303
        c.cookies.set("gi_session", sid_signed, domain="console.test", path="/console")  # replay the old cookie
        assert (await c.get("/console/")).status_code == 303
    actions = [r.outcome for r in await system_records(env)]
    assert "login" in actions and "logout" in actions


async def test_secure_cookie_setting(env: Env) -> None:
    https = httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app), base_url="https://console.test")
    async with https as c:  # auto: Secure on https requests
        r = await login(c, "opa")
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("gi_session="))
        assert "secure" in cookie.lower()
    env.deps.settings.cookie_secure = "1"  # forced: Secure even when the proxy speaks http to us
    async with env.client() as c:
        page = await c.get("/console/login")
        assert all("secure" in h.lower() for h in page.headers.get_list("set-cookie"))


async def test_wrong_password_and_unknown_user_get_the_same_answer(env: Env) -> None:
    async with env.client() as c:
        a = await login(c, "opa", "wrong password!!")
        b = await login(c, "nobody", "wrong password!!")
        assert a.status_code == b.status_code == 401
        assert "Wrong user name or password" in a.text and "Wrong user name or password" in b.text


async def test_login_form_needs_its_csrf_token(env: Env) -> None:
    async with env.client() as c:
        await c.get("/console/login")
        r = await c.post("/console/login", data={"username": "opa", "password": PASSWORD, "csrf": "forged"})
        assert r.status_code == 403
        r = await c.post("/console/login", data={"username": "opa", "password": PASSWORD, "csrf": ""})
        assert r.status_code == 403


async def test_open_redirect_is_refused(env: Env) -> None:
    async with env.client() as c:
        r = await login(c, "opa", nxt="https://evil.example/")
        assert r.headers["location"] == "/console/"


async def test_lockout_per_user_is_audited_and_blocks_the_right_password(env: Env) -> None:
    async with env.client() as c:
        for _ in range(2):
            assert (await login(c, "opa", "not the password")).status_code == 401
        third = await login(c, "opa", "not the password")
        assert third.status_code == 429
        assert (await login(c, "opa")).status_code == 429  # right password, still locked
        assert (await login(c, "ana")).status_code == 303  # another user from the same address is fine
    recs = [r for r in await system_records(env) if r.outcome == "login_lockout"]
    assert len(recs) == 1
    assert recs[0].stage == "console" and recs[0].actor == "console:opa"
    assert recs[0].detail["scope"] == "user"
    assert "127.0.0.1" not in str(recs[0].detail)  # the address is pseudonymized


async def test_lockout_per_address(env: Env) -> None:
    # 3 failures per user, 12 per address: spread over unknown names, the address locks
    async with env.client() as c:
        codes = [(await login(c, f"ghost{i}", "not the password")).status_code for i in range(12)]
        assert codes[:11] == [401] * 11 and codes[11] == 429
        assert (await login(c, "root")).status_code == 429
    recs = [r for r in await system_records(env) if r.outcome == "login_lockout"]
    assert [r.detail["scope"] for r in recs] == ["address"]
    assert recs[0].actor == "console:unknown-user"


async def test_lockout_does_not_tell_real_names_from_unknown_ones(env: Env) -> None:
    # a real user and a name that does not exist lock after the same number of failures
    async with env.client() as c:
        real = [(await login(c, "opa", "not the password")).status_code for _ in range(3)]
        ghost = [(await login(c, "nobody-here", "not the password")).status_code for _ in range(3)]
    assert real == ghost == [401, 401, 429]
    keys = [k.decode() async for k in env.redis.scan_iter(match=f"{env.deps.settings.key_prefix}:*")]
    assert not any("nobody-here" in k or ":opa" in k for k in keys if ":lock:" in k or ":fail:" in k)


async def test_idle_and_absolute_expiry(env: Env) -> None:
    sessions = env.deps.sessions
    user = await env.deps.users.get("opa")
    assert user is not None
    sid, s = await sessions.create(user)
    assert await sessions.load(sid, now=s.created + 10) is not None
    assert await sessions.load(sid, now=s.created + 10 + sessions.idle_s + 1) is None  # idle
    sid, s = await sessions.create(user)
    t = s.created
    while t < s.created + sessions.max_s - sessions.idle_s / 2:
        t += sessions.idle_s / 2
        assert await sessions.load(sid, now=t) is not None, t
    assert await sessions.load(sid, now=s.created + sessions.max_s + 1) is None  # absolute
    # the Redis TTL follows the idle timeout
    sid, s = await sessions.create(user)
    ttl = await env.redis.ttl(sessions.key(s.sid_hash))
    assert 0 < ttl <= sessions.idle_s


async def test_password_change_and_disable_end_sessions_and_tokens(env: Env) -> None:
    async with env.client() as c:
        await login(c, "opa")
        assert (await c.get("/console/")).status_code == 200
        await env.deps.users.set_password("opa", "a brand new password")
        assert (await c.get("/console/")).status_code == 303
    r = httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app), base_url=BASE)
    async with r as c:
        assert (await c.get("/api/v1/me", headers=bearer(env, "ana"))).status_code == 200
        await env.deps.users.set_disabled("ana")
        assert (await c.get("/api/v1/me", headers=bearer(env, "ana"))).status_code == 401
        assert (await login(c, "ana")).status_code == 401


# ------------------------------------------------------------------------------------------- CSRF


async def test_state_changing_forms_need_csrf_and_same_origin(env: Env) -> None:
    dlq = env.seeded.dlq_a
    async with env.client() as c:
        await login(c, "opa")
        home = await c.get("/console/")
        token = _csrf(home.text)
        r = await c.post(f"/console/dead-letters/{dlq}/replay", data={"csrf": "nope"})
        assert r.status_code == 403
        r = await c.post(f"/console/dead-letters/{dlq}/replay", data={})
        assert r.status_code == 403
        r = await c.post(f"/console/dead-letters/{dlq}/replay", data={"csrf": token},
                         headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = await c.post("/console/audit/verify", data={"csrf": "nope"})
        assert r.status_code == 403
        r = await c.post("/console/logout", data={"csrf": "nope"})
        assert r.status_code == 403
        entry = await DeadLetterStore(env.redis, env.deps.keyring, prefix=env.deps.settings.key_prefix).get(dlq)
        assert entry is not None and entry.state == "dead"
        r = await c.post(f"/console/dead-letters/{dlq}/replay", data={"csrf": token},
                         headers={"Origin": BASE})
        assert r.status_code == 303


# ------------------------------------------------------------------------------------------- authorization: pages


async def test_operator_sees_only_their_tenant(env: Env) -> None:
    async with env.client() as c:
        await login(c, "opa")
        home = await c.get("/console/")
        assert TENANT_A in home.text and TENANT_B not in home.text
        assert (await c.get(f"/console/?tenant={TENANT_B}")).status_code == 403
        dl = await c.get("/console/dead-letters")
        assert env.seeded.dlq_a in dl.text and env.seeded.dlq_b not in dl.text
        assert (await c.get(f"/console/dead-letters?tenant={TENANT_B}")).status_code == 403
        # an id typed into the URL: as if it did not exist
        assert (await c.get(f"/console/dead-letters/{env.seeded.dlq_b}")).status_code == 404
        assert (await c.get(f"/console/dead-letters/{env.seeded.dlq_a}")).status_code == 200
        token = _csrf(home.text)
        for action in ("replay", "purge"):
            r = await c.post(f"/console/dead-letters/{env.seeded.dlq_b}/{action}", data={"csrf": token})
            assert r.status_code == 404, action
        r = await c.post("/console/audit/verify", data={"csrf": token, "tenant": TENANT_B})
        assert r.status_code == 403
        r = await c.post("/console/audit/verify", data={"csrf": token, "tenant": SYSTEM_TENANT})
        assert r.status_code == 403
        assert (await c.get(f"/console/audit/export?tenant={TENANT_B}")).status_code == 403
        audit = await c.get("/console/audit")
        assert TENANT_A in audit.text and TENANT_B not in audit.text and SYSTEM_TENANT not in audit.text
        assert (await c.get("/console/security")).status_code == 403
    entry = await DeadLetterStore(env.redis, env.deps.keyring, prefix=env.deps.settings.key_prefix).get(
        env.seeded.dlq_b)
    assert entry is not None and entry.state == "dead"


async def test_admin_with_a_tenant_list_does_not_see_the_system_chain(env: Env) -> None:
    # the system chain names every tenant (replays, purges, GDPR requests): only admins with '*'
    await env.deps.users.add("adma", "admin", (TENANT_A,), PASSWORD)
    token = await env.deps.users.new_token("adma")
    async with env.client() as c:
        await login(c, "root")
        home = await c.get("/console/")
        r = await c.post(f"/console/dead-letters/{env.seeded.dlq_b}/replay", data={"csrf": _csrf(home.text)})
        assert r.status_code in (200, 303)
    assert any(TENANT_B in str(rec.detail) for rec in await system_records(env))
    h = {"Authorization": f"Bearer {token}"}
    async with env.client() as c:
        assert (await c.get(f"/api/v1/audit/export?tenant={SYSTEM_TENANT}", headers=h)).status_code == 403
        assert (await c.get(f"/api/v1/audit/export?tenant={TENANT_A}", headers=h)).status_code == 200
        assert (await c.get(f"/api/v1/stats?tenant={TENANT_B}", headers=h)).status_code == 403
        await login(c, "adma")
        audit = await c.get("/console/audit")
        assert audit.status_code == 200 and TENANT_A in audit.text and SYSTEM_TENANT not in audit.text
        assert (await c.get(f"/console/audit/export?tenant={SYSTEM_TENANT}")).status_code == 403


@pytest.mark.parametrize("bad_id", ["idx", "IDX", "0123456789ABCDEF", "0123456789abcde", "../idx", "x" * 64])
async def test_dead_letter_ids_that_are_not_entries_are_404_and_touch_nothing(env: Env, bad_id: str) -> None:
    index = f"{env.deps.settings.key_prefix}:dlq:idx"
    before = await env.redis.zcard(index)
    async with env.client() as c:
        h = bearer(env, "root")
        assert (await c.get(f"/api/v1/dead-letters/{bad_id}", headers=h)).status_code == 404
        assert (await c.post(f"/api/v1/dead-letters/{bad_id}/purge", headers=h)).status_code == 404
        assert (await c.delete(f"/api/v1/dead-letters/{bad_id}", headers=h)).status_code == 404
        assert (await c.post(f"/api/v1/dead-letters/{bad_id}/replay", headers=h)).status_code == 404
        await login(c, "root")
        assert (await c.get(f"/console/dead-letters/{bad_id}")).status_code == 404
    assert await env.redis.zcard(index) == before == 2


async def test_analyst_is_read_only(env: Env) -> None:
    async with env.client() as c:
        await login(c, "ana")
        home = await c.get("/console/")
        assert home.status_code == 200
        token = _csrf(home.text)
        detail = await c.get(f"/console/dead-letters/{env.seeded.dlq_a}")
        assert detail.status_code == 200 and 'id="replay"' not in detail.text and 'id="purge"' not in detail.text
        for action in ("replay", "purge"):
            r = await c.post(f"/console/dead-letters/{env.seeded.dlq_a}/{action}", data={"csrf": token})
            assert r.status_code == 403, action
        assert (await c.post("/console/audit/verify", data={"csrf": token})).status_code == 403
        assert 'id="verify-now"' not in (await c.get("/console/audit")).text
        exp = await c.get(f"/console/audit/export?tenant={TENANT_A}")
        assert exp.status_code == 200 and exp.headers["content-type"].startswith("application/x-ndjson")
        assert exp.text.count("\n") >= 12
        # a link on another site that a logged-in browser follows: refused, and nothing audited
        before = len(await env.deps.audit.records(SYSTEM_TENANT))
        for site in ("cross-site", "same-site"):
            r = await c.get(f"/console/audit/export?tenant={TENANT_A}", headers={"Sec-Fetch-Site": site})
            assert r.status_code == 403 and "x-ndjson" not in r.headers.get("content-type", ""), site
        assert len(await env.deps.audit.records(SYSTEM_TENANT)) == before
        for site in ("same-origin", "none"):
            r = await c.get(f"/console/audit/export?tenant={TENANT_A}", headers={"Sec-Fetch-Site": site})
            assert r.status_code == 200, site
        assert (await c.get("/console/security")).status_code == 403
    entry = await DeadLetterStore(env.redis, env.deps.keyring, prefix=env.deps.settings.key_prefix).get(
        env.seeded.dlq_a)
    assert entry is not None and entry.state == "dead"


async def test_admin_sees_everything(env: Env) -> None:
    async with env.client() as c:
        await login(c, "root")
        home = await c.get("/console/")
        assert TENANT_A in home.text and TENANT_B in home.text and "<svg" in home.text
        assert (await c.get(f"/console/?tenant={TENANT_B}")).status_code == 200
        dl = await c.get("/console/dead-letters")
        assert env.seeded.dlq_a in dl.text and env.seeded.dlq_b in dl.text
        sec = await c.get("/console/security")
        assert sec.status_code == 200 and "primary master key" in sec.text
        km = keys.load(env.deps.settings)
        assert km.keyring.primary in sec.text
        for secret in (env.deps.settings.master_keys.split(":", 1)[1], env.deps.settings.pseudonym_key,
                       env.deps.settings.audit_signing_key):
            assert secret not in sec.text
        audit = await c.get("/console/audit")
        assert SYSTEM_TENANT in audit.text


async def test_replay_from_the_console(env: Env) -> None:
    dlq = DeadLetterStore(env.redis, env.deps.keyring, prefix=env.deps.settings.key_prefix)
    async with env.client() as c:
        await login(c, "opa")
        page = await c.get(f"/console/dead-letters/{env.seeded.dlq_a}")
        r = await c.post(f"/console/dead-letters/{env.seeded.dlq_a}/replay", data={"csrf": _csrf(page.text)})
        assert r.status_code == 303
        after = await c.get(r.headers["location"])
        assert "replay #1 enqueued" in after.text and ">replayed<" in after.text
        # twice: one effect
        r = await c.post(f"/console/dead-letters/{env.seeded.dlq_a}/replay", data={"csrf": _csrf(page.text)})
        again = await c.get(r.headers["location"])
        assert "not replayable" in again.text
    entry = await dlq.get(env.seeded.dlq_a)
    assert entry is not None and entry.state == "replayed" and entry.replays == 1
    from workers.base import queue_name

    assert await env.redis.zcard(queue_name(env.deps.settings, "dedup")) == 1
    recs = [r for r in await system_records(env) if r.outcome == "dlq_replay"]
    assert recs and recs[0].actor == "console:opa" and recs[0].detail["tenant"] == TENANT_A
    tenant_recs = [r for r in await env.deps.audit.records(TENANT_A) if r.outcome.startswith("dlq_replay")]
    assert tenant_recs and tenant_recs[0].actor == "console:opa"


async def test_verify_now_and_purge(env: Env) -> None:
    async with env.client() as c:
        await login(c, "opa")
        page = await c.get("/console/audit")
        token = _csrf(page.text)
        r = await c.post("/console/audit/verify", data={"csrf": token})
        assert r.status_code == 200 and 'id="verify-results"' in r.text and "BROKEN" not in r.text
        assert f"OK · {TENANT_A}" in r.text and TENANT_B not in r.text
        # break one record of A: verify names it
        key = env.deps.audit.key("log", TENANT_A)
        raw: Any = env.redis
        line = (await raw.lindex(key, 3)).replace(b'"persist"', b'"persisT"')
        await raw.lset(key, 3, line)
        r = await c.post("/console/audit/verify", data={"csrf": token, "tenant": TENANT_A})
        assert "BROKEN" in r.text and "first bad seq 4" in r.text
        r = await c.post(f"/console/dead-letters/{env.seeded.dlq_a}/purge", data={"csrf": token})
        assert r.status_code == 303
        assert (await c.get(f"/console/dead-letters/{env.seeded.dlq_a}")).status_code == 404
    outcomes = [r.outcome for r in await system_records(env)]
    assert "audit_verify" in outcomes and "dlq_purge" in outcomes


async def test_dashboard_chart_counts_outcomes(env: Env) -> None:
    async with env.client() as c:
        await login(c, "root")
        home = await c.get(f"/console/?tenant={TENANT_A}")
        assert home.status_code == 200
        assert "processed: 12" in home.text and "duplicate: 3" in home.text and "dead_lettered: 1" in home.text
        assert "<title>" in home.text and "peak 16/h" in home.text


# ------------------------------------------------------------------------------------------- API


async def test_api_stats_needs_a_valid_token_and_an_allowed_tenant(env: Env) -> None:
    async with env.client() as c:
        r = await c.get(f"/api/v1/stats?tenant={TENANT_A}")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = await c.get(f"/api/v1/stats?tenant={TENANT_A}", headers={"Authorization": "Bearer gik_forged"})
        assert r.status_code == 401
        r = await c.get(f"/api/v1/stats?tenant={TENANT_A}", headers={"Authorization": "Basic abc"})
        assert r.status_code == 401
        r = await c.get(f"/api/v1/stats?tenant={TENANT_B}", headers=bearer(env, "opa"))
        assert r.status_code == 403
        r = await c.get(f"/api/v1/stats?tenant={SYSTEM_TENANT}", headers=bearer(env, "opa"))
        assert r.status_code == 403
        r = await c.get(f"/api/v1/stats?tenant={TENANT_A}", headers=bearer(env, "opa"))
        assert r.status_code == 200
        body = r.json()
        assert body["totals"]["processed"] == 12 and body["dead_letters"] == 1 and len(body["hourly"]) == 24
        r = await c.get("/api/v1/stats", headers=bearer(env, "opa"))
        assert set(r.json()["tenants"]) == {TENANT_A} and "outcomes" not in r.json()
        r = await c.get("/api/v1/stats", headers=bearer(env, "root"))
        assert set(r.json()["tenants"]) == {TENANT_A, TENANT_B} and "outcomes" in r.json()
        # a session cookie does not authenticate the API
        await login(c, "root")
        assert (await c.get("/api/v1/stats")).status_code == 401


async def test_api_dead_letters_scoped(env: Env) -> None:
    a, b = env.seeded.dlq_a, env.seeded.dlq_b
    async with env.client() as c:
        r = await c.get("/api/v1/dead-letters", headers=bearer(env, "opa"))
        assert [e["id"] for e in r.json()["dead_letters"]] == [a]
        assert (await c.get(f"/api/v1/dead-letters?tenant={TENANT_B}", headers=bearer(env, "opa"))).status_code == 403
        assert (await c.get(f"/api/v1/dead-letters/{b}", headers=bearer(env, "opa"))).status_code == 404
        assert (await c.get("/api/v1/dead-letters/..%2f..%2fx", headers=bearer(env, "opa"))).status_code == 404
        assert (await c.post(f"/api/v1/dead-letters/{b}/replay", headers=bearer(env, "opa"))).status_code == 404
        assert (await c.delete(f"/api/v1/dead-letters/{b}", headers=bearer(env, "opa"))).status_code == 404
        assert (await c.post(f"/api/v1/dead-letters/{a}/replay", headers=bearer(env, "ana"))).status_code == 403
        assert (await c.delete(f"/api/v1/dead-letters/{a}", headers=bearer(env, "ana"))).status_code == 403
        r = await c.post(f"/api/v1/dead-letters/{a}/replay", headers=bearer(env, "opa"))
        assert r.status_code == 200 and r.json()["replayed"] is True
        r = await c.post(f"/api/v1/dead-letters/{a}/replay", headers=bearer(env, "opa"))
        assert r.status_code == 409
        # bulk purge: a scoped user must name their tenant
        assert (await c.post("/api/v1/dead-letters/purge", headers=bearer(env, "opa"), json={})).status_code == 403
        assert (await c.post("/api/v1/dead-letters/purge", headers=bearer(env, "opa"),
                             json={"tenant": TENANT_B})).status_code == 403
        r = await c.post("/api/v1/dead-letters/purge", headers=bearer(env, "opa"), json={"tenant": TENANT_A})
        assert r.json() == {"purged": 1}
        r = await c.delete(f"/api/v1/dead-letters/{b}", headers=bearer(env, "opall"))
        assert r.status_code == 200
    recs = await system_records(env)
    api_recs = [r for r in recs if r.detail.get("via") == "api"]
    assert {(r.outcome, r.actor) for r in api_recs} >= {("dlq_replay", "console:opa"), ("dlq_purge", "console:opa"),
                                                         ("dlq_purge", "console:opall")}


async def test_api_audit_verify_and_export(env: Env) -> None:
    async with env.client() as c:
        r = await c.post("/api/v1/audit/verify", headers=bearer(env, "opa"), json={})
        assert r.status_code == 200 and r.json()["ok"] is True
        assert [ch["tenant"] for ch in r.json()["chains"]] == [TENANT_A]
        assert (await c.post("/api/v1/audit/verify", headers=bearer(env, "opa"),
                             json={"tenant": TENANT_B})).status_code == 403
        assert (await c.post("/api/v1/audit/verify", headers=bearer(env, "ana"), json={})).status_code == 403
        r = await c.post("/api/v1/audit/verify", headers=bearer(env, "root"), json={})
        assert {ch["tenant"] for ch in r.json()["chains"]} >= {SYSTEM_TENANT, TENANT_A, TENANT_B}
        r = await c.get(f"/api/v1/audit/export?tenant={TENANT_A}", headers=bearer(env, "ana"))
        assert r.status_code == 200 and all(line.startswith("{") for line in r.text.splitlines())
        assert (await c.get(f"/api/v1/audit/export?tenant={TENANT_B}", headers=bearer(env, "ana"))).status_code == 403
        assert (await c.get("/api/v1/audit/export?tenant=x&since=garbage",
                            headers=bearer(env, "root"))).status_code == 400
        assert (await c.post("/api/v1/audit/verify", headers=bearer(env, "root"),
                             content=b"[1]")).status_code == 400


async def test_api_gdpr_is_admin_only(env: Env) -> None:
    async with env.client() as c:
        for who in ("opa", "ana", "opall"):
            r = await c.get(f"/api/v1/gdpr/export?tenant={TENANT_A}&contact=c1", headers=bearer(env, who))
            assert r.status_code == 403, who
            r = await c.post("/api/v1/gdpr/erase", headers=bearer(env, who), json={"tenant": TENANT_A, "contact": "c1"})
            assert r.status_code == 403, who
        r = await c.get(f"/api/v1/gdpr/export?tenant={TENANT_A}", headers=bearer(env, "root"))
        assert r.status_code == 400


async def test_api_gdpr_export_and_erase(env: Env) -> None:
    from ghl_intake.keys import envelope_crypto
    from pipeline.persist import Entry, merge
    from store.context import ContextStore

    secret = "Call me on 512-555-0147, Jane Roe"
    store = ContextStore(env.redis, envelope_crypto(env.deps.settings, env.redis, env.deps.keyring),
                         prefix=env.deps.settings.key_prefix)
    await store.update(TENANT_A, "contact-9", lambda ctx: merge(
        ctx, Entry("ev-9", "InboundMessage", 1.0, {"body": secret}), 50))
    async with env.client() as c:
        r = await c.get(f"/api/v1/gdpr/export?tenant={TENANT_A}&contact=contact-9", headers=bearer(env, "root"))
        assert r.status_code == 200 and secret in r.text
        r = await c.post("/api/v1/gdpr/erase", headers=bearer(env, "root"),
                         json={"tenant": TENANT_A, "contact": "contact-9"})
        assert r.status_code == 200 and r.json()["erased"]["context"] == 1
        r = await c.get(f"/api/v1/gdpr/export?tenant={TENANT_A}&contact=contact-9", headers=bearer(env, "root"))
        assert secret not in r.text
    recs = [rec for rec in await system_records(env) if rec.outcome in ("gdpr_export", "gdpr_erase")]
    assert [rec.outcome for rec in recs] == ["gdpr_export", "gdpr_erase", "gdpr_export"]
    assert all(rec.actor == "console:root" and rec.contact and "contact-9" not in str(rec) for rec in recs)
    assert (await env.deps.audit.verify(SYSTEM_TENANT))[0].ok


async def test_api_me(env: Env) -> None:
    async with env.client() as c:
        r = await c.get("/api/v1/me", headers=bearer(env, "ana"))
        assert r.json()["role"] == "analyst" and r.json()["tenants"] == [TENANT_A]
        assert "dlq.replay" not in r.json()["permissions"]


@pytest.mark.parametrize("path", ["/console/static/console.css"])
async def test_static_needs_no_login(env: Env, path: str) -> None:
    async with env.client() as c:
        r = await c.get(path)
        assert r.status_code == 200 and "text/css" in r.headers["content-type"]


async def test_series_reads_the_window_from_the_chain(env: Env) -> None:
    from console import data
    from tests.e2e.seed import seed_history

    await seed_history(env.redis, env.deps.settings, "locHistory", hours=30)
    day = await data.tenant_series(env.deps, "locHistory", hours=24)
    longer = await data.tenant_series(env.deps, "locHistory", hours=48)
    assert sum(day.totals.values()) == sum(sum(c.values()) for c in day.counts) > 0
    assert sum(longer.totals.values()) == longer.records > sum(day.totals.values())
    assert len(data.chart(day)["bars"]) == 24
    assert (await env.deps.audit.verify("locHistory"))[0].ok
