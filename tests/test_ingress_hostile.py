"""Hostile input: each gets a short 4xx and changes nothing. Plus a property test over generated requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import orjson
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ghl_intake.embedded import _quiet_arq_redis_info, ingress_deps
from ghl_intake.signing import GhlSigner, hmac_signature, standard_headers, token_headers
from ingress.app import create_app
from ingress.schemes import decode_whsec
from store.tenants import TenantRegistry
from tests.conftest import make_settings
from tests.ingress_support import ghl_body, ingress, now_iso, served
from workers.base import job_deserializer, job_serializer

CAP = 4096


async def test_body_over_cap_by_content_length_is_413(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, max_body_bytes=CAP)
    async with ingress(settings) as ing:
        big = ghl_body(pad="x" * CAP)
        r = await ing.client.post("/webhooks/ghl", content=big, headers=signer.headers(big))
        # Starlette's RequestBodyLimitMiddleware answers a declared oversize itself, in plain text
        assert (r.status_code, r.text) == (413, "Content Too Large")
        # a declared length over the cap is refused before reading (and before the content-type check)
        small = ghl_body()
        r = await ing.client.post("/webhooks/ghl", content=small,
                                  headers={**signer.headers(small), "content-length": str(CAP + 1),
                                           "content-type": "text/plain"})
        assert r.status_code == 413
        assert await ing.enqueued() == 0


async def test_streamed_chunked_body_over_cap_is_413_without_reading_the_rest(real_redis_url: str,
                                                                              signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, max_body_bytes=CAP)
    sent = [0]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent[0] += 1
            yield b"x" * 1024

    async with ingress(settings) as ing:
        r = await ing.client.post("/webhooks/ghl", content=chunks(), headers=signer.headers(b"x"))
        assert r.status_code == 413
        assert sent[0] <= CAP // 1024 + 2  # stopped at the cap, the other ~1000 KiB never read
        assert await ing.enqueued() == 0


async def test_chunked_body_under_cap_is_verified_on_its_bytes(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, max_body_bytes=CAP)
    body = ghl_body()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    async with ingress(settings) as ing:
        r = await ing.client.post("/webhooks/ghl", content=chunks(), headers=signer.headers(body))
        assert r.status_code == 200
        [env] = await ing.envelopes()
        assert ing.open(env) == body


async def _raw_exchange(base: str, request: bytes, then: bytes = b"") -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        if then:
            writer.write(then)
            await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def test_uvicorn_413_on_content_length_and_on_chunked(real_redis_url: str, signer: GhlSigner) -> None:
    """Through a real server: 413 for a large Content-Length (nothing read) and for a chunked stream."""
    settings = make_settings(real_redis_url, signer, max_body_bytes=CAP)
    async with ingress(settings) as ing, served(ing.app) as base:
        head = (b"POST /webhooks/ghl HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"x-ghl-signature: " + signer.sign(b"{}").encode() + b"\r\n")
        data = await _raw_exchange(base, head + b"content-length: 99999999\r\n\r\n" + b"{" * 100)
        assert data.startswith(b"HTTP/1.1 413"), data[:80]
        chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
        data = await _raw_exchange(base, head + b"transfer-encoding: chunked\r\n\r\n" + chunk * 8, chunk * 8)
        assert data.startswith(b"HTTP/1.1 413"), data[:80]
        # huge header: the server refuses it, never a 5xx
        data = await _raw_exchange(base, b"POST /webhooks/ghl HTTP/1.1\r\nHost: x\r\nx-ghl-signature: "
                                   + b"A" * 200_000 + b"\r\ncontent-length: 2\r\n\r\n{}")
        assert data == b"" or data.split(b" ", 2)[1][:1] == b"4", data[:80]
        async with httpx.AsyncClient(base_url=base) as c:
            body = ghl_body()
            assert (await c.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code == 200
        assert await ing.enqueued() == 1


async def test_hostile_headers_methods_paths(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, max_body_bytes=CAP)
    async with ingress(settings) as ing:
        body = ghl_body()
        sig = signer.sign(body)
        c = ing.client

        async def post(headers: Any, content: bytes = body, path: str = "/webhooks/ghl") -> tuple[int, str]:
            r = await c.post(path, content=content, headers=headers)
            return r.status_code, r.json().get("error", "")

        ct = ("content-type", "application/json")
        assert await post([ct]) == (401, "missing signature")
        assert await post([ct, ("x-ghl-signature", sig), ("x-ghl-signature", sig)]) == \
            (401, "duplicated signature header")
        assert await post([ct, ("x-ghl-signature", f"{sig}, {sig}")]) == (401, "malformed signature")
        assert await post([ct, ("x-ghl-signature", b"\xff\xfe\x80" + sig.encode()[3:])]) == \
            (401, "malformed signature")
        assert await post([ct, ("x-ghl-signature", "A" * 100_000)]) == (401, "malformed signature")
        assert await post([ct, ("x-ghl-signature", sig[:40] + " " + sig[40:])]) == (401, "malformed signature")
        assert await post([ct, ("x-ghl-signature", sig.rstrip("="))]) == (401, "malformed signature")
        assert await post([ct, ("x-ghl-signature", sig + "==")]) == (401, "malformed signature")
        urlsafe = base64.urlsafe_b64encode(base64.b64decode(sig)).decode()
        # the URL-safe alphabet is refused; a signature without + or / (about 1 in 15) reads the same in both
        same = urlsafe == sig
        assert await post([ct, ("x-ghl-signature", urlsafe)]) == ((200, "") if same else (401, "malformed signature"))
        assert await post([ct, ("x-ghl-signature", sig), ("x-junk", b"\xff" * 10_000)]) == (200, "")
        assert await post([("x-ghl-signature", sig)]) == (415, "content-type must be application/json")
        assert (await post([("content-type", "text/plain"), ("x-ghl-signature", sig)]))[0] == 415
        assert await post([ct, ("x-ghl-signature", signer.sign(b""))], content=b"") == (400, "empty body")
        assert await post([ct, ("x-webhook-token", "x")], path="/webhooks/tenants/LocA0001") == (401, "bad token")
        assert await post([ct, ("webhook-signature", "v1,xx")], path="/webhooks/tenants/LocA0001") == \
            (401, "missing signature")
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            r = await c.request(method, "/webhooks/ghl", content=body, headers=signer.headers(body))
            assert (r.status_code, r.json()) == (405, {"error": "method not allowed"})
        for path in ("/", "/webhooks", "/webhooks/ghl/", "/webhooks/GHL", "/webhooks//ghl", "/%00",
                     "/webhooks/tenants", "/webhooks/tenants/a/b"):
            r = await c.post(path, content=body, headers=signer.headers(body))
            assert 400 <= r.status_code < 500, (path, r.status_code)
            assert r.status_code != 200
        assert await ing.enqueued() == 1 + same  # only the one with a junk extra header (and the alphabet twin)


# ------------------------------------------------------------------------------------------ property test

TENANT = "LocProp0001"
OTHER = "LocProp0002"


class World:
    """The real app on a private fakeredis, a GHL signer and a tenant with one secret of each scheme."""

    def __init__(self) -> None:
        _quiet_arq_redis_info()
        self.loop = asyncio.new_event_loop()
        self.signer = GhlSigner()
        self.settings = make_settings("", self.signer, max_body_bytes=1024)
        fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.pool = ArqRedis(connection_pool=fake.connection_pool, job_serializer=job_serializer,
                             job_deserializer=job_deserializer)
        self.deps = ingress_deps(self.settings, self.pool)
        self.app = create_app(self.deps)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=("198.51.100.3", 1)),
                                        base_url="http://ingress.test")
        self.secrets = self.loop.run_until_complete(self._tenant())
        self.statuses: dict[int, int] = {}

    async def _tenant(self) -> dict[str, str]:
        reg = TenantRegistry(self.pool, self.deps.keyring, prefix=self.settings.key_prefix)
        out = {}
        for t in (TENANT, OTHER):
            await reg.add(t)
            for s in ("token", "hmac", "standard"):
                out[f"{t}:{s}"] = (await reg.add_secret(t, s))[1]
        return out

    async def enqueued(self) -> int:
        return int(await self.pool.zcard(self.settings.key("q", "dedup")))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.deps.monitor.drain() if self.deps.monitor else asyncio.sleep(0))
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


_HEADER_TEXT = st.binary(max_size=120).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00"))
_B64ISH = st.one_of(
    st.binary(min_size=0, max_size=600).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \t,", max_size=120),
)


@st.composite
def _requests(draw: st.DrawFn, world: World) -> dict[str, Any]:
    target = draw(st.sampled_from(["ghl", "ghl", "tenant", "tenant", "other-tenant", "elsewhere"]))
    if draw(st.booleans()):
        obj: dict[str, Any] = {"type": draw(st.sampled_from(["ContactCreate", "InboundMessage", "", "x" * 40])),
                               "locationId": draw(st.sampled_from([TENANT, OTHER, "", "../etc"])),
                               "n": draw(st.integers(-(2**63), 2**63 - 1))}
        if draw(st.booleans()):
            obj["timestamp"] = now_iso(draw(st.sampled_from([0, -3600, -80 * 3600, 7200])))
        body = orjson.dumps(obj)
    else:
        body = draw(st.binary(max_size=draw(st.sampled_from([0, 50, 400]))))
    if draw(st.integers(0, 30)) == 0:
        body = body + b" " * 1100  # over the 1024-byte cap
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH"]))
    path = {"ghl": "/webhooks/ghl", "tenant": f"/webhooks/tenants/{TENANT}",
            "other-tenant": f"/webhooks/tenants/{OTHER}"}.get(target) or draw(
        st.sampled_from(["/", "/webhooks", "/webhooks/tenants/", "/webhooks/ghl/x", "/metricsx",
                         "/webhooks/tenants/a.b"]))
    ctype = draw(st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", "",
                                                             "application/x-www-form-urlencoded"]))
    headers: list[tuple[str, str | bytes]] = [("content-type", ctype)] if ctype else []
    signed = False
    variant = draw(st.sampled_from(["good", "good", "good", "dup", "wrong-key", "junk", "none", "other-tenant"]))
    sec_tenant = OTHER if variant == "other-tenant" else TENANT
    if target == "ghl":
        good = world.signer.sign(body)
        value: Any = {"good": good, "dup": good, "wrong-key": GhlSigner().sign(body), "other-tenant": good,
                      "junk": draw(_B64ISH), "none": None}[variant]
        header = draw(st.sampled_from(["x-ghl-signature", "x-ghl-signature", "x-wh-signature", "X-GHL-SIGNATURE"]))
        if value is not None:
            headers.append((header, value))
            if variant == "dup":
                headers.append((header, value))
        signed = variant in ("good", "other-tenant") and header.lower() == "x-ghl-signature"
    elif target in ("tenant", "other-tenant"):
        scheme = draw(st.sampled_from(["token", "hmac", "standard"]))
        secret = world.secrets[f"{sec_tenant}:{scheme}"]
        if variant in ("wrong-key", "junk"):
            secret = draw(st.sampled_from(["whsec_" + base64.b64encode(b"k" * 32).decode(), "nope", ""])) \
                if variant == "wrong-key" else secret
        hs: list[tuple[str, str | bytes]] = []
        if scheme == "token":
            hs = [(k, v) for k, v in token_headers(secret).items() if k != "content-type"]
        elif scheme == "hmac":
            hs = [("x-webhook-signature", hmac_signature(secret.encode(), body))]
        else:
            try:
                key = decode_whsec(secret)
            except ValueError:
                key = b"k"
            hs = [(k, v) for k, v in standard_headers(key, body).items() if k != "content-type"]
        if variant == "junk":
            hs = [(hs[-1][0], draw(_B64ISH))] + hs[:-1]
        if variant == "dup":
            hs = hs + [hs[-1]]
        if variant != "none":
            headers.extend(hs)
        owner = TENANT if target == "tenant" else OTHER
        signed = variant in ("good", "other-tenant") and sec_tenant == owner
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(st.sampled_from(["x-junk", "user-agent", "x-forwarded-for", "accept"])),
                        draw(_HEADER_TEXT)))
    valid = (signed and method == "POST" and target in ("ghl", "tenant", "other-tenant")
             and ctype.startswith("application/json") and 0 < len(body) <= 1024)
    if valid:
        parsed: Any = None
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # verified but not JSON: accepted, the pipeline dead-letters it
        ts = parsed.get("timestamp") if isinstance(parsed, dict) else None
        valid = not isinstance(ts, str) or now_iso(-72 * 3600) < ts < now_iso(300)
    return {"method": method, "path": path, "headers": headers, "body": body, "valid": valid}


def test_property_no_5xx_and_nothing_enqueued_unless_correctly_signed() -> None:
    world = World()
    seen = {"valid": 0, "invalid": 0}

    @hsettings(max_examples=2500, deadline=None, derandomize=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def run(data: st.DataObject) -> None:
        req = data.draw(_requests(world))

        async def one() -> None:
            before = await world.enqueued()
            r = await world.client.request(req["method"], req["path"], headers=req["headers"], content=req["body"])
            after = await world.enqueued()
            assert r.status_code < 500, (r.status_code, r.text, req)
            assert r.status_code != 429, (r.text, req)  # nothing here is busy: a 429 would hide a crash
            if req["valid"]:
                assert r.status_code == 200, (r.status_code, r.text, req)
                assert after == before + 1
            else:
                assert r.status_code >= 400, (r.status_code, req)
                assert after == before, req
            world.statuses[r.status_code] = world.statuses.get(r.status_code, 0) + 1

        world.loop.run_until_complete(one())
        seen["valid" if req["valid"] else "invalid"] += 1

    try:
        run()
    finally:
        world.close()
    assert seen["valid"] > 100 and seen["invalid"] > 1000, seen
    assert {200, 401, 404, 405, 413, 415} <= set(world.statuses), world.statuses


def _count(ing: Any, outcome: str, endpoint: str = "ghl") -> float:
    value = ing.deps.metrics.registry.get_sample_value(
        "ghl_intake_ingress_requests_total", {"endpoint": endpoint, "outcome": outcome})
    return float(value or 0.0)


async def test_a_body_trickled_past_the_timeout_is_408_and_frees_the_request(real_redis_url: str,
                                                                             signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer, body_timeout_s=0.5)
    body = ghl_body()

    async def slow() -> AsyncIterator[bytes]:
        yield body[:10]
        await asyncio.sleep(60)
        yield body[10:]

    async with ingress(settings) as ing:
        t0 = time.monotonic()
        r = await ing.client.post("/webhooks/ghl", content=slow(), headers=signer.headers(body))
        assert (r.status_code, r.json()) == (408, {"error": "body not received in time"})
        assert time.monotonic() - t0 < 30  # the 0.5 s body timeout answered, not the 60 s trickle
        assert await ing.enqueued() == 0 and _count(ing, "body_timeout") == 1
        # the same body sent at once is fine
        assert (await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))).status_code == 200


async def test_a_sender_that_disconnects_mid_body_is_not_an_internal_error(
        real_redis_url: str, signer: GhlSigner, caplog: Any) -> None:
    settings = make_settings(real_redis_url, signer)
    body = ghl_body()
    async with ingress(settings) as ing:
        messages = [{"type": "http.request", "body": body[:20], "more_body": True}, {"type": "http.disconnect"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        headers = [(k.encode(), v.encode()) for k, v in {**signer.headers(body), "content-length": str(len(body))}.items()]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/webhooks/ghl", "raw_path": b"/webhooks/ghl", "query_string": b"",
                 "headers": headers, "client": ("203.0.113.9", 40000), "server": ("ingress.test", 80)}
        with caplog.at_level("INFO"):
            await ing.app(scope, receive, send)
        assert _count(ing, "client_disconnect") == 1 and _count(ing, "error") == 0
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
        assert await ing.enqueued() == 0


async def test_a_huge_integer_timestamp_is_unreadable_not_an_internal_error(real_redis_url: str,
                                                                            signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        body = b'{"type":"ContactCreate","locationId":"LocA0001","webhookId":"w-big","timestamp":' + b"9" * 400 + b"}"
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert r.status_code == 200  # an unreadable stamp is let through (dedup still applies), never a 429 loop
        assert await ing.enqueued() == 1


async def test_content_types(real_redis_url: str, signer: GhlSigner) -> None:
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        for ctype, status in (("application/json", 200), ("Application/JSON; charset=utf-8", 200),
                              ("application/vnd.ghl.webhook+json", 200), ("+json", 415), ("text/+json", 415),
                              ("application/+json", 415), ("text/json+json", 415), ("application/x/y+json", 415),
                              ("text/plain", 415), ("", 415)):
            body = ghl_body()
            r = await ing.client.post("/webhooks/ghl", content=body,
                                      headers={**signer.headers(body), "content-type": ctype})
            assert r.status_code == status, ctype
        assert await ing.enqueued() == 3


async def test_a_deeply_nested_signed_body_is_accepted_for_the_dead_letter_store_not_a_429_loop(
        real_redis_url: str, signer: GhlSigner) -> None:
    # answering 429 would make GHL retry until it gives up, and no operator would ever see the event
    settings = make_settings(real_redis_url, signer)
    async with ingress(settings) as ing:
        body = b'{"locationId": "LocA0001", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = await ing.client.post("/webhooks/ghl", content=body, headers=signer.headers(body))
        assert r.status_code == 200 and await ing.enqueued() == 1
        assert _count(ing, "error") == 0
