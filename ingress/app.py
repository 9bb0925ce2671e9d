"""The ASGI ingress: bounded raw body, signature check, encrypt, enqueue, answer. Nothing else.

Status codes: 200 accepted (after the envelope is in Redis), 400 empty body, 401 signature
missing/malformed/wrong, 405 wrong method, 413 body over ``INTAKE_MAX_BODY_BYTES``, 415 not JSON,
429 + Retry-After when Redis cannot take the event (GHL retries only 429).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from arq.connections import ArqRedis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghl_intake.settings import Settings
from ingress.verify import verify_ghl_ed25519
from pipeline.models import Envelope, pack
from pipeline.stages import envelope_aad
from store.keyring import Keyring

log = logging.getLogger("ghl_intake.ingress")

ENQUEUE_TIMEOUT_S = 5.0


@dataclass
class IngressDeps:
    settings: Settings
    pool: ArqRedis
    keyring: Keyring
    ed25519_keys: list[Ed25519PublicKey]


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def enqueue_envelope(deps: IngressDeps, env: Envelope) -> None:
    await asyncio.wait_for(
        deps.pool.enqueue_job("dedup", pack(env), _job_id=f"dedup:{env.event_id}",
                              _queue_name=deps.settings.key("q", "dedup")),
        timeout=ENQUEUE_TIMEOUT_S,
    )


def _busy(deps: IngressDeps, why: str, client: str) -> JSONResponse:
    log.warning("answering 429: %s (client %s)", why, client)
    return _error(429, why, {"Retry-After": str(deps.settings.retry_after_s)})


async def accept(deps: IngressDeps, request: Request, body: bytes, scheme: str, tenant_hint: str = "") -> Response:
    client = _client(request)
    event_id = uuid.uuid4().hex
    try:
        sealed = deps.keyring.seal(body, envelope_aad(event_id))
        env = Envelope(event_id=event_id, received_at=time.time(), scheme=scheme, client=client, body=sealed,
                       tenant_hint=tenant_hint)
        await enqueue_envelope(deps, env)
    except Exception as exc:  # Redis down, timeout, OOM, read-only: GHL retries a 429
        return _busy(deps, f"queue unavailable ({type(exc).__name__}), retry later", client)
    return JSONResponse({"event_id": event_id})


def make_ghl_endpoint(deps: IngressDeps):  # type: ignore[no-untyped-def]
    async def ghl_webhook(request: Request) -> Response:
        client = _client(request)
        if not _is_json(request.headers.get("content-type", "")):
            return _error(415, "content-type must be application/json")
        body = await request.body()
        if not body:
            return _error(400, "empty body")
        header_values = request.headers.getlist("x-ghl-signature")
        if len(header_values) > 1:
            verdict_reason = "duplicated signature header"
            log.warning("rejected 401 from %s: %s", client, verdict_reason)
            return _error(401, verdict_reason)
        verdict = verify_ghl_ed25519(header_values[0] if header_values else None, body, deps.ed25519_keys)
        if not verdict.ok:
            log.warning("rejected 401 from %s: %s", client, verdict.reason)
            return _error(401, verdict.reason)
        return await accept(deps, request, body, verdict.scheme)

    return ghl_webhook


def create_app(deps: IngressDeps) -> Starlette:
    async def healthz(request: Request) -> Response:
        try:
            await asyncio.wait_for(deps.pool.ping(), timeout=2.0)
            return JSONResponse({"status": "ok", "redis": True})
        except Exception:
            return JSONResponse({"status": "degraded", "redis": False}, status_code=503)

    routes = [
        Route("/webhooks/ghl", make_ghl_endpoint(deps), methods=["POST"], max_body_size=deps.settings.max_body_bytes),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.deps = deps
    return app
