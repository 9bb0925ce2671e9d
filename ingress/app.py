"""The ASGI ingress: bounded raw body, signature check, replay window, encrypt, enqueue, answer.

Endpoints:

* ``POST /webhooks/ghl``: GHL marketplace webhooks (``X-GHL-Signature`` Ed25519; legacy
  ``X-WH-Signature`` RSA when enabled), see ``ingress.verify``.
* ``POST /webhooks/tenants/{location_id}``: senders GHL does not sign, authenticated by that
  tenant's own secrets (token, HMAC, Standard Webhooks), see ``ingress.schemes``.
* ``GET /healthz``: liveness and Redis reachability.
* ``GET /metrics``, ``GET /health/security``: on this app, or on their own port
  (``INTAKE_OPS_PORT``, see ``create_ops_app``), or off.

Status codes: 200 accepted (after the envelope is in Redis), 400 empty body, 401 signature/token
missing, malformed, wrong or replayed (stale/future timestamp), 404 unknown path or malformed
location id, 405 wrong method, 408 body not received within ``INTAKE_BODY_TIMEOUT_S``, 413 body
over ``INTAKE_MAX_BODY_BYTES`` (by Content-Length or by streamed bytes), 415 not JSON, 429 +
Retry-After when the event cannot be queued now (Redis down, backpressure, any internal error:
GHL retries only 429, a 5xx would lose the event).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from redis.exceptions import NoScriptError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghl_intake.settings import DEFAULT_GHL_RSA_PEM, Settings, SettingsError
from ingress import backpressure, freshness, schemes
from ingress.metrics import CONTENT_TYPE_LATEST, IngressMetrics, queue_snapshot
from ingress.security import AttackMonitor
from ingress.verify import GHL_ED25519_HEADER, GHL_RSA_HEADER, Verdict, fingerprint, load_rsa_keys, verify_ghl
from pipeline.models import Envelope, pack
from pipeline.stages import envelope_aad
from store.keyring import Keyring

log = logging.getLogger("ghl_intake.ingress")

ENQUEUE_TIMEOUT_S = 5.0
SECRETS_TIMEOUT_S = 2.0
TENANT_RE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

_HTTP_REASONS = {404: ("not_found", "no such endpoint"), 405: ("method_not_allowed", "method not allowed"),
                 413: ("too_large", "body too large")}


class TenantSecretsSource(Protocol):
    async def webhook_secrets(self, tenant: str) -> Any: ...


@dataclass
class IngressDeps:
    settings: Settings
    pool: ArqRedis
    keyring: Keyring
    ed25519_keys: list[Ed25519PublicKey]
    rsa_keys: list[RSAPublicKey] | None = None  # None: loaded from settings when legacy RSA is on
    pseudonym_key: bytes | None = None  # None: from the key settings
    tenants: TenantSecretsSource | None = None  # None: store.tenants.TenantRegistry on the pool
    clock: Callable[[], float] = time.time
    metrics: IngressMetrics = field(default_factory=IngressMetrics)
    monitor: AttackMonitor | None = None  # built by create_app
    enqueuer: EnqueueBatcher | None = None  # built on first use


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _is_json(content_type: str) -> bool:
    """``application/json`` or a structured ``application/<name>+json`` type (RFC 6839)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return True
    subtype = media.removeprefix("application/")
    return subtype != media and subtype.endswith("+json") and len(subtype) > len("+json") and "/" not in subtype


def _declared_too_large(request: Request, cap: int) -> bool:
    raw = request.headers.get("content-length")
    if raw is None:
        return False
    try:
        return int(raw) > cap
    except ValueError:
        return False


# arq's enqueue_job in one round trip instead of three (WATCH, EXISTS, MULTI/EXEC): the same keys, the
# same job bytes (arq's own ``serialize_job`` with the pool's serializer), the same "no second job with
# this id" rule, atomically. KEYS: 1 job key, 2 result key, 3 queue. ARGV: 1 job, 2 expiry ms, 3 score, 4 id.
_ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


class EnqueueBatcher:
    """Group commit: enqueues issued in the same event-loop turn go to Redis in one pipeline.

    Each caller still waits for the result of its own script call, so a 200 is sent only after that
    envelope is in Redis; a failed batch fails each of its callers (who answer 429). Under load this
    turns N round trips (N sends, N reads) into one; with a single request it costs one loop turn.
    """

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self.sha = hashlib.sha1(_ENQUEUE_LUA.encode()).hexdigest()
        self._pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(([self.sha, len(keys), *keys, *args], fut))
        if len(self._pending) == 1:
            loop.call_soon(self._kick)
        return await fut

    def _kick(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> list[Any]:
        pipe = self.pool.pipeline(transaction=False)
        for cmd, _ in batch:
            pipe.execute_command("EVALSHA", *cmd)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):  # first use, or after SCRIPT FLUSH / failover
            await self.pool.script_load(_ENQUEUE_LUA)
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            pipe = self.pool.pipeline(transaction=False)
            for i in retry:
                pipe.execute_command("EVALSHA", *batch[i][0])
            for i, r in zip(retry, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = r
        return results

    async def _flush(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._run(batch)
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)


async def enqueue_envelope(deps: IngressDeps, env: Envelope) -> None:
    """Put the envelope on the dedup queue as arq job ``dedup:{event_id}`` (batched, one round trip)."""
    pool = deps.pool
    if deps.enqueuer is None:
        deps.enqueuer = EnqueueBatcher(pool)
    job_id = f"dedup:{env.event_id}"
    now_ms = int(time.time() * 1000)
    job = serialize_job("dedup", (pack(env),), {}, None, now_ms, serializer=pool.job_serializer)
    async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
        await deps.enqueuer.submit(
            [job_key_prefix + job_id, result_key_prefix + job_id, deps.settings.key("q", "dedup")],
            [job, pool.expires_extra_ms, now_ms, job_id])


def _busy(deps: IngressDeps, endpoint: str, outcome: str, why: str, client: str) -> JSONResponse:
    deps.metrics.request(endpoint, outcome)
    log.warning("answering 429: %s (client %s)", why, _shown(deps, client))
    return _error(429, why, {"Retry-After": str(deps.settings.retry_after_s)})


def _shown(deps: IngressDeps, client: str) -> str:
    return deps.monitor.shown(client) if deps.monitor else "-"


async def accept(deps: IngressDeps, request: Request, body: bytes, scheme: str, tenant_hint: str = "",
                 endpoint: str = "ghl") -> Response:
    client = _client(request)
    try:
        reason = await backpressure.check(deps)
    except Exception as exc:
        reason = f"backpressure check failed ({type(exc).__name__}), retry later"
    if reason:
        return _busy(deps, endpoint, "throttled", reason, client)
    event_id = uuid.uuid4().hex
    started = time.perf_counter()
    try:
        sealed = deps.keyring.seal(body, envelope_aad(event_id))
        env = Envelope(event_id=event_id, received_at=time.time(), scheme=scheme, client=client, body=sealed,
                       tenant_hint=tenant_hint)
        await enqueue_envelope(deps, env)
    except Exception as exc:  # Redis down, timeout, OOM, read-only: GHL retries a 429
        return _busy(deps, endpoint, "busy", f"queue unavailable ({type(exc).__name__}), retry later", client)
    deps.metrics.enqueue_seconds.observe(time.perf_counter() - started)
    deps.metrics.request(endpoint, "accepted")
    deps.metrics.accepted_by(scheme)
    return JSONResponse({"event_id": event_id})


async def _reject(deps: IngressDeps, endpoint: str, client: str, verdict: Verdict, outcome: str = "unauthorized"
                  ) -> Response:
    """401 for a failed verification: counted, logged (reason and address, never the body), watched."""
    deps.metrics.request(endpoint, outcome)
    deps.metrics.verify_failures.labels(verdict.scheme, verdict.reason).inc()
    log.warning("rejected 401 on %s from %s: %s (%s)", endpoint, _shown(deps, client), verdict.reason, verdict.scheme)
    if deps.monitor is not None:
        await deps.monitor.failure(client, verdict.reason, verdict.scheme)
    return _error(401, verdict.reason)


async def _read_body(deps: IngressDeps, request: Request, endpoint: str) -> bytes | Response:
    """The raw body, or the 413/415/400 answer. Content-Length over the cap: 413 without reading."""
    cap = deps.settings.max_body_bytes
    if _declared_too_large(request, cap):
        deps.metrics.request(endpoint, "too_large")
        return _error(413, "body too large")
    if not _is_json(request.headers.get("content-type", "")):
        deps.metrics.request(endpoint, "unsupported_media_type")
        return _error(415, "content-type must be application/json")
    try:
        async with asyncio.timeout(deps.settings.body_timeout_s):  # a body trickled in forever holds a socket
            body = await request.body()  # Route(max_body_size=...) stops a streamed body at the cap
    except HTTPException as exc:
        if exc.status_code == 413:
            deps.metrics.request(endpoint, "too_large")
            return _error(413, "body too large")
        raise
    except TimeoutError:
        deps.metrics.request(endpoint, "body_timeout")
        return _error(408, "body not received in time")
    except ClientDisconnect:  # the sender gave up mid-body: nothing to answer, nothing was accepted
        deps.metrics.request(endpoint, "client_disconnect")
        return _error(400, "client disconnected")
    if not body:
        deps.metrics.request(endpoint, "bad_request")
        return _error(400, "empty body")
    return body


async def _fresh_or_reject(deps: IngressDeps, endpoint: str, client: str, body: bytes, scheme: str
                           ) -> Response | None:
    s = deps.settings
    if s.replay_window_s <= 0:
        return None
    f = freshness.check(body, now=deps.clock(), window_s=s.replay_window_s, future_skew_s=s.future_skew_s)
    deps.metrics.stamp(f.state)
    if not f.reason:
        return None
    return await _reject(deps, endpoint, client, Verdict(False, scheme, f.reason), outcome="stale")


def _guarded(deps: IngressDeps, endpoint: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Any unexpected error becomes a 429 (the sender retries), never a 500 (the event would be lost)."""

    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except HTTPException:
            raise
        except Exception as exc:
            log.error("internal error on %s (%s); answering 429", endpoint, type(exc).__name__, exc_info=True)
            deps.metrics.request(endpoint, "error")
            return _error(429, "internal error, retry later", {"Retry-After": str(deps.settings.retry_after_s)})

    return wrapped


def make_ghl_endpoint(deps: IngressDeps) -> Callable[[Request], Any]:
    s = deps.settings
    rsa_keys = deps.rsa_keys or []

    async def ghl_webhook(request: Request) -> Response:
        client = _client(request)
        body = await _read_body(deps, request, "ghl")
        if isinstance(body, Response):
            return body
        h = request.headers
        verdict = verify_ghl(h.getlist(GHL_ED25519_HEADER), h.getlist(GHL_RSA_HEADER), body, deps.ed25519_keys,
                             rsa_keys, legacy_rsa=s.ghl_legacy_rsa_enabled)
        if not verdict.ok:
            return await _reject(deps, "ghl", client, verdict)
        stale = await _fresh_or_reject(deps, "ghl", client, body, verdict.scheme)
        if stale is not None:
            return stale
        return await accept(deps, request, body, verdict.scheme)

    return _guarded(deps, "ghl", ghl_webhook)


def make_tenant_endpoint(deps: IngressDeps) -> Callable[[Request], Any]:
    s = deps.settings

    async def tenant_webhook(request: Request) -> Response:
        client = _client(request)
        location_id = request.path_params.get("location_id", "")
        if not (0 < len(location_id) <= 64) or not TENANT_RE_CHARS.issuperset(location_id):
            deps.metrics.request("tenant", "not_found")
            return _error(404, "no such endpoint")
        body = await _read_body(deps, request, "tenant")
        if isinstance(body, Response):
            return body
        if not any(name in request.headers for name in schemes.ALL_HEADERS):
            # nothing to check: answer without touching Redis (cheap for junk traffic)
            return await _reject(deps, "tenant", client, Verdict(False, schemes.SCHEME_TOKEN, schemes.REASON_MISSING))
        try:
            assert deps.tenants is not None
            async with asyncio.timeout(SECRETS_TIMEOUT_S):
                secrets = await deps.tenants.webhook_secrets(location_id)
        except Exception as exc:  # cannot verify now: the sender retries
            return _busy(deps, "tenant", "busy", f"tenant secrets unavailable ({type(exc).__name__}), retry later",
                         client)
        verdict = schemes.verify_tenant(request.headers.getlist, body, secrets, now=deps.clock(),
                                        tolerance_s=s.standard_webhooks_tolerance_s)
        if not verdict.ok:
            return await _reject(deps, "tenant", client, verdict)
        stale = await _fresh_or_reject(deps, "tenant", client, body, verdict.scheme)
        if stale is not None:
            return stale
        return await accept(deps, request, body, verdict.scheme, tenant_hint=location_id, endpoint="tenant")

    return _guarded(deps, "tenant", tenant_webhook)


# ---------------------------------------------------------------------------------------- ops


async def security_posture(deps: IngressDeps) -> tuple[dict[str, Any], bool]:
    """The /health/security document (no secrets, no URLs) and whether Redis answered."""
    from store.audit import AuditStore
    from store.dlq import DeadLetterStore

    s = deps.settings
    doc: dict[str, Any] = {
        "schemes": {
            "ghl_ed25519": {"enabled": True, "header": "X-GHL-Signature",
                            "key_fingerprints": [fingerprint(k) for k in deps.ed25519_keys]},
            "ghl_rsa_legacy": {"enabled": bool(s.ghl_legacy_rsa_enabled), "header": "X-WH-Signature",
                               "key_fingerprints": [fingerprint(k) for k in (deps.rsa_keys or [])]},
            "tenant_token": {"enabled": deps.tenants is not None, "header": "X-Webhook-Token"},
            "tenant_hmac": {"enabled": deps.tenants is not None, "header": "X-Webhook-Signature"},
            "standard_webhooks": {"enabled": deps.tenants is not None,
                                  "tolerance_s": s.standard_webhooks_tolerance_s},
        },
        "replay_window": {"window_s": s.replay_window_s, "future_skew_s": s.future_skew_s,
                          "dedup_ttl_s": s.dedup_ttl_s,
                          "covered_by_dedup": 0 < s.replay_window_s <= s.dedup_ttl_s},
        "max_body_bytes": s.max_body_bytes,
        "keyring": {"primary": deps.keyring.primary, "key_ids": deps.keyring.key_ids},
        "attack_monitor": {"burst_threshold": s.failure_burst_threshold, "window_s": s.failure_burst_window_s,
                           "alert_webhook": bool(s.alert_webhook_url), "raw_ip_logging": bool(s.log_client_ip)},
    }
    try:
        snap = await asyncio.wait_for(queue_snapshot(deps.pool, s), 3.0)
        dlq_depth = await asyncio.wait_for(
            DeadLetterStore(deps.pool, deps.keyring, prefix=s.key_prefix).depth(), 3.0)
        last = await asyncio.wait_for(AuditStore(deps.pool, prefix=s.key_prefix).last_append(), 3.0)
    except Exception as exc:
        doc["redis"] = False
        doc["error"] = f"redis unavailable ({type(exc).__name__})"
        return doc, False
    now = time.time()
    doc["redis"] = True
    doc["queues"] = {st: {"depth": d, "oldest_age_s": round(a, 3)} for st, (d, a) in snap.items()}
    doc["oldest_queued_event_age_s"] = round(max((a for _, a in snap.values()), default=0.0), 3)
    doc["dead_letter_depth"] = dlq_depth
    doc["audit_last_append"] = {t: {"at": ts, "age_s": round(now - ts, 3)} for t, ts in sorted(last.items())}
    return doc, True


def ops_routes(deps: IngressDeps) -> list[Route]:
    s = deps.settings
    routes: list[Route] = []

    async def metrics(request: Request) -> Response:
        try:
            await deps.metrics.refresh(deps)
        except Exception:
            deps.metrics.scrape_errors.inc()
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def health_security(request: Request) -> Response:
        doc, ok = await security_posture(deps)
        return JSONResponse(doc, status_code=200 if ok else 503)

    if s.metrics_enabled:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    if s.security_health_enabled:
        routes.append(Route("/health/security", health_security, methods=["GET"]))
    return routes


def _http_exception_handler(deps: IngressDeps) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        outcome, reason = _HTTP_REASONS.get(status, ("bad_request", "bad request"))
        deps.metrics.request("other", outcome)
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return _error(status, reason, headers)

    return handler


def prepare(deps: IngressDeps) -> IngressDeps:
    """Fill in what the deps do not carry yet: legacy RSA keys, pseudonym key, tenant registry, monitor."""
    s = deps.settings
    if deps.rsa_keys is None:
        deps.rsa_keys = load_rsa_keys(s.ghl_rsa_public_keys, DEFAULT_GHL_RSA_PEM) if s.ghl_legacy_rsa_enabled else []
    if deps.pseudonym_key is None:
        from ghl_intake import keys

        deps.pseudonym_key = keys.load(s).pseudonym_key
    if deps.tenants is None:
        from store.tenants import TenantRegistry

        deps.tenants = TenantRegistry(deps.pool, deps.keyring, prefix=s.key_prefix)
    if deps.monitor is None:
        deps.monitor = AttackMonitor(deps, deps.pseudonym_key, metrics=deps.metrics)
    if 0 < s.replay_window_s and s.replay_window_s > s.dedup_ttl_s:
        log.warning("INTAKE_REPLAY_WINDOW_S (%d s) is longer than INTAKE_DEDUP_TTL_S (%d s): a replay in between "
                    "passes both checks", s.replay_window_s, s.dedup_ttl_s)
    return deps


def create_app(deps: IngressDeps, *, routes: Sequence[Route] = ()) -> Starlette:
    deps = prepare(deps)

    async def healthz(request: Request) -> Response:
        try:
            await asyncio.wait_for(deps.pool.ping(), timeout=2.0)
            return JSONResponse({"status": "ok", "redis": True})
        except Exception:
            return JSONResponse({"status": "degraded", "redis": False}, status_code=503)

    cap = deps.settings.max_body_bytes
    app_routes = [
        Route("/webhooks/ghl", make_ghl_endpoint(deps), methods=["POST"], max_body_size=cap),
        Route("/webhooks/tenants/{location_id}", make_tenant_endpoint(deps), methods=["POST"], max_body_size=cap),
        Route("/healthz", healthz, methods=["GET"]),
        *routes,
    ]
    if deps.settings.ops_port <= 0:
        app_routes.extend(ops_routes(deps))
    from console.app import console_routes  # operator console + /api/v1 ([] when INTAKE_CONSOLE_ENABLED=0)

    app_routes.extend(console_routes(deps))
    app = Starlette(routes=app_routes, exception_handlers={HTTPException: _http_exception_handler(deps)})
    app.router.redirect_slashes = False  # "/webhooks/ghl/" is a 404, not a redirect a sender may not follow
    app.state.deps = deps
    return app


def create_ops_app(deps: IngressDeps) -> Starlette:
    """/metrics and /health/security alone, for ``INTAKE_OPS_PORT`` (share ``deps`` with the main app)."""
    deps = prepare(deps)
    app = Starlette(routes=ops_routes(deps), exception_handlers={HTTPException: _http_exception_handler(deps)})
    app.state.deps = deps
    return app


def _check_can_listen(host: str, port: int, setting: str) -> None:
    """Fail with one line naming the setting when ``host:port`` is taken or not ours to bind."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class OpsServer:
    """The ops app on ``INTAKE_OPS_HOST:INTAKE_OPS_PORT`` (uvicorn, same event loop as the main server)."""

    def __init__(self, app: Starlette) -> None:
        import uvicorn

        deps: IngressDeps = app.state.deps
        s = deps.settings
        self.server = uvicorn.Server(uvicorn.Config(create_ops_app(deps), host=s.ops_host, port=s.ops_port,
                                                    log_level="warning", access_log=False, lifespan="off"))
        # the main server owns SIGINT/SIGTERM; this one is stopped by ``stop()``
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, app: Starlette) -> OpsServer | None:
        """Start it when ``INTAKE_OPS_PORT`` is set and an ops endpoint is on; None otherwise."""
        s: Settings = app.state.deps.settings
        if s.ops_port <= 0 or not (s.metrics_enabled or s.security_health_enabled):
            return None
        _check_can_listen(s.ops_host, s.ops_port, "INTAKE_OPS_PORT")
        ops = cls(app)
        ops.task = asyncio.create_task(ops.server.serve())
        return ops

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
